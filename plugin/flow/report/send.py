"""The review report to WeCom robots: two stored deliveries per robot (the outbox: retried
until delivered or dead, counted by /health like every delivery), its markdown and its
chart image, for each sink under ``reports.<kind>.sinks``.

Exactly once per (kind, period, sink, part), whichever process or re-run gets there:
each delivery carries a unique ``dedupe_key`` ("report:daily:2026-11-24:wecom:markdown"),
so a second insert fails on the database's unique index and is taken as "already stored".
The report is not even built when every key is stored already.

The scheduler runs ``scheduled_report`` in the processes that run deliveries (cron,
plugin/flow/runtime.py); `callmood report --send` stores the same deliveries and sends
them at once with ``send_now`` (what it cannot send stays pending for the service).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import requests
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from connectors.sinks.wecom_robot import report_messages
from plugin.config import Config, ReportsConfig
from plugin.core.cron import TZ_PREFIX, cron_trigger
from plugin.flow.outbox import Outbox
from plugin.flow.outputs import Outputs
from plugin.flow.report import measures, render
from plugin.flow.report.period import Kind, Period, last_complete, zone, zone_name
from plugin.store.deliveries import DeliveryQueue
from plugin.store.tables import Delivery

log = logging.getLogger(__name__)

PARTS = ("markdown", "image")


def dedupe_key(period: Period, sink: str, part: str) -> str:
    return f"report:{period.kind}:{period.key}:{sink}:{part}"


@dataclass(frozen=True)
class ReportDelivery:
    """One delivery of the report: to which sink, which part, and where it stands."""

    sink: str
    part: str
    delivery_id: int
    new: bool  # stored by this run; False: stored before (another process, an earlier run)
    status: str
    last_error: str | None = None

    def line(self) -> str:
        said = {"delivered": "delivered", "dead": "dead", "pending": "pending (the service sends it)",
                "sending": "being sent"}.get(self.status, self.status)
        when = "" if self.new else "already stored, "
        why = f": {self.last_error}" if self.last_error and self.status != "delivered" else ""
        return f"{self.sink} {self.part}: {when}{said}{why} (delivery {self.delivery_id})"


def page_url(public_url: str, period: Period) -> str:
    return public_url.rstrip("/") + period.path


def build(cfg: Config, outputs: Outputs, period: Period) -> measures.Review:
    return measures.build(outputs.deliveries.sessions, period, cfg.reports, zone_name(period.tz))


class ReportError(Exception):
    """A report that cannot be stored for sending, in words."""


def incomplete(period: Period, now_utc: datetime) -> bool:
    """Whether ``period`` is not over at ``now_utc`` (naive UTC): its figures are only so far."""
    return now_utc < period.end


def store(cfg: Config, outputs: Outputs, period: Period, sinks: list[str]) -> list[ReportDelivery]:
    """Store the report's deliveries for ``sinks`` (what is stored already stays as it is);
    every one of them, new or not, with its state.

    Only a period that is over: its report goes out once, so a report of part of a day
    would take the place of the whole day's (ReportError)."""
    with outputs.deliveries.sessions() as s:
        now = outputs.deliveries.clock.now(s)
    if incomplete(period, now):
        ends = period.end.replace(tzinfo=timezone.utc).astimezone(period.tz)
        raise ReportError(f"the report of {period.key} can be sent once the period is over "
                          f"({ends:%Y-%m-%d %H:%M} {zone_name(period.tz)}); it goes out once, so a part "
                          f"of it would take the whole one's place")
    keys = {(sink, part): dedupe_key(period, sink, part) for sink in sinks for part in PARTS}
    missing = {k for k, key in keys.items() if key not in _existing(outputs, list(keys.values()))}
    new: set[str] = set()
    if missing:
        report = build(cfg, outputs, period)
        content = render.markdown(report, page_url(outputs.links.public_url, period), outputs.links.call,
                                  cfg.reports.min_calls)
        try:
            png = render.chart_png(report)
        except Exception:  # the words still go; the image is left unstored, so the next run draws it again
            log.exception("report %s: the chart could not be drawn; the image is sent by the next run",
                          period.key)
            png = None
        messages = dict(zip(PARTS, report_messages(content, png)))
        for sink in sinks:
            parts = [p for p in PARTS if (sink, p) in missing and messages.get(p) is not None]
            if parts and _insert(outputs, sink, {p: (keys[(sink, p)], messages[p]) for p in parts}):
                new.update(keys[(sink, p)] for p in parts)
    found = _existing(outputs, list(keys.values()))
    out = []
    for (sink, part), key in keys.items():
        if key in found:  # an image whose chart could not be drawn is not there
            delivery_id, status, error = found[key]
            out.append(ReportDelivery(sink, part, delivery_id, key in new, status, error))
    return out


def _existing(outputs: Outputs, keys: list[str]) -> dict[str, tuple[int, str, str | None]]:
    with outputs.deliveries.sessions() as s:
        rows = s.execute(select(Delivery.dedupe_key, Delivery.id, Delivery.status, Delivery.last_error)
                         .where(Delivery.dedupe_key.in_(keys))).all()
    return {k: (i, st, err) for k, i, st, err in rows}


def _insert(outputs: Outputs, sink: str, parts: dict[str, tuple[str, dict]]) -> bool:
    """One robot's parts in one transaction; False when another run stored them first."""
    try:
        with outputs.deliveries.sessions.begin() as s:
            for part, (key, payload) in parts.items():
                d = outputs.deliveries.add(s, sink, payload)
                d.dedupe_key = key
        return True
    except IntegrityError:  # the unique dedupe_key: stored by another process meanwhile
        return False


def deliver(cfg: Config, outputs: Outputs, period: Period) -> list[ReportDelivery]:
    """Store the report of ``period`` for the sinks of its kind (none configured: nothing)."""
    return store(cfg, outputs, period, list(getattr(cfg.reports, period.kind).sinks))


def scheduled_report(cfg: Config, outputs: Outputs, kind: Kind) -> None:
    """The scheduler's job: the period before now (yesterday, last week) in reports.timezone,
    stored for the outbox; a run that finds it stored already does nothing."""
    try:
        tz = zone(cfg.reports.timezone)
        with outputs.deliveries.sessions() as s:
            now = outputs.deliveries.clock.now(s)
        period = last_complete(kind, now, tz)
        stored = deliver(cfg, outputs, period)
        fresh = [x for x in stored if x.new]
        if fresh:
            log.info("report %s %s: %d delivery(ies) stored: %s", kind, period.key, len(fresh),
                     ", ".join(f"{x.sink} {x.part}" for x in fresh))
    except Exception:
        log.exception("report %s: could not be built or stored; the next scheduled run tries again", kind)


def catch_up(cfg: Config, outputs: Outputs, kind: Kind, trigger: CronTrigger) -> None:
    """At a process's start: the last complete period's report, if its scheduled time has
    passed and it is not stored (the service was down or restarting at that time: the
    scheduler keeps no memory of a missed run). Older periods are not caught up: a service
    down for days sends one report, not a backlog of them."""
    try:
        tz = zone(cfg.reports.timezone)
        with outputs.deliveries.sessions() as s:
            now = outputs.deliveries.clock.now(s)
        period = last_complete(kind, now, tz)
        due = trigger.get_next_fire_time(None, period.end.replace(tzinfo=timezone.utc))
        if due is not None and due <= now.replace(tzinfo=timezone.utc):
            scheduled_report(cfg, outputs, kind)
    except Exception:
        log.exception("report %s: could not catch up; the next scheduled run sends its own period", kind)


def report_trigger(reports: ReportsConfig, kind: Kind) -> CronTrigger | None:
    """When ``kind`` goes out: its schedule, read in reports.timezone unless it names its
    own zone (CRON_TZ=); None without a schedule or a sink."""
    section = getattr(reports, kind)
    if not section.schedule or not section.sinks:
        return None
    text = section.schedule.strip()
    if reports.timezone and not text.startswith(TZ_PREFIX):
        text = f"{TZ_PREFIX}{reports.timezone} {text}"
    return cron_trigger(text)


# --- sending now (`callmood report --send`) ----------------------------------------------

class _These(DeliveryQueue):
    """The delivery queue, claiming only the given deliveries (a command sends its own
    report, not the backlog it happens to find), each at most once."""

    def __init__(self, queue: DeliveryQueue, ids: list[int]):
        super().__init__(queue.sessions, queue.clock, queue.lease_s, queue.policy)
        self.ids = list(ids)

    def claim(self, owner: str, lease_s: float | None = None) -> int | None:
        lease = timedelta(seconds=self.lease_s if lease_s is None else lease_s)
        while self.ids:
            delivery_id = self.ids.pop(0)
            with self.sessions.begin() as s:
                now = self.clock.now(s)
                taken = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending",
                                                         Delivery.next_attempt_at <= now)
                                  .values(status="sending", attempts=Delivery.attempts + 1, lease_owner=owner,
                                          lease_expires_at=now + lease)).rowcount
            if taken == 1:
                return delivery_id
        return None


def send_now(cfg: Config, outputs: Outputs, stored: list[ReportDelivery], owner: str) -> list[ReportDelivery]:
    """Send the pending ones of ``stored`` through the outbox now, and the dead ones again
    (asked by hand, after the robot's key or the network was fixed: their stored bodies,
    with fresh attempts); each with its new state. Delivered ones are never sent twice."""
    dead = [x.delivery_id for x in stored if x.status == "dead"]
    if dead:
        with outputs.deliveries.sessions.begin() as s:
            now = outputs.deliveries.clock.now(s)
            s.execute(update(Delivery).where(Delivery.id.in_(dead), Delivery.status == "dead")
                      .values(status="pending", attempts=0, next_attempt_at=now))
        log.info("report: dead delivery(ies) %s queued again by hand", dead)
        stored = [replace(x, status="pending") if x.delivery_id in dead else x for x in stored]
    pending = [x.delivery_id for x in stored if x.status == "pending"]
    if pending:
        outbox = Outbox(_These(outputs.deliveries, pending), outputs.sinks, cfg.deliveries.timeout_s)
        with requests.Session() as http:
            http.trust_env = False  # as the service sends: no proxy from the environment
            outbox.drain(http, owner, limit=len(pending))
    with outputs.deliveries.sessions() as s:
        now = {d.id: d for d in s.execute(select(Delivery).where(
            Delivery.id.in_([x.delivery_id for x in stored]))).scalars()}
    return [ReportDelivery(x.sink, x.part, x.delivery_id, x.new, now[x.delivery_id].status,
                   now[x.delivery_id].last_error) for x in stored]
