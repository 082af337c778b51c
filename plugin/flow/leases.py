"""The leases a worker process holds on the jobs it is running.

A running job's lease is renewed by a small thread of its own every third of
``worker.lease_s``, whatever the job is doing meanwhile (a download, ffmpeg, the VAD, the
model), so a 4-hour multi-track recording is never taken by a second worker. How often is
timed by this process's monotonic clock (a wall clock stepped back would pause the
renewals); the lease itself is written with the one clock, by the job queue.

The job looks at its lease at checkpoints (between stages, while ffmpeg runs, as windows
are classified, before it commits): once a renewal found the job taken over, or the
process handed the job back because it is stopping, the checkpoint raises LeaseLost and
the job commits nothing.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from plugin.core import scrub
from plugin.store.jobs import JobQueue

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The job is no longer ours (another worker took it over): stop and change nothing."""


class HandedBack(LeaseLost):
    """This process handed the job back because it is stopping; another worker takes it."""


class JobLease:
    """This process's hold on one running job (``check`` is the job's checkpoint)."""

    def __init__(self, jobs: JobQueue, job_id: int, owner: str):
        self.jobs = jobs
        self.job_id = job_id
        self.owner = owner
        self.handed_back = False
        self._lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"callmood-lease-{job_id}", daemon=True)

    def check(self) -> None:
        """Raise LeaseLost (HandedBack) once the job is no longer ours to finish."""
        if self._lost.is_set():
            raise (HandedBack if self.handed_back else LeaseLost)(self.job_id)

    def hand_back(self) -> bool:
        """Stop renewing and put the job back in the queue, due now and this attempt not
        counted; the job stops at its next checkpoint. False if it was no longer ours."""
        self.handed_back = True
        self._lost.set()
        self._done.set()
        return self.jobs.release(self.job_id, self.owner)

    def _beat(self) -> None:
        every = self.jobs.lease_s / 3
        while not self._done.wait(every):
            try:
                if not self.jobs.renew(self.job_id, self.owner):
                    if not self._done.is_set():
                        log.warning("job %s: another worker has taken it over; stopping at the next checkpoint",
                                    self.job_id)
                    self._lost.set()
                    return
            except Exception as exc:  # the database away for a moment: the lease has two more tries
                log.warning("job %s: cannot renew its lease (%s); trying again in %.0fs",
                            self.job_id, scrub.text(str(exc).splitlines()[0][:200]), every)


class NoLease:
    """The checkpoint of a call analysed outside the job queue: never lost."""

    def check(self) -> None:
        pass


class RunningJobs:
    """The leases of the jobs this process runs now, so that a stopping process can hand
    them back. Once ``hand_back_all`` has run, a job that starts is handed back at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, JobLease] = {}
        self._closed = False

    @contextmanager
    def hold(self, jobs: JobQueue, job_id: int, owner: str) -> Iterator[JobLease]:
        lease = JobLease(jobs, job_id, owner)
        with self._lock:
            closed = self._closed
            if not closed:
                self._leases[job_id] = lease
        if closed:  # claimed as the process began to stop
            lease.hand_back()
            raise HandedBack(job_id)
        lease._thread.start()
        try:
            yield lease
        finally:
            lease._done.set()  # a renewal under way may still land: it finds the job finished
            with self._lock:
                self._leases.pop(job_id, None)

    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._leases)

    def hand_back_all(self) -> list[int]:
        """Hand back every running job; the ids that were still ours."""
        with self._lock:
            self._closed = True
            leases = list(self._leases.values())
        back = []
        for lease in leases:
            try:
                if lease.hand_back():
                    back.append(lease.job_id)
            except Exception:  # the database is away: the lease will expire instead
                log.exception("job %s: could not hand it back; it is taken again when its lease expires",
                              lease.job_id)
        return back
