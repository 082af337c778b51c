"""/predict's own small pool: a few uploads analysed at once, a few more waiting, the
rest refused at once (429 with Retry-After).

Waitress serves every request, the webhook receiver's included, from ``server.threads``
threads. It reads a request's whole body before a thread sees it, so an upload holds a
thread only while it waits for its turn and while it is analysed. Hence the pool counts
places rather than owning threads: ``server.predict_concurrency`` uploads are analysed at
once, ``server.predict_queue`` more wait (each for ``server.predict_wait_s`` at most, then
503), and any upload beyond that is refused before its body is even parsed. Uploads thus
never hold more than concurrency + queue threads, which the config keeps below
``server.threads``: the webhook receiver always has threads left.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class Busy(Exception):
    """No turn for this upload now; ``status`` (429 or 503) and ``retry_after_s`` say so."""

    def __init__(self, message: str, status: int, retry_after_s: int):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class PredictPool:
    def __init__(self, concurrency: int, queue: int, wait_s: float):
        self.concurrency = concurrency
        self.queue = queue
        self.wait_s = wait_s
        self._places = threading.BoundedSemaphore(concurrency + queue)  # analysed or waiting
        self._turns = threading.BoundedSemaphore(concurrency)  # analysed
        self._lock = threading.Lock()
        self._typical_s: float | None = None  # how long an upload takes lately (moving average)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold a turn for the ``with`` block; raises Busy at once when every place is
        taken, or after waiting ``wait_s`` for a turn."""
        if not self._places.acquire(blocking=False):
            raise Busy(f"busy: {self.concurrency} upload(s) being analysed and {self.queue} waiting "
                       f"(server.predict_concurrency, server.predict_queue); try again later",
                       429, self.retry_after_s())
        try:
            if not self._turns.acquire(timeout=self.wait_s):
                raise Busy(f"busy: no turn within {self.wait_s:g}s (server.predict_wait_s); try again later",
                           503, self.retry_after_s())
            start = time.monotonic()
            try:
                yield
            finally:
                self._turns.release()
                self._took(time.monotonic() - start)
        finally:
            self._places.release()

    def retry_after_s(self) -> int:
        """Seconds until a place is likely free: the queue ahead, at the recent pace."""
        with self._lock:
            typical = self._typical_s
        if typical is None:
            return 5
        return max(1, min(300, math.ceil(typical * (self.queue + 1) / self.concurrency)))

    def _took(self, seconds: float) -> None:
        with self._lock:
            self._typical_s = seconds if self._typical_s is None else 0.7 * self._typical_s + 0.3 * seconds
