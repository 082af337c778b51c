"""The durable analysis-job queue: every statement on the jobs table, behind one object
(the model is procrastinate's JobManager).

A claim is one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING, so
any number of workers on PostgreSQL take different rows, and on SQLite the single
statement is atomic. A claimed job whose lease expires (its worker died) is claimable
again; every later write by the old holder checks the lease owner, so a worker that lost
its lease changes nothing. Lease times come from the clock asked with the claiming
transaction: the database's own on PostgreSQL (plugin/core/clock.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from plugin.core import scrub
from plugin.core.clock import Clock
from plugin.core.retry import RetryPolicy
from plugin.store.tables import Call, Job


# Built once (its values come as parameters): see plugin/flow/intake.py.
_INSERT_JOB = insert(Job.__table__).returning(Job.__table__.c.id)


class JobQueue:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, lease_s: float, policy: RetryPolicy):
        self.sessions = sessions
        self.clock = clock
        self.lease_s = lease_s
        self.policy = policy  # max_attempts also bounds the workers a job may take down with it

    def enqueue(self, s: Session, call_id: int, delay_s: float = 0) -> Job:
        """A new job for ``call_id``, in the caller's transaction (with its call), due now or
        in ``delay_s`` seconds."""
        return s.get(Job, self.enqueue_id(s, call_id, delay_s))

    def enqueue_id(self, s: Session, call_id: int, delay_s: float = 0, now: datetime | None = None) -> int:
        """``enqueue``, answering the new job's id only: one INSERT, no ORM object (the
        webhook's path, where the ORM's unit of work cost more than the database did)."""
        now = now or self.clock.now(s)
        return s.connection().execute(_INSERT_JOB, {"call_id": call_id, "created_at": now,
                                                    "run_after": now + timedelta(seconds=delay_s)}).scalar_one()

    def rerun(self, s: Session, call_id: int) -> tuple[Job, bool]:
        """Queue ``call_id`` once more, due now, in the caller's transaction, unless one of
        its jobs is queued or running already: (that job or the new one, whether it is new).

        The call's row is locked first (an UPDATE: PostgreSQL's row lock, SQLite's write
        lock), as the intake does for a late participant's file, so two re-runs at once
        (the command and the API) queue one job between them."""
        s.execute(update(Call).where(Call.id == call_id).values(status=Call.status))
        active = s.execute(select(Job).where(Job.call_id == call_id, Job.status.in_(("queued", "running")))
                           .order_by(Job.id)).scalars().first()
        if active is not None:
            return active, False
        return self.enqueue(s, call_id), True

    def claim(self, owner: str, lease_s: float | None = None) -> int | None:
        """Take the next due job for ``owner``; its id, or None when none is due."""
        lease = timedelta(seconds=self.lease_s if lease_s is None else lease_s)
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            self._give_up_on_crashing_jobs(s, now)
            claimable = or_(Job.status == "queued",
                            and_(Job.status == "running", Job.lease_expires_at < now))
            pick = (select(Job.id).where(claimable, Job.run_after <= now)
                    .order_by(Job.run_after, Job.id).limit(1)
                    .with_for_update(skip_locked=True).scalar_subquery())
            stmt = (update(Job).where(Job.id == pick)
                    .values(status="running", lease_owner=owner, attempts=Job.attempts + 1,
                            lease_expires_at=now + lease)
                    .returning(Job.id))
            return s.execute(stmt).scalar()

    def _give_up_on_crashing_jobs(self, s: Session, now: datetime) -> None:
        """A job whose worker died (lease expired) on every one of its attempts would be
        claimed forever (a recording that crashes the process, say): fail it visibly."""
        dead = s.execute(select(Job.id, Job.call_id, Job.attempts)
                         .where(Job.status == "running", Job.lease_expires_at < now,
                                Job.attempts >= self.policy.max_attempts)
                         .with_for_update(skip_locked=True)).all()
        for job_id, call_id, attempts in dead:
            error = (f"the worker stopped {attempts} times while processing this call "
                     f"(crash or out of memory?); giving up")
            s.execute(update(Job).where(Job.id == job_id).values(
                status="failed", last_error=error, finished_at=now, lease_expires_at=None))
            s.execute(update(Call).where(Call.id == call_id).values(status="failed", error=error))

    def renew(self, job_id: int, owner: str) -> bool:
        """Extend our lease on a long job; False if someone else has taken it over."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                                              Job.status == "running")
                            .values(lease_expires_at=now + timedelta(seconds=self.lease_s)))
            return res.rowcount == 1

    def release(self, job_id: int, owner: str) -> bool:
        """Hand a job we hold back to the queue, due now (a stopping worker): this attempt
        does not count, and any worker may take it at once. False if we no longer hold it."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                            .values(status="queued", run_after=now, attempts=Job.attempts - 1,
                                    lease_owner=None, lease_expires_at=None))
            return res.rowcount == 1

    def finish(self, s: Session, job_id: int, owner: str) -> bool:
        """Mark the job done inside the caller's transaction; False if we no longer hold it."""
        res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                        .values(status="done", finished_at=self.clock.now(s), lease_expires_at=None,
                                last_error=None))
        return res.rowcount == 1

    def fail(self, s: Session, job_id: int, owner: str, error: str, retry_in_s: float | None) -> str | None:
        """Record a failure in the caller's transaction: queue the job again after
        ``retry_in_s``, or fail it (and its call) for good when that is None.

        Returns the job's new status, or None when ``owner`` no longer holds the job."""
        now = self.clock.now(s)
        error = scrub.text(error)[:2000]  # errors carry URLs, and recording URLs carry tokens
        values: dict = {"last_error": error, "lease_expires_at": None}
        if retry_in_s is None:
            values.update(status="failed", finished_at=now)
        else:
            values.update(status="queued", run_after=now + timedelta(seconds=retry_in_s))
        res = s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                        .values(**values).returning(Job.call_id))
        call_id = res.scalar()
        if call_id is None:
            return None
        if retry_in_s is None:
            s.execute(update(Call).where(Call.id == call_id).values(status="failed", error=error))
        return values["status"]
