"""Who is handling a red-flagged customer: acknowledge (I am looking at it), assign (to a
user), release (nobody is any more). One current row per customer (customer_handling)
and every change as an event (customer_handling_events), each with who and when.

Callers check the role (supervisor) and the names; here the customer must have an alert
and an assignee must be a user who may log in, checked in the same transaction that
writes, so a user disabled a moment ago is not assigned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from plugin.core.clock import Clock
from plugin.store.tables import AlertRow, CustomerHandling, HandlingEvent, User

ACTIONS = ("acknowledge", "assign", "release")
NOTE_MAX = 1000
HISTORY = 20  # events shown with the current state


class HandlingRefused(ValueError):
    """Not done: ``field`` names what was wrong (None: the customer)."""

    def __init__(self, field: str | None, message: str, status: int = 400):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class HandlingChange:
    action: str
    by: str
    assignee: str | None = None
    note: str | None = None


def state_json(h: CustomerHandling | None) -> dict | None:
    if h is None:
        return None
    return {"acknowledged_by": h.acknowledged_by, "acknowledged_at": h.acknowledged_at,
            "assigned_to": h.assigned_to, "assigned_by": h.assigned_by, "assigned_at": h.assigned_at,
            "note": h.note, "updated_at": h.updated_at}


def event_json(e: HandlingEvent) -> dict:
    return {"action": e.action, "by": e.by, "assignee": e.assignee, "note": e.note, "at": e.at}


def has_alerts(s: Session, customer_id: str) -> bool:
    return s.execute(select(AlertRow.id).where(AlertRow.customer_id == customer_id).limit(1)).first() is not None


def read(sessions: sessionmaker[Session], customer_id: str) -> tuple[bool, dict | None, list[dict]]:
    """Whether the customer has alerts, their handling now (None: nobody) and the latest events."""
    with sessions() as s:
        known = has_alerts(s, customer_id)
        now = s.execute(select(CustomerHandling).where(CustomerHandling.customer_id == customer_id)).scalar()
        events = s.execute(select(HandlingEvent).where(HandlingEvent.customer_id == customer_id)
                           .order_by(HandlingEvent.id.desc()).limit(HISTORY)).scalars().all()
        return known, state_json(now), [event_json(e) for e in events]


def change(sessions: sessionmaker[Session], clock: Clock, customer_id: str, c: HandlingChange) -> dict | None:
    """Apply ``c`` to the customer; their handling afterwards (None once released).
    HandlingRefused (404) for a customer without alerts, (400) for an assignee who is no
    user or is disabled."""
    for attempt in range(2):
        try:
            with sessions.begin() as s:
                return _apply(s, clock.now(s), customer_id, c)
        except IntegrityError:  # a concurrent first acknowledge inserted the row: update that one
            if attempt:
                raise
    raise AssertionError("unreachable")


def _apply(s: Session, now: datetime, customer_id: str, c: HandlingChange) -> dict | None:
    if not has_alerts(s, customer_id):
        raise HandlingRefused(None, f"no alerts of customer {customer_id[:80]!r}", 404)
    if c.action == "assign":
        user = s.execute(select(User).where(User.name == c.assignee)).scalar()
        if user is None or user.disabled_at is not None:
            raise HandlingRefused("assignee", f"assignee: no user {(c.assignee or '')[:80]!r} who may log in")
    # Row lock (PostgreSQL): two supervisors acting on one customer take turns.
    row = s.execute(select(CustomerHandling).where(CustomerHandling.customer_id == customer_id)
                    .with_for_update()).scalar()
    s.add(HandlingEvent(customer_id=customer_id, action=c.action, by=c.by, assignee=c.assignee, note=c.note, at=now))
    if c.action == "release":
        if row is not None:
            s.execute(delete(CustomerHandling).where(CustomerHandling.id == row.id))
        return None
    if row is None:
        row = CustomerHandling(customer_id=customer_id, updated_at=now)
        s.add(row)
    if c.action == "acknowledge":
        row.acknowledged_by, row.acknowledged_at = c.by, now
    else:
        row.assigned_to, row.assigned_by, row.assigned_at = c.assignee, c.by, now
        if row.acknowledged_at is None:  # whoever assigns has seen it
            row.acknowledged_by, row.acknowledged_at = c.by, now
    if c.note is not None:
        row.note = c.note
    row.updated_at = now
    s.flush()
    return state_json(row)


def forget(s: Session, customer_id: str) -> int:
    """Remove the customer's handling and its history (`callmood forget`); rows removed."""
    n = s.execute(delete(CustomerHandling).where(CustomerHandling.customer_id == customer_id)).rowcount
    return n + s.execute(delete(HandlingEvent).where(HandlingEvent.customer_id == customer_id)).rowcount


def assignable(sessions: sessionmaker[Session]) -> list[str]:
    """The names a customer may be assigned to: every user who may log in."""
    with sessions() as s:
        return list(s.execute(select(User.name).where(User.disabled_at.is_(None)).order_by(User.name)).scalars())
