"""`callmood evaluate LABELS.csv` end to end: real recordings made at test time (espeak-ng
speech; 8 kHz mu-law WAV, MP3, a stereo WAV with its channels), calls imported and analysed
by the real pipeline with the random-weight model, the command run as a user runs it.

A random model's labels are arbitrary: the tests check what the command does (which
results it reads, what it runs, what it prints and writes), never which emotion came out."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from plugin.core import charts, trial
from plugin.flow.batch_import import import_paths
from plugin.flow.evaluate import predict
from plugin.flow.evaluate.sweep import THRESHOLDS
from plugin.model.modeldir import make_trial_model_dir
from plugin.store.tables import Call
from rules.engine import load_rules
from tests.conftest import HERE, make_config
from tests.helpers import run_cli
from tests.speech import write_conversation

AGENT = "Thank you for calling. How can I help you today with your account?"
CUSTOMER = "I have been charged twice this month and nobody has called me back. This is unacceptable."
HEADER = "file,call_id,start,end,role,emotion,channels,scenario\n"
SCENARIOS = [s.scenario for s in load_rules(HERE.parent / "rules" / "scenarios").scenarios]


def recordings(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "mulaw": write_conversation(folder / "mulaw", [(0, 1.0, CUSTOMER)], 9.0, rate=8000, fmt="wav_mulaw"),
        "mp3": write_conversation(folder / "talk", [(0, 0.5, AGENT)], 7.0, rate=16000, fmt="mp3"),
        "stereo": write_conversation(folder / "stereo", [(0, 0.5, AGENT), (1, 5.5, CUSTOMER)], 12.0, channels=2,
                                     rate=8000, fmt="wav_pcm"),
    }


def analysed_call(svc, cfg, path: Path) -> int:
    """``path`` imported (`callmood import`) and analysed by the worker's pipeline: its call id."""
    report = import_paths([str(path)], cfg, svc.intake())
    [(_, call_id)] = report.new
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    return call_id


def config_file(tmp_path: Path, cfg, model_path: Path | str, extra: str = "") -> Path:
    p = tmp_path / "evaluate.yaml"
    p.write_text(f"data_dir: {cfg.data_dir}\ndatabase: {{url: '{cfg.database_url}'}}\n"
                 f"model: {{path: '{model_path}'}}\naudio: {{vad: energy}}\n{extra}", encoding="utf-8")
    return p


def rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


@pytest.fixture
def stored(tmp_path, sqlite_url, model_dir, app_factory):
    """A database with one imported call analysed by the pipeline (random weights: a trial),
    and that recording's file."""
    cfg = make_config(tmp_path, model_dir, sqlite_url)
    svc, _ = app_factory(cfg, model=True)
    (tmp_path / "imported").mkdir()
    path = write_conversation(tmp_path / "imported" / "call", [(1, 0.5, AGENT), (0, 4.0, CUSTOMER)], 10.0,
                              channels=2, rate=8000, fmt="wav_mulaw")
    return svc, cfg, path, analysed_call(svc, cfg, path)


def test_labels_over_files_and_a_stored_call(tmp_path, model_dir, stored, monkeypatch):
    svc, cfg, imported, call_id = stored
    recordings(tmp_path / "calls")  # mulaw.wav, talk.mp3, stereo.wav
    labels = tmp_path / "labels.csv"
    labels.write_text(
        HEADER
        + "calls/mulaw.wav,,,,,angry,,\n"                                # 2: the whole call's verdict
        + "calls/mulaw.wav,,0:01,0:04.5,customer,生气/angry,,general\n"  # 3: mono: customer is the mixed track
        + "calls/talk.mp3,,1,3.5,,中立,,\n"                              # 4
        + 'calls/stereo.wav,,,,customer,难过,"0=agent,1=customer",\n'    # 5
        + 'calls/stereo.wav,,0:00,0:03,agent,neutral,"0=agent,1=customer",finance_complaint\n'  # 6
        + f",{call_id},,,,happy,,\n"                                     # 7: a stored call
        + f",{call_id},4,7,customer,angry,,\n"                           # 8
        + "imported/call.wav,,,,agent,<unk>,,\n",                        # 9: a file imported and analysed
        encoding="utf-8-sig")
    decoded = []
    real_decode = predict.decode

    def counting_decode(src, *args, **kwargs):  # the real decoder, counted
        decoded.append(Path(src).name)
        return real_decode(src, *args, **kwargs)

    monkeypatch.setattr(predict, "decode", counting_decode)
    out = tmp_path / "out"
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, model_dir), labels, "--out", out)
    assert r.returncode == 0, r.stderr
    # Each file decoded once however many rows name it; the imported one not at all.
    assert sorted(decoded) == ["mulaw.wav", "stereo.wav", "talk.mp3"]
    lines = r.stdout.splitlines()
    assert trial.LABEL not in r.stdout + r.stderr  # tests' model directory is not marked as a trial's
    assert "8 label(s) over 5 call(s): 2 from stored results, 3 analysed by the model now." in r.stdout
    assert lines[lines.index("Per class (rows: every emotion in the labels or the predictions):") + 1].split() == \
        ["emotion", "precision", "recall", "f1", "count"]
    assert any(ln.startswith("UA (unweighted accuracy") for ln in lines)
    assert any(ln.startswith("WA (weighted accuracy: correct / all labels): ") and ln.endswith("/8)") for ln in lines)
    matrix = lines.index("Confusion matrix (rows: true, columns: predicted):")
    assert lines[matrix + 1].split()[:3] == ["true", "\\", "predicted"] and lines[matrix + 1].endswith("(none)")
    for name in SCENARIOS:
        assert any(ln.startswith(f"scenario {name}: ") for ln in lines), name
    assert "scenario general: 5 labelled call(s)" in r.stdout  # every call: rows without a scenario count too
    assert "* = the scenario's threshold now" in r.stdout and "  as written" in r.stdout
    assert [p.name for p in sorted(out.iterdir())] == ["confusion.csv", "evaluation.png", "per_class.csv",
                                                       "predictions.csv", "thresholds.csv"]

    preds = rows((out / "predictions.csv").read_bytes())
    assert [(p["line"], p["file"], p["call_id"], p["from"]) for p in preds] == [
        ("2", "calls/mulaw.wav", "", "model"), ("3", "calls/mulaw.wav", "", "model"),
        ("4", "calls/talk.mp3", "", "model"), ("5", "calls/stereo.wav", "", "model"),
        ("6", "calls/stereo.wav", "", "model"), ("7", "", str(call_id), "stored"),
        ("8", "", str(call_id), "stored"), ("9", "imported/call.wav", "", "stored")]
    assert [(p["start"], p["end"], p["role"], p["truth"]) for p in preds][1:3] == [
        ("1", "4.5", "customer", "angry"), ("1", "3.5", "", "neutral")]
    assert [p["truth"] for p in preds][-1] == "unknown"
    emotions = {"angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown", "(none)"}
    assert all(p["predicted"] in emotions for p in preds)

    per_class = rows((out / "per_class.csv").read_bytes())
    assert {"angry", "happy", "neutral", "sad", "unknown"} <= {p["emotion"] for p in per_class}
    assert [p["emotion"] for p in per_class][-2:] == ["UA (unweighted accuracy)", "WA (weighted accuracy)"]
    assert sum(int(p["count"]) for p in per_class[:-2]) == 8
    confusion = list(csv.reader(io.StringIO((out / "confusion.csv").read_bytes().decode("utf-8-sig"))))
    assert sum(int(c) for r in confusion[1:] for c in r[1:]) == 8 and confusion[0][-1] == "(none)"

    sweep = rows((out / "thresholds.csv").read_bytes())
    assert [s["scenario"] for s in sweep] == [s for s in SCENARIOS for _ in range(len(THRESHOLDS) + 1)]
    general = [s for s in sweep if s["scenario"] == "general"]
    assert [s["threshold"] for s in general] == [f"{t:.2f}" for t in THRESHOLDS] + ["as written"]
    assert [s["threshold"] for s in general if s["current"] == "yes"] == ["0.70"]
    assert all(int(s["tp"]) + int(s["fp"]) + int(s["fn"]) + int(s["tn"]) == int(s["calls"]) for s in sweep)
    # Every call has a row without a scenario, so each counts for every scenario. Should alert:
    # mulaw.wav (angry) and the stored call (angry customer) everywhere; stereo.wav (sad customer)
    # for vip_customer, whose clauses name sad too.
    positives = {s["scenario"]: (s["calls"], s["should_alert"]) for s in sweep}
    assert positives == {"finance_complaint": ("5", "2"), "general": ("5", "2"), "marketing": ("5", "2"),
                         "vip_customer": ("5", "3")}

    png = (out / "evaluation.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) <= charts.MAX_PNG_BYTES


def test_stored_results_need_no_model(tmp_path, stored):
    """A labels file of stored calls (and of files imported and analysed) runs with
    model.path naming a missing directory: the model is never loaded."""
    svc, cfg, imported, call_id = stored
    labels = tmp_path / "labels.csv"
    labels.write_text("call_id,emotion,role,start,end\n"
                      f"{call_id},angry,,,\n{call_id},neutral,agent,0,3\n", encoding="utf-8")
    (tmp_path / "imported" / "labels.csv").write_text("file,emotion\ncall.wav,sad\n", encoding="utf-8")
    conf = config_file(tmp_path, cfg, tmp_path / "no-model")
    for path in (labels, tmp_path / "imported" / "labels.csv"):
        r = run_cli("evaluate", "-c", conf, path)
        assert r.returncode == 0, r.stderr
        assert "from stored results, 0 analysed by the model now." in r.stdout
        assert trial.LABEL not in r.stdout and "not a directory" not in r.stderr

    # Results a trial model made (the pipeline records it in the call's summary) are said to be one.
    with svc.sessions.begin() as s:
        call = s.get(Call, call_id)
        call.summary = {**call.summary, "model": {"trial": True}}
    r = run_cli("evaluate", "-c", conf, labels)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{trial.LABEL}: these figures measure nothing")

    # A file nobody imported needs the model: said in one line.
    (tmp_path / "imported" / "other.wav").write_bytes(
        write_conversation(tmp_path / "x", [(0, 0.5, AGENT)], 4.0).read_bytes())
    (tmp_path / "imported" / "labels.csv").write_text("file,emotion\nother.wav,sad\n", encoding="utf-8")
    r = run_cli("evaluate", "-c", conf, tmp_path / "imported" / "labels.csv")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: model.path '{tmp_path / 'no-model'}' is not a directory (needed for the labelled files that "
        f"have no stored results)")


@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory) -> Path:
    """Random weights marked as `callmood make-random-model` marks them."""
    return make_trial_model_dir(tmp_path_factory.mktemp("trial") / "random-model")


def test_fresh_runs_the_model_and_other_rules_and_a_trial_says_so(tmp_path, trial_dir, stored):
    svc, cfg, imported, call_id = stored
    labels = tmp_path / "imported" / "labels.csv"
    labels.write_text("file,emotion,role\ncall.wav,angry,customer\n", encoding="utf-8")
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, trial_dir), labels, "--fresh",
                "--rules", HERE / "rules", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "1 label(s) over 1 call(s): 0 from stored results, 1 analysed by the model now." in r.stdout
    assert r.stdout.startswith(f"{trial.LABEL}: these figures measure nothing")  # said first
    assert f"{trial_dir}: {trial.TEXT}: every emotion it gives is meaningless" in r.stderr
    [pred] = rows((tmp_path / "out" / "predictions.csv").read_bytes())
    assert pred["from"] == "model"
    # tests/rules/always.yaml fires on any emotion at min_confidence 0: "as written" is off the sweep.
    assert "scenario everything: 1 labelled call(s), 1 labelled angry/disgusted/" in r.stdout
    assert "min_confidence now 0.00" in r.stdout
    sweep = rows((tmp_path / "out" / "thresholds.csv").read_bytes())
    assert {s["scenario"] for s in sweep} == {"everything"} and not any(s["current"] for s in sweep)


def test_bad_rows_are_listed_with_their_lines_and_nothing_is_evaluated(tmp_path, model_dir, db_url, app_factory,
                                                                       clock):
    cfg = make_config(tmp_path, model_dir, db_url, retention={"segments_days": 1})
    svc, _ = app_factory(cfg, model=True, clock=clock)
    (tmp_path / "calls").mkdir()
    waiting = write_conversation(tmp_path / "calls" / "waiting", [(0, 0.5, AGENT)], 4.0)
    old = write_conversation(tmp_path / "calls" / "old", [(0, 0.5, CUSTOMER)], 7.0)
    old_id = analysed_call(svc, cfg, old)
    clock.advance(days=2)
    svc.purge()  # retention removes old's per-segment results
    [(_, waiting_id)] = import_paths([str(waiting)], cfg, svc.intake()).new  # imported, not analysed
    (tmp_path / "calls" / "folder.wav").mkdir()
    (tmp_path / "calls" / "empty.wav").write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        HEADER
        + "calls/missing.wav,,,,,angry,,\n"      # 2
        + ",999999,,,,angry,,\n"                 # 3
        + f",{waiting_id},,,,angry,,\n"          # 4
        + f",{old_id},,,,angry,,\n"              # 5
        + "calls/old.wav,,,,,furious,,\n"        # 6
        + "calls/old.wav,,,,,angry,,nowhere\n"   # 7
        + "calls/folder.wav,,,,,sad,,\n"         # 8
        + "calls/empty.wav,,,,,sad,,\n",         # 9
        encoding="utf-8")
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, model_dir), labels, "--out", tmp_path / "out")
    assert r.returncode == 1 and r.stdout == ""
    said = r.stderr.strip().splitlines()[1:]  # the first names the config
    # Rows that cannot be read are said first (nothing else is looked at then).
    assert said == ["labels.csv:6: emotion: 'furious' is not an emotion (known: angry, disgusted, fearful, happy, "
                    "neutral, other, sad, surprised, unknown, or FunASR's names: 生气 厌恶 恐惧 开心 中立 其他 难过 "
                    "吃惊 <unk>)", f"Error: {labels}: 1 problem(s); nothing evaluated"]
    labels.write_text(labels.read_text(encoding="utf-8").replace("furious", "angry"), encoding="utf-8")
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, model_dir), labels, "--out", tmp_path / "out")
    assert r.returncode == 1 and r.stdout == "" and not (tmp_path / "out").exists()
    said = r.stderr.strip().splitlines()[1:]
    missing = (tmp_path / "calls" / "missing.wav").resolve()
    assert said[0] == f"labels.csv:2: file: 'calls/missing.wav': no such file ({missing})"
    assert said[1] == "labels.csv:3: call_id 999999: no such call"
    assert said[2] == (f"labels.csv:4: call_id {waiting_id}: not analysed (status received); label it once a "
                       f"worker has analysed it, or label its recording file")
    assert said[3].startswith(f"labels.csv:5: call_id {old_id}: its per-segment results were removed by the "
                              f"retention policy on 2026-11-")
    assert said[3].endswith("(retention.segments_days); label a call analysed since, or its recording file")
    assert said[4].startswith("labels.csv:7: scenario: 'nowhere' is not a scenario of the rules "
                              "(finance_complaint, general, marketing, vip_customer; rules: ")
    assert said[5] == f"labels.csv:8: file: 'calls/folder.wav': not a file ({(tmp_path / 'calls' / 'folder.wav')})"
    assert said[6] == "labels.csv:9: file: 'calls/empty.wav': empty"
    assert said[7:] == [f"Error: {labels}: 7 problem(s); nothing evaluated"]


def test_a_file_that_is_not_audio(tmp_path, model_dir, sqlite_url):
    cfg = make_config(tmp_path, model_dir, sqlite_url)
    (tmp_path / "bad.wav").write_bytes(b"garbage" * 100)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,emotion\nbad.wav,angry\nbad.wav,sad\n", encoding="utf-8")
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, model_dir), labels)
    assert r.returncode == 1 and r.stdout == ""
    said = r.stderr.strip().splitlines()
    assert said[-3].startswith("labels.csv:2: file: 'bad.wav': cannot decode recording")
    assert said[-2].startswith("labels.csv:3: file: 'bad.wav': cannot decode recording")
    assert said[-1] == f"Error: {labels}: 2 problem(s); nothing evaluated"
