"""Re-running calls: a failed call once its cause is fixed (fetch.allow_networks, the
model, a vendor's credentials), or an analysed one after the rules or the model changed.
Used by `callmood calls rerun` (plugin/commands/calls.py) and by supervisors through
POST /api/calls/<id>/rerun and POST /api/calls/rerun (plugin/web/api.py).

A re-run queues a new analysis job (``JobQueue.rerun``), never a second one while one is
queued or running. The job is an ordinary one, and the pipeline is idempotent
(plugin/flow/results.py): the segments and the verdict are rewritten, an alert that
fired before is not stored, routed or sent again (one per call and rule, one delivery per
alert and sink), so a re-run sends only what newly fires. A failed call becomes
"received" again (being worked on: retention leaves it alone, /health stops counting it);
an analysed one keeps its results until the new ones replace them.

A call whose raw event retention removed is not re-run: its recording link lost its
query (where signed URLs keep their token) and the vendor's event is gone, so it cannot
be fetched as it came, and analysing it again would keep its results past their days.

Every request is logged with who made it (audit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from plugin.core.clock import Clock
from plugin.store.failures import failed_call_ids
from plugin.store.jobs import JobQueue
from plugin.store.tables import Call

log = logging.getLogger(__name__)

MAX_AT_ONCE = 1000  # calls one request or command re-runs (the rest: run it again)
# "--since 99999999999999d" means "ever": a window longer than any retention, held to what a
# datetime can subtract (an OverflowError was a 500 in the API and a traceback on the CLI).
MAX_SINCE_S = 100 * 366 * 86400.0

# outcome: (what happened, what it means)
_SAID = {
    "queued": ("queued", ""),
    "already_queued": ("already queued", "not queued twice"),
    "already_running": ("being analysed now", "not queued twice"),
    "not_found": ("no such call", ""),
    "purged": ("not re-run", ""),
}


@dataclass(frozen=True)
class Rerun:
    """What a re-run request did for one call."""

    call_id: int
    outcome: str  # queued | already_queued | already_running | not_found | purged
    job_id: int | None = None
    was: str | None = None  # the call's status before
    reason: str | None = None  # why not (purged)

    @property
    def queued(self) -> bool:
        return self.outcome == "queued"

    @property
    def message(self) -> str:
        head, tail = _SAID[self.outcome]
        job = f" (job {self.job_id})" if self.job_id is not None else ""
        return head + job + (f"; {tail}" if tail else "") + (f": {self.reason}" if self.reason else "")

    def line(self) -> str:
        return f"call {self.call_id}: {self.message}"

    def json(self) -> dict:
        return {"call_id": self.call_id, "outcome": self.outcome, "job_id": self.job_id,
                "was": self.was, "message": self.message}


def rerun_calls(sessions: sessionmaker[Session], jobs: JobQueue, call_ids: Iterable[int], by: str) -> list[Rerun]:
    """Queue each call again (each in its own short transaction); ``by``: who asked, for the log."""
    return [_one(sessions, jobs, call_id, by) for call_id in dict.fromkeys(call_ids)]


def rerun_failed(sessions: sessionmaker[Session], clock: Clock, jobs: JobQueue, since_s: float, by: str,
                 limit: int = MAX_AT_ONCE) -> tuple[list[Rerun], int]:
    """Re-run the calls that failed within the last ``since_s`` seconds (the oldest ``limit``
    of them); also how many more there are."""
    since_s = min(since_s, MAX_SINCE_S)
    with sessions() as s:
        ids = failed_call_ids(s, clock.now(s) - timedelta(seconds=since_s))
    log.info("re-run of the calls failed in the last %gs asked by %s: %d call(s)", since_s, by, len(ids))
    return rerun_calls(sessions, jobs, ids[:limit], by), max(0, len(ids) - limit)


def _one(sessions: sessionmaker[Session], jobs: JobQueue, call_id: int, by: str) -> Rerun:
    with sessions.begin() as s:
        call = s.get(Call, call_id)
        if call is None:
            done = Rerun(call_id, "not_found")
        elif purged := ((call.summary or {}).get("purged") or {}).get("event"):
            done = Rerun(call_id, "purged", was=call.status,
                         reason=f"retention removed its raw event and its recording link's query on {purged}; "
                                f"it cannot be fetched again as it came")
        else:
            was = call.status
            job, new = jobs.rerun(s, call_id)
            if not new:
                done = Rerun(call_id, "already_running" if job.status == "running" else "already_queued",
                             job.id, was)
            else:
                if was == "failed":  # being worked on again
                    call.status, call.error = "received", None
                done = Rerun(call_id, "queued", job.id, was)
    log.info("call %s re-run asked by %s: %s", call_id, by, done.message)
    return done


def counts(done: list[Rerun]) -> str:
    """One line: how many of each outcome, e.g. "3 queued, 1 already queued or running"."""
    n = {k: sum(r.outcome == k for r in done) for k in _SAID}
    parts = [f"{n['queued']} queued", f"{n['already_queued'] + n['already_running']} already queued or running"]
    if n["not_found"]:
        parts.append(f"{n['not_found']} not found")
    if n["purged"]:
        parts.append(f"{n['purged']} not re-run (retention)")
    return ", ".join(parts)
