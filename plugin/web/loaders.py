"""What the API and the pages both show: rows loaded (plugin/store/queries.py) and
serialized (plugin/web/serializers.py), or 404."""

from __future__ import annotations

from flask import abort

from plugin.store import queries
from plugin.web.serializers import call_json, notification_ids, with_notification_status
from plugin.web.services import get_services


def call_or_404(call_id: int) -> dict:
    """One call with its segments, alerts, deliveries and the state of its notifications."""
    sessions = get_services().sessions
    call = queries.call(sessions, call_id)
    if call is None:
        abort(404, f"no call {call_id}")
    out = call_json(call)
    return with_notification_status(out, queries.notifications_by_id(sessions, notification_ids(out)))
