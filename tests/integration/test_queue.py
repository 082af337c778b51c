"""The durable job and delivery queues on SQLite and PostgreSQL.

Leases and retries are judged by the clock, so the tests step a ManualClock instead of
sleeping; one test shows that on PostgreSQL the database's clock decides, whatever a
worker's own clock says."""

import threading
from datetime import timedelta
from unittest import mock

from sqlalchemy import select

from plugin.core.clock import DatabaseClock, ManualClock, SystemClock
from plugin.core.retry import RetryPolicy
from plugin.store import engine as db
from plugin.store.deliveries import DeliveryQueue
from plugin.store.jobs import JobQueue
from plugin.store.tables import AlertRow, Call, Delivery, Job
from tests.conftest import T0

POLICY = RetryPolicy(base_s=5, max_s=60, max_attempts=1_000_000)


def setup(db_url, calls=0, clock=None, lease_s=30.0, max_attempts=1_000_000):
    """A fresh database with ``calls`` calls, each with its queued job; the job queue."""
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    db.upgrade(engine)  # migrating twice is a no-op
    sessions = db.make_sessionmaker(engine)
    clock = clock or ManualClock(T0)
    jobs = JobQueue(sessions, clock, lease_s, RetryPolicy(5, 60, max_attempts))
    with sessions.begin() as s:
        for i in range(calls):
            call = Call(source="generic", external_id=f"c{i}", recording_url="http://x", event={},
                        received_at=clock.now(s))
            s.add(call)
            s.flush()
            jobs.enqueue(s, call.id)
    return engine, sessions, jobs


def add_delivery(sessions, clock) -> DeliveryQueue:
    """An alert on call 1 with one pending CRM delivery; the delivery queue."""
    deliveries = DeliveryQueue(sessions, clock, 60, POLICY)
    with sessions.begin() as s:
        alert = AlertRow(call_id=1, rule="r", scenario="s", severity="info", role="customer", emotions=["angry"],
                         share=1.0, confidence=0.9, matched=[], summary="x", created_at=clock.now(s))
        s.add(alert)
        s.flush()
        deliveries.add(s, "crm", {}, alert_id=alert.id)
    return deliveries


def test_claim_lease_and_takeover(db_url):
    clock = ManualClock(T0)
    engine, sessions, jobs = setup(db_url, calls=1, clock=clock)
    first = jobs.claim("w1", lease_s=0.3)
    assert first is not None
    assert jobs.claim("w2", lease_s=0.3) is None  # leased
    clock.advance(seconds=0.4)
    assert jobs.claim("w2", lease_s=30) == first  # w1 died: lease expired
    assert not jobs.renew(first, "w1")  # w1 lost it
    with sessions.begin() as s:
        assert jobs.fail(s, first, "w1", "late failure", retry_in_s=None) is None
    assert jobs.renew(first, "w2")
    with sessions.begin() as s:
        assert not jobs.finish(s, first, "w1")
        assert jobs.finish(s, first, "w2")
    with sessions() as s:
        job = s.get(Job, first)
        assert (job.status, job.attempts, job.lease_owner) == ("done", 2, "w2")
        assert job.finished_at == clock.t
    assert jobs.claim("w3", lease_s=30) is None
    engine.dispose()


def test_failures_retry_later_or_fail(db_url):
    clock = ManualClock(T0)
    engine, sessions, jobs = setup(db_url, calls=1, clock=clock)
    job_id = jobs.claim("w")
    with sessions.begin() as s:
        assert jobs.fail(s, job_id, "w", "network down", retry_in_s=0.3) == "queued"
    assert jobs.claim("w") is None  # not before run_after
    clock.advance(seconds=0.35)
    assert jobs.claim("w") == job_id
    with sessions.begin() as s:
        assert jobs.fail(s, job_id, "w", "corrupt", retry_in_s=None) == "failed"
    with sessions() as s:
        assert s.get(Job, job_id).last_error == "corrupt"
        assert s.get(Call, s.get(Job, job_id).call_id).status == "failed"  # in the same transaction
    engine.dispose()


def test_concurrent_workers_never_share_a_job(db_url):
    engine, sessions, jobs = setup(db_url, calls=40)
    claimed: dict[str, list[int]] = {}

    def work(name):
        mine = claimed.setdefault(name, [])
        while (job_id := jobs.claim(name, 60)) is not None:
            mine.append(job_id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [j for js in claimed.values() for j in js]
    assert sorted(every) == sorted(set(every)) and len(every) == 40
    engine.dispose()


def test_deliveries_claim_and_backoff(db_url):
    clock = ManualClock(T0)
    engine, sessions, _ = setup(db_url, calls=1, clock=clock)
    deliveries = add_delivery(sessions, clock)
    d = deliveries.claim("s1", lease_s=0.2)
    assert d is not None and deliveries.claim("s2", lease_s=0.2) is None
    clock.advance(seconds=0.3)
    assert deliveries.claim("s2", lease_s=30) == d  # sender died mid-send
    with sessions() as s:
        assert s.execute(select(Delivery.attempts)).scalar() == 2
    assert [POLICY.delay(n) for n in range(1, 6)] == [5, 10, 20, 40, 60]
    engine.dispose()


def test_a_job_that_keeps_killing_its_worker_is_failed(db_url):
    clock = ManualClock(T0)
    engine, sessions, jobs = setup(db_url, calls=1, clock=clock, max_attempts=3)
    for _ in range(3):  # three workers die on it, one after another
        assert jobs.claim("w", lease_s=0.05) is not None
        clock.advance(seconds=0.1)
    assert jobs.claim("w", lease_s=30) is None
    with sessions() as s:
        job, call = s.get(Job, 1), s.get(Call, 1)
        assert job.status == "failed" and "stopped 3 times" in job.last_error
        assert call.status == "failed" and call.error == job.last_error
    engine.dispose()


def test_a_sender_that_lost_its_lease_cannot_overwrite_the_outcome(db_url):
    clock = ManualClock(T0)
    engine, sessions, _ = setup(db_url, calls=1, clock=clock)
    deliveries = add_delivery(sessions, clock)
    d = deliveries.claim("slow", lease_s=0.05)
    clock.advance(seconds=0.1)
    assert deliveries.claim("fast", lease_s=30) == d
    with sessions.begin() as s:
        assert deliveries.settle(s, d, "fast", status="delivered")
    with sessions.begin() as s:
        assert not deliveries.settle(s, d, "slow", status="pending", last_error="timeout")
    with sessions() as s:
        assert s.get(Delivery, d).status == "delivered"
    engine.dispose()


def test_leases_follow_the_database_clock_not_a_skewed_worker(postgres_url):
    """A worker whose own clock runs ten years ahead sees every lease as expired. On
    PostgreSQL the lease is written and judged by the database's now(), so that worker
    cannot take a job another worker still holds; with its own clock it would have."""
    engine, sessions, _ = setup(postgres_url, calls=1)
    with sessions.begin() as s:  # setup() made the job due at T0; make it due by the database's clock
        s.execute(Job.__table__.update().values(run_after=DatabaseClock().now(s)))
    job_id = JobQueue(sessions, DatabaseClock(), 30, POLICY).claim("honest-worker")
    assert job_id is not None

    skew = T0 + timedelta(days=3650)
    with mock.patch("plugin.core.clock.utcnow", return_value=skew):
        assert DatabaseClock().now() == skew  # outside a transaction it has only its own clock
        assert JobQueue(sessions, DatabaseClock(), 30, POLICY).claim("skewed-worker") is None
        # What judging by the worker's own clock does: it takes the job from its holder.
        assert JobQueue(sessions, SystemClock(), 30, POLICY).claim("skewed-worker") == job_id
    engine.dispose()
