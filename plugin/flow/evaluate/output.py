"""What `callmood evaluate` shows and writes: text tables, CSV files (UTF-8 with a BOM, so
Excel reads the Chinese; cells that Excel would run as a formula are prefixed with '), and
one PNG (plugin/core/charts.py): the confusion matrix and, per scenario, alert precision
and recall against the threshold."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from plugin.core import charts
from plugin.flow.evaluate.metrics import Metrics
from plugin.flow.evaluate.predict import Prediction
from plugin.flow.evaluate.sweep import AS_WRITTEN, ScenarioSweep

DASH = "—"  # a measure with nothing to measure (a precision where nothing fired)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Evaluation:
    """Everything the command shows, as plain data."""

    predictions: list[Prediction]
    metrics: Metrics
    sweeps: list[ScenarioSweep]
    units: int  # labelled calls
    stored: int  # of them, read from stored results
    modelled: int  # of them, analysed by the model now
    trial: bool  # some results come from a trial model (random weights)
    rules_path: str


def num(x: float | None, digits: int = 3) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def cell(value: object) -> str:
    """A CSV cell Excel shows as text: a leading = + - @ (or tab, CR) gets a ' before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def seconds(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}".rstrip("0").rstrip(".")  # 12.5, 4, 3723.25


# --- text -----------------------------------------------------------------------------

def table(rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Rows of cells in aligned columns (``right``: the columns aligned right)."""
    right = set(range(1, len(rows[0]))) if right is None else right
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def text(ev: Evaluation, trial_label: str) -> str:
    m = ev.metrics
    lines: list[str] = []
    if ev.trial:
        lines += [f"{trial_label}: these figures measure nothing (a trial model with random weights made "
                  f"some of the predictions below)", ""]
    lines.append(f"{len(ev.predictions)} label(s) over {ev.units} call(s): {ev.stored} from stored results, "
                 f"{ev.modelled} analysed by the model now.")
    lines += ["", "Per class (rows: every emotion in the labels or the predictions):"]
    rows = [["emotion", "precision", "recall", "f1", "count"]]
    rows += [[r.label, num(r.precision), num(r.recall), num(r.f1), str(r.count)] for r in m.rows]
    lines += table(rows)
    present = sum(r.recall is not None for r in m.rows)
    lines += ["", f"UA (unweighted accuracy: mean recall over the {present} emotion(s) in the labels): {num(m.ua)}",
              f"WA (weighted accuracy: correct / all labels): {num(m.wa)} ({m.correct}/{m.total})"]
    missed = sum(n for (_, p), n in m.confusion.items() if p == "(none)")
    if missed:
        lines.append(f"{missed} label(s) had no analysed window in their span or role: predicted (none), "
                     f"counted as misses.")
    lines += ["", "Confusion matrix (rows: true, columns: predicted):"]
    rows = [["true \\ predicted", *m.columns]] + [[t, *(str(m.cell(t, p)) for p in m.columns)] for t in m.truths]
    lines += table(rows)
    lines += ["", f"Threshold sweep (rules: {ev.rules_path}): each scenario with every clause's min_confidence "
                  f"set to the threshold; precision = alerts on calls labelled with the scenario's emotions / "
                  f"alerts, recall = those calls alerted / those calls; * = the scenario's threshold now."]
    for sw in ev.sweeps:
        lines += ["", f"scenario {sw.scenario}: {sw.calls} labelled call(s), {sw.positives} labelled "
                      f"{'/'.join(sw.emotions) or '(no emotion)'}; min_confidence now "
                      f"{', '.join(f'{c:.2f}' for c in sw.current) or '-'}"]
        if not sw.calls:
            lines.append("  (no labelled call counts for it)")
            continue
        rows = [["threshold", "alerts", "TP", "FP", "FN", "precision", "recall", ""]]
        for p in sw.points:
            label = p.threshold if isinstance(p.threshold, str) else f"{p.threshold:.2f}"
            note = "*" if sw.is_current(p.threshold) else ""
            if p.failed:
                note = (note + f" {p.failed} call(s) the rules failed on").strip()
            rows.append([label, str(p.fired), str(p.tp), str(p.fp), str(p.fn), num(p.precision), num(p.recall),
                         note])
        lines += ["  " + ln for ln in table(rows, right=set(range(1, 7)))]
    return "\n".join(lines)


# --- CSV ------------------------------------------------------------------------------

def _csv(rows: list[list[object]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    for r in rows:
        w.writerow([cell(c) for c in r])
    return buf.getvalue().encode("utf-8-sig")


def per_class_csv(ev: Evaluation) -> bytes:
    m = ev.metrics
    rows: list[list[object]] = [["emotion", "precision", "recall", "f1", "count", "predicted"]]
    rows += [[r.label, num(r.precision, 4), num(r.recall, 4), num(r.f1, 4), r.count, r.predicted] for r in m.rows]
    # UA is the mean of the recalls, WA their mean weighted by count: in the recall column.
    rows.append(["UA (unweighted accuracy)", "", num(m.ua, 4), "", m.total, ""])
    rows.append(["WA (weighted accuracy)", "", num(m.wa, 4), "", m.total, ""])
    return _csv(rows)


def confusion_csv(ev: Evaluation) -> bytes:
    m = ev.metrics
    return _csv([["true \\ predicted", *m.columns]] + [[t, *(m.cell(t, p) for p in m.columns)] for t in m.truths])


def thresholds_csv(ev: Evaluation) -> bytes:
    rows: list[list[object]] = [["scenario", "threshold", "current", "calls", "should_alert", "alerts", "tp", "fp",
                                 "fn", "tn", "precision", "recall", "failed"]]
    for sw in ev.sweeps:
        for p in sw.points:
            t = p.threshold if p.threshold == AS_WRITTEN else f"{p.threshold:.2f}"
            rows.append([sw.scenario, t, "yes" if sw.is_current(p.threshold) else "", sw.calls, sw.positives,
                         p.fired, p.tp, p.fp, p.fn, p.tn, num(p.precision, 4), num(p.recall, 4), p.failed])
    return _csv(rows)


def predictions_csv(ev: Evaluation) -> bytes:
    rows: list[list[object]] = [["line", "file", "call_id", "start", "end", "role", "truth", "predicted", "from"]]
    for p in ev.predictions:
        lab = p.label
        rows.append([lab.line, lab.file_text, lab.call_id or "", seconds(lab.start), seconds(lab.end),
                     lab.role or "", lab.emotion, p.predicted, p.origin])
    return _csv(rows)


# --- the chart --------------------------------------------------------------------------

def chart_png(ev: Evaluation, trial_label: str) -> bytes:
    """The confusion matrix (each row as shares of its labels, with counts) beside precision
    and recall against the threshold, one colour per scenario."""
    import numpy as np

    m = ev.metrics
    fig = charts.figure(13, 5.5)
    left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
    grid = np.array([[m.cell(t, p) for p in m.columns] for t in m.truths], dtype=float).reshape(len(m.truths),
                                                                                               len(m.columns))
    totals = grid.sum(axis=1, keepdims=True)
    shares = np.divide(grid, totals, out=np.zeros_like(grid), where=totals > 0)
    left.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    left.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
    left.set_yticks(range(len(m.truths)), m.truths)
    left.set_xlabel("predicted")
    left.set_ylabel("true")
    for i in range(len(m.truths)):
        for j in range(len(m.columns)):
            if grid[i, j]:
                left.text(j, i, f"{int(grid[i, j])}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=8,
                          color="white" if shares[i, j] > 0.6 else "black")
    left.set_title(f"Confusion (rows sum to 100%)  UA {num(m.ua)}  WA {num(m.wa)}")

    drawn = [sw for sw in ev.sweeps if sw.calls]  # a scenario no labelled call counts for has no line
    for i, sw in enumerate(drawn):
        colour = f"C{i % 10}"
        grid_points = [p for p in sw.points if p.threshold != AS_WRITTEN]
        xs = [p.threshold for p in grid_points]
        right.plot(xs, [np.nan if p.precision is None else p.precision for p in grid_points], color=colour,
                   marker="o", markersize=3, label=f"{sw.scenario} precision")
        right.plot(xs, [np.nan if p.recall is None else p.recall for p in grid_points], color=colour,
                   linestyle="--", marker="s", markersize=3, label=f"{sw.scenario} recall")
        for c in sw.current:
            if 0.5 <= c <= 0.95:
                right.axvline(c, color=colour, alpha=0.3, linewidth=1)
    right.set_xlim(0.48, 0.97)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("min_confidence")
    right.set_title("Alert precision (—) and recall (- -) per scenario")
    if drawn:
        right.legend(fontsize=7, loc="best", ncol=1 if len(drawn) < 5 else 2)
    else:
        right.text(0.72, 0.5, "no labelled call counts for any scenario", ha="center", va="center")
    if ev.trial:
        fig.suptitle(f"{trial_label}: these figures measure nothing", color="#b00020")
    return charts.png(fig)


FILES = ("per_class.csv", "confusion.csv", "thresholds.csv", "predictions.csv", "evaluation.png")


def write_all(ev: Evaluation, out: Path, trial_label: str) -> list[Path]:
    """The CSV files and the PNG in ``out`` (created if needed); the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    made = {"per_class.csv": per_class_csv(ev), "confusion.csv": confusion_csv(ev),
            "thresholds.csv": thresholds_csv(ev), "predictions.csv": predictions_csv(ev),
            "evaluation.png": chart_png(ev, trial_label)}
    written = []
    for name in FILES:
        path = out / name
        path.write_bytes(made[name])
        written.append(path)
    return written
