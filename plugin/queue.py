"""The durable queues: analysis jobs and outbound deliveries, both in the database.

A claim is one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING,
so any number of workers on PostgreSQL take different rows, and on SQLite the
single statement is atomic. A claimed row whose lease expires (its worker
died) is claimable again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from plugin.models import Delivery, Job, utcnow


def claim_job(sessions: sessionmaker[Session], owner: str, lease_s: float) -> int | None:
    now = utcnow()
    claimable = or_(Job.status == "queued",
                    and_(Job.status == "running", Job.lease_expires_at < now))
    pick = (select(Job.id).where(claimable, Job.run_after <= now)
            .order_by(Job.run_after, Job.id).limit(1)
            .with_for_update(skip_locked=True).scalar_subquery())
    stmt = (update(Job).where(Job.id == pick)
            .values(status="running", lease_owner=owner, attempts=Job.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(Job.id))
    with sessions.begin() as s:
        return s.execute(stmt).scalar()


def renew_job(sessions: sessionmaker[Session], job_id: int, owner: str, lease_s: float) -> bool:
    """Extend our lease on a long job; False if someone else has taken it over."""
    with sessions.begin() as s:
        res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                                          Job.status == "running")
                        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s)))
        return res.rowcount == 1


def finish_job(s: Session, job_id: int, owner: str) -> None:
    s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner)
              .values(status="done", finished_at=utcnow(), lease_expires_at=None, last_error=None))


def fail_job(sessions: sessionmaker[Session], job_id: int, owner: str, error: str,
             retry_in_s: float | None) -> str | None:
    """Record a failure: queue it again after ``retry_in_s``, or mark it failed for good.

    Returns the job's new status, or None when ``owner`` no longer holds the job."""
    values: dict = {"last_error": error[:2000], "lease_expires_at": None}
    if retry_in_s is None:
        values.update(status="failed", finished_at=utcnow())
    else:
        values.update(status="queued", run_after=utcnow() + timedelta(seconds=retry_in_s))
    with sessions.begin() as s:
        res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                                          Job.status == "running").values(**values))
    return values["status"] if res.rowcount == 1 else None


def claim_delivery(sessions: sessionmaker[Session], lease_s: float) -> int | None:
    now = utcnow()
    claimable = or_(and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
                    and_(Delivery.status == "sending", Delivery.lease_expires_at < now))
    pick = (select(Delivery.id).where(claimable).order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(1).with_for_update(skip_locked=True).scalar_subquery())
    stmt = (update(Delivery).where(Delivery.id == pick)
            .values(status="sending", attempts=Delivery.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(Delivery.id))
    with sessions.begin() as s:
        return s.execute(stmt).scalar()


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential: base, 2*base, 4*base, ... capped at max."""
    return min(max_s, base_s * (2 ** max(attempt - 1, 0)))

