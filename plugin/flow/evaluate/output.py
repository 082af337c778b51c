"""What `callmood evaluate` shows and writes: text tables, CSV files (UTF-8 with a BOM, so
Excel reads the Chinese; cells that Excel would run as a formula are prefixed with '), and
one PNG (plugin/core/charts.py): the confusion matrix and, per scenario, alert precision
and recall against the threshold."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
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
    # "labels.csv:LINE: not evaluated: why": labels of files the model failed on; left out of every figure
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per file: a channel layout the analysis could not honour


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
    if ev.skipped:
        lines.append(f"{len(ev.skipped)} label(s) not evaluated: their files failed to decode or analyse (listed "
                     f"on stderr); they are left out of every figure below.")
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
    # Every label drawn from data goes through charts.text: a $ would start mathtext, a leading _
    # would drop a legend entry.
    left.set_xticks(range(len(m.columns)), [charts.text(c) for c in m.columns], rotation=45, ha="right")
    left.set_yticks(range(len(m.truths)), [charts.text(t) for t in m.truths])
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
        name = charts.text(sw.scenario)
        grid_points = [p for p in sw.points if p.threshold != AS_WRITTEN]
        xs = [p.threshold for p in grid_points]
        right.plot(xs, [np.nan if p.precision is None else p.precision for p in grid_points], color=colour,
                   marker="o", markersize=3, label=f"{name} precision")
        right.plot(xs, [np.nan if p.recall is None else p.recall for p in grid_points], color=colour,
                   linestyle="--", marker="s", markersize=3, label=f"{name} recall")
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
_MAKERS = {"per_class.csv": per_class_csv, "confusion.csv": confusion_csv, "thresholds.csv": thresholds_csv,
           "predictions.csv": predictions_csv}


class OutputError(Exception):
    """A file of --out could not be made or written: ``path``, ``reason``; ``written``: the
    files written before it (the CSV files come first, so a chart that fails keeps them)."""

    def __init__(self, path: Path, reason: str, written: list[Path]):
        self.path, self.reason, self.written = path, reason, written
        super().__init__(f"{path}: {reason}")


def out_problem(out: Path) -> OutputError | None:
    """Why ``out`` cannot be made a folder to write in, before any work is done; None if it can.
    Not created here: a labels file with a wrong row leaves no empty folder behind."""
    here = out
    while not here.exists():
        if here.parent == here:
            return None
        here = here.parent
    if not here.is_dir():
        return OutputError(here, "not a folder", [])
    if not os.access(here, os.W_OK | os.X_OK):
        return OutputError(here, "no permission to write there", [])
    return None


def write_all(ev: Evaluation, out: Path, trial_label: str) -> list[Path]:
    """The CSV files and the PNG in ``out`` (created if needed), each made and written in
    turn; the paths written. OutputError at the first that fails, those before it written."""
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(Path(exc.filename or out), exc.strerror or str(exc), written) from None
    for name in FILES:
        path = out / name
        try:
            data = _MAKERS[name](ev) if name in _MAKERS else chart_png(ev, trial_label)
        except Exception as exc:  # noqa: BLE001 -- a chart that cannot be drawn: said, the CSV files kept
            raise OutputError(path, f"cannot make it: {type(exc).__name__}: {str(exc)[:200]}", written) from None
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise OutputError(path, exc.strerror or str(exc), written) from None
        written.append(path)
    return written
