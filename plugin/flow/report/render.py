"""The review report's forms, from its numbers (measures.Review): text tables for the
terminal, WeCom markdown, CSV, and the chart as PNG. The HTML page is a template
(plugin/web/templates/report.html) over the same numbers.

Every value that came from outside (queue names, agent and customer ids, rules' summaries)
is data: escaped with wecom_robot.md() in markdown (phone numbers in summaries masked),
prefixed in CSV where a spreadsheet would run it as a formula, drawn as plain text (no
mathtext) in the chart. A report that holds calls analysed by a trial model says so
first, in every form.
"""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from typing import Any, Callable

from connectors.sinks.quotes import quote_line
from connectors.sinks.wecom_robot import MAX_BYTES, md
from plugin.core import charts, scrub, trial
from plugin.flow.report.measures import AlertGroup, Review, ShareRow, Speech

NONE = "(none) 未指定"
OTHERS = "(others) 其他"
TITLE = "情绪复盘报告 / Emotion review"
KIND_WORDS = {"daily": "日报 Daily", "weekly": "周报 Weekly"}
DIMENSIONS = (("queue", "队列 Queue"), ("agent", "坐席 Agent"), ("scenario", "场景 Scenario"))
WORST = 3  # rows per dimension named in the WeCom message


# --- numbers as words --------------------------------------------------------------------

def pct(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f}%"


def pp(change: float | None) -> str:
    return "—" if change is None else f"{change:+.1f} pp"


def delta(now: float, before: float) -> str:
    d = now - before
    return f"{d:+d}" if isinstance(d, int) else f"{d:+.1f}"


def row_name(row: ShareRow) -> str:
    if row.others:
        return OTHERS
    return NONE if row.name is None else row.name


def rows_of(report: Review, dimension: str) -> list[ShareRow]:
    return {"queue": report.queues, "agent": report.agents, "scenario": report.scenarios}[dimension]


def worst(report: Review, dimension: str, min_calls: int, n: int = WORST) -> list[ShareRow]:
    """The rows of highest negative share among those with at least ``min_calls`` calls."""
    rows = [r for r in rows_of(report, dimension) if not r.others and r.calls >= min_calls and r.share is not None]
    return sorted(rows, key=lambda r: (-r.share, -r.calls, r.name or ""))[:n]


# --- text --------------------------------------------------------------------------------

def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Columns padded to their widest cell (Chinese characters count two)."""
    cells = [header] + rows
    widths = [max(_width(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        out = []
        for i, c in enumerate(r):
            pad = " " * (widths[i] - _width(c))
            out.append(pad + c if i in right else c + pad)
        return "  ".join(out).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _clean(value: Any, limit: int = 80) -> str:
    """Data on one line of a terminal: no control characters, at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text(report: Review) -> str:
    p, now, prev = report.period, report.now, report.prev
    out = [trial.LABEL] if report.trial else []
    out += [f"{TITLE} — {KIND_WORDS[p.kind]} {p.label}, {report.zone}",
            f"Previous period 上期: {report.previous.label}", ""]
    figures = [
        ["Calls analysed 分析通话", str(now.calls), str(prev.calls), delta(now.calls, prev.calls)],
        ["Calls failed 失败通话", str(now.failed), str(prev.failed), delta(now.failed, prev.failed)],
        ["Audio hours 音频小时", f"{now.audio_hours:.1f}", f"{prev.audio_hours:.1f}",
         delta(round(now.audio_hours, 1), round(prev.audio_hours, 1))],
        ["Negative speech 负面占比", pct(now.speech.share), pct(prev.speech.share),
         pp(report_change(now.speech, prev.speech))],
        ["Alerts 告警", str(report.alerts.now.alerts), str(report.alerts.prev.alerts),
         delta(report.alerts.now.alerts, report.alerts.prev.alerts)],
        ["Precision 准确率", pct(report.alerts.now.precision), pct(report.alerts.prev.precision),
         pp(report_change_precision(report.alerts))],
    ]
    out += [table(["", "this 本期", "previous 上期", "change 变化"], figures, {1, 2, 3}),
            f"Negative emotions 负面情绪: {', '.join(report.negative_emotions)}", ""]
    for dim, title in DIMENSIONS:
        rows = [[_clean(row_name(r), 40), str(r.calls), pct(r.share), str(r.prev_calls), pct(r.prev_share),
                 pp(r.change_pp)] for r in rows_of(report, dim)]
        header = ["name", "calls", "negative", "prev calls", "prev negative", "change"]
        out += [f"By {dim} 按{title.split()[0]}", table(header, rows, {1, 2, 3, 4, 5}) if rows else "(no calls)", ""]
    if report.days:
        days = [[d.day.isoformat(), str(d.calls), pct(d.speech.share)] for d in report.days]
        out += ["By day 按日", table(["day", "calls", "negative"], days, {1, 2}), ""]
    customers = [[_clean(c.customer_id, 40), str(c.alerts), str(c.false_alarms), c.worst, f"#{c.last_call_id}",
                  _clean(c.last_summary, 60)] for c in report.customers]
    out += ["Top red-flagged customers 红色预警客户",
            table(["customer", "alerts", "false alarms", "worst", "last call", "last summary"], customers, {1, 2})
            if customers else "(none)", ""]
    out += ["Alerts by severity 按级别", _alert_table(report.severities), ""]
    out += ["Alerts by rule 按规则", _alert_table(report.rules) if report.rules else "(none)"]
    return "\n".join(out) + "\n"


def report_change(now: Speech, prev: Speech) -> float | None:
    return None if now.share is None or prev.share is None else (now.share - prev.share) * 100


def report_change_precision(g: AlertGroup) -> float | None:
    a, b = g.now.precision, g.prev.precision
    return None if a is None or b is None else (a - b) * 100


def _alert_table(groups: list[AlertGroup]) -> str:
    rows = [[_clean(g.name, 60), str(g.now.alerts), str(g.now.correct), str(g.now.false_alarms),
             str(g.now.unlabelled), pct(g.now.precision), str(g.prev.alerts), pct(g.prev.precision)] for g in groups]
    return table(["name", "alerts", "correct", "false alarms", "unlabelled", "precision", "prev alerts",
                  "prev precision"], rows, {1, 2, 3, 4, 5, 6, 7})


# --- WeCom markdown ----------------------------------------------------------------------

def _fit(head: str, lines: list[str], budget: int) -> str:
    """``head`` and as many of ``lines`` as fit in ``budget`` bytes, then how many were left
    out; "" when not even the head and one line fit."""
    size = lambda s: len(s.encode("utf-8")) + 1  # noqa: E731 (with its newline)
    used = size(head)
    out = [head]
    for i, line in enumerate(lines):
        more = f"- … 另有 {len(lines) - i} 条 / and {len(lines) - i} more"
        reserve = size(more) if i < len(lines) - 1 else 0
        if used + size(line) + reserve > budget:
            if i == 0:
                return ""
            out.append(more)
            break
        out.append(line)
        used += size(line)
    return "\n".join(out)


NAME_CHARS = 40  # of a queue, agent, customer or rule name in the WeCom message


def markdown(report: Review, page_url: str, call_link: Callable[[int], str], min_calls: int) -> str:
    """The WeCom message: the key figures, the worst groups, the top customers and the
    alerts, within the robot's 4096 bytes; the link to the HTML page always fits."""
    p, now, prev, alerts = report.period, report.now, report.prev, report.alerts
    head = [trial.LABEL] if report.trial else []
    head += [f"### {TITLE}",
             f"> {KIND_WORDS[p.kind]} · {md(p.label)} · {md(report.zone)}",
             f"> 通话 Calls: **{now.calls}** ({delta(now.calls, prev.calls)}) · 失败 Failed: {now.failed} · "
             f"音频 Audio: {now.audio_hours:.1f} h",
             f"> 负面占比 Negative speech: **{pct(now.speech.share)}** ({pp(report_change(now.speech, prev.speech))})",
             f"> 告警 Alerts: **{alerts.now.alerts}** ({delta(alerts.now.alerts, alerts.prev.alerts)}) · "
             f"准确率 Precision: {pct(alerts.now.precision)} (上期 prev {pct(alerts.prev.precision)})",
             f"> 反馈 Feedback: 正确 correct {alerts.now.correct} · 误报 false alarm {alerts.now.false_alarms} · "
             f"未标注 unlabelled {alerts.now.unlabelled}"]
    foot = f"[完整报告 / Full report]({page_url})"
    sections = []
    bad = [f"- {title}: {md(_clean(row_name(r), NAME_CHARS))} · <font color=\"warning\">{pct(r.share)}</font> "
           f"({pp(r.change_pp)}) · {r.calls} 通 calls"
           for dim, title in DIMENSIONS for r in worst(report, dim, min_calls)]
    if bad:
        sections.append((f"**负面占比最高 / Highest negative share** (≥{min_calls} 通 calls)", bad))
    if report.customers:
        sections.append(("**红色预警客户 / Red-flagged customers**", [
            # Whole (ids are short): `callmood forget` finds and redacts it here by its full value.
            f"- {md(_clean(c.customer_id, 255))} · {c.alerts} 条 alerts"
            + (f" (另 {c.false_alarms} 条误报 false alarms)" if c.false_alarms else "")
            + f" · {md(c.worst)} · {md(_clean(scrub.phones(c.last_summary), 60))}"
            + f" [查看 / Open]({call_link(c.last_call_id)})"
            for c in report.customers]))
    if report.rules:
        sections.append(("**告警规则 / Alerts by rule**", [
            f"- {md(_clean(g.name, NAME_CHARS))}: {g.now.alerts} · 准确率 precision {pct(g.now.precision)}"
            for g in report.rules]))
    text_ = "\n".join(head)
    budget = MAX_BYTES - len(text_.encode("utf-8")) - len(("\n\n" + foot).encode("utf-8"))
    for i, (title, lines) in enumerate(sections):
        # Each section gets its share of what is left (and what an earlier one did not use
        # passes on), so long names in one never push the next out of the message.
        part = _fit(title, lines, budget // (len(sections) - i) - 2)
        if part:
            text_ += "\n\n" + part
            budget -= len(("\n\n" + part).encode("utf-8"))
    return text_ + "\n\n" + foot


# --- CSV ---------------------------------------------------------------------------------

COLUMNS = ["period", "section", "name", "calls", "failed_calls", "audio_hours", "windows", "negative_windows",
           "negative_share", "prev_calls", "prev_negative_share", "change_pp", "alerts", "correct",
           "false_alarms", "unlabelled", "precision", "prev_alerts", "prev_precision", "worst_severity",
           "last_summary", "last_call_id", "last_alert_at", "last_quote"]
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
QUOTE_CHARS = 500  # of the latest alert's first quote


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as written: text starting with = + - @ (or a tab or CR)
    gets a ' first, so Excel and LibreOffice never run it as a formula. Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _share_cells(r: ShareRow) -> dict[str, Any]:
    return {"calls": r.calls, "windows": r.speech.windows, "negative_windows": r.speech.negative,
            "negative_share": r.share, "prev_calls": r.prev_calls, "prev_negative_share": r.prev_share,
            "change_pp": r.change_pp}


def _alert_cells(g: AlertGroup) -> dict[str, Any]:
    return {"alerts": g.now.alerts, "correct": g.now.correct, "false_alarms": g.now.false_alarms,
            "unlabelled": g.now.unlabelled, "precision": g.now.precision, "prev_alerts": g.prev.alerts,
            "prev_precision": g.prev.precision}


def csv_rows(report: Review) -> list[dict[str, Any]]:
    """One table: a ``section`` column says what each row is (trial, total, queue, agent,
    scenario, day, customer, severity, rule) and the columns it fills."""
    now, prev = report.now, report.prev
    rows: list[dict[str, Any]] = []
    if report.trial:
        rows.append({"section": "trial", "name": trial.LABEL})
    rows.append({"section": "total", "name": "all", "calls": now.calls, "failed_calls": now.failed,
                 "audio_hours": now.audio_hours, "windows": now.speech.windows,
                 "negative_windows": now.speech.negative, "negative_share": now.speech.share,
                 "prev_calls": prev.calls, "prev_negative_share": prev.speech.share,
                 "change_pp": report_change(now.speech, prev.speech), **_alert_cells(report.alerts)})
    for dim, _ in DIMENSIONS:
        for r in rows_of(report, dim):
            rows.append({"section": dim, "name": "(others)" if r.others else ("(none)" if r.name is None else r.name),
                         **_share_cells(r)})
    for d in report.days:
        rows.append({"section": "day", "name": d.day.isoformat(), "calls": d.calls, "windows": d.speech.windows,
                     "negative_windows": d.speech.negative, "negative_share": d.speech.share})
    for c in report.customers:
        rows.append({"section": "customer", "name": c.customer_id, "alerts": c.alerts, "false_alarms": c.false_alarms,
                     "worst_severity": c.worst, "last_summary": c.last_summary, "last_call_id": c.last_call_id,
                     "last_alert_at": c.last_at.isoformat(timespec="seconds") + "Z",
                     # "02:13 customer: 我要退款" (the role as its code), as the red-flag CSV has it
                     "last_quote": quote_line(c.last_quote, {}, QUOTE_CHARS) if c.last_quote else None})
    for section, groups in (("severity", report.severities), ("rule", report.rules)):
        rows += [{"section": section, "name": g.name, **_alert_cells(g)} for g in groups]
    for r in rows:
        r["period"] = report.period.key
    return rows


def csv_bytes(report: Review) -> bytes:
    """UTF-8 with a BOM, so Excel reads the Chinese right."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for r in csv_rows(report):
        w.writerow({k: csv_cell(r.get(k)) for k in COLUMNS})
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


# --- chart -------------------------------------------------------------------------------

LABEL_CHARS = 18
AGENTS_DRAWN = 12


def _label(text: str) -> str:
    return charts.text(text, LABEL_CHARS)


def _percent(share: float | None) -> float:
    return math.nan if share is None else share * 100


def _bars(ax: Any, rows: list[ShareRow], title: str) -> None:
    ax.set_title(title)
    if not rows:
        ax.text(0.5, 0.5, "无通话 / no calls", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    xs = list(range(len(rows)))
    now = [_percent(r.share) for r in rows]
    before = [_percent(r.prev_share) for r in rows]
    ax.bar([x - 0.2 for x in xs], now, width=0.4, label="本期 this period", color="#c0392b")
    ax.bar([x + 0.2 for x in xs], before, width=0.4, label="上期 previous", color="#95a5a6")
    ax.set_xticks(xs, [_label(row_name(r)) for r in rows], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(xs) - 0.4)  # one row is drawn as one bar pair, not at an edge
    _share_axis(ax, now + before)
    ax.legend(loc="upper right", fontsize="small")


def _share_axis(ax: Any, values: list[float]) -> None:
    """A 0-based percent axis with room above the highest value: an all-zero period is a
    flat 0%, never an axis centred on zero with negative shares."""
    drawn = [v for v in values if not math.isnan(v)]
    ax.set_ylim(0, min(100.0, max([5.0, *drawn]) * 1.15))
    ax.set_ylabel("负面占比 negative %")


QUEUES_DRAWN = 12  # bars per panel: reports.max_rows may list hundreds, the chart stays readable


def chart_png(report: Review) -> bytes:
    """Negative share by queue and by agent (the most calls first), this period against the
    previous one; a weekly report adds the share per day. Under the robot's 2 MB."""
    panels = 3 if report.days else 2
    fig = charts.figure(10, 3.6 * panels)
    axes = fig.subplots(panels, 1)
    title = f"{TITLE} · {KIND_WORDS[report.period.kind]} {report.period.label}"
    fig.suptitle(f"{trial.LABEL}\n{title}" if report.trial else title)
    _bars(axes[0], report.queues[:QUEUES_DRAWN], "按队列 By queue (通话最多 most calls)")
    _bars(axes[1], report.agents[:AGENTS_DRAWN], "按坐席 By agent (通话最多 most calls)")
    if report.days:
        ax = axes[2]
        ax.set_title("每日负面占比 Negative share per day")
        xs = list(range(len(report.days)))
        # A day without calls has no share: a gap in the line, not a zero.
        ax.plot(xs, [_percent(d.speech.share) for d in report.days], marker="o", color="#c0392b")
        ax.set_xticks(xs, [d.day.strftime("%m-%d %a") for d in report.days])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        _share_axis(ax, [_percent(d.speech.share) for d in report.days])
    return charts.png(fig)
