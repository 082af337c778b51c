"""JSON API: calls with their analysis, alerts and delivery states; flagged customers;
supervisor notifications; supervisors' feedback on alerts; supervisors' re-runs of calls."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from flask import Blueprint, abort, jsonify, request

from plugin.core import safe_json
from plugin.flow.delivery_ops import retry_ids, retry_status, summary
from plugin.flow.rerun import counts, rerun_calls, rerun_failed
from plugin.store import handling, queries
from plugin.store.feedback import set_feedback
from plugin.store.tables import Delivery
from plugin.web import args, flagged_args, flagged_view
from plugin.web.auth import redact
from plugin.web.auth.identity import current, may
from plugin.web.auth.marks import requires
from plugin.web.forms import MAX_SINCE_S, BadRequest, FeedbackBody, RerunBody, RetryDeliveriesBody, parse
from plugin.web.loaders import call_or_404
from plugin.web.serializers import alert_json, call_json, delivery_json, notification_json
from plugin.web.services import get_services
from rules.yamlfile import parse_duration

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")
SINK_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@bp.get("/calls/<id:call_id>")
def get_call(call_id: int):
    return jsonify(_call(call_or_404(call_id)))


@bp.get("/calls")
def list_calls():
    """Recent calls, newest first: ?status=, ?identity=given|matched|unmatched|lookup_failed, ?limit=."""
    calls = queries.calls(get_services().sessions, request.args.get("status"), args.limit(50, 500),
                          identity=request.args.get("identity"))
    return jsonify(calls=[_call(call_json(c, segments=False)) for c in calls])


@bp.get("/alerts/<id:alert_id>")
def get_alert(alert_id: int):
    alert = queries.alert(get_services().sessions, alert_id)
    if alert is None:
        abort(404, f"no alert {alert_id}")
    return jsonify(redact.alert(alert_json(alert), may("supervisor"), may("admin")))


@bp.post("/alerts/<id:alert_id>/feedback")
@requires("supervisor")
def post_feedback(alert_id: int):
    """Mark an alert correct or a false alarm; a new verdict replaces the previous one."""
    try:
        # JSON only (the gate answers 415 to other content types): a form or text/plain
        # body is what another site can make a browser send.
        body = safe_json.loads(request.get_data(cache=False))  # depth, NUL, NaN: as at the webhook door
    except safe_json.UnsafeJson as exc:
        return jsonify(error=str(exc), field=None if exc.where == "body" else exc.where), 400
    try:
        fields = parse(FeedbackBody, body)
    except BadRequest as exc:
        return jsonify(error=exc.message, field=exc.field), 400
    # Who gave the verdict is who is logged in (or whose token it is); a "by" that names
    # someone else is kept beside it, never instead of it: the backtest trusts these.
    who = current().name
    fields["by"] = who if fields.get("by") in (None, who) else f"{who} (for {fields['by']})"[:255]
    svc = get_services()
    if not set_feedback(svc.sessions, svc.clock, alert_id, fields):
        abort(404, f"no alert {alert_id}")
    log.info("alert %s marked %s by %s", alert_id, fields["verdict"], fields["by"])
    return get_alert(alert_id)


# Re-runs (plugin/flow/rerun.py): a new analysis job, never a second one while one is
# queued or running; alerts already sent are not sent again. Logged with who asked.

@bp.post("/calls/<id:call_id>/rerun")
@requires("supervisor")
def rerun_call(call_id: int):
    """202 queued; 200 when a job of the call is already queued or running (not queued
    twice); 404 unknown call; 409 when retention removed what a re-run needs."""
    problem = _json_object_or_empty()
    if problem is not None:
        return problem
    svc = get_services()
    [done] = rerun_calls(svc.sessions, svc.jobs, [call_id], _who())
    if done.outcome == "not_found":
        abort(404, f"no call {call_id}")
    status = 202 if done.queued else 409 if done.outcome == "purged" else 200
    return jsonify(done.json()), status


@bp.post("/calls/rerun")
@requires("supervisor")
def rerun_many():
    """``{"ids": [1, 2]}`` or ``{"failed": true, "since": "1d"}``: each call's outcome."""
    try:
        fields = parse(RerunBody, safe_json.loads(request.get_data(cache=False)))
    except safe_json.UnsafeJson as exc:
        return jsonify(error=str(exc), field=None if exc.where == "body" else exc.where), 400
    except BadRequest as exc:
        return jsonify(error=exc.message, field=exc.field), 400
    svc = get_services()
    left = 0
    if fields["ids"]:
        done = rerun_calls(svc.sessions, svc.jobs, fields["ids"], _who())
    else:
        since_s = parse_duration(fields["since"] or "1d")  # checked by RerunBody
        done, left = rerun_failed(svc.sessions, svc.clock, svc.jobs, since_s, _who(), fields["limit"])
    return jsonify(results=[r.json() for r in done], queued=sum(r.queued for r in done), left=left,
                   summary=counts(done))


def _who() -> str:
    ident = current()
    return f"{ident.name} ({ident.role}, {ident.via})"


def _json_object_or_empty():
    """The body of a POST that needs none: empty, or a JSON object (ignored); else a 400."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        return None
    try:
        body = safe_json.loads(raw)
    except safe_json.UnsafeJson as exc:
        return jsonify(error=str(exc), field=None), 400
    if not isinstance(body, dict):
        return jsonify(error="body must be a JSON object (or empty)", field=None), 400
    return None


@bp.get("/flagged")
def flagged():
    """The red-flag list with the page's filters and sort (plugin/web/flagged_args.py):
    ?q=, scenario, queue, agent, severity, feedback, handled, from, to, days, sort, page,
    limit (a page's rows, default 100). A value that is not accepted is a 400."""
    parsed = flagged_args.parse()
    if parsed.problems:
        key, problem = parsed.problems[0]
        return jsonify(error=problem, field=key), 400
    limit = args.limit(100, 1000)
    rows, total = flagged_view.rows(parsed, limit, (parsed.page - 1) * limit)
    return jsonify(customers=rows, total=total, page=parsed.page)


# Who is handling a red-flagged customer (plugin/store/handling.py). The customer id is the
# rest of the path, percent-encoded where it must be ("a/b" works, so does "客户 1").

@bp.get("/customers/<path:customer_id>/handling")
def get_handling(customer_id: str):
    problem = flagged_view.customer_problem(customer_id)
    if problem:
        return jsonify(error=problem, field="customer_id"), 400
    found = flagged_view.handling_json(customer_id)
    if found is None:
        abort(404, f"no alerts of customer {customer_id[:80]!r}")
    return jsonify(found)


@bp.post("/customers/<path:customer_id>/handling")
@requires("supervisor")
def post_handling(customer_id: str):
    """``{"action": "acknowledge"}``, ``{"action": "assign", "assignee": "<user>"}`` or
    ``{"action": "release"}``, each with an optional ``note``: the customer's handling after."""
    problem = flagged_view.customer_problem(customer_id)
    if problem:
        return jsonify(error=problem, field="customer_id"), 400
    try:
        fields = parse(flagged_view.HandlingBody, safe_json.loads(request.get_data(cache=False)))
    except safe_json.UnsafeJson as exc:
        return jsonify(error=str(exc), field=None if exc.where == "body" else exc.where), 400
    except BadRequest as exc:
        return jsonify(error=exc.message, field=exc.field), 400
    try:
        flagged_view.apply(customer_id, fields)
    except handling.HandlingRefused as exc:
        return jsonify(error=exc.message, field=exc.field), exc.status
    return jsonify(flagged_view.handling_json(customer_id))


# Supervisor notifications (routing.yaml, plugin/flow/notify/): each groups alerts for
# one receiver and is sent as one delivery.

@bp.get("/notifications")
def list_notifications():
    """Recent notifications, newest first: ?status=open|flushed, ?receiver=, ?limit=."""
    rows = queries.notifications(get_services().sessions, request.args.get("status"),
                                 request.args.get("receiver"), args.limit(50, 500))
    return jsonify(notifications=[_notification(notification_json(n)) for n in rows])


@bp.get("/notifications/<id:notification_id>")
def get_notification(notification_id: int):
    n = queries.notification(get_services().sessions, notification_id)
    if n is None:
        abort(404, f"no notification {notification_id}")
    return jsonify(_notification(notification_json(n)))


# The outbox, for admins (plugin/flow/delivery_ops.py): every delivery (alerts', routed
# notifications', the review report's), and sending them again with their stored bodies
# and idempotency keys.

@bp.get("/deliveries")
@requires("admin")
def list_deliveries():
    """Newest first: ?status=pending|sending|delivered|dead, ?sink=, ?since=1d, ?limit=."""
    status = request.args.get("status")
    if status not in (None, "pending", "sending", "delivered", "dead"):
        return jsonify(error="status must be pending, sending, delivered or dead", field="status"), 400
    sink = request.args.get("sink")
    if sink is not None and not SINK_NAME.fullmatch(sink):
        return jsonify(error="sink must be a sink's name (letters, digits, _ . -)", field="sink"), 400
    svc = get_services()
    since = None
    if request.args.get("since"):
        try:
            seconds = parse_duration(request.args["since"][:32])
        except ValueError as exc:
            return jsonify(error=f"since: {exc}", field="since"), 400
        if not 0 < seconds <= MAX_SINCE_S:
            return jsonify(error="since must be longer than zero and at most 366 days", field="since"), 400
        with svc.sessions() as s:
            since = svc.clock.now(s) - timedelta(seconds=seconds)
    rows = svc.deliveries.listing(status, sink, since, args.limit(50, 1000))
    return jsonify(deliveries=[delivery_json(d) for d in rows])


@bp.get("/deliveries/<id:delivery_id>")
@requires("admin")
def get_delivery(delivery_id: int):
    with get_services().sessions() as s:
        d = s.get(Delivery, delivery_id)
        if d is None:
            abort(404, f"no delivery {delivery_id}")
        return jsonify(delivery_json(d))


@bp.post("/deliveries/<id:delivery_id>/retry")
@requires("admin")
def retry_delivery(delivery_id: int):
    """202 requeued; 404 unknown; 409 being sent now, or it has no body to send."""
    problem = _json_object_or_empty()
    if problem is not None:
        return problem
    [done] = retry_ids(get_services().deliveries, [delivery_id], _who())
    if done.outcome == "not_found":
        abort(404, f"no delivery {delivery_id}")
    return jsonify(done.json()), 202 if done.outcome == "requeued" else 409


@bp.post("/deliveries/retry")
@requires("admin")
def retry_deliveries():
    """``{"ids": [1, 2]}`` or ``{"status": "dead", "since": "1d"}``: each delivery's outcome."""
    try:
        fields = parse(RetryDeliveriesBody, safe_json.loads(request.get_data(cache=False)))
    except safe_json.UnsafeJson as exc:
        return jsonify(error=str(exc), field=None if exc.where == "body" else exc.where), 400
    except BadRequest as exc:
        return jsonify(error=exc.message, field=exc.field), 400
    svc = get_services()
    if fields["ids"]:
        done = retry_ids(svc.deliveries, fields["ids"], _who())
    else:
        done = retry_status(svc.deliveries, svc.clock, fields["status"], parse_duration(fields["since"] or "1d"),
                            _who())
    return jsonify(results=[r.json() for r in done], requeued=sum(r.outcome == "requeued" for r in done),
                   summary=summary(done))


# What the asker's role may see (plugin/web/auth/redact.py).

def _call(c: dict) -> dict:
    return redact.call(c, may("supervisor"), may("admin"))


def _notification(n: dict) -> dict:
    return redact.notification(n, may("supervisor"), may("admin"))
