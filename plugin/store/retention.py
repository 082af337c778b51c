"""Retention: personal data older than the configured number of days is removed, kind by
kind (``retention:`` in the config). Run by the scheduler of the processes that send
deliveries (plugin/flow/runtime.py) and by `callmood purge [--dry-run]`.

What goes, and what stays so that the dashboard, the flagged list and backtests still work:

- raw events: ``Call.event`` (the payload as received) becomes ``{}``, the customer's
  phone number is cleared and the recording URL loses its query string and credentials
  (signed URLs carry tokens there). The call row, its verdict, summary, alerts and
  feedback stay. The call's ``summary["purged"]["event"]`` says when, for the call page.
  Only calls that are settled (analyzed or failed): a call still being worked on keeps
  the URL it is fetched from.
- segments: the per-window results of calls analysed before the cutoff are deleted, with
  their transcripts; in the same transaction the quotes their alerts keep (what was said
  when a rule fired, ``AlertRow.details["quotes"]``) go too, the alert rows staying. The
  call keeps its verdict, and ``summary["purged"]["segments"]`` says when. Backtests skip
  such calls (and count them as skipped).
- recordings: the copies ``worker.keep_recordings`` made (``<data_dir>/recordings/call-<id>``)
  of calls received before the cutoff, and copies whose call no longer exists; the same
  for the copies `callmood import` made (``<data_dir>/imports/<sha256>``), once their call
  is analysed or failed.
  Also, whatever a killed worker left in ``<data_dir>/tmp`` more than a day ago
  (by the files' own times), whatever the policy: it is never needed again.
- delivery bodies: the rendered payload of delivered and dead deliveries becomes ``{}``;
  their status, attempts and error stay. Pending deliveries are never touched.
- login failures: rows older than the cutoff are deleted.
- push ids: the vendors' push ids remembered to drop a retried push (webhook_pushes, and
  WeCom's verdict callbacks: wecom_callbacks) go after PUSH_IDS_DAYS, whatever the policy:
  a vendor retries within minutes, and one row per push must not pile up for ever. The
  rate-limit counts (sink_sends) go after a day.

Every time comes from the one clock, asked inside the transaction (the database's on
PostgreSQL). Rows go in chunks, each its own short transaction, so a first purge of a
large database never holds SQLite's write lock for long.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from plugin.core import files, scrub
from plugin.core.clock import Clock
from plugin.core.data import QUOTES_KEY
from plugin.store import phone_lookups
from plugin.store.tables import AlertRow, Call, Delivery, LoginFailure, Segment, SinkSend, WebhookPush, WeComCallback

CHUNK = 500
LEFTOVER_AGE_S = 24 * 3600  # work folders in <data_dir>/tmp older than this are a killed worker's
SETTLED_CALL = ("analyzed", "failed")
SETTLED_DELIVERY = ("delivered", "dead")
EMPTY = "{}"  # an emptied JSON column, as both databases store it
PUSH_IDS_DAYS = 7  # TCCC pushes a failed push again at most 3 times, within minutes

Sessions = sessionmaker[Session]


@dataclass(frozen=True)
class Policy:
    """Days each kind is kept; None or 0 keeps it forever."""

    raw_events_days: int | None = 30
    segments_days: int | None = 180
    recordings_days: int | None = 7
    delivery_bodies_days: int | None = 30
    login_failures_days: int | None = 7


@dataclass(frozen=True)
class Purged:
    """What one kind's purge removed (or, in a dry run, would remove)."""

    kind: str  # raw events | segments | recordings | delivery bodies | login failures
    days: int | None  # None: kept forever (nothing was looked at)
    cutoff: datetime | None
    count: int = 0
    noun: str = ""  # what count counts
    calls: int | None = None  # for segments: of how many calls
    leftovers: int = 0  # recordings: stale work folders in <data_dir>/tmp

    def line(self, dry_run: bool = False) -> str:
        """One line for `callmood purge`."""
        if self.kind == "phone lookups":  # kept as long as identity.cache_s says, not for days
            return (f"phone lookups: {self.count} cached CRM answer(s) "
                    f"{'would be deleted' if dry_run else 'deleted'} (past identity.cache_s / miss_cache_s)")
        if self.kind == "push ids":
            return (f"push ids: {self.count} remembered push id(s) {'would be deleted' if dry_run else 'deleted'} "
                    f"(older than {PUSH_IDS_DAYS} days)")
        if self.days is None:
            return f"{self.kind}: kept forever (retention.{_KEYS[self.kind]} is 0)"
        verb = _VERBS[self.kind][dry_run]
        what = f"{self.count} {self.noun}"
        if self.calls is not None:
            what += f" of {self.calls} call(s)"
        extra = f"; {self.leftovers} stale work folder(s) in tmp/" if self.leftovers else ""
        return (f"{self.kind}: {what} {verb} (older than {self.days} days: before "
                f"{self.cutoff:%Y-%m-%d %H:%M}Z){extra}")


_KEYS = {"raw events": "raw_events_days", "segments": "segments_days", "recordings": "recordings_days",
         "delivery bodies": "delivery_bodies_days", "login failures": "login_failures_days"}
_VERBS = {"raw events": ("cleared", "would be cleared"), "segments": ("deleted", "would be deleted"),
          "recordings": ("deleted", "would be deleted"), "delivery bodies": ("cleared", "would be cleared"),
          "login failures": ("deleted", "would be deleted")}


def purge(sessions: Sessions, clock: Clock, policy: Policy, data_dir: str | Path,
          dry_run: bool = False, stop: Callable[[], bool] | None = None,
          lookups_s: tuple[float, float] | None = None) -> list[Purged]:
    """Apply ``policy`` now; what each kind removed (or would remove), in a fixed order.

    ``stop()`` is asked between chunks: a process that is stopping does not wait for a
    long first purge (the next purge goes on where this one stopped)."""
    with sessions() as s:
        now = clock.now(s)
    stop = stop or (lambda: False)

    def kind(name: str, days: int | None, step: Step, noun: str) -> Purged:
        return _kind(sessions, name, days, now, dry_run, step, noun, stop)
    return [
        kind("raw events", policy.raw_events_days, _raw_events, "call(s)"),
        kind("segments", policy.segments_days, _segments, "segment(s)"),
        _recordings(sessions, policy.recordings_days, now, Path(data_dir), dry_run),
        kind("delivery bodies", policy.delivery_bodies_days, _delivery_bodies, "delivery body(ies)"),
        kind("login failures", policy.login_failures_days, _login_failures, "failed login(s)"),
        *([_phone_lookups(sessions, now, *lookups_s, dry_run, stop)] if lookups_s else []),
        _push_ids(sessions, now, dry_run, stop),
    ]


def _push_ids(sessions: Sessions, now: datetime, dry_run: bool, stop: Callable[[], bool]) -> Purged:
    """Ids remembered to drop a vendor's retried push: the webhooks' (webhook_pushes) and
    WeCom's verdict callbacks' (wecom_callbacks: their verdicts stay, as feedback). With
    them, the rate-limit counts older than a day (sink_sends: no window is that long)."""
    cutoff = now - timedelta(days=PUSH_IDS_DAYS)
    count = 0
    for table, at in ((WebhookPush, WebhookPush.received_at), (WeComCallback, WeComCallback.received_at)):
        if dry_run:
            with sessions() as s:
                count += s.scalar(select(func.count()).select_from(table).where(at < cutoff))
            continue
        count += _delete_older(sessions, table, at, cutoff, stop)
    if not dry_run:
        _delete_older(sessions, SinkSend, SinkSend.at, now - timedelta(days=1), stop)
    return Purged("push ids", None, cutoff, count)


def _delete_older(sessions: Sessions, table, at, cutoff: datetime, stop: Callable[[], bool]) -> int:
    count = 0
    while not stop():
        with sessions() as s:
            ids = s.execute(select(table.id).where(at < cutoff).order_by(table.id).limit(CHUNK)).scalars().all()
            if ids:
                s.execute(delete(table).where(table.id.in_(ids)))
                s.commit()
        count += len(ids)
        if len(ids) < CHUNK:
            break
    return count


def _phone_lookups(sessions: Sessions, now: datetime, hits_s: float, misses_s: float, dry_run: bool,
                   stop: Callable[[], bool]) -> Purged:
    """Cached CRM answers no lookup would use any more (identity.cache_s, miss_cache_s):
    a phone number and who it belongs to is personal data, kept no longer than it is useful."""
    if stop():
        return Purged("phone lookups", None, None)
    with sessions() as s:
        count = phone_lookups.purge_expired(s, now - timedelta(seconds=hits_s), now - timedelta(seconds=misses_s))
        if dry_run:
            s.rollback()
        else:
            s.commit()
    return Purged("phone lookups", None, None, count)


Step = Callable[[Session, datetime, datetime, bool], tuple[int, int]]


def _kind(sessions: Sessions, kind: str, days: int | None, now: datetime, dry_run: bool, step: Step,
          noun: str, stop: Callable[[], bool]) -> Purged:
    if not days:
        return Purged(kind, None, None)
    cutoff = now - timedelta(days=days)
    count = calls = 0
    while not stop():
        with sessions.begin() as s:
            done, of_calls = step(s, cutoff, now, dry_run)
        count += done
        calls += of_calls
        if dry_run or done < CHUNK:
            break
    return Purged(kind, days, cutoff, count, noun, calls if kind == "segments" else None)


# --- each kind: one chunk (or, dry, the whole count) ----------------------------------

def _raw_events(s: Session, cutoff: datetime, now: datetime, dry_run: bool) -> tuple[int, int]:
    where = (Call.received_at < cutoff, Call.status.in_(SETTLED_CALL),
             or_(cast(Call.event, String) != EMPTY, Call.customer_phone.is_not(None)))
    if dry_run:
        return s.execute(select(func.count(Call.id)).where(*where)).scalar_one(), 0
    calls = s.execute(select(Call).where(*where).order_by(Call.id).limit(CHUNK)).scalars().all()
    for c in calls:
        c.event = {}
        c.customer_phone = None
        c.recording_url = scrub.url(c.recording_url) or ""
        mark_purged(c, "event", now)
    return len(calls), 0


def _segments(s: Session, cutoff: datetime, now: datetime, dry_run: bool) -> tuple[int, int]:
    old = select(Call.id).where(Call.analyzed_at < cutoff)
    if dry_run:
        n, calls = s.execute(select(func.count(Segment.id), func.count(func.distinct(Segment.call_id)))
                             .where(Segment.call_id.in_(old))).one()
        return n, calls
    ids = s.execute(select(Segment.call_id).where(Segment.call_id.in_(old)).distinct()
                    .order_by(Segment.call_id).limit(CHUNK)).scalars().all()
    if not ids:
        return 0, 0
    n = s.execute(delete(Segment).where(Segment.call_id.in_(ids))).rowcount
    for c in s.execute(select(Call).where(Call.id.in_(ids))).scalars():
        mark_purged(c, "segments", now)
    drop_quotes(s, ids)
    # n >= len(ids): a full chunk of calls always asks for another round.
    return n, len(ids)


def drop_quotes(s: Session, call_ids: list[int]) -> int:
    """The quotes of these calls' alerts removed from their details (the words go with the
    segments they were cut from; the alert and its measures stay); how many alerts had some."""
    n = 0
    for alert in s.execute(select(AlertRow).where(AlertRow.call_id.in_(call_ids))).scalars():
        if isinstance(alert.details, dict) and QUOTES_KEY in alert.details:
            # A new dict: the JSON column does not see changes made inside the old one.
            alert.details = {k: v for k, v in alert.details.items() if k != QUOTES_KEY}
            n += 1
    return n


def _delivery_bodies(s: Session, cutoff: datetime, now: datetime, dry_run: bool) -> tuple[int, int]:
    where = (Delivery.status.in_(SETTLED_DELIVERY),
             func.coalesce(Delivery.delivered_at, Delivery.created_at) < cutoff,
             cast(Delivery.payload, String) != EMPTY)
    if dry_run:
        return s.execute(select(func.count(Delivery.id)).where(*where)).scalar_one(), 0
    ids = s.execute(select(Delivery.id).where(*where).order_by(Delivery.id).limit(CHUNK)).scalars().all()
    if ids:
        s.execute(update(Delivery).where(Delivery.id.in_(ids)).values(payload={}))
    return len(ids), 0


def _login_failures(s: Session, cutoff: datetime, now: datetime, dry_run: bool) -> tuple[int, int]:
    where = LoginFailure.at < cutoff
    if dry_run:
        return s.execute(select(func.count(LoginFailure.id)).where(where)).scalar_one(), 0
    ids = s.execute(select(LoginFailure.id).where(where).order_by(LoginFailure.id).limit(CHUNK)).scalars().all()
    if ids:
        s.execute(delete(LoginFailure).where(LoginFailure.id.in_(ids)))
    return len(ids), 0


def _recordings(sessions: Sessions, days: int | None, now: datetime, data_dir: Path, dry_run: bool) -> Purged:
    leftovers = _tmp_leftovers(data_dir / files.TMP, dry_run)
    if not days:
        return Purged("recordings", None, None, leftovers=leftovers)
    cutoff = now - timedelta(days=days)
    folder = data_dir / files.RECORDINGS
    copies = {}
    if folder.is_dir():
        for p in folder.iterdir():
            call_id = files.copied_call_id(p.name)
            if call_id is not None and p.is_file():
                copies[call_id] = p
    received: dict[int, datetime] = {}
    ids = sorted(copies)
    with sessions() as s:
        for i in range(0, len(ids), CHUNK):
            received.update(s.execute(select(Call.id, Call.received_at)
                                      .where(Call.id.in_(ids[i:i + CHUNK]))).tuples().all())
    # A copy whose call is gone (forgotten, say) is removed too.
    old = [p for call_id, p in copies.items() if call_id not in received or received[call_id] < cutoff]
    old += _imported(sessions, data_dir / files.IMPORTS, cutoff)
    if not dry_run:
        for p in old:
            p.unlink(missing_ok=True)
    return Purged("recordings", days, cutoff, len(old), "file(s)", leftovers=leftovers)


def _imported(sessions: Sessions, folder: Path, cutoff: datetime) -> list[Path]:
    """Copies `callmood import` made (<data_dir>/imports/<sha256>) of calls received before
    the cutoff and settled (a queued or retrying call still reads its copy), and copies
    whose call is gone, once older than a day by the file's own time (an import copies
    the file before it stores the call)."""
    copies = {p.name: p for p in folder.iterdir() if files.is_sha256(p.name) and p.is_file()} \
        if folder.is_dir() else {}
    names = sorted(copies)
    calls: dict[str, tuple[datetime, str]] = {}
    with sessions() as s:
        for i in range(0, len(names), CHUNK):
            calls.update((h, (at, status)) for h, at, status in s.execute(
                select(Call.external_id, Call.received_at, Call.status)
                .where(Call.source == files.IMPORT_SOURCE, Call.external_id.in_(names[i:i + CHUNK]))))
    orphan_before = time.time() - LEFTOVER_AGE_S
    # A killed import leaves its half-written copy (.<sha256>.<pid>.part) behind.
    parts = [p for p in folder.glob(".*.part") if _newest_mtime(p) < orphan_before] if folder.is_dir() else []
    return parts + [p for name, p in copies.items()
                    if (name in calls and calls[name][0] < cutoff and calls[name][1] in SETTLED_CALL)
                    or (name not in calls and _newest_mtime(p) < orphan_before)]


def _tmp_leftovers(tmp: Path, dry_run: bool) -> int:
    """Work folders a killed worker left behind. Ages are the files' own (this machine's
    clock, as the files are this machine's), and a day is far longer than any job."""
    if not tmp.is_dir():
        return 0
    limit = time.time() - LEFTOVER_AGE_S
    stale = [p for p in tmp.iterdir() if _newest_mtime(p) < limit]
    if not dry_run:
        for p in stale:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    return len(stale)


def _newest_mtime(p: Path) -> float:
    try:
        times = [p.stat().st_mtime]
        if p.is_dir():
            times += [c.stat().st_mtime for c in p.iterdir()]
        return max(times)
    except OSError:  # removed meanwhile by its own worker
        return time.time()


def mark_purged(call: Call, what: str, now: datetime) -> None:
    """Note on the call (its summary, which the API and the call page show) that ``what``
    was removed at ``now``."""
    summary: dict[str, Any] = dict(call.summary or {})
    summary["purged"] = {**summary.get("purged", {}), what: now.isoformat(timespec="seconds") + "Z"}
    call.summary = summary  # a new dict: JSON columns see assignments, not mutations
