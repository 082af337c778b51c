"""Background work inside a process: model loading, the worker, the delivery loop, and
the scheduler's periodic jobs (notifications due, edited rule files, reconciling sources,
the drop folder's import, the review report).

`callmood serve` runs all of it beside the web app (the embedded default);
`callmood worker` runs it without the web app, on as many machines as needed.
Build one with ``Services.runtime()``.

Stopping takes a bounded time: no new work is taken, what is in flight gets
``worker.stop_grace_s`` to finish, and the jobs and deliveries still running then are
handed back (due again at once, for any process) rather than left to wait out a lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

import requests
from apscheduler.schedulers.background import BackgroundScheduler

from connectors.sources import SOURCES
from plugin.config import Config
from plugin.core.cron import cron_trigger
from plugin.flow.batch_import import scheduled_import
from plugin.flow.intake import Intake
from plugin.flow.outbox import Outbox
from plugin.flow.pipeline import Pipeline
from plugin.flow.report.send import catch_up, report_trigger, scheduled_report
from plugin.flow.rules_watch import RulesHolder
from plugin.flow.sync import scheduled_sync
from plugin.model.loading import ModelService
from plugin.store.jobs import JobQueue

log = logging.getLogger(__name__)

# A cron run that starts late (a busy scheduler, a suspended machine) still runs within this
# long; APScheduler's default (1 s) would drop the day's run. A process that was down at the
# time skips it: the files wait in the drop folder for the next run.
CRON_GRACE_S = 3600


class Runtime:
    def __init__(self, *, config: Config, model: ModelService, rules: RulesHolder, jobs: JobQueue,
                 pipeline: Pipeline, outbox: Outbox, flush_notifications: Callable[[], int],
                 purge: Callable[..., list] | None = None, worker: bool = True, deliveries: bool = True,
                 intake: Intake | None = None):
        self.config = config
        self.model = model
        self.rules = rules
        self.jobs = jobs
        self.pipeline = pipeline
        self.outbox = outbox
        self.flush_notifications = flush_notifications
        self.purge = purge  # the retention policy's purge (plugin/store/retention.py)
        self.intake = intake  # where scheduled syncs store what they find
        self.run_worker = worker
        self.run_deliveries = deliveries
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._stopping = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._http = requests.Session()
        self._http.trust_env = False
        self.scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    def start(self) -> Runtime:
        cfg = self.config
        # Its own thread, not the scheduler's: a hub download can take minutes to fail, and
        # stopping must not wait for it (the scheduler's stop waits for its running jobs).
        threading.Thread(target=self._load_model, name="callmood-model-loader", daemon=True).start()
        if cfg.rules.reload_interval_s:
            self.scheduler.add_job(self._reload_rules, "interval", id="reload_rules",
                                   seconds=cfg.rules.reload_interval_s)
        if self.run_deliveries:
            self.scheduler.add_job(self._deliver, "interval", id="deliveries",
                                   seconds=cfg.deliveries.poll_interval_s)
            # Notifications whose time has come (group_wait, quiet-hours digests) become deliveries.
            self.scheduler.add_job(self._flush_notifications, "interval", id="notifications",
                                   seconds=cfg.deliveries.poll_interval_s)
            # Retention: with the deliveries, so a deployment purges where it sends (every
            # `serve` and `worker` by default; purges running side by side do no harm).
            if self.purge is not None and cfg.retention.interval_s:
                self.scheduler.add_job(self._purge, "interval", id="purge", seconds=cfg.retention.interval_s)
            # The daily and weekly review report, stored once for the outbox (plugin/flow/report/send.py).
            for kind in ("daily", "weekly"):
                trigger = report_trigger(cfg.reports, kind)
                if trigger is not None:
                    self.scheduler.add_job(scheduled_report, trigger, id=f"report_{kind}",
                                           args=(cfg, self.pipeline.outputs, kind), misfire_grace_time=CRON_GRACE_S)
                    # A run missed while this process was down (a deploy across 08:00), once, now.
                    self.scheduler.add_job(catch_up, "date", id=f"report_{kind}_catch_up",
                                           args=(cfg, self.pipeline.outputs, kind, trigger),
                                           misfire_grace_time=CRON_GRACE_S)
        if self.run_worker and self.intake is not None:
            # Reconcile missed pushes where the operator asked for it (plugin/flow/sync.py).
            for name, src in SOURCES.items():
                scfg = cfg.source(name)
                if src.can_sync and scfg.enabled and scfg.sync_interval_s:
                    self.scheduler.add_job(scheduled_sync, "interval", id=f"sync_{name}",
                                           seconds=scfg.sync_interval_s, args=(cfg, self.intake, name))
                elif src.can_sync and scfg.enabled and scfg.sync_schedule:  # at set times (cron)
                    self.scheduler.add_job(scheduled_sync, cron_trigger(scfg.sync_schedule), id=f"sync_{name}",
                                           args=(cfg, self.intake, name), misfire_grace_time=CRON_GRACE_S)
            # The drop folder of the day's recordings (plugin/flow/batch_import.py).
            if cfg.imports.folder and cfg.imports.schedule:
                self.scheduler.add_job(scheduled_import, cron_trigger(cfg.imports.schedule), id="import",
                                       args=(cfg, self.intake), misfire_grace_time=CRON_GRACE_S)
        self.scheduler.start()
        if self.run_worker:
            # Several calls in flight: while one is on the model, the others download,
            # decode and run the VAD, and their windows share the model's batches.
            for i in range(cfg.worker.concurrency):
                t = threading.Thread(target=self._work, name=f"callmood-worker-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, grace_s: float | None = None) -> None:
        """Take no more work; give the jobs and deliveries in flight ``grace_s`` (default
        ``worker.stop_grace_s``) to finish, then hand back the rest."""
        grace = self.config.worker.stop_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        self.stop_taking_work()
        log.info("stopping: %d call(s) and %d delivery(ies) in flight get %gs to finish",
                 len(self.pipeline.running.ids()), len(self.outbox.sending()), grace)
        while (self.pipeline.running.ids() or self.outbox.sending()) and time.monotonic() < deadline:
            time.sleep(0.05)
        jobs, sends = self.pipeline.running.hand_back_all(), self.outbox.hand_back_all()
        if jobs or sends:
            log.warning("stopping: handed back job(s) %s and delivery(ies) %s still running after %gs "
                        "(worker.stop_grace_s); any worker takes them now", jobs or "none", sends or "none", grace)
        # Handed-back jobs stop at their next checkpoint; the process need not wait for that.
        until = time.monotonic() + 2
        for t in self._threads:
            t.join(timeout=max(0.0, until - time.monotonic()))
        self._http.close()

    def stop_taking_work(self) -> None:
        """Claim no more jobs or deliveries (what is in flight goes on); safe from any thread."""
        self._stop.set()
        with self._stopping:
            if self.scheduler.running:
                # Not waiting for the jobs it runs: a send in flight gets the grace in stop(),
                # and a purge or a rules reload is safe to cut short (its transaction rolls back).
                self.scheduler.shutdown(wait=False)

    def _load_model(self) -> None:
        """Until the model is loaded: try, then wait ``model.retry_interval_s``. Then the
        same for the speech model (``asr.retry_interval_s``), if asr is on."""
        while not self._stop.is_set() and not self.model.try_load():
            self._stop.wait(self.config.model.retry_interval_s)
        while not self._stop.is_set() and not self.model.try_load_speech():
            self._stop.wait(self.config.asr.retry_interval_s)

    def _reload_rules(self) -> None:
        try:
            self.rules.reload_if_changed()
        except Exception:
            log.exception("rules reload error; the rules in force are unchanged")

    def _flush_notifications(self) -> None:
        try:
            self.flush_notifications()
        except Exception:
            log.exception("notification flush error")

    def _purge(self) -> None:
        try:
            for kind in self.purge(stop=self._stop.is_set):
                if kind.count or kind.leftovers:
                    log.info("retention: %s", kind.line())
        except Exception:
            log.exception("retention purge error; trying again in %.0fs", self.config.retention.interval_s)

    def _deliver(self) -> None:
        try:
            self.outbox.drain(self._http, self.owner, stop=self._stop)
        except Exception:
            log.exception("delivery loop error")

    def _work(self) -> None:
        cfg = self.config.worker
        while not self._stop.is_set():
            if not self.model.settled:
                # Jobs wait in the database until the model loads (and the speech model
                # is loaded or was tried once); nothing is lost.
                self._stop.wait(cfg.poll_interval_s)
                continue
            try:
                job_id = self.jobs.claim(self.owner)
                if job_id is None:
                    self._stop.wait(cfg.poll_interval_s)
                    continue
                self.pipeline.run_job(job_id, self.owner)
            except Exception:
                # The database went away mid-job, say: the job's lease will expire and it
                # is taken again; this thread must live on to take it.
                log.exception("worker error; retrying in %.0fs", cfg.retry_backoff_s)
                self._stop.wait(min(cfg.retry_backoff_s, 30))
