"""Supervisor notifications: routing.yaml applied to stored alerts (rules/routing.py).

Each alert goes to the receivers its routes pick. Per receiver and group (by default
the customer) an alert

1. joins the group's open notification, if one is waiting out ``group_wait``: "grouped";
2. else is dropped if the group was notified within ``cooldown`` at the same or a
   higher severity: "suppressed" (the reason says when and until when);
3. else, in quiet hours and below their ``min_severity``, joins the receiver's digest,
   sent when the quiet hours end: "digest";
4. else starts a new notification, sent after ``group_wait``: "notified".

What happened is stored on the alert (``AlertRow.routing``), shown by the API and the
call page. A notification is "flushed" into one Delivery (the outbox, plugin/outbox.py)
when its time comes: at once in the transaction that stores the alerts when group_wait is
0, else by the scheduler (plugin/runtime.py) every ``deliveries.poll_interval_s``.

Concurrency: on PostgreSQL, routing takes a transaction-scoped advisory lock per
(receiver, group), in sorted order, so two workers cannot both start a notification for
one customer or both pass its cooldown; open notifications are locked FOR UPDATE before an
alert joins them, and flushing takes due notifications FOR UPDATE SKIP LOCKED, so a
notification is flushed once. SQLite lets one writer at a time in. What remains: a
notification already flushed when an alert of its group arrives is not reopened (the alert
is then suppressed or starts a new one, by the rules above), and the delivery of a flushed
notification may still be pending or retrying when a suppression cites it.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, selectinload

from plugin.data import Alert, severity_rank
from plugin.models import AlertRow, Call, Delivery, Notification, NotificationAlert
from plugin.services import Services, call_context
from rules.engine import RuleSet
from rules.routing import DIGEST_KEY, ReceiverSpec, Routing, group_key

log = logging.getLogger(__name__)


def _hhmm(t: datetime) -> str:
    return t.strftime("%H:%M") + "Z"


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M") + "Z"


def _lock_groups(s: Session, keys: set[tuple[str, str]]) -> None:
    """PostgreSQL: serialize routing per (receiver, group) until the transaction ends."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for receiver, key in sorted(keys):  # one order everywhere: no deadlock between workers
        h = hashlib.blake2b(f"callmood-notify\0{receiver}\0{key}".encode(), digest_size=8).digest()
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(h, "big", signed=True)})


def _open_notification(s: Session, receiver: str, key: str) -> Notification | None:
    return s.execute(select(Notification)
                     .where(Notification.receiver == receiver, Notification.group_key == key,
                            Notification.status == "open")
                     .order_by(Notification.id).limit(1).with_for_update()).scalar()


def _attach(s: Session, n: Notification, row: AlertRow) -> None:
    if s.get(NotificationAlert, (n.id, row.id)) is None:
        s.add(NotificationAlert(notification_id=n.id, alert_id=row.id))
    if severity_rank(row.severity) > severity_rank(n.severity):
        n.severity = row.severity


def route_alerts(svc: Services, s: Session, call: Call, call_ctx: dict[str, Any],
                 alerts: list[tuple[Alert, AlertRow]], now: datetime | None = None,
                 rules: RuleSet | None = None) -> None:
    """Route a call's new alerts, inside the caller's transaction, then flush what is due.

    ``rules``: the rule set that judged the call (default: the rules in force), so that a
    reload in between cannot pair one version's alerts with another's routing.
    Alerts routed before (a re-run job) are left as they are. Without routing.yaml
    nothing is routed: alerts only run their rules' own actions."""
    routing = (rules or svc.rules).routing
    now = now or svc.clock()
    if routing is None:
        return
    todo = [(alert, row) for alert, row in alerts if not row.routing]
    plans = [(alert, row, routing.receivers_for(alert)) for alert, row in todo]
    keys: set[tuple[str, str]] = set()
    for alert, _, pairs in plans:
        for route, receiver in pairs:
            keys.add((receiver.name, group_key(alert, call_ctx, route.group_by)))
            if routing.held_for_digest(alert.severity, now):
                keys.add((receiver.name, DIGEST_KEY))
    _lock_groups(s, keys)
    for alert, row, pairs in plans:
        outcomes = [_route_one(svc, s, routing, route, receiver, alert, row, call_ctx, now)
                    for route, receiver in pairs]
        row.routing = outcomes  # a new list: JSON columns see assignments, not mutations
    s.flush()
    flush_due(svc, s, now)


def _route_one(svc: Services, s: Session, routing: Routing, route, receiver: ReceiverSpec,
               alert: Alert, row: AlertRow, call_ctx: dict[str, Any], now: datetime) -> dict[str, Any]:
    key = group_key(alert, call_ctx, route.group_by)
    out: dict[str, Any] = {"receiver": receiver.name, "route": route.index, "group": key,
                           "outcome": None, "reason": None, "notification_id": None}
    if receiver.sink not in svc.sinks:
        out.update(outcome="skipped", reason=f"sink {receiver.sink!r} is not configured")
        log.warning("alert %s: receiver %s: sink %r is not configured; not notified",
                    row.id, receiver.name, receiver.sink)
        return out
    rank = severity_rank(alert.severity)

    # 1. A notification of this group is still gathering alerts: join it.
    n = _open_notification(s, receiver.name, key)
    if n is not None:
        _attach(s, n, row)
        out.update(outcome="grouped", notification_id=n.id,
                   reason=f"joined notification {n.id}, sent at {_hhmm(n.flush_at)}")
        return out

    # 2. The group was notified within the cooldown at this severity or higher.
    if route.cooldown:
        since = now - timedelta(seconds=route.cooldown)
        recent = s.execute(select(Notification)
                           .where(Notification.receiver == receiver.name, Notification.group_key == key,
                                  Notification.status == "flushed", Notification.kind == "alert",
                                  Notification.flushed_at > since)
                           .order_by(Notification.flushed_at.desc(), Notification.id.desc())).scalars().all()
        cover = [p for p in recent if severity_rank(p.severity) >= rank]
        if cover:
            last = cover[0]
            until = max(p.flushed_at for p in cover) + timedelta(seconds=route.cooldown)
            who = key.split("=", 1)[1] if key.count("=") == 1 and not key.startswith("call=") else key
            out.update(outcome="suppressed", notification_id=last.id,
                       reason=f"cooldown: {who} was alerted at {_stamp(last.flushed_at)} ({last.severity}); "
                              f"next after {_hhmm(until)} unless more severe")
            log.info("alert %s (%s, %s) to %s suppressed: %s", row.id, alert.rule, alert.severity,
                     receiver.name, out["reason"])
            return out

    # 3. Quiet hours: below their min_severity, wait for the receiver's digest.
    if routing.held_for_digest(alert.severity, now):
        n = _open_notification(s, receiver.name, DIGEST_KEY)
        if n is None:
            n = Notification(receiver=receiver.name, sink=receiver.sink, group_key=DIGEST_KEY, kind="digest",
                             status="open", severity=alert.severity, flush_at=routing.quiet_end(now),
                             created_at=now)
            s.add(n)
            s.flush()
        _attach(s, n, row)
        out.update(outcome="digest", notification_id=n.id,
                   reason=f"quiet hours: in the digest sent at {_hhmm(n.flush_at)}")
        log.info("alert %s (%s, %s) to %s held for the quiet-hours digest at %s", row.id, alert.rule,
                 alert.severity, receiver.name, _stamp(n.flush_at))
        return out

    # 4. A new notification, sent after group_wait (at once when it is 0).
    n = Notification(receiver=receiver.name, sink=receiver.sink, group_key=key, kind="alert", status="open",
                     severity=alert.severity, flush_at=now + timedelta(seconds=route.group_wait or 0),
                     created_at=now)
    s.add(n)
    s.flush()
    _attach(s, n, row)
    out.update(outcome="notified", notification_id=n.id,
               reason=None if not route.group_wait else f"sent at {_hhmm(n.flush_at)} with the group's other alerts")
    return out


def flush_due(svc: Services, s: Session, now: datetime | None = None) -> int:
    """Turn every open notification due by ``now`` into a Delivery; how many were flushed."""
    now = now or svc.clock()
    due = s.execute(select(Notification)
                    .where(Notification.status == "open", Notification.flush_at <= now)
                    .order_by(Notification.flush_at, Notification.id)
                    .with_for_update(skip_locked=True)).scalars().all()
    flushed = sum(_flush(svc, s, n, now) for n in due)
    if flushed:
        s.flush()
    return flushed


def flush_pending(svc: Services) -> int:
    """The scheduler's job: flush due notifications (digests, group_wait) in a transaction."""
    with svc.sessions.begin() as s:
        return flush_due(svc, s)


def _flush(svc: Services, s: Session, n: Notification, now: datetime) -> bool:
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
    routing = svc.rules.routing
    receiver = routing.receivers.get(n.receiver) if routing is not None else None
    if receiver is None:
        log.warning("notification %s: receiver %s is no longer in routing.yaml; sending with the "
                    "sink's own settings", n.id, n.receiver)
    sink = svc.sinks.get(n.sink)
    if sink is None:
        s.add(Delivery(notification_id=n.id, sink=n.sink, payload={}, status="dead",
                       last_error=f"sink {n.sink!r} is not configured"))
        return True
    try:
        ctx = notification_context(svc, n, rows, receiver, routing)
        payload = sink.render(ctx)
    except Exception as exc:  # a bad template must not block the other notifications
        log.error("notification %s: cannot render the %s payload: %s", n.id, n.sink, exc)
        s.add(Delivery(notification_id=n.id, sink=n.sink, payload={}, status="dead",
                       last_error=f"cannot render payload: {exc.__class__.__name__}: {exc}"[:2000]))
    else:
        s.add(Delivery(notification_id=n.id, sink=n.sink, payload=payload))
    log.info("notification %s to %s (%s, %s): %d alert(s) flushed", n.id, n.receiver, n.kind,
             n.group_key, len(rows))
    return True


def row_context(row: AlertRow) -> dict[str, Any]:
    """A stored alert as templates see it (the same keys as rules.engine.alert_context)."""
    return {"rule": row.rule, "scenario": row.scenario, "severity": row.severity, "role": row.role,
            "emotions": list(row.emotions or []), "share": row.share, "confidence": row.confidence,
            "matched": [tuple(m) for m in row.matched or []], "summary": row.summary,
            "labels": dict(row.labels or {}), "details": dict(row.details or {}),
            "id": row.id, "call_id": row.call_id}


def notification_context(svc: Services, n: Notification, rows: list[AlertRow],
                         receiver: ReceiverSpec | None, routing: Routing | None) -> dict[str, Any]:
    """What a sink renders a notification with: the worst alert as ``alert`` (the first of
    the worst, so a single alert renders as a rule's action would), all of them as
    ``alerts``, and ``digest`` / ``count``."""
    if not rows:
        raise ValueError("the notification has no alerts")
    primary = max(rows, key=lambda r: (severity_rank(r.severity), -r.id))
    items = []
    for r in rows:
        at = r.created_at or n.created_at
        items.append({"alert": row_context(r), "call": call_context(r.call), "link": svc.call_link(r.call_id),
                      "at": at.isoformat(timespec="seconds") + "Z",
                      "time": routing.local_time(at) if routing is not None else at.strftime("%m-%d %H:%M") + "Z",
                      "primary": r.id == primary.id})
    main = next(i for i in items if i["primary"])
    return {"alert": main["alert"], "call": main["call"], "link": main["link"], "alerts": items,
            "digest": n.kind == "digest", "count": len(items),
            "action": receiver.params() if receiver is not None else {},
            "dashboard": f"{svc.config.server.public_url.rstrip('/')}/dashboard",
            "notification": {"id": n.id, "receiver": n.receiver, "group": n.group_key, "kind": n.kind,
                             "severity": n.severity}}
