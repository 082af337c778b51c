"""JSON API: calls with their analysis, alerts and delivery states; flagged customers;
supervisor notifications; supervisors' feedback on alerts."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, jsonify, request

from plugin.core import safe_json
from plugin.store import queries
from plugin.store.feedback import set_feedback
from plugin.web import args
from plugin.web.auth import redact
from plugin.web.auth.identity import current, may
from plugin.web.auth.marks import requires
from plugin.web.forms import BadRequest, FeedbackBody, parse
from plugin.web.loaders import call_or_404
from plugin.web.serializers import alert_json, call_json, flagged_json, notification_json
from plugin.web.services import get_services

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")


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


@bp.get("/flagged")
def flagged():
    rows = queries.flagged_customers(get_services().sessions, args.limit(100, 1000))
    return jsonify(customers=[redact.flagged(flagged_json(r), may("supervisor")) for r in rows])


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


# What the asker's role may see (plugin/web/auth/redact.py).

def _call(c: dict) -> dict:
    return redact.call(c, may("supervisor"), may("admin"))


def _notification(n: dict) -> dict:
    return redact.notification(n, may("supervisor"), may("admin"))
