"""The durable queues: analysis jobs and outbound deliveries, both in the database.

A claim is one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING,
so any number of workers on PostgreSQL take different rows, and on SQLite the
single statement is atomic. A claimed row whose lease expires (its worker
died) is claimable again; every later write by the old holder checks the lease
owner, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from plugin.models import Call, Delivery, Job, utcnow


def claim_job(sessions: sessionmaker[Session], owner: str, lease_s: float,
              max_attempts: int = 1_000_000) -> int | None:
    now = utcnow()
    with sessions.begin() as s:
        _give_up_on_crashing_jobs(s, now, max_attempts)
        claimable = or_(Job.status == "queued",
                        and_(Job.status == "running", Job.lease_expires_at < now))
        pick = (select(Job.id).where(claimable, Job.run_after <= now)
                .order_by(Job.run_after, Job.id).limit(1)
                .with_for_update(skip_locked=True).scalar_subquery())
        stmt = (update(Job).where(Job.id == pick)
                .values(status="running", lease_owner=owner, attempts=Job.attempts + 1,
                        lease_expires_at=now + timedelta(seconds=lease_s))
                .returning(Job.id))
        return s.execute(stmt).scalar()


def _give_up_on_crashing_jobs(s: Session, now, max_attempts: int) -> None:
    """A job whose worker died (lease expired) on every one of its attempts would be
    claimed forever (a recording that crashes the process, say): fail it visibly."""
    dead = s.execute(select(Job.id, Job.call_id, Job.attempts)
                     .where(Job.status == "running", Job.lease_expires_at < now,
                            Job.attempts >= max_attempts)
                     .with_for_update(skip_locked=True)).all()
    for job_id, call_id, attempts in dead:
        error = (f"the worker stopped {attempts} times while processing this call "
                 f"(crash or out of memory?); giving up")
        s.execute(update(Job).where(Job.id == job_id).values(
            status="failed", last_error=error, finished_at=now, lease_expires_at=None))
        s.execute(update(Call).where(Call.id == call_id).values(status="failed", error=error))


def renew_job(sessions: sessionmaker[Session], job_id: int, owner: str, lease_s: float) -> bool:
    """Extend our lease on a long job; False if someone else has taken it over."""
    with sessions.begin() as s:
        res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                                          Job.status == "running")
                        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s)))
        return res.rowcount == 1


def finish_job(s: Session, job_id: int, owner: str) -> bool:
    """Mark the job done inside the caller's transaction; False if we no longer hold it."""
    res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                    .values(status="done", finished_at=utcnow(), lease_expires_at=None, last_error=None))
    return res.rowcount == 1


def fail_job(s: Session, job_id: int, owner: str, error: str, retry_in_s: float | None) -> str | None:
    """Record a failure in the caller's transaction: queue the job again after
    ``retry_in_s``, or fail it (and its call) for good.

    Returns the job's new status, or None when ``owner`` no longer holds the job."""
    values: dict = {"last_error": error[:2000], "lease_expires_at": None}
    if retry_in_s is None:
        values.update(status="failed", finished_at=utcnow())
    else:
        values.update(status="queued", run_after=utcnow() + timedelta(seconds=retry_in_s))
    res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                    .values(**values).returning(Job.call_id))
    call_id = res.scalar()
    if call_id is None:
        return None
    if retry_in_s is None:
        s.execute(update(Call).where(Call.id == call_id).values(status="failed", error=error[:2000]))
    return values["status"]


def claim_delivery(sessions: sessionmaker[Session], owner: str, lease_s: float) -> int | None:
    now = utcnow()
    claimable = or_(and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
                    and_(Delivery.status == "sending", Delivery.lease_expires_at < now))
    pick = (select(Delivery.id).where(claimable).order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(1).with_for_update(skip_locked=True).scalar_subquery())
    stmt = (update(Delivery).where(Delivery.id == pick)
            .values(status="sending", attempts=Delivery.attempts + 1, lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(Delivery.id))
    with sessions.begin() as s:
        return s.execute(stmt).scalar()


def settle_delivery(s: Session, delivery_id: int, owner: str, **values) -> bool:
    """Record a send's outcome, only if we still hold the delivery's lease."""
    res = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner,
                                           Delivery.status == "sending")
                    .values(lease_expires_at=None, **values))
    return res.rowcount == 1


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential: base, 2*base, 4*base, ... capped at max."""
    return min(max_s, base_s * (2 ** max(attempt - 1, 0)))
