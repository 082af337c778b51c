"""Supervisor notifications: routing.yaml (rules/routing.py) applied to stored alerts.

Each alert goes to the receivers its routes pick. On its way to one receiver it passes
through small stages, like a notification in Alertmanager's pipeline; the first stage
that settles it decides its outcome:

1. ``check_sink``: the receiver's sink is not configured: "skipped";
2. ``group``: a notification of its group (by default the customer) is still waiting out
   ``group_wait``: it joins it, "grouped";
3. ``cooldown``: the group was notified within ``cooldown`` at the same or a higher
   severity: "suppressed" (the reason says when and until when);
4. ``quiet_hours``: in quiet hours and below their ``min_severity``: it joins the
   receiver's digest, sent when they end: "digest";
5. ``send``: a new notification, sent after ``group_wait``: "notified".

What happened is stored on the alert (``AlertRow.routing``), shown by the API and the
call page. Open notifications become deliveries when due (plugin/flow/notify/flush.py).

Concurrency: on PostgreSQL, routing takes a transaction-scoped advisory lock per
(receiver, group), in sorted order, so two workers cannot both start a notification for
one customer or both pass its cooldown; open notifications are locked FOR UPDATE before an
alert joins them. SQLite lets one writer at a time in. What remains: a notification
already flushed when an alert of its group arrives is not reopened (the alert is then
suppressed or starts a new one, by the stages above), and the delivery of a flushed
notification may still be pending or retrying when a suppression cites it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from plugin.core.data import Alert, severity_rank
from plugin.store.tables import AlertRow, Notification, NotificationAlert
from rules.routing import DIGEST_KEY, ReceiverSpec, RouteSpec, Routing, group_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One alert on its way to one receiver."""

    alert: Alert
    row: AlertRow
    route: RouteSpec
    receiver: ReceiverSpec
    group: str  # its group key, e.g. "customer_id=c-9"
    held: bool  # quiet hours hold it for the digest (decided once, when routing starts)


@dataclass(frozen=True)
class Step:
    """What every stage may look at: the transaction, the routing, the time, the sinks."""

    s: Session
    routing: Routing
    now: datetime
    sinks: Collection[str]  # the names of the configured sinks


@dataclass(frozen=True)
class Outcome:
    outcome: str  # skipped | grouped | suppressed | digest | notified
    reason: str | None = None
    notification_id: int | None = None


Stage = Callable[[Step, Candidate], Outcome | None]


def _hhmm(t: datetime) -> str:
    return t.strftime("%H:%M") + "Z"


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M") + "Z"


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


def _start(step: Step, c: Candidate, key: str, kind: str, flush_at: datetime) -> Notification:
    n = Notification(receiver=c.receiver.name, sink=c.receiver.sink, group_key=key, kind=kind, status="open",
                     severity=c.alert.severity, flush_at=flush_at, created_at=step.now)
    step.s.add(n)
    step.s.flush()
    return n


# --- the stages, in order -------------------------------------------------------------

def check_sink(step: Step, c: Candidate) -> Outcome | None:
    if c.receiver.sink in step.sinks:
        return None
    log.warning("alert %s: receiver %s: sink %r is not configured; not notified",
                c.row.id, c.receiver.name, c.receiver.sink)
    return Outcome("skipped", f"sink {c.receiver.sink!r} is not configured")


def group(step: Step, c: Candidate) -> Outcome | None:
    """Join the group's notification while it is still gathering alerts."""
    n = _open_notification(step.s, c.receiver.name, c.group)
    if n is None:
        return None
    _attach(step.s, n, c.row)
    return Outcome("grouped", f"joined notification {n.id}, sent at {_hhmm(n.flush_at)}", n.id)


def cooldown(step: Step, c: Candidate) -> Outcome | None:
    """Suppress it if the group was notified within the cooldown at this severity or higher."""
    if not c.route.cooldown:
        return None
    since = step.now - timedelta(seconds=c.route.cooldown)
    recent = step.s.execute(
        select(Notification)
        .where(Notification.receiver == c.receiver.name, Notification.group_key == c.group,
               Notification.status == "flushed", Notification.kind == "alert", Notification.flushed_at > since)
        .order_by(Notification.flushed_at.desc(), Notification.id.desc())).scalars().all()
    cover = [p for p in recent if severity_rank(p.severity) >= severity_rank(c.alert.severity)]
    if not cover:
        return None
    last = cover[0]
    until = max(p.flushed_at for p in cover) + timedelta(seconds=c.route.cooldown)
    who = c.group.split("=", 1)[1] if c.group.count("=") == 1 and not c.group.startswith("call=") else c.group
    reason = (f"cooldown: {who} was alerted at {_stamp(last.flushed_at)} ({last.severity}); "
              f"next after {_hhmm(until)} unless more severe")
    log.info("alert %s (%s, %s) to %s suppressed: %s", c.row.id, c.alert.rule, c.alert.severity,
             c.receiver.name, reason)
    return Outcome("suppressed", reason, last.id)


def quiet_hours(step: Step, c: Candidate) -> Outcome | None:
    """Below the quiet hours' min_severity, wait for the receiver's digest."""
    if not c.held:
        return None
    n = _open_notification(step.s, c.receiver.name, DIGEST_KEY)
    if n is None:
        n = _start(step, c, DIGEST_KEY, "digest", step.routing.quiet_end(step.now))
    _attach(step.s, n, c.row)
    log.info("alert %s (%s, %s) to %s held for the quiet-hours digest at %s", c.row.id, c.alert.rule,
             c.alert.severity, c.receiver.name, _stamp(n.flush_at))
    return Outcome("digest", f"quiet hours: in the digest sent at {_hhmm(n.flush_at)}", n.id)


def send(step: Step, c: Candidate) -> Outcome:
    """A new notification, sent after group_wait (at once when it is 0)."""
    n = _start(step, c, c.group, "alert", step.now + timedelta(seconds=c.route.group_wait or 0))
    _attach(step.s, n, c.row)
    reason = f"sent at {_hhmm(n.flush_at)} with the group's other alerts" if c.route.group_wait else None
    return Outcome("notified", reason, n.id)


STAGES: tuple[Stage, ...] = (check_sink, group, cooldown, quiet_hours, send)


def _lock_groups(s: Session, keys: set[tuple[str, str]]) -> None:
    """PostgreSQL: serialize routing per (receiver, group) until the transaction ends."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for receiver, key in sorted(keys):  # one order everywhere: no deadlock between workers
        h = hashlib.blake2b(f"callmood-notify\0{receiver}\0{key}".encode(), digest_size=8).digest()
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(h, "big", signed=True)})


def candidates(routing: Routing, alert: Alert, row: AlertRow, call_ctx: dict[str, Any],
               now: datetime) -> list[Candidate]:
    """The receivers ``alert`` goes to, each with its group and whether quiet hours hold it."""
    held = routing.held_for_digest(alert.severity, now)
    return [Candidate(alert, row, route, receiver, group_key(alert, call_ctx, route.group_by), held)
            for route, receiver in routing.receivers_for(alert)]


def route_alerts(s: Session, call_ctx: dict[str, Any], alerts: list[tuple[Alert, AlertRow]],
                 routing: Routing | None, now: datetime, sinks: Collection[str]) -> None:
    """Route a call's new alerts inside the caller's transaction.

    ``routing`` is that of the rule set that judged the call, so that a reload in between
    cannot pair one version's alerts with another's routing. Alerts routed before (a
    re-run job) are left as they are. Without routing.yaml nothing is routed: alerts only
    run their rules' own actions."""
    if routing is None:
        return
    plans = [(row, candidates(routing, alert, row, call_ctx, now)) for alert, row in alerts if not row.routing]
    keys = {(c.receiver.name, key) for _, cs in plans for c in cs
            for key in ((c.group, DIGEST_KEY) if c.held else (c.group,))}
    _lock_groups(s, keys)
    step = Step(s, routing, now, sinks)
    for row, cs in plans:
        row.routing = [_through_stages(step, c) for c in cs]  # a new list: JSON columns see assignments
    s.flush()


def _through_stages(step: Step, c: Candidate) -> dict[str, Any]:
    for stage in STAGES:
        out = stage(step, c)
        if out is not None:
            break
    return {"receiver": c.receiver.name, "route": c.route.index, "group": c.group,
            "outcome": out.outcome, "reason": out.reason, "notification_id": out.notification_id}
