"""Open notifications whose time has come (group_wait passed, quiet hours over) become
one delivery each: at once in the transaction that routed them when group_wait is 0,
else from the scheduler (plugin/flow/runtime.py) every ``deliveries.poll_interval_s``.

Flushing takes due notifications FOR UPDATE SKIP LOCKED and marks each flushed only if
it is still open, so a notification is flushed once whoever runs the flush."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from plugin.core import trial
from plugin.core.clock import Clock
from plugin.core.data import severity_rank
from plugin.flow.context import Links, call_context, stored_alert_context
from plugin.flow.outputs import Outputs
from plugin.store.tables import AlertRow, Notification, NotificationAlert
from rules.routing import ReceiverSpec, Routing

log = logging.getLogger(__name__)


def flush_due(s: Session, now: datetime, routing: Routing | None, outputs: Outputs) -> int:
    """Turn every open notification due by ``now`` into a delivery; how many were flushed.

    ``routing``: the rules in force, for the receivers' parameters and local times."""
    due = s.execute(select(Notification)
                    .where(Notification.status == "open", Notification.flush_at <= now)
                    .order_by(Notification.flush_at, Notification.id)
                    .with_for_update(skip_locked=True)).scalars().all()
    flushed = sum(_flush(s, n, now, routing, outputs) for n in due)
    if flushed:
        s.flush()
    return flushed


def _flush(s: Session, n: Notification, now: datetime, routing: Routing | None, outputs: Outputs) -> bool:
    # Only if still open: on SQLite the SELECT above ran before this transaction took the
    # write lock, so another flusher may have been first (this UPDATE takes the lock).
    taken = s.execute(update(Notification).where(Notification.id == n.id, Notification.status == "open")
                      .values(status="flushed", flushed_at=now)).rowcount
    if taken != 1:
        s.expire(n)
        return False
    rows = s.execute(select(AlertRow).join(NotificationAlert, NotificationAlert.alert_id == AlertRow.id)
                     .where(NotificationAlert.notification_id == n.id)
                     .options(selectinload(AlertRow.call)).order_by(AlertRow.id)).scalars().all()
    receiver = routing.receivers.get(n.receiver) if routing is not None else None
    if receiver is None:
        log.warning("notification %s: receiver %s is no longer in routing.yaml; sending with the "
                    "sink's own settings", n.id, n.receiver)
    sink = outputs.sinks.get(n.sink)
    if sink is None:
        outputs.deliveries.add(s, n.sink, {}, notification_id=n.id,
                               dead_because=f"sink {n.sink!r} is not configured")
        return True
    outputs.plan(s, sink, lambda: notification_context(n, rows, receiver, routing, outputs.links),
                 notification_id=n.id)
    log.info("notification %s to %s (%s, %s): %d alert(s) flushed", n.id, n.receiver, n.kind,
             n.group_key, len(rows))
    return True


def notification_context(n: Notification, rows: list[AlertRow], receiver: ReceiverSpec | None,
                         routing: Routing | None, links: Links) -> dict[str, Any]:
    """What a sink renders a notification with: the worst alert as ``alert`` (the first of
    the worst, so a single alert renders as a rule's action would), all of them as
    ``alerts``, and ``digest`` / ``count``."""
    if not rows:
        raise ValueError("the notification has no alerts")
    primary = max(rows, key=lambda r: (severity_rank(r.severity), -r.id))
    items = []
    for r in rows:
        at = r.created_at or n.created_at
        items.append({"alert": stored_alert_context(r), "call": call_context(r.call), "link": links.call(r.call_id),
                      "at": at.isoformat(timespec="seconds") + "Z",
                      "time": routing.local_time(at) if routing is not None else at.strftime("%m-%d %H:%M") + "Z",
                      "primary": r.id == primary.id})
    main = next(i for i in items if i["primary"])
    return {"alert": main["alert"], "call": main["call"], "link": main["link"], "alerts": items,
            "digest": n.kind == "digest", "count": len(items),
            # Any of its calls analysed by a trial model (random weights): the message says so.
            "trial": any(trial.recorded(r.call.summary) for r in rows),
            "action": receiver.params() if receiver is not None else {},
            "dashboard": links.dashboard,
            "notification": {"id": n.id, "receiver": n.receiver, "group": n.group_key, "kind": n.kind,
                             "severity": n.severity}}


def flush_pending(sessions: sessionmaker[Session], clock: Clock, routing: Routing | None, outputs: Outputs) -> int:
    """The scheduler's job: flush due notifications (digests, group_wait) in a transaction."""
    with sessions.begin() as s:
        return flush_due(s, clock.now(s), routing, outputs)
