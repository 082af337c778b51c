"""What went wrong lately: calls that failed for good and deliveries that died, within a
window. /health reports them ("degraded"); `callmood calls rerun --failed --since ...` and
POST /api/calls/rerun re-run the failed calls.

A call counts while it is still failed: once re-run it is "received" again, so a fixed
cause stops counting at once. A delivery has no time of death of its own; the time its
last attempt was due (``next_attempt_at``, or its creation for one dead at planning) is
used, which is at most a send's timeout (plus any backlog of the outbox) earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from plugin.core.clock import Clock
from plugin.store.tables import Call, Delivery, Job

SHOWN = 10  # ids listed in /health's detail (the counts are whole)


def _failed_since(since: datetime):
    # A call failed now, with a failed job that ended at or after ``since``.
    return (select(Call.id).join(Job, Job.call_id == Call.id)
            .where(Call.status == "failed", Job.status == "failed", Job.finished_at >= since)
            .group_by(Call.id))


def failed_call_ids(s: Session, since: datetime) -> list[int]:
    """Calls failed now whose failure (a failed job's end) is at or after ``since``, by id."""
    return list(s.execute(_failed_since(since).order_by(Call.id)).scalars())


@dataclass
class Recent:
    window_s: float
    calls_failed: int = 0
    deliveries_dead: int = 0
    failed_call_ids: list[int] = field(default_factory=list)  # the newest SHOWN
    dead_delivery_ids: list[int] = field(default_factory=list)  # the newest SHOWN

    def json(self) -> dict:
        return {"window_s": self.window_s, "calls_failed": self.calls_failed,
                "deliveries_dead": self.deliveries_dead, "failed_call_ids": self.failed_call_ids,
                "dead_delivery_ids": self.dead_delivery_ids}


def recent(sessions: sessionmaker[Session], clock: Clock, window_s: float) -> Recent:
    """Failed calls and dead deliveries of the last ``window_s`` seconds (by the one clock)."""
    with sessions() as s:
        since = clock.now(s) - timedelta(seconds=window_s)
        failed = _failed_since(since).subquery()
        calls_count = s.execute(select(func.count()).select_from(failed)).scalar_one()
        call_ids = list(s.execute(select(failed.c.id).order_by(failed.c.id.desc()).limit(SHOWN)).scalars())
        dead = (Delivery.status == "dead", Delivery.next_attempt_at >= since)
        dead_count = s.execute(select(func.count(Delivery.id)).where(*dead)).scalar_one()
        dead_ids = list(s.execute(select(Delivery.id).where(*dead)
                                  .order_by(Delivery.id.desc()).limit(SHOWN)).scalars())
    return Recent(window_s, calls_count, dead_count, call_ids, dead_ids)
