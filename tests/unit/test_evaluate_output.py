"""What `callmood evaluate` prints and writes, from plain data: the tables, CSV cells Excel
never runs as formulas, UTF-8 with a BOM, a PNG under WeCom's 2 MB."""

from __future__ import annotations

import csv
import io

import pytest

from plugin.core import charts, trial
from plugin.flow.evaluate import output
from plugin.flow.evaluate.labels import Label
from plugin.flow.evaluate.metrics import NONE, compute
from plugin.flow.evaluate.predict import Prediction
from plugin.flow.evaluate.sweep import AS_WRITTEN, THRESHOLDS, Point, ScenarioSweep


def evaluation(trial_made: bool = False) -> output.Evaluation:
    labels = [Label(2, "angry", file_text="=HYPERLINK(\"x\")", start=1.5, end=4.0, role="customer"),
              Label(3, "sad", call_id=12), Label(4, "neutral", file_text="b.wav")]
    preds = [Prediction(labels[0], "angry", "model"), Prediction(labels[1], NONE, "stored"),
             Prediction(labels[2], "sad", "model")]
    sw = ScenarioSweep("金融投诉", [0.7], calls=3, positives=1, emotions=["angry"],
                       points=[Point(0.5, 2, 1, 1, 0, 1), Point(0.7, 1, 1, 0, 0, 2), Point(0.95, 0, 0, 0, 1, 2),
                               Point(AS_WRITTEN, 1, 1, 0, 0, 2)])
    empty = ScenarioSweep("marketing", [0.8])
    return output.Evaluation(preds, compute([(p.label.emotion, p.predicted) for p in preds]), [sw, empty],
                             units=3, stored=1, modelled=2, trial=trial_made, rules_path="rules/scenarios")


@pytest.mark.parametrize("value,want", [("=1+2", "'=1+2"), ("+86", "'+86"), ("-3", "'-3"), ("@SUM", "'@SUM"),
                                        ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=b", "a=b"), (None, ""), (3, "3")])
def test_cells_excel_would_run_are_text(value, want):
    assert output.cell(value) == want


def read(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 (Chinese names) only with a BOM
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_the_csv_files():
    ev = evaluation()
    per_class = read(output.per_class_csv(ev))
    assert per_class[0] == ["emotion", "precision", "recall", "f1", "count", "predicted"]
    assert per_class[1] == ["angry", "1.0000", "1.0000", "1.0000", "1", "1"]
    assert [r[0] for r in per_class[1:]] == ["angry", "neutral", "sad", "UA (unweighted accuracy)",
                                             "WA (weighted accuracy)"]
    assert per_class[2][1] == output.DASH  # neutral: never predicted
    assert per_class[-2][2] == "0.3333" and per_class[-1][2] == "0.3333"
    assert read(output.confusion_csv(ev)) == [["true \\ predicted", "angry", "neutral", "sad", NONE],
                                              ["angry", "1", "0", "0", "0"], ["neutral", "0", "0", "1", "0"],
                                              ["sad", "0", "0", "0", "1"]]
    th = read(output.thresholds_csv(ev))
    assert th[0][:4] == ["scenario", "threshold", "current", "calls"]
    assert [(r[0], r[1], r[2]) for r in th[1:]] == [("金融投诉", "0.50", ""), ("金融投诉", "0.70", "yes"),
                                                    ("金融投诉", "0.95", ""), ("金融投诉", AS_WRITTEN, "")]
    assert th[3][10] == output.DASH and th[3][11] == "0.0000"  # nothing fired at 0.95: no precision
    preds = read(output.predictions_csv(ev))
    assert preds[0] == ["line", "file", "call_id", "start", "end", "role", "truth", "predicted", "from"]
    assert preds[1] == ["2", "'=HYPERLINK(\"x\")", "", "1.5", "4", "customer", "angry", "angry", "model"]
    assert preds[2] == ["3", "", "12", "", "", "", "sad", NONE, "stored"]


def test_the_text_says_a_trial_first():
    ev = evaluation(trial_made=True)
    out = output.text(ev, trial.LABEL)
    first = out.splitlines()[0]
    assert first.startswith(trial.LABEL) and "these figures measure nothing" in first
    assert trial.LABEL not in output.text(evaluation(), trial.LABEL)
    assert "3 label(s) over 3 call(s): 1 from stored results, 2 analysed by the model now." in out
    assert "WA (weighted accuracy: correct / all labels): 0.333 (1/3)" in out
    assert "1 label(s) had no analysed window" in out
    lines = out.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("  threshold"))
    assert lines[header].split() == ["threshold", "alerts", "TP", "FP", "FN", "precision", "recall"]
    assert lines[header + 2].split() == ["0.70", "1", "1", "0", "0", "1.000", "1.000", "*"]
    assert lines[header + 3].split() == ["0.95", "0", "0", "0", "1", output.DASH, "0.000"]
    assert "scenario marketing: 0 labelled call(s)" in out and "(no labelled call counts for it)" in out


def test_the_png():
    png = output.chart_png(evaluation(trial_made=True), trial.LABEL)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) <= charts.MAX_PNG_BYTES


def test_write_all(tmp_path):
    written = output.write_all(evaluation(), tmp_path / "out", trial.LABEL)
    assert [p.name for p in written] == list(output.FILES)
    assert all(p.stat().st_size > 0 for p in written)


def drawn(monkeypatch, ev: output.Evaluation) -> tuple[bytes, object]:
    """The PNG of ``ev`` and the figure it was drawn from."""
    figs = []
    real = charts.png

    def keep(fig, *a, **kw):
        figs.append(fig)
        return real(fig, *a, **kw)
    monkeypatch.setattr(charts, "png", keep)
    png = output.chart_png(ev, trial.LABEL)
    return png, figs[0]


def scenario(name: str) -> output.Evaluation:
    sw = ScenarioSweep(name, [0.6], calls=2, positives=1, emotions=["angry"],
                       points=[Point(t, fired=1, tp=1) for t in THRESHOLDS])
    return output.Evaluation([], compute([("angry", "angry")]), [sw], 1, 1, 0, False, "rules")


@pytest.mark.parametrize("name,shown", [
    (r"$\foo$", r"\$\foo\$"),  # mathtext: an unknown symbol failed the whole chart
    ("_night_shift", " _night_shift"),  # a leading _ left the scenario out of the legend
    ("refund $5-$10", r"refund \$5-\$10"),  # drawn as a formula, garbled
])
def test_scenario_names_are_drawn_as_written(monkeypatch, name, shown):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" included
        png, fig = drawn(monkeypatch, scenario(name))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    legend = fig.axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"{shown} precision", f"{shown} recall"]


def test_a_chart_that_fails_keeps_the_csv_files(tmp_path, monkeypatch):
    def broken(ev, label):
        raise charts.ChartError("chart does not fit in 2097152 bytes even at 30 dpi")
    monkeypatch.setattr(output, "chart_png", broken)
    with pytest.raises(output.OutputError) as err:
        output.write_all(evaluation(), tmp_path / "out", trial.LABEL)
    assert str(err.value) == (f"{tmp_path / 'out' / 'evaluation.png'}: cannot make it: ChartError: chart does not "
                              f"fit in 2097152 bytes even at 30 dpi")
    assert [p.name for p in err.value.written] == list(output.FILES[:4])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(output.FILES[:4])


def test_an_out_folder_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    problem = output.out_problem(blocker / "out" / "deeper")
    assert str(problem) == f"{blocker}: not a folder"
    assert output.out_problem(tmp_path / "new" / "out") is None and not (tmp_path / "new").exists()
    with pytest.raises(output.OutputError) as err:
        output.write_all(evaluation(), blocker / "out", trial.LABEL)
    assert str(err.value) == f"{blocker / 'out'}: Not a directory" and err.value.written == []
    (tmp_path / "out" / "predictions.csv").mkdir(parents=True)  # a write that fails: those before it are kept
    with pytest.raises(output.OutputError) as err:
        output.write_all(evaluation(), tmp_path / "out", trial.LABEL)
    assert str(err.value) == f"{tmp_path / 'out' / 'predictions.csv'}: Is a directory"
    assert [p.name for p in err.value.written] == ["per_class.csv", "confusion.csv", "thresholds.csv"]
