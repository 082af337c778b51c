"""One retry policy for analysis jobs and outbound deliveries: exponential backoff with
a cap, and a number of attempts after which the work is failed (a job) or dead (a
delivery) for everyone to see."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float  # the wait after the first failed attempt
    max_s: float  # waits double up to this
    max_attempts: int  # attempts in all, the first included

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): base, 2*base, ... max."""
        return min(self.max_s, self.base_s * (2 ** max(attempt - 1, 0)))

    def next_try_in(self, attempts: int, retryable: bool = True) -> float | None:
        """After ``attempts`` failed attempts: seconds until the next one, or None to give up."""
        if not retryable or attempts >= self.max_attempts:
            return None
        return self.delay(attempts)
