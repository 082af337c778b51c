"""Supervisors' verdicts on alerts: one row per alert, a new verdict replaces the old.
`callmood rules backtest` measures precision with them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from plugin.core.clock import Clock
from plugin.store.tables import AlertRow, Feedback


def write_feedback(s: Session, alert_id: int, now, fields: dict[str, Any]) -> None:
    """``fields`` (verdict, by, note) as the alert's feedback, in the caller's transaction: a
    new row, or the old one replaced. A concurrent first verdict raises IntegrityError."""
    fb = s.execute(select(Feedback).where(Feedback.alert_id == alert_id)).scalar()
    if fb is None:
        s.add(Feedback(alert_id=alert_id, created_at=now, updated_at=now, **fields))
    else:
        for key, value in fields.items():
            setattr(fb, key, value)
        fb.updated_at = now


def set_feedback(sessions: sessionmaker[Session], clock: Clock, alert_id: int, fields: dict[str, Any]) -> bool:
    """Store ``fields`` (verdict, by, note) as the alert's feedback; False when there is no such alert."""
    for attempt in range(2):
        try:
            with sessions.begin() as s:
                # Row lock (PostgreSQL): concurrent verdicts on one alert take turns.
                if s.get(AlertRow, alert_id, with_for_update=True) is None:
                    return False
                write_feedback(s, alert_id, clock.now(s), fields)
            return True
        except IntegrityError:  # another request inserted it first: update that row instead
            if attempt:
                raise
    return True
