"""A running job's lease: renewed by its own thread, lost to a takeover, handed back by a
stopping process; deliveries handed back likewise (SQLite and PostgreSQL).

Time is a ManualClock where leases are judged; the heartbeat itself runs on this
process's monotonic clock, so the tests give it a short lease (a renewal every 0.1 s)."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from connectors.sinks import SendResult, Sink, SinkConfig
from plugin.core.clock import ManualClock
from plugin.flow.leases import HandedBack, LeaseLost, RunningJobs
from plugin.flow.outbox import Outbox
from plugin.store.tables import Delivery, Job
from tests.conftest import T0
from tests.helpers import wait_until
from tests.integration.test_queue import add_delivery, setup


def test_a_running_job_notices_a_takeover_and_stops_at_its_checkpoint(db_url):
    clock = ManualClock(T0)
    engine, sessions, jobs = setup(db_url, calls=1, clock=clock, lease_s=0.3)
    job_id = jobs.claim("w1")
    running = RunningJobs()
    with running.hold(jobs, job_id, "w1") as lease:
        assert running.ids() == [job_id]
        lease.check()  # ours
        clock.advance(seconds=0.2)
        # Its thread renews the lease without the job doing anything: past the first lease
        # (T0 + 0.3 s) the job is still ours, and no other worker can claim it.
        wait_until(lambda: _expires(sessions, job_id) >= clock.t + timedelta(seconds=0.3), timeout=5)
        clock.advance(seconds=0.2)
        assert jobs.claim("w2") is None
        lease.check()
        # Another worker takes the job over (what a claim after an expiry leaves in the row).
        with sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(lease_owner="w2"))
        wait_until(lambda: _raises(lease.check, LeaseLost), timeout=5)
        with pytest.raises(LeaseLost) as caught:
            lease.check()
        assert not isinstance(caught.value, HandedBack)
    assert running.ids() == []
    with sessions() as s:
        assert s.get(Job, job_id).lease_owner == "w2"  # the lost holder wrote nothing
    engine.dispose()


def test_a_stopping_process_hands_its_jobs_back(db_url):
    clock = ManualClock(T0)
    engine, sessions, jobs = setup(db_url, calls=2, clock=clock, lease_s=600)
    first = jobs.claim("w1")
    running = RunningJobs()
    with running.hold(jobs, first, "w1") as lease:
        assert running.hand_back_all() == [first]
        with pytest.raises(HandedBack):
            lease.check()  # the job stops at its next checkpoint
        with sessions() as s:
            job = s.get(Job, first)
            # Due now, for anyone, and this attempt is not counted as a failure.
            assert (job.status, job.attempts, job.lease_owner, job.lease_expires_at) == ("queued", 0, None, None)
            assert job.run_after == clock.t
        assert jobs.claim("w2") == first  # at once, not after a 10-minute lease
        assert not jobs.release(first, "w1")  # no longer ours: nothing changes
    # A job claimed just as the process began to stop is handed back before it starts.
    second = jobs.claim("w1")
    with pytest.raises(HandedBack), running.hold(jobs, second, "w1"):
        pytest.fail("a stopping process started a job")
    with sessions() as s:
        assert (s.get(Job, second).status, s.get(Job, second).attempts) == ("queued", 0)
        assert (s.get(Job, first).status, s.get(Job, first).lease_owner) == ("running", "w2")
    engine.dispose()


class HeldSink(Sink):
    """A sink whose send lasts until the test lets it answer."""

    def __init__(self):
        super().__init__("crm", SinkConfig(type="held"))
        self.called, self.answer = threading.Event(), threading.Event()

    def send(self, payload, http, timeout, idempotency_key):
        self.called.set()
        self.answer.wait(10)
        return SendResult(True, 200)


def test_a_stopping_process_hands_back_the_deliveries_it_is_sending(db_url):
    clock = ManualClock(T0)
    engine, sessions, _ = setup(db_url, calls=1, clock=clock)
    deliveries = add_delivery(sessions, clock)
    sink = HeldSink()
    outbox = Outbox(deliveries, {"crm": sink}, timeout_s=5)
    sender = threading.Thread(target=outbox.deliver_one, args=(None, "s1"))
    sender.start()
    assert sink.called.wait(10)
    [d] = outbox.sending()
    assert outbox.hand_back_all() == [d]
    with sessions() as s:
        row = s.get(Delivery, d)
        assert (row.status, row.attempts, row.lease_owner, row.next_attempt_at) == ("pending", 0, None, clock.t)
    # The send under way ends after the hand-back: its outcome is not recorded (the
    # delivery is sent again, with the same idempotency key).
    sink.answer.set()
    sender.join(10)
    with sessions() as s:
        assert (s.get(Delivery, d).status, s.get(Delivery, d).attempts) == ("pending", 0)
    # Once stopping, this outbox sends nothing more: what it claims it hands straight back.
    assert not outbox.deliver_one(None, "s1")
    with sessions() as s:
        assert (s.get(Delivery, d).status, s.get(Delivery, d).attempts) == ("pending", 0)
    assert deliveries.claim("s2") == d
    engine.dispose()


def _expires(sessions, job_id):
    with sessions() as s:
        return s.get(Job, job_id).lease_expires_at


def _raises(fn, exc) -> bool:
    try:
        fn()
    except exc:
        return True
    return False
