"""The review report's numbers, read from the database into plain dataclasses that every
form (text, WeCom markdown, CSV, chart, HTML) renders.

Negative speech is counted in windows, from each call's stored summary
(``Call.summary["roles"][role]["label_counts"]``, kept after the retention policy purges
the segments): the customer's windows, or the mixed track's where a call has no customer
track (as the rules judge it). A group's share is its negative windows over its windows,
summed over its calls, so a long call weighs more than a short one (not a mean of shares).

A call belongs to the period it was received in (``Call.received_at``: the webhook, the
import), and so do its alerts: a re-run, or a backlog analysed after midnight, moves neither
to another day. A call counts as analysed once it has results (``analyzed_at``), failed while
it has none and its status says so.

Rows are read in one session and streamed (``yield_per``): a week of a busy queue is many
calls, and only the sums are kept.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from plugin.config import ReportsConfig
from plugin.core import trial
from plugin.core.data import SEVERITIES, severity_rank
from plugin.core.quote_text import first_quote
from plugin.flow.report.period import Period
from plugin.store.tables import AlertRow, Call, Feedback

STREAM = 500  # rows fetched at a time


@dataclass(frozen=True)
class Speech:
    """Windows of customer speech, and how many of them were negative."""

    negative: int = 0
    windows: int = 0

    def __add__(self, other: Speech) -> Speech:
        return Speech(self.negative + other.negative, self.windows + other.windows)

    @property
    def share(self) -> float | None:
        return self.negative / self.windows if self.windows else None


def change_pp(now: float | None, before: float | None) -> float | None:
    """The change of a share, in percentage points (None when either is unknown)."""
    return None if now is None or before is None else (now - before) * 100


@dataclass(frozen=True)
class ShareRow:
    """One queue, agent or scenario in this period and the previous one."""

    name: str | None  # None: calls without one ("(none)")
    calls: int
    speech: Speech
    prev_calls: int = 0
    prev_speech: Speech = Speech()
    others: bool = False  # the rows past reports.max_rows, summed

    @property
    def share(self) -> float | None:
        return self.speech.share

    @property
    def prev_share(self) -> float | None:
        return self.prev_speech.share

    @property
    def change_pp(self) -> float | None:
        return change_pp(self.share, self.prev_share)


@dataclass(frozen=True)
class Volume:
    """A period's calls: analysed, failed, their audio and their customer speech."""

    calls: int = 0
    failed: int = 0
    audio_s: float = 0.0
    speech: Speech = Speech()

    @property
    def audio_hours(self) -> float:
        return self.audio_s / 3600


@dataclass(frozen=True)
class Tally:
    """Alerts and supervisors' verdicts on them."""

    alerts: int = 0
    correct: int = 0
    false_alarms: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.alerts + other.alerts, self.correct + other.correct, self.false_alarms + other.false_alarms)

    @property
    def unlabelled(self) -> int:
        return self.alerts - self.correct - self.false_alarms

    @property
    def precision(self) -> float | None:
        """correct / (correct + false alarms); None without feedback."""
        judged = self.correct + self.false_alarms
        return self.correct / judged if judged else None


@dataclass(frozen=True)
class AlertGroup:
    """Alerts of one severity or one rule ("scenario/rule"), this period and the previous one."""

    name: str
    now: Tally
    prev: Tally = Tally()
    others: bool = False


@dataclass(frozen=True)
class FlaggedCustomer:
    """A red-flagged customer: alerts of the period, false alarms left out of the count."""

    customer_id: str
    alerts: int
    false_alarms: int
    worst: str
    last_summary: str
    last_call_id: int
    last_at: datetime
    # What was said when the latest alert fired (its first quote: start, end, role, text), if anything.
    last_quote: dict | None = None
    last_alert_id: int | None = None


@dataclass(frozen=True)
class DayShare:
    day: date
    calls: int
    speech: Speech


@dataclass(frozen=True)
class Review:
    period: Period
    negative_emotions: tuple[str, ...]
    now: Volume
    prev: Volume
    queues: list[ShareRow]
    agents: list[ShareRow]
    scenarios: list[ShareRow]
    customers: list[FlaggedCustomer]
    severities: list[AlertGroup]
    rules: list[AlertGroup]
    alerts: AlertGroup  # every alert of the period
    days: list[DayShare] = field(default_factory=list)  # a weekly report's days
    trial: bool = False  # a call of the period was analysed by a trial model (random weights)
    zone: str = ""

    @property
    def previous(self) -> Period:
        return self.period.previous()


def build(sessions: sessionmaker[Session], period: Period, cfg: ReportsConfig, zone: str = "") -> Review:
    """The report of ``period``, read in one session."""
    negative = frozenset(cfg.negative_emotions)
    with sessions() as s:
        now, prev = _calls(s, period, negative), _calls(s, period.previous(), negative)
        alerts_now, alerts_prev = _alerts(s, period), _alerts(s, period.previous())
        customers = _with_quotes(s, _customers(alerts_now, cfg.top_customers))
    groups = {}
    for dim in ("queue", "agent", "scenario"):
        groups[dim] = _rows(now.groups[dim], prev.groups[dim], cfg.max_rows)
    days = [DayShare(d, *now.days.get(d, (0, Speech()))) for d in period.days] if period.kind == "weekly" else []
    return Review(
        period=period, negative_emotions=tuple(cfg.negative_emotions), now=now.volume, prev=prev.volume,
        queues=groups["queue"], agents=groups["agent"], scenarios=groups["scenario"],
        customers=customers,
        severities=_severities(alerts_now, alerts_prev),
        rules=_by_rule(alerts_now, alerts_prev, cfg.max_rows),
        alerts=AlertGroup("all", _tally(alerts_now), _tally(alerts_prev)),
        days=days, trial=now.trial, zone=zone)


# --- calls -------------------------------------------------------------------------------

@dataclass
class _Calls:
    volume: Volume
    groups: dict[str, dict[str | None, tuple[int, Speech]]]
    days: dict[date, tuple[int, Speech]]
    trial: bool


def call_speech(summary: Any, negative: frozenset[str]) -> Speech:
    """A call's customer speech from its stored summary: the customer's track, else the
    mixed one (as rules read it)."""
    roles = summary.get("roles") if isinstance(summary, dict) else None
    if not isinstance(roles, dict):
        return Speech()
    track = roles.get("customer")
    if not (isinstance(track, dict) and track.get("label_counts")):
        track = roles.get("mixed")
    counts = track.get("label_counts") if isinstance(track, dict) else None
    if not isinstance(counts, dict):
        return Speech()
    n = {str(k): v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}
    return Speech(sum(v for k, v in n.items() if k in negative), sum(n.values()))


def _calls(s: Session, period: Period, negative: frozenset[str]) -> _Calls:
    groups: dict[str, dict[str | None, list]] = {d: defaultdict(lambda: [0, Speech()])
                                                 for d in ("queue", "agent", "scenario")}
    days: dict[date, list] = defaultdict(lambda: [0, Speech()])
    calls, audio, total, was_trial = 0, 0.0, Speech(), False
    rows = s.execute(select(Call.received_at, Call.queue, Call.agent_id, Call.scenario, Call.duration_s,
                            Call.summary)
                     .where(Call.received_at >= period.start, Call.received_at < period.end,
                            Call.analyzed_at.is_not(None))
                     .execution_options(yield_per=STREAM))
    for at, queue, agent, scenario, duration, summary in rows:
        speech = call_speech(summary, negative)
        calls += 1
        audio += duration or 0.0
        total += speech
        was_trial = was_trial or trial.recorded(summary)
        for dim, name in (("queue", queue), ("agent", agent), ("scenario", scenario)):
            acc = groups[dim][name or None]
            acc[0] += 1
            acc[1] += speech
        day = days[period.local_day(at)]
        day[0] += 1
        day[1] += speech
    failed = s.execute(select(func.count(Call.id))
                       .where(Call.status == "failed", Call.analyzed_at.is_(None),
                              Call.received_at >= period.start, Call.received_at < period.end)).scalar_one()
    return _Calls(Volume(calls, failed, audio, total),
                  {d: {k: (v[0], v[1]) for k, v in g.items()} for d, g in groups.items()},
                  {k: (v[0], v[1]) for k, v in days.items()}, was_trial)


def _rows(now: dict[str | None, tuple[int, Speech]], prev: dict[str | None, tuple[int, Speech]],
          max_rows: int) -> list[ShareRow]:
    """Groups of this period by calls (most first), with their previous period; past
    ``max_rows`` the rest summed in one "others" row."""
    names = sorted(now, key=lambda k: (-now[k][0], k is None, k or ""))
    rows = [ShareRow(k, *now[k], *prev.get(k, (0, Speech()))) for k in names]
    if len(rows) <= max_rows:
        return rows
    rest = rows[max_rows:]
    others = ShareRow(None, sum(r.calls for r in rest), sum((r.speech for r in rest), Speech()),
                 sum(r.prev_calls for r in rest), sum((r.prev_speech for r in rest), Speech()), others=True)
    return rows[:max_rows] + [others]


# --- alerts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Alert:
    id: int
    call_id: int
    scenario: str
    rule: str
    severity: str
    customer_id: str | None
    summary: str
    created_at: datetime
    verdict: str | None  # correct | false_alarm | None (no feedback)


def _alerts(s: Session, period: Period) -> list[_Alert]:
    rows = s.execute(select(AlertRow.id, AlertRow.call_id, AlertRow.scenario, AlertRow.rule, AlertRow.severity,
                            AlertRow.customer_id, AlertRow.summary, AlertRow.created_at, Feedback.verdict)
                     .join(Call, Call.id == AlertRow.call_id)
                     .outerjoin(Feedback, Feedback.alert_id == AlertRow.id)
                     .where(Call.received_at >= period.start, Call.received_at < period.end)
                     .order_by(AlertRow.id).execution_options(yield_per=STREAM))
    return [_Alert(*r) for r in rows]


def _tally(alerts: Iterable[_Alert]) -> Tally:
    t = Tally()
    for a in alerts:
        t += Tally(1, int(a.verdict == "correct"), int(a.verdict == "false_alarm"))
    return t


def _severities(now: list[_Alert], prev: list[_Alert]) -> list[AlertGroup]:
    """Worst first; the three known severities always, others as they come."""
    names = list(reversed(SEVERITIES)) + sorted({a.severity for a in now + prev} - set(SEVERITIES))
    return [AlertGroup(n, _tally(a for a in now if a.severity == n), _tally(a for a in prev if a.severity == n))
            for n in names]


def _by_rule(now: list[_Alert], prev: list[_Alert], max_rows: int) -> list[AlertGroup]:
    def grouped(alerts: list[_Alert]) -> dict[str, list[_Alert]]:
        out: dict[str, list[_Alert]] = defaultdict(list)
        for a in alerts:
            out[f"{a.scenario}/{a.rule}"].append(a)
        return out

    g_now, g_prev = grouped(now), grouped(prev)
    names = sorted(g_now, key=lambda k: (-len(g_now[k]), k))
    rows = [AlertGroup(k, _tally(g_now[k]), _tally(g_prev.get(k, []))) for k in names]
    if len(rows) <= max_rows:
        return rows
    rest = rows[max_rows:]
    return rows[:max_rows] + [AlertGroup("others", sum((r.now for r in rest), Tally()),
                                         sum((r.prev for r in rest), Tally()), others=True)]


def _with_quotes(s: Session, customers: list[FlaggedCustomer]) -> list[FlaggedCustomer]:
    """The top customers with what was said when their latest alert fired: only those
    alerts' details are read, not every alert's of the period."""
    ids = [c.last_alert_id for c in customers]
    details = dict(s.execute(select(AlertRow.id, AlertRow.details).where(AlertRow.id.in_(ids))).all()) if ids else {}
    return [replace(c, last_quote=first_quote(details.get(c.last_alert_id))) for c in customers]


def _customers(alerts: list[_Alert], top: int) -> list[FlaggedCustomer]:
    """Customers by their alerts of the period (false alarms not counted), worst first."""
    mine: dict[str, list[_Alert]] = defaultdict(list)
    for a in alerts:
        if a.customer_id:
            mine[a.customer_id].append(a)
    out = []
    for customer_id, theirs in mine.items():
        counted = [a for a in theirs if a.verdict != "false_alarm"]
        if not counted:  # every alert judged a false alarm: not red-flagged
            continue
        last = max(counted, key=lambda a: (a.created_at, a.id))
        worst = max(counted, key=lambda a: severity_rank(a.severity)).severity
        out.append(FlaggedCustomer(customer_id, len(counted), len(theirs) - len(counted), worst, last.summary,
                                   last.call_id, last.created_at, last_alert_id=last.id))
    out.sort(key=lambda c: (-c.alerts, -severity_rank(c.worst), -c.last_at.timestamp(), c.customer_id))
    return out[:top]
