"""The durable job and delivery queues on SQLite and PostgreSQL."""

import threading
import time

from sqlalchemy import select

from plugin import db, queue
from plugin.models import AlertRow, Call, Delivery, Job


def setup(db_url, jobs=0):
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    db.upgrade(engine)  # migrating twice is a no-op
    sessions = db.make_sessionmaker(engine)
    with sessions.begin() as s:
        for i in range(jobs):
            call = Call(source="generic", external_id=f"c{i}", recording_url="http://x", event={})
            s.add(call)
            s.flush()
            s.add(Job(call_id=call.id))
    return engine, sessions


def add_delivery(sessions):
    """An alert on call 1 with one pending CRM delivery."""
    with sessions.begin() as s:
        alert = AlertRow(call_id=1, rule="r", scenario="s", severity="info", role="customer", emotions=["angry"],
                         share=1.0, confidence=0.9, matched=[], summary="x")
        s.add(alert)
        s.flush()
        s.add(Delivery(alert_id=alert.id, sink="crm", payload={}))


def test_claim_lease_and_takeover(db_url):
    engine, sessions = setup(db_url, jobs=1)
    first = queue.claim_job(sessions, "w1", lease_s=0.3)
    assert first is not None
    assert queue.claim_job(sessions, "w2", lease_s=0.3) is None  # leased
    time.sleep(0.4)
    assert queue.claim_job(sessions, "w2", lease_s=30) == first  # w1 died: lease expired
    assert not queue.renew_job(sessions, first, "w1", 30)  # w1 lost it
    with sessions.begin() as s:
        assert queue.fail_job(s, first, "w1", "late failure", retry_in_s=None) is None
    assert queue.renew_job(sessions, first, "w2", 30)
    with sessions.begin() as s:
        assert not queue.finish_job(s, first, "w1")
        assert queue.finish_job(s, first, "w2")
    with sessions() as s:
        job = s.get(Job, first)
        assert (job.status, job.attempts, job.lease_owner) == ("done", 2, "w2")
    assert queue.claim_job(sessions, "w3", lease_s=30) is None
    engine.dispose()


def test_failures_retry_later_or_fail(db_url):
    engine, sessions = setup(db_url, jobs=1)
    job_id = queue.claim_job(sessions, "w", 30)
    with sessions.begin() as s:
        assert queue.fail_job(s, job_id, "w", "network down", retry_in_s=0.3) == "queued"
    assert queue.claim_job(sessions, "w", 30) is None  # not before run_after
    time.sleep(0.35)
    assert queue.claim_job(sessions, "w", 30) == job_id
    with sessions.begin() as s:
        assert queue.fail_job(s, job_id, "w", "corrupt", retry_in_s=None) == "failed"
    with sessions() as s:
        assert s.get(Job, job_id).last_error == "corrupt"
        assert s.get(Call, s.get(Job, job_id).call_id).status == "failed"  # in the same transaction
    engine.dispose()


def test_concurrent_workers_never_share_a_job(db_url):
    engine, sessions = setup(db_url, jobs=40)
    claimed: dict[str, list[int]] = {}

    def work(name):
        mine = claimed.setdefault(name, [])
        while (job_id := queue.claim_job(sessions, name, 60)) is not None:
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
    engine, sessions = setup(db_url, jobs=1)
    add_delivery(sessions)
    d = queue.claim_delivery(sessions, "s1", lease_s=0.2)
    assert d is not None and queue.claim_delivery(sessions, "s2", lease_s=0.2) is None
    time.sleep(0.3)
    assert queue.claim_delivery(sessions, "s2", lease_s=30) == d  # sender died mid-send
    with sessions() as s:
        assert s.execute(select(Delivery.attempts)).scalar() == 2
    assert [queue.backoff(n, 5, 60) for n in range(1, 6)] == [5, 10, 20, 40, 60]
    engine.dispose()


def test_a_job_that_keeps_killing_its_worker_is_failed(db_url):
    engine, sessions = setup(db_url, jobs=1)
    for _ in range(3):  # three workers die on it, one after another
        assert queue.claim_job(sessions, "w", lease_s=0.05, max_attempts=3) is not None
        time.sleep(0.1)
    assert queue.claim_job(sessions, "w", lease_s=30, max_attempts=3) is None
    with sessions() as s:
        job, call = s.get(Job, 1), s.get(Call, 1)
        assert job.status == "failed" and "stopped 3 times" in job.last_error
        assert call.status == "failed" and call.error == job.last_error
    engine.dispose()


def test_a_sender_that_lost_its_lease_cannot_overwrite_the_outcome(db_url):
    engine, sessions = setup(db_url, jobs=1)
    add_delivery(sessions)
    d = queue.claim_delivery(sessions, "slow", lease_s=0.05)
    time.sleep(0.1)
    assert queue.claim_delivery(sessions, "fast", lease_s=30) == d
    with sessions.begin() as s:
        assert queue.settle_delivery(s, d, "fast", status="delivered")
    with sessions.begin() as s:
        assert not queue.settle_delivery(s, d, "slow", status="pending", last_error="timeout")
    with sessions() as s:
        assert s.get(Delivery, d).status == "delivered"
    engine.dispose()
