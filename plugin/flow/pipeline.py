"""One analysis job: fetch -> decode -> segment -> infer (plugin/flow/recording.py),
judge, then one transaction that stores the results and plans deliveries
(plugin/flow/results.py).

Every stage is idempotent: re-running a job (after a crash, a lease expiry or a retry)
rewrites the same segment rows and adds no second alert or delivery; a worker that lost
its lease commits nothing. While a job runs its lease is renewed by a thread of its own
(plugin/flow/leases.py); a stopping process hands its running jobs back.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import requests
from sqlalchemy.orm import Session, sessionmaker

from connectors.sources import SOURCES, Source, SourceConfig

from plugin.audio.decode import DecodeError
from plugin.audio.fetch import FetchError
from plugin.config import Config
from plugin.core import files, metrics, scrub
from plugin.core.clock import Clock
from plugin.core.data import CallEvent, Download, Recording
from plugin.flow.analysis import listening
from plugin.flow.context import call_context
from plugin.flow.leases import HandedBack, JobLease, LeaseLost, NoLease, RunningJobs
from plugin.flow.outputs import Outputs
from plugin.flow.recording import analyze_recording
from plugin.flow.results import Judgement, store_results
from plugin.model.loading import ModelService, ModelUnavailable
from plugin.store.jobs import JobQueue
from plugin.store.tables import Call, Job
from rules.engine import RuleSet, evaluate

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, *, config: Config, sessions: sessionmaker[Session], clock: Clock, jobs: JobQueue,
                 model: ModelService, rules: Callable[[], RuleSet], outputs: Outputs, identity=None):
        self.config = config  # fetch, audio, worker.keep_recordings, model.retry_interval_s, data_dir
        self.sessions = sessions
        self.clock = clock
        self.jobs = jobs
        self.model = model
        self.rules = rules  # the rules in force now (hot-reloaded): read once per call
        self.outputs = outputs
        self.identity = identity  # looks up the customer id from the phone (plugin/flow/identity.py)
        self.running = RunningJobs()  # the jobs in flight here, handed back when the process stops

    def run_job(self, job_id: int, owner: str) -> None:
        """Process a claimed job and record its outcome."""
        with self.sessions() as s:
            job = s.get(Job, job_id)
            call_id, attempts = job.call_id, job.attempts
        try:
            self.analyze_call(call_id, job_id=job_id, owner=owner)
        except HandedBack:
            log.info("job %s (call %s): handed back (stopping); another worker takes it", job_id, call_id)
        except LeaseLost:
            log.warning("job %s (call %s): lease lost to another worker; abandoning this attempt", job_id, call_id)
        except DecodeError as exc:  # corrupt or not audio: retrying will not help (unless interrupted)
            self._fail(job_id, owner, call_id, str(exc), attempts, retryable=exc.retryable)
        except FetchError as exc:
            self._fail(job_id, owner, call_id, str(exc), attempts, retryable=exc.retryable)
        except ModelUnavailable as exc:
            # Not the call's fault: put it back until the model is there again.
            with self.sessions.begin() as s:
                self.jobs.fail(s, job_id, owner, str(exc), retry_in_s=self.config.model.retry_interval_s)
        except Exception as exc:
            log.exception("job %s (call %s) failed", job_id, call_id)
            self._fail(job_id, owner, call_id, f"{exc.__class__.__name__}: {exc}", attempts, retryable=True)

    def _fail(self, job_id: int, owner: str, call_id: int, error: str, attempts: int, retryable: bool) -> None:
        error = scrub.text(error)  # a fetch error quotes the recording URL, and its token
        delay = self.jobs.policy.next_try_in(attempts, retryable)
        with self.sessions.begin() as s:  # the job and its call fail together
            status = self.jobs.fail(s, job_id, owner, error, delay)
        if status is None:
            return  # our lease expired and another worker has the job now
        log.warning("call %s: %s (%s)", call_id, error, "will retry" if status == "queued" else "failed")
        metrics.CALLS.labels(outcome="retry" if status == "queued" else "failed").inc()

    def analyze_call(self, call_id: int, job_id: int | None = None, owner: str | None = None) -> None:
        model = self.model.get()  # raises ModelUnavailable before any work is done
        with self._lease(job_id, owner) as lease:  # renewed until the results are stored
            with requests.Session() as http:
                http.trust_env = False  # no proxy or .netrc from the environment: the config says where
                if self.identity is not None:
                    self.identity.resolve(call_id, http)  # the CRM's customer id from the phone number
                with self.sessions() as s:
                    call = s.get(Call, call_id)
                    ctx = call_context(call)  # what rules and templates see of the call
                    stored = stored_event(call)
                downloads = self._downloads(stored, http)
            lease.check()
            rules = self.rules()  # one version for listening, judging and routing, whatever a reload does
            listen = listening(self.model.speech.get(), self.config.asr, rules)
            heard = analyze_recording(call_id, downloads, stored.channel_roles, model, self.config, lease.check,
                                      listen)
            analysis, timings = heard.analysis, heard.timings
            # Stored in the call's summary: its messages say "trial" by the model that made its labels.
            heard.notes["model"] = model.provenance()
            if listen is None and self.config.asr.wanted:
                heard.notes["transcript"] = f"none: {self.model.speech.reason}"

            t = time.perf_counter()
            ctx["duration_s"] = analysis.duration
            scenario, alerts = evaluate(rules, analysis, ctx)
            timings["judge"] = time.perf_counter() - t

            # Results, verdict, alerts, deliveries and the job's completion commit together,
            # and only while we still hold the job.
            lease.check()
            t = time.perf_counter()
            with self.sessions.begin() as s:
                if job_id is not None and not self.jobs.finish(s, job_id, owner):
                    raise LeaseLost(job_id)
                call = s.get(Call, call_id)
                store_results(s, call, ctx, analysis, heard.notes, Judgement(scenario, alerts, rules),
                              self.outputs, self.clock.now(s))
                timings["store_and_plan"] = time.perf_counter() - t
                timings["received_to_analyzed"] = (call.analyzed_at - call.received_at).total_seconds()
                call.timings = {k: round(v, 4) for k, v in timings.items()}
        metrics.CALLS.labels(outcome="analyzed").inc()
        metrics.AUDIO_SECONDS.labels(outcome="classified").inc(heard.notes["classified_s"])
        metrics.AUDIO_SECONDS.labels(outcome="skipped").inc(heard.notes["skipped_s"])
        for stage, seconds in call.timings.items():
            metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        log.info("call %s analyzed: %s segments, emotion=%s, %d alert(s), scenario=%s",
                 call_id, len(analysis.segments), analysis.emotion, len(alerts), call.scenario)

    def _downloads(self, call: CallEvent, http: requests.Session) -> list[Download]:
        return downloads_for(self.config, call, http)

    @contextmanager
    def _lease(self, job_id: int | None, owner: str | None) -> Iterator[JobLease | NoLease]:
        if job_id is None:  # a call analysed outside the job queue
            yield NoLease()
            return
        with self.running.hold(self.jobs, job_id, owner) as lease:
            yield lease


def stored_event(call: Call) -> CallEvent:
    """A stored call as its source sees it again at download time."""
    roles = call.channel_roles
    return CallEvent(
        source=call.source, call_id=call.external_id, recording_url=call.recording_url,
        customer_id=call.customer_id, customer_phone=call.customer_phone, agent_id=call.agent_id,
        queue=call.queue, ticket_id=call.ticket_id,
        channel_roles={int(k): v for k, v in roles.items()} if roles else None,
        raw=call.event if isinstance(call.event, dict) else {},
        recordings=tuple(Recording(r["url"], r["role"], r.get("id")) for r in call.recordings or []))


def downloads_for(config: Config, call: CallEvent, http: requests.Session) -> list[Download]:
    """What to download, as the call's source says (a vendor API may be asked here). A
    call from a source no longer configured is fetched from its URL without credentials.
    An imported call is read from its copy, named by its content hash (its external id)."""
    if call.source == files.IMPORT_SOURCE:
        try:
            return [Download(call.recording_url, path=str(files.imported_copy(config.data_dir,
                                                                             call.call_id)))]
        except ValueError as exc:
            raise FetchError(f"import: {exc}", retryable=False) from None
    src, cfg = SOURCES.get(call.source), config.source(call.source)
    if src is None or cfg is None:
        return Source().downloads(call, SourceConfig(), http)
    try:
        return src.downloads(call, cfg, http)
    except (FetchError, LeaseLost, HandedBack):
        raise
    except Exception as exc:  # a vendor API's error; it says whether trying later helps
        raise FetchError(f"{call.source}: {exc}", retryable=bool(getattr(exc, "retryable", True))) from exc
