"""JSON API: calls with their analysis, alerts and delivery states; flagged customers;
supervisors' feedback on alerts."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from plugin.app import services
from plugin.data import severity_rank
from plugin.models import AlertRow, Call, Delivery, Feedback, Notification

bp = Blueprint("api", __name__, url_prefix="/api")


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="milliseconds") + "Z" if t else None


def delivery_json(d: Delivery) -> dict:
    payload = dict(d.payload)
    if "url" in payload:  # query strings often carry API keys
        payload["url"] = payload["url"].split("?", 1)[0] + ("?…" if "?" in payload["url"] else "")
    return {"id": d.id, "sink": d.sink, "status": d.status, "attempts": d.attempts,
            "last_status_code": d.last_status_code, "last_error": d.last_error,
            "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
            "delivered_at": _iso(d.delivered_at), "payload": payload}


def feedback_json(f: Feedback | None) -> dict | None:
    if f is None:
        return None
    return {"verdict": f.verdict, "by": f.by, "note": f.note, "updated_at": _iso(f.updated_at)}


def alert_json(a: AlertRow) -> dict:
    # a.deliveries and a.feedback must be loaded with the alert (selectinload, as load_call does).
    return {"id": a.id, "call_id": a.call_id, "rule": a.rule, "scenario": a.scenario,
            "severity": a.severity,
            "role": a.role, "emotions": a.emotions, "share": a.share, "confidence": a.confidence,
            "matched": a.matched, "summary": a.summary, "created_at": _iso(a.created_at),
            "labels": a.labels or {}, "details": a.details or {},
            "deliveries": [delivery_json(d) for d in a.deliveries],
            "feedback": feedback_json(a.feedback),
            # What routing.yaml did with it: [{receiver, outcome, reason, notification_id, ...}]
            "routing": list(a.routing or [])}


def call_json(c: Call, segments: bool = True) -> dict:
    out = {
        "id": c.id, "source": c.source, "call_id": c.external_id, "status": c.status,
        "error": c.error, "customer_id": c.customer_id, "customer_phone": c.customer_phone,
        "agent_id": c.agent_id, "ticket_id": c.ticket_id, "scenario_hint": c.scenario_hint,
        "scenario": c.scenario, "recording_url": c.recording_url,
        "channel_roles": c.channel_roles, "received_at": _iso(c.received_at),
        "analyzed_at": _iso(c.analyzed_at), "duration_s": c.duration_s,
        "emotion": c.emotion, "confidence": c.confidence, "summary": c.summary,
        "timings": c.timings,
        "jobs": [{"id": j.id, "status": j.status, "attempts": j.attempts,
                  "last_error": j.last_error} for j in c.jobs],
        "alerts": [alert_json(a) for a in c.alerts],
    }
    if segments:
        out["segments"] = [{"start": s.start, "end": s.end, "channel": s.channel, "role": s.role,
                            "label": s.label, "confidence": s.confidence, "scores": s.scores}
                           for s in c.segments]
    return out


def load_call(call_id: int) -> Call:
    with services().sessions() as s:
        call = s.execute(select(Call).where(Call.id == call_id).options(
            selectinload(Call.jobs), selectinload(Call.segments),
            selectinload(Call.alerts).selectinload(AlertRow.deliveries),
            selectinload(Call.alerts).selectinload(AlertRow.feedback))).scalar()
    if call is None:
        abort(404, f"no call {call_id}")
    return call


@bp.get("/calls/<int:call_id>")
def get_call(call_id: int):
    return jsonify(with_notification_status(call_json(load_call(call_id))))


@bp.get("/calls")
def list_calls():
    limit = min(request.args.get("limit", 50, type=int), 500)
    with services().sessions() as s:
        q = select(Call).options(selectinload(Call.jobs),
                                 selectinload(Call.alerts).selectinload(AlertRow.deliveries),
                                 selectinload(Call.alerts).selectinload(AlertRow.feedback))
        if request.args.get("status"):
            q = q.where(Call.status == request.args["status"])
        calls = s.execute(q.order_by(Call.id.desc()).limit(limit)).scalars().all()
    return jsonify(calls=[call_json(c, segments=False) for c in calls])


def load_alert(alert_id: int) -> AlertRow:
    with services().sessions() as s:
        alert = s.execute(select(AlertRow).where(AlertRow.id == alert_id).options(
            selectinload(AlertRow.deliveries), selectinload(AlertRow.feedback))).scalar()
    if alert is None:
        abort(404, f"no alert {alert_id}")
    return alert


@bp.get("/alerts/<int:alert_id>")
def get_alert(alert_id: int):
    return jsonify(alert_json(load_alert(alert_id)))


# Supervisors' verdicts on alerts: `callmood rules backtest` measures precision with them.
VERDICTS = {"correct": "correct", "false_alarm": "false_alarm", "false-alarm": "false_alarm",
            "false alarm": "false_alarm", "falsealarm": "false_alarm"}
FEEDBACK_LIMITS = {"by": 255, "note": 4000}


class BadFeedback(ValueError):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def parse_feedback(body) -> dict:
    """The verdict, by and note of a feedback body; BadFeedback names the first bad field."""
    if not isinstance(body, dict):
        raise BadFeedback(None, 'body must be a JSON object, e.g. {"verdict": "correct"}')
    unknown = sorted(set(body) - {"verdict", *FEEDBACK_LIMITS})
    if unknown:
        raise BadFeedback(str(unknown[0])[:64], f"{str(unknown[0])[:64]}: unknown field "
                                                 f"(expected verdict, by, note)")
    verdict = body.get("verdict")
    if verdict is None:
        raise BadFeedback("verdict", "verdict: is required ('correct' or 'false_alarm')")
    if not isinstance(verdict, str) or verdict.strip().lower() not in VERDICTS:
        shown = repr(verdict)[:40]
        raise BadFeedback("verdict", f"verdict: must be 'correct' or 'false_alarm', not {shown}")
    out = {"verdict": VERDICTS[verdict.strip().lower()]}
    for key, most in FEEDBACK_LIMITS.items():
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise BadFeedback(key, f"{key}: must be a string")
        if value is not None and len(value) > most:
            raise BadFeedback(key, f"{key}: at most {most} characters (got {len(value)})")
        out[key] = (value.strip() or None) if isinstance(value, str) else None
    return out


@bp.post("/alerts/<int:alert_id>/feedback")
def post_feedback(alert_id: int):
    """Mark an alert correct or a false alarm; a new verdict replaces the previous one."""
    try:
        fields = parse_feedback(request.get_json(force=True, silent=True))
    except BadFeedback as exc:
        return jsonify(error=exc.message, field=exc.field), 400
    svc = services()
    for attempt in range(2):
        now = svc.clock()
        try:
            with svc.sessions.begin() as s:
                # Row lock (PostgreSQL): concurrent verdicts on one alert take turns.
                alert = s.get(AlertRow, alert_id, with_for_update=True)
                if alert is None:
                    abort(404, f"no alert {alert_id}")
                fb = s.execute(select(Feedback).where(Feedback.alert_id == alert_id)).scalar()
                if fb is None:
                    s.add(Feedback(alert_id=alert_id, created_at=now, updated_at=now, **fields))
                else:
                    for key, value in fields.items():
                        setattr(fb, key, value)
                    fb.updated_at = now
            break
        except IntegrityError:  # another request inserted it first: update that row instead
            if attempt:
                raise
    return jsonify(alert_json(load_alert(alert_id)))


def flagged_customers(limit: int = 100) -> list[dict]:
    """Customers with alerts, most recent first: the red-flag list support teams watch.

    Severity is the worst of each customer's 20 latest alerts."""
    with services().sessions() as s:
        rows = s.execute(
            select(AlertRow.customer_id, func.count(AlertRow.id), func.max(AlertRow.created_at))
            .where(AlertRow.customer_id.is_not(None))
            .group_by(AlertRow.customer_id)
            .order_by(func.max(AlertRow.created_at).desc()).limit(limit)).all()
        rank = func.row_number().over(partition_by=AlertRow.customer_id,
                                      order_by=AlertRow.id.desc()).label("rank")
        recent = (select(AlertRow.id, rank)
                  .where(AlertRow.customer_id.in_([r[0] for r in rows])).subquery())
        latest: dict[str, list[AlertRow]] = {}
        for a in s.execute(select(AlertRow).join(recent, recent.c.id == AlertRow.id)
                           .where(recent.c.rank <= 20).order_by(AlertRow.id.desc())).scalars():
            latest.setdefault(a.customer_id, []).append(a)
    out = []
    for customer_id, count, last in rows:
        mine = latest[customer_id]
        worst = max(mine, key=lambda a: severity_rank(a.severity))
        out.append({"customer_id": customer_id, "alerts": count, "last_alert_at": _iso(last),
                    "severity": worst.severity, "last_call_id": mine[0].call_id,
                    "last_summary": mine[0].summary, "emotions": mine[0].emotions})
    return out


@bp.get("/flagged")
def flagged():
    return jsonify(customers=flagged_customers(min(request.args.get("limit", 100, type=int), 1000)))


# Supervisor notifications (routing.yaml, plugin/notify.py): each groups alerts for one
# receiver and is sent as one delivery.

def notification_json(n: Notification) -> dict:
    # n.alerts and n.delivery must be loaded with the notification.
    return {"id": n.id, "receiver": n.receiver, "sink": n.sink, "group": n.group_key, "kind": n.kind,
            "status": n.status, "severity": n.severity, "created_at": _iso(n.created_at),
            "flush_at": _iso(n.flush_at), "flushed_at": _iso(n.flushed_at),
            "alerts": [{"id": a.id, "call_id": a.call_id, "rule": a.rule, "severity": a.severity,
                        "customer_id": a.customer_id} for a in n.alerts],
            "delivery": delivery_json(n.delivery) if n.delivery is not None else None}


_NOTIFICATION_LOADS = (selectinload(Notification.alerts), selectinload(Notification.delivery))


@bp.get("/notifications")
def list_notifications():
    """Recent notifications, newest first: ?status=open|flushed, ?receiver=, ?limit=."""
    limit = min(request.args.get("limit", 50, type=int), 500)
    with services().sessions() as s:
        q = select(Notification).options(*_NOTIFICATION_LOADS)
        if request.args.get("status"):
            q = q.where(Notification.status == request.args["status"])
        if request.args.get("receiver"):
            q = q.where(Notification.receiver == request.args["receiver"])
        rows = s.execute(q.order_by(Notification.id.desc()).limit(limit)).scalars().all()
    return jsonify(notifications=[notification_json(n) for n in rows])


@bp.get("/notifications/<int:notification_id>")
def get_notification(notification_id: int):
    with services().sessions() as s:
        n = s.execute(select(Notification).where(Notification.id == notification_id)
                      .options(*_NOTIFICATION_LOADS)).scalar()
    if n is None:
        abort(404, f"no notification {notification_id}")
    return jsonify(notification_json(n))


def with_notification_status(call: dict) -> dict:
    """Adds to each routing entry of the call's alerts the state of its notification's
    delivery ("open" while it waits for group_wait or the digest)."""
    ids = {r["notification_id"] for a in call.get("alerts", []) for r in a.get("routing") or []
           if r.get("notification_id")}
    if not ids:
        return call
    with services().sessions() as s:
        found = {n.id: n for n in s.execute(select(Notification).where(Notification.id.in_(ids))
                                            .options(selectinload(Notification.delivery))).scalars()}
    for a in call.get("alerts", []):
        for r in a.get("routing") or []:
            n = found.get(r.get("notification_id"))
            if n is not None and r.get("outcome") != "suppressed":
                r["notification_status"] = n.delivery.status if n.delivery is not None else n.status
                r["flush_at"] = _iso(n.flush_at)
    return call
