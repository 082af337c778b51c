"""JSON API: calls with their analysis, alerts and delivery states; flagged customers."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from plugin.app import services
from plugin.models import AlertRow, Call, Delivery

bp = Blueprint("api", __name__, url_prefix="/api")

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


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


def alert_json(a: AlertRow) -> dict:
    return {"id": a.id, "rule": a.rule, "scenario": a.scenario, "severity": a.severity,
            "role": a.role, "emotions": a.emotions, "share": a.share, "confidence": a.confidence,
            "matched": a.matched, "summary": a.summary, "created_at": _iso(a.created_at),
            "deliveries": [delivery_json(d) for d in a.deliveries]}


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
            selectinload(Call.alerts).selectinload(AlertRow.deliveries))).scalar()
    if call is None:
        abort(404, f"no call {call_id}")
    return call


@bp.get("/calls/<int:call_id>")
def get_call(call_id: int):
    return jsonify(call_json(load_call(call_id)))


@bp.get("/calls")
def list_calls():
    limit = min(request.args.get("limit", 50, type=int), 500)
    with services().sessions() as s:
        q = select(Call).options(selectinload(Call.jobs),
                                 selectinload(Call.alerts).selectinload(AlertRow.deliveries))
        if request.args.get("status"):
            q = q.where(Call.status == request.args["status"])
        calls = s.execute(q.order_by(Call.id.desc()).limit(limit)).scalars().all()
    return jsonify(calls=[call_json(c, segments=False) for c in calls])


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
        worst = max(mine, key=lambda a: SEVERITY_RANK.get(a.severity, 0))
        out.append({"customer_id": customer_id, "alerts": count, "last_alert_at": _iso(last),
                    "severity": worst.severity, "last_call_id": mine[0].call_id,
                    "last_summary": mine[0].summary, "emotions": mine[0].emotions})
    return out


@bp.get("/flagged")
def flagged():
    return jsonify(customers=flagged_customers(min(request.args.get("limit", 100, type=int), 1000)))
