"""One clock for every time the job queue, the outbox, routing and the pipeline use.

Times are naive UTC everywhere: SQLite keeps no time zone, and mixing aware and naive
datetimes breaks comparisons.

Ask the clock with the session of the transaction the time is for. ``DatabaseClock``
then answers with PostgreSQL's ``now()`` (the start of that transaction), so every
lease is written and judged by one clock, the database's: a worker whose own clock is
skewed cannot take a job another worker still holds, nor keep one it lost. On SQLite
every worker shares the machine the file is on, so the process's clock is that clock.
Tests inject a ``ManualClock`` and step it instead of sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.orm import Session


def utcnow() -> datetime:
    """This process's time, naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Clock(Protocol):
    def now(self, session: Session | None = None) -> datetime:
        """Naive-UTC now for work done in ``session`` (None: outside any transaction)."""


class SystemClock:
    """This process's clock, whatever the database."""

    def now(self, session: Session | None = None) -> datetime:
        return utcnow()


_DB_NOW = text("SELECT timezone('UTC', now())")


class DatabaseClock:
    """PostgreSQL's clock inside a transaction; this process's clock otherwise."""

    def now(self, session: Session | None = None) -> datetime:
        if session is not None and session.get_bind().dialect.name == "postgresql":
            return session.execute(_DB_NOW).scalar_one()
        return utcnow()


class ManualClock:
    """A clock a test moves by hand."""

    def __init__(self, t: datetime):
        self.t = t

    def now(self, session: Session | None = None) -> datetime:
        return self.t

    def advance(self, **delta: float) -> datetime:
        self.t += timedelta(**delta)
        return self.t
