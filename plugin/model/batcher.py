"""One inference thread that batches the windows of every caller together.

Worker threads (one per call in progress) and the demo /predict endpoint hand their
windows here and wait. The inference thread takes everything waiting, buckets it by
length (equal lengths batch without padding), and runs full batches; windows of
several calls share a batch, so short calls still fill the accelerator. While it
runs, the callers' threads are free to download and decode the next calls.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable

import numpy as np

from plugin.core import metrics

log = logging.getLogger(__name__)


class _Request:
    def __init__(self, n: int):
        self.results: list[np.ndarray | None] = [None] * n
        self.left = n
        self.error: BaseException | None = None
        self.done = threading.Event()


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], batch_size: int, name: str = "callmood-infer",
                 model: str = "emotion"):
        self._run = run
        # Which model's forwards these are ("emotion", "speech"): the metric's label, so the
        # speech model's batches do not blur the emotion model's.
        self._batch_windows = metrics.BATCH_WINDOWS.labels(model=model)
        self.batch_size = batch_size
        self._pending: list[tuple[np.ndarray, _Request, int]] = []
        self._cv = threading.Condition()
        self._closed = False
        self.batches_run = 0  # for tests and metrics: how the work was grouped
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def classify(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """Scores for each window (1-D float32); blocks until all are done."""
        if not windows:
            return []
        req = _Request(len(windows))
        with self._cv:
            if self._closed:
                raise RuntimeError("the inference thread is stopped")
            self._pending.extend((w, req, i) for i, w in enumerate(windows))
            self._cv.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.results  # type: ignore[return-value]

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if self._closed and not self._pending:
                    return
                todo, self._pending = self._pending, []
            self._run_all(todo)
            # Let the finished windows go now, not when the next request arrives.
            del todo

    def _run_all(self, todo: list[tuple[np.ndarray, _Request, int]]) -> None:
        """Equal-length windows batched together, ``batch_size`` at a time."""
        buckets: dict[int, list[tuple[np.ndarray, _Request, int]]] = defaultdict(list)
        for item in todo:
            buckets[len(item[0])].append(item)
        for items in buckets.values():
            for i in range(0, len(items), self.batch_size):
                self._run_batch(items[i:i + self.batch_size])

    def _run_batch(self, items: list[tuple[np.ndarray, _Request, int]]) -> None:
        try:
            scores = self._run(np.stack([w for w, _, _ in items]))
        except BaseException as exc:  # the callers must hear about it, not hang
            log.exception("inference failed on a batch of %d windows", len(items))
            for _, req, _ in items:
                if req.error is None:
                    req.error = exc
                req.left -= 1
                if req.left == 0:
                    req.done.set()
            return
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(items))
        self._batch_windows.observe(len(items))
        for (_, req, i), row in zip(items, scores):
            req.results[i] = row
            req.left -= 1
            if req.left == 0:
                req.done.set()
