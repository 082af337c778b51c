"""Background work inside a process: model loading, the worker, the delivery loop.

`callmood serve` runs all three beside the web app (the embedded default);
`callmood worker` runs them without it, on as many machines as needed.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
import socket
import threading

import requests
from apscheduler.schedulers.background import BackgroundScheduler

from plugin import notify, outbox, queue
from plugin.pipeline import run_job
from plugin.services import Services

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, svc: Services, worker: bool = True, deliveries: bool = True):
        self.svc = svc
        self.run_worker = worker
        self.run_deliveries = deliveries
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http = requests.Session()
        self._http.trust_env = False
        self.scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    def start(self) -> Runtime:
        cfg = self.svc.config
        self.scheduler.add_job(self._load_model, "interval", id="load_model",
                               seconds=cfg.model.retry_interval_s, next_run_time=datetime.now(timezone.utc))
        if cfg.rules.reload_interval_s:
            self.scheduler.add_job(self._reload_rules, "interval", id="reload_rules",
                                   seconds=cfg.rules.reload_interval_s)
        if self.run_deliveries:
            self.scheduler.add_job(self._deliver, "interval", id="deliveries",
                                   seconds=cfg.deliveries.poll_interval_s)
            # Notifications whose time has come (group_wait, quiet-hours digests) become deliveries.
            self.scheduler.add_job(self._flush_notifications, "interval", id="notifications",
                                   seconds=cfg.deliveries.poll_interval_s)
        self.scheduler.start()
        if self.run_worker:
            # Several calls in flight: while one is on the model, the others download,
            # decode and run the VAD, and their windows share the model's batches.
            for i in range(cfg.worker.concurrency):
                t = threading.Thread(target=self._work, name=f"callmood-worker-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.shutdown(wait=True)
        for t in self._threads:
            t.join(timeout=30)
        self._http.close()

    def _load_model(self) -> None:
        if self.svc.model.try_load():
            self.scheduler.remove_job("load_model")

    def _reload_rules(self) -> None:
        try:
            self.svc.rules_holder.reload_if_changed()
        except Exception:
            log.exception("rules reload error; the rules in force are unchanged")

    def _flush_notifications(self) -> None:
        try:
            notify.flush_pending(self.svc)
        except Exception:
            log.exception("notification flush error")

    def _deliver(self) -> None:
        try:
            outbox.drain(self.svc, self._http, self.owner)
        except Exception:
            log.exception("delivery loop error")

    def _work(self) -> None:
        cfg = self.svc.config.worker
        while not self._stop.is_set():
            if not self.svc.model.ready:
                # Jobs wait in the database until the model loads; nothing is lost.
                self._stop.wait(cfg.poll_interval_s)
                continue
            try:
                job_id = queue.claim_job(self.svc.sessions, self.owner, cfg.lease_s, cfg.max_attempts)
                if job_id is None:
                    self._stop.wait(cfg.poll_interval_s)
                    continue
                run_job(self.svc, job_id, self.owner)
            except Exception:
                # The database went away mid-job, say: the job's lease will expire and it
                # is taken again; this thread must live on to take it.
                log.exception("worker error; retrying in %.0fs", cfg.retry_backoff_s)
                self._stop.wait(min(cfg.retry_backoff_s, 30))

