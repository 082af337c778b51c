"""Reconcile missed pushes: list a vendor's recent recordings and store what is missing.

A vendor that could not reach us (our outage, its outage, a webhook it disabled) does
not push again. Its API still lists the recordings: each is taken as if pushed, through
the same intake, so a call already here stays one call. `callmood sync SOURCE --since 1d`
runs it by hand; ``sources.<name>.sync_interval_s`` on a schedule in every worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import requests

from connectors.sources import SOURCES
from plugin.config import Config
from plugin.core import metrics, scrub
from plugin.flow.intake import Intake

log = logging.getLogger(__name__)


class SyncError(Exception):
    """The source cannot be reconciled (unknown, disabled, cannot list, not configured)."""


@dataclass
class SyncReport:
    source: str
    since: datetime
    until: datetime
    listed: int = 0  # recordings the vendor listed
    new: int = 0  # calls (or participants' files) stored now
    already: int = 0  # already here
    ignored: dict[str, int] = field(default_factory=dict)  # not finished recordings, by reason

    def line(self) -> str:
        ignored = sum(self.ignored.values())
        return (f"{self.source}: {self.listed} recording(s) listed from {self.since:%Y-%m-%d %H:%M} to "
                f"{self.until:%Y-%m-%d %H:%M} UTC; {self.new} new, {self.already} already here"
                + (f", {ignored} ignored" if ignored else ""))


def sync_source(config: Config, intake: Intake, name: str, since_s: float,
                http: requests.Session | None = None, now: datetime | None = None) -> SyncReport:
    """Store the calls ``name`` finished in the last ``since_s`` seconds that are missing."""
    src, cfg = SOURCES.get(name), config.source(name)
    if src is None or cfg is None:
        raise SyncError(f"unknown source {name!r}; sources: {', '.join(sorted(SOURCES))}")
    if not cfg.enabled:
        raise SyncError(f"source {name!r} is disabled (sources.{name}.enabled)")
    if not src.can_sync:
        able = sorted(n for n, s in SOURCES.items() if s.can_sync)
        raise SyncError(f"source {name!r} cannot list its recordings; these can: {', '.join(able)}")
    until = now or datetime.now(timezone.utc).replace(tzinfo=None)
    report = SyncReport(name, until - timedelta(seconds=since_s), until)
    own = http is None
    http = http or requests.Session()
    if own:
        http.trust_env = False
    try:
        for received in src.sync(cfg, http, report.since, report.until):
            report.listed += max(len(received.events), 1 if received.ignored else 0)
            for reason in received.ignored:
                report.ignored[reason] = report.ignored.get(reason, 0) + 1
            for a in intake.take(name, received) or []:
                if a.duplicate:
                    report.already += 1
                else:
                    report.new += 1
    finally:
        if own:
            http.close()
    metrics.SYNCED.labels(source=name, outcome="new").inc(report.new)
    metrics.SYNCED.labels(source=name, outcome="already").inc(report.already)
    return report


def scheduled_sync(config: Config, intake: Intake, name: str) -> None:
    """One scheduled run; errors are logged (scrubbed), and the next run tries again."""
    cfg = config.source(name)
    try:
        report = sync_source(config, intake, name, cfg.sync_lookback_s)
    except Exception as exc:
        log.warning("sync %s failed: %s", name, scrub.text(f"{exc.__class__.__name__}: {exc}"))
        return
    if report.new:
        log.info("sync %s", report.line())
