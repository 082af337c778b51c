"""`callmood rules backtest`: replay stored segment results through candidate rules.

No model run: every analysed call keeps its segment results (label, confidence, scores
per window, and what was said where it was transcribed: rules with says: replay too), so
judging them again with other rules is cheap. The report says, per rule,
on how many calls it fires with the rules in force and with the candidate, which calls
change, and, where supervisors marked alerts as correct or false alarm
(``POST /api/alerts/<id>/feedback``), the precision of each.

Two parts: reading calls from the database in chunks (``read_calls``) and the
comparison over plain data (``compare`` and ``format_report``), testable without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from plugin.core.clock import Clock
from plugin.core.data import CallAnalysis, SegmentResult, summarize
from plugin.flow.context import call_context
from plugin.store.tables import SEGMENT_COLUMNS, AlertRow, Call, Feedback, Segment, segment_result
from rules.engine import RuleSet, evaluate, load_rules
from rules.yamlfile import parse_duration

# Calls read per query (their segments and alerts come in one query each), so a month of
# calls never sits in memory at once.
CALLS_PER_QUERY = 500

CORRECT, FALSE_ALARM = "correct", "false_alarm"
NO_FEEDBACK = "—"


def rule_key(scenario: str, rule: str) -> str:
    return f"{scenario}/{rule}"


@dataclass
class ReplayedCall:
    """One stored call, as the backtest needs it."""

    id: int
    external_id: str
    customer_id: str | None
    segments: list[SegmentResult]
    duration: float
    context: dict[str, Any]  # plugin.flow.context.call_context, with duration_s set
    scenario: str | None = None  # the scenario stored when it was analysed
    stored: set[str] = field(default_factory=set)  # rule keys of its stored alerts
    feedback: dict[str, str] = field(default_factory=dict)  # rule key -> correct | false_alarm

    def analysis(self) -> CallAnalysis:
        return summarize(self.segments, self.duration)


@dataclass
class CallInfo:
    id: int
    external_id: str
    customer_id: str | None


@dataclass
class RuleStats:
    key: str
    before: set[int] = field(default_factory=set)  # call ids it fires on, before / after
    after: set[int] = field(default_factory=set)
    verdicts: dict[int, str] = field(default_factory=dict)  # call id -> feedback on its stored alert

    @property
    def added(self) -> list[int]:
        return sorted(self.after - self.before)

    @property
    def removed(self) -> list[int]:
        return sorted(self.before - self.after)

    def precision(self, fired: set[int]) -> tuple[int, int]:
        """(correct, labelled) over the feedback-labelled calls in ``fired``."""
        labelled = [v for c, v in self.verdicts.items() if c in fired]
        return sum(v == CORRECT for v in labelled), len(labelled)

    @property
    def lost_confirmed(self) -> list[int]:
        """Calls marked correct that fired before and no longer do."""
        return [c for c in self.removed if self.verdicts.get(c) == CORRECT]

    @property
    def avoided_false_alarms(self) -> list[int]:
        return [c for c in self.removed if self.verdicts.get(c) == FALSE_ALARM]


@dataclass
class Report:
    before_label: str  # "now" (the rules in force, replayed) or "stored" (the alerts in the database)
    after_label: str  # "candidate" or "now"
    rules: dict[str, RuleStats] = field(default_factory=dict)
    calls: dict[int, CallInfo] = field(default_factory=dict)  # the calls that changed
    replayed: int = 0
    skipped: int = 0  # no stored segments
    failed: list[tuple[int, str]] = field(default_factory=list)  # (call id, error) the rules raised on
    changed_calls: int = 0  # calls whose fired rules differ
    changed_scenario: int = 0
    drift: int = 0  # candidate mode: calls where the rules in force replay differently from what is stored
    since: str = ""
    cutoff: datetime | None = None
    current_path: str = ""
    candidate_path: str = ""

    def stats(self, key: str) -> RuleStats:
        if key not in self.rules:
            self.rules[key] = RuleStats(key)
        return self.rules[key]


def _rule_keys(ruleset: RuleSet) -> list[str]:
    return [rule_key(s.scenario, r.name) for s in ruleset.scenarios for r in s.rules]


def _judge(ruleset: RuleSet, analysis: CallAnalysis, ctx: dict) -> tuple[str | None, set[str]]:
    scenario, alerts = evaluate(ruleset, analysis, dict(ctx))
    return (scenario.scenario if scenario else None), {rule_key(a.scenario, a.rule) for a in alerts}


def compare(calls: Iterable[ReplayedCall], current: RuleSet, candidate: RuleSet | None = None) -> Report:
    """Judge every call with ``current`` and ``candidate`` and count the differences.

    Without a candidate, the rules in force are compared with the alerts stored when the
    calls were analysed (they differ where the rules changed since). ``calls`` is consumed
    once, lazily: only the ids of calls that fire and change are kept."""
    report = Report("now", "candidate") if candidate is not None else Report("stored", "now")
    for key in _rule_keys(current) + (_rule_keys(candidate) if candidate is not None else []):
        report.stats(key)
    for call in calls:
        if not call.segments:
            report.skipped += 1
            continue
        analysis = call.analysis()
        try:
            now_scenario, now_fired = _judge(current, analysis, call.context)
            if candidate is not None:
                cand_scenario, cand_fired = _judge(candidate, analysis, call.context)
        except Exception as exc:  # e.g. a summary template that fails on this call's data
            report.failed.append((call.id, f"{exc.__class__.__name__}: {exc}"))
            continue
        report.replayed += 1
        if candidate is not None:
            before, after = now_fired, cand_fired
            before_scenario, after_scenario = now_scenario, cand_scenario
            report.drift += now_fired != call.stored
        else:
            before, after = call.stored, now_fired
            before_scenario, after_scenario = call.scenario, now_scenario
        for key in before:
            report.stats(key).before.add(call.id)
        for key in after:
            report.stats(key).after.add(call.id)
        for key, verdict in call.feedback.items():
            report.stats(key).verdicts[call.id] = verdict
        if before != after:
            report.changed_calls += 1
            report.calls[call.id] = CallInfo(call.id, call.external_id, call.customer_id)
        report.changed_scenario += before_scenario != after_scenario
    return report


# --- the text report -----------------------------------------------------------------

def _precision(correct: int, labelled: int) -> str:
    return f"{round(100 * correct / labelled)}% ({correct}/{labelled})" if labelled else NO_FEEDBACK


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def format_report(report: Report, limit: int = 20) -> str:
    b, a = report.before_label, report.after_label
    lines: list[str] = []
    if report.cutoff is not None:
        lines.append(f"Calls analysed since {report.cutoff.isoformat(timespec='seconds')}Z "
                     f"(--since {report.since}): {report.replayed} replayed"
                     + (f", {report.skipped} skipped (no stored segments)" if report.skipped else "")
                     + (f", {len(report.failed)} could not be judged" if report.failed else "") + ".")
    if b == "now":
        lines.append(f"now: the rules in force ({report.current_path}), replayed; "
                     f"candidate: {report.candidate_path}")
    else:
        lines.append(f"stored: the alerts stored when the calls were analysed; "
                     f"now: the rules in force ({report.current_path}), replayed")
    lines.append("")

    header = ["rule", b, a, "+", "-", f"precision {b}", f"precision {a}", "labelled",
              "lost confirmed", "false alarms avoided"]
    rows = [header]
    for key in sorted(report.rules):
        st = report.rules[key]
        rows.append([key, str(len(st.before)), str(len(st.after)), f"+{len(st.added)}",
                     f"-{len(st.removed)}",
                     _precision(*st.precision(st.before)), _precision(*st.precision(st.after)),
                     str(len(st.verdicts)), str(len(st.lost_confirmed)), str(len(st.avoided_false_alarms))])
    if len(rows) == 1:
        lines.append("(no rules)")
    else:
        lines += _table(rows, right=set(range(1, len(header))))
    lines.append("")
    lines.append(f"precision = alerts marked correct / alerts marked correct or false alarm, over the "
                 f"labelled calls each side fires on; {NO_FEEDBACK} = no feedback there.")
    lines.append(f"{report.changed_calls} call(s) change their alerts; "
                 f"{report.changed_scenario} change scenario.")
    if b == "now" and report.drift:
        lines.append(f"{report.drift} call(s) where the rules in force no longer give the stored alerts "
                     f"(the rules changed since they were analysed).")
    for call_id, error in report.failed[:5]:
        lines.append(f"call {call_id}: could not be judged: {error}")
    if len(report.failed) > 5:
        lines.append(f"... and {len(report.failed) - 5} more that could not be judged")

    changed = [st for _, st in sorted(report.rules.items()) if st.added or st.removed]
    if changed:
        lines.append("")
        lines.append(f"Changed calls ({b} → {a}; up to {limit} per rule):")
    for st in changed:
        lines.append(f"{st.key}  +{len(st.added)} -{len(st.removed)}")
        entries = [("+", c) for c in st.added] + [("-", c) for c in st.removed]
        rows = []
        for sign, call_id in entries[:max(limit, 0)]:
            info = report.calls.get(call_id) or CallInfo(call_id, "?", None)
            verdict = st.verdicts.get(call_id)
            note = ""
            if verdict:
                note = "marked " + ("correct" if verdict == CORRECT else "false alarm")
                if sign == "-":
                    note += " (lost)" if verdict == CORRECT else " (avoided)"
            rows.append([f"  {sign}", f"call {call_id}", info.external_id,
                         info.customer_id or "-", note])
        if rows:
            lines += _table(rows, right=set())
        if len(entries) > len(rows):
            lines.append(f"  ... and {len(entries) - len(rows)} more")
    return "\n".join(lines)


# --- reading stored calls ---------------------------------------------------------------

def read_calls(sessions: sessionmaker[Session], cutoff: datetime, chunk: int | None = None) -> Iterator[ReplayedCall]:
    """Analysed calls since ``cutoff``, oldest id first, ``chunk`` calls per query.

    Each chunk reads its calls, their segments and their alerts with feedback in one
    query each, in a short session."""
    chunk = chunk or CALLS_PER_QUERY
    last_id = 0
    while True:
        with sessions() as s:
            calls = s.execute(
                select(Call).where(Call.status == "analyzed", Call.analyzed_at >= cutoff,
                                   Call.id > last_id)
                .order_by(Call.id).limit(chunk)).scalars().all()
            if not calls:
                return
            ids = [c.id for c in calls]
            last_id = ids[-1]
            segments: dict[int, list[SegmentResult]] = {i: [] for i in ids}
            for row in s.execute(
                    select(Segment.call_id, *SEGMENT_COLUMNS)
                    .where(Segment.call_id.in_(ids))
                    .order_by(Segment.call_id, Segment.channel, Segment.start)):
                segments[row.call_id].append(segment_result(row))
            stored: dict[int, set[str]] = {i: set() for i in ids}
            feedback: dict[int, dict[str, str]] = {i: {} for i in ids}
            for row in s.execute(
                    select(AlertRow.call_id, AlertRow.scenario, AlertRow.rule, Feedback.verdict)
                    .outerjoin(Feedback, Feedback.alert_id == AlertRow.id)
                    .where(AlertRow.call_id.in_(ids))):
                key = rule_key(row.scenario, row.rule)
                stored[row.call_id].add(key)
                if row.verdict in (CORRECT, FALSE_ALARM):
                    feedback[row.call_id][key] = row.verdict
            out = []
            for c in calls:
                segs = segments[c.id]
                duration = c.duration_s if c.duration_s is not None else max((x.end for x in segs), default=0.0)
                ctx = call_context(c)
                ctx["duration_s"] = duration
                out.append(ReplayedCall(c.id, c.external_id, c.customer_id, segs, duration, ctx,
                                        c.scenario, stored[c.id], feedback[c.id]))
        yield from out


def run_backtest(sessions: sessionmaker[Session], clock: Clock, current: RuleSet, candidate_path: str | None,
                 since: str, limit: int = 20, known_sinks: set[str] | None = None) -> str:
    """The report for ``callmood rules backtest``: ``current`` (the rules in force) against
    the candidate rules at ``candidate_path`` (None: against the stored alerts).

    Raises ValueError for a bad ``since`` and RulesError for invalid candidate rules."""
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise ValueError(f"--since: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"--since: {since!r} must be longer than zero")
    with sessions() as s:
        now = clock.now(s)
    try:
        cutoff = now - timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"--since: {since!r} is too long") from None
    candidate = load_rules(candidate_path, known_sinks=known_sinks) if candidate_path else None
    report = compare(read_calls(sessions, cutoff), current, candidate)
    report.since, report.cutoff = since, cutoff
    report.current_path = str(current.path or "the rules in force")
    report.candidate_path = str(candidate_path or "")
    return format_report(report, limit)
