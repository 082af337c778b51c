"""The one clock and the one retry policy that jobs and deliveries share."""

from datetime import timedelta

from plugin.config import Config
from plugin.core.clock import DatabaseClock, ManualClock, SystemClock, utcnow
from plugin.core.retry import RetryPolicy
from tests.conftest import T0


def test_backoff_doubles_up_to_the_cap_and_gives_up_after_the_attempts():
    p = RetryPolicy(base_s=5, max_s=60, max_attempts=4)
    assert [p.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert [p.next_try_in(n) for n in range(1, 5)] == [5, 10, 20, None]  # the 4th failure is the last
    assert p.next_try_in(1, retryable=False) is None  # an answer that can never change: no retry


def test_jobs_and_deliveries_take_their_policy_from_the_config():
    cfg = Config()
    assert cfg.worker.retry_policy() == RetryPolicy(30.0, 3600.0, 5)
    assert cfg.deliveries.retry_policy() == RetryPolicy(5.0, 3600.0, 12)


def test_clocks_are_naive_utc():
    assert utcnow().tzinfo is None
    before = utcnow()
    assert before <= SystemClock().now() <= utcnow()
    assert before <= DatabaseClock().now() <= utcnow()  # no session: this process's clock
    clock = ManualClock(T0)
    assert clock.now() == T0 and clock.advance(minutes=5) == T0 + timedelta(minutes=5) == clock.now()
