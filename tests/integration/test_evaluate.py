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
                 f"model: {{path: '{model_path}'}}\naudio: {{vad: energy}}\nasr: {{enabled: false}}\n{extra}", encoding="utf-8")
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


def test_files_that_would_not_decode_are_refused_before_the_model_loads(tmp_path, model_dir, sqlite_url,
                                                                        monkeypatch):
    """Each file the model would analyse is probed first (what decode checks first): a corrupt
    one is a problem with its lines while nothing has run, not after the good files' hours."""
    cfg = make_config(tmp_path, model_dir, sqlite_url)
    (tmp_path / "calls").mkdir()
    write_conversation(tmp_path / "calls" / "good", [(0, 0.5, CUSTOMER)], 6.0, rate=8000, fmt="wav_pcm")
    (tmp_path / "calls" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 100)
    (tmp_path / "calls" / "page.wav").write_bytes(b"<!DOCTYPE html><html>expired link</html>")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,emotion\ncalls/good.wav,angry\ncalls/broken.wav,sad\ncalls/page.wav,sad\n"
                      "calls/broken.wav,angry\n", encoding="utf-8")
    analysed = []
    real = predict.analyze_audio
    monkeypatch.setattr(predict, "analyze_audio", lambda *a, **kw: analysed.append(1) or real(*a, **kw))
    # model.path names nothing: the problems are said before the model is ever looked for.
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, tmp_path / "no-model"), labels)
    assert r.returncode == 1 and r.stdout == "" and analysed == []
    said = r.stderr.strip().splitlines()[1:]
    assert [s.split(": ", 2)[:2] for s in said[:3]] == [["labels.csv:3", "file"], ["labels.csv:4", "file"],
                                                        ["labels.csv:5", "file"]]
    assert said[0].startswith("labels.csv:3: file: 'calls/broken.wav': cannot decode recording")
    assert said[1] == ("labels.csv:4: file: 'calls/page.wav': cannot decode recording: not an audio file (looks "
                       "like HTML: a web page or an error page, not the recording)")
    assert said[3:] == [f"Error: {labels}: 3 problem(s); nothing evaluated"]
    assert "model.path" not in r.stderr


def test_a_file_that_fails_once_the_model_runs_on_it_leaves_the_rest_evaluated(tmp_path, model_dir, sqlite_url,
                                                                                monkeypatch):
    """A file that passes the probe and still fails (decoding, or its analysis) is listed as not
    evaluated with its lines; the others are measured, printed and written; exit 1 at the end."""
    from plugin.audio.decode import DecodeError
    cfg = make_config(tmp_path, model_dir, sqlite_url)
    (tmp_path / "calls").mkdir()
    for name in ("one", "two", "three"):
        write_conversation(tmp_path / "calls" / name, [(0, 0.5, AGENT)], 5.0, rate=8000, fmt="wav_pcm")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,emotion\ncalls/one.wav,angry\ncalls/two.wav,sad\ncalls/three.wav,neutral\n"
                      "calls/two.wav,angry\n", encoding="utf-8")
    real_decode, real_analyze = predict.decode, predict.analyze_audio

    def decode(src, *a, **kw):  # the real decoder, but two.wav is cut short by a full disk
        if Path(src).name == "two.wav":
            raise DecodeError("cannot decode recording: No space left on device")
        return real_decode(src, *a, **kw)

    def analyze(audio, *a, **kw):  # the real analysis, but the next one fails when asked to
        if fail_next:
            fail_next.pop()
            raise MemoryError("cannot allocate")
        return real_analyze(audio, *a, **kw)

    fail_next: list[bool] = []
    monkeypatch.setattr(predict, "decode", decode)
    monkeypatch.setattr(predict, "analyze_audio", analyze)
    out = tmp_path / "out"
    conf = config_file(tmp_path, cfg, model_dir)
    r = run_cli("evaluate", "-c", conf, labels, "--out", out)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert [e for e in err if "not evaluated" in e] == [
        "labels.csv:3: not evaluated: file: 'calls/two.wav': cannot decode recording: No space left on device",
        "labels.csv:5: not evaluated: file: 'calls/two.wav': cannot decode recording: No space left on device",
        f"Error: {labels}: 2 label(s) not evaluated (listed above)"]
    assert err[-1] == f"Error: {labels}: 2 label(s) not evaluated (listed above)"
    assert "2 label(s) over 2 call(s): 0 from stored results, 2 analysed by the model now." in r.stdout
    assert "2 label(s) not evaluated: their files failed to decode or analyse" in r.stdout
    assert [p["line"] for p in rows((out / "predictions.csv").read_bytes())] == ["2", "4"]
    assert (out / "evaluation.png").exists()

    # An analysis that raises is set aside the same way (the first file analysed, here).
    fail_next.append(True)
    r = run_cli("evaluate", "-c", conf, labels)
    assert r.returncode == 1
    assert "labels.csv:2: not evaluated: file: 'calls/one.wav': cannot analyse: MemoryError: cannot allocate" \
        in r.stderr
    assert "1 label(s) over 1 call(s)" in r.stdout

    # Every file failing: nothing to measure, said as a wrong row is.
    labels.write_text("file,emotion\ncalls/two.wav,sad\n", encoding="utf-8")
    r = run_cli("evaluate", "-c", conf, labels)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-2:] == [
        "labels.csv:2: file: 'calls/two.wav': cannot decode recording: No space left on device",
        f"Error: {labels}: 1 problem(s); nothing evaluated"]


def test_channels_given_for_a_mono_file_are_said_with_their_lines(tmp_path, model_dir, sqlite_url):
    """analyze_audio analyses a mono file mixed whatever channels say: said per file, naming
    the label lines it affects (the agent's rows of it are (none) misses)."""
    cfg = make_config(tmp_path, model_dir, sqlite_url)
    (tmp_path / "calls").mkdir()
    write_conversation(tmp_path / "calls" / "mono", [(0, 0.5, AGENT), (0, 5.0, CUSTOMER)], 10.0, channels=1,
                       rate=8000, fmt="wav_pcm")
    write_conversation(tmp_path / "calls" / "plain", [(0, 0.5, AGENT)], 5.0, rate=8000, fmt="wav_pcm")
    labels = tmp_path / "labels.csv"
    labels.write_text('file,role,emotion,channels\ncalls/plain.wav,,sad,\n'
                      'calls/mono.wav,agent,neutral,"0=agent,1=customer"\ncalls/mono.wav,customer,angry,\n',
                      encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("evaluate", "-c", config_file(tmp_path, cfg, model_dir), labels, "--out", out)
    assert r.returncode == 0, r.stderr
    assert [e for e in r.stderr.splitlines() if "analysed mixed" in e] == [
        "labels.csv:3: file: 'calls/mono.wav': channel layout given but the recording is mono; analysed mixed "
        "(label lines 3, 4)"]
    preds = rows((out / "predictions.csv").read_bytes())
    assert preds[1]["predicted"] == "(none)"  # no agent track in a mono call


def test_an_out_folder_that_cannot_be_written_is_one_line(tmp_path, model_dir, stored):
    svc, cfg, imported, call_id = stored
    labels = tmp_path / "labels.csv"
    labels.write_text(f"call_id,emotion\n{call_id},angry\n", encoding="utf-8")
    conf = config_file(tmp_path, cfg, model_dir)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    # Said before anything is evaluated (an analysis of hours is not lost to a typo).
    r = run_cli("evaluate", "-c", conf, labels, "--out", blocker / "out")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == f"Error: {blocker}: not a folder" and "Traceback" not in r.stderr
    # A write that fails once the tables are printed: what can be written is, then one line.
    (tmp_path / "out" / "evaluation.png").mkdir(parents=True)
    r = run_cli("evaluate", "-c", conf, labels, "--out", tmp_path / "out")
    assert r.returncode == 1 and "1 label(s) over 1 call(s)" in r.stdout
    assert r.stderr.strip().splitlines()[-1] == f"Error: {tmp_path / 'out' / 'evaluation.png'}: Is a directory"
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == [
        "confusion.csv", "per_class.csv", "predictions.csv", "thresholds.csv"]


def test_a_call_id_past_32_bits_is_an_unknown_call_on_both_databases(tmp_path, db_url, app_factory):
    from plugin.flow.evaluate.labels import read_labels
    svc, _ = app_factory(make_config(tmp_path, None, db_url))
    labels = tmp_path / "labels.csv"
    labels.write_text(f"call_id,emotion\n{2**40},angry\n{2**63 - 1},sad\n", encoding="utf-8")
    p = predict.plan(read_labels(labels), svc.sessions, 10**9)
    assert [what for _, what in p.problems] == [f"call_id {2**40}: no such call", f"call_id {2**63 - 1}: no such call"]


def test_stored_calls_are_read_a_chunk_at_a_time(tmp_path, stored):
    """Two units of one stored call (its id, and the file it was imported from), read one
    call per chunk: each unit comes with the call's segments, never all calls' at once."""
    from plugin.flow.evaluate.labels import read_labels
    svc, cfg, imported, call_id = stored
    labels = tmp_path / "imported" / "labels.csv"
    labels.write_text(f"file,call_id,emotion\n,{call_id},angry\ncall.wav,,sad\n", encoding="utf-8")
    planned = predict.plan(read_labels(labels), svc.sessions, 10**9)
    assert not planned.problems and not planned.to_run
    assert {key: cid for key, (cid, _) in planned.stored.items()} == {
        f"call:{call_id}": call_id, f"file:{imported.resolve()}": call_id}
    units = list(predict.stored_units(svc.sessions, planned.stored, chunk=1))
    assert sorted(u.key for u in units) == sorted(planned.stored)
    assert all(u.origin == predict.STORED and u.analysis.segments for u in units)
    assert units[0].analysis.segments == units[1].analysis.segments
