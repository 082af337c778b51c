"""The `callmood` command, run as a user runs it (in this process: tests/helpers.run_cli)."""

import csv
import io

from tests.helpers import free_port, make_audio, run_cli
from tests.speech import write_conversation

AGENT = "Thank you for calling. How can I help you today with your account?"
CUSTOMER = "I have been charged twice this month and nobody has called me back. This is unacceptable."

callmood = run_cli


def said(r) -> list[str]:
    """stderr's lines past the first, which names the config the command read."""
    first, *rest = r.stderr.strip().splitlines()
    assert first.startswith("config: "), first
    return rest


def cfg_file(tmp_path, model_dir, extra=""):
    p = tmp_path / "config.yaml"
    if "audio:" not in extra:
        extra += "audio: {vad: energy}\n"  # tones are not speech to silero (see conftest.make_config)
    p.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {model_dir}}}\nasr: {{enabled: false}}\n{extra}")
    return p


def test_analyze_files(tmp_path, model_dir):
    # Real speech: silero finds it, and only speech is classified (default vad: silero).
    a = write_conversation(tmp_path / "a", [(0, 2.0, CUSTOMER)], 12.0, rate=8000, fmt="wav_mulaw")
    b = write_conversation(tmp_path / "b", [(0, 0.5, AGENT), (1, 6.0, CUSTOMER)], 14.0, channels=2,
                           rate=44100, fmt="mp3")
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir, "audio: {vad: silero}\n")), str(a), str(b),
                 "--roles", "0=agent,1=customer")
    assert r.returncode == 0, r.stderr
    assert f"== {a} (12.0s," in r.stdout and f"== {b} (14.0s," in r.stdout
    assert "track audio skipped as non-speech, vad=silero" in r.stdout
    assert r.stdout.count("verdict:") == 2 and "customer" in r.stdout and "agent" in r.stdout
    assert "no speech" not in r.stdout


def test_analyze_csv(tmp_path, model_dir):
    a = make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 7.0)
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir)), "--csv", str(a))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(float(x["start"]), float(x["end"])) for x in rows] == [(0, 3), (3, 6), (6, 7)]
    assert {x["role"] for x in rows} == {"mixed"} and all(0 < float(x["confidence"]) <= 1 for x in rows)


def test_analyze_reports_bad_files_and_exits_nonzero(tmp_path, model_dir):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage" * 100)
    good = make_audio(tmp_path / "g", "wav_pcm", 16000, 1, 3.0)
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir)), str(bad), str(good))
    assert r.returncode == 1 and f"{bad}: cannot decode recording" in r.stderr
    assert f"== {good}" in r.stdout


def test_clear_one_line_errors(tmp_path, model_dir):
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir, "modle: {}\n")), "x.wav")
    assert r.returncode != 0
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir, "modle: {}\n")),
                 str(make_audio(tmp_path / "x", "wav_pcm", 16000, 1, 2.0)))
    assert r.returncode == 1 and r.stderr.strip().endswith("modle: unknown key (check the spelling against config.example.yaml)")
    assert len(r.stderr.strip().splitlines()) == 1

    missing = tmp_path / "no-model"
    p = tmp_path / "m.yaml"
    p.write_text(f"model: {{path: {missing}}}\n")
    r = callmood("analyze", "-c", str(p), str(make_audio(tmp_path / "y", "wav_pcm", 16000, 1, 2.0)))
    assert r.returncode == 1 and f"model.path '{missing}' is not a directory" in r.stderr
    assert len(said(r)) == 1


def test_make_random_model(tmp_path):
    r = callmood("make-random-model", str(tmp_path / "m"))
    assert r.returncode == 0 and (tmp_path / "m" / "model.pt").exists()


def test_serve_refuses_broken_rules_and_database_in_one_line(tmp_path, model_dir):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("rules:\n  - name: r\n    when: {emotions: [angry], min_confidence: 7}\n")
    r = callmood("serve", "-c", str(cfg_file(tmp_path, model_dir, f"rules: {{path: {rules}}}\n")),
                 "--port", free_port())
    assert r.returncode == 1 and len(said(r)) == 1
    assert "bad.yaml:3: rules.0.when.min_confidence: Input should be less than or equal to 1" in r.stderr

    r = callmood("serve", "-c", str(cfg_file(tmp_path, model_dir, "database: {url: 'nosuchdb://x'}\n")),
                 "--port", free_port())
    assert r.returncode == 1 and len(said(r)) == 1
    assert "cannot open database 'nosuchdb://x'" in r.stderr


HOSTILE_TEXT = '=HYPERLINK("http://evil.example","退款")'


def test_analyze_csv_and_lines_carry_the_words_as_data(tmp_path, model_dir, monkeypatch):
    """What was said in each segment, as the recognizer gave it (built by hand here): the CSV's
    text, language, tag_emotion and events columns, formula-like words quoted; a terminal
    line without control characters."""
    from plugin.core.data import SegmentResult, summarize
    from plugin.flow import analysis

    def heard(audio, model, cfg, channel_roles=None, **kw):
        segs = [SegmentResult(0.0, 3.0, 0, "customer", "angry", 0.9, {"angry": 0.9}, text=HOSTILE_TEXT,
                              language="zh", tag_emotion="angry", events=("laughter", "cough")),
                SegmentResult(3.0, 6.0, 0, "customer", "neutral", 0.8, {"neutral": 0.8},
                              text="好的\n\x1b[2J@SUM(1)\r", language="zh", tag_emotion="neutral"),
                SegmentResult(6.0, 7.0, 0, "customer", "neutral", 0.7, {"neutral": 0.7}, text="", language="nospeech"),
                SegmentResult(7.0, 8.0, 0, "customer", "neutral", 0.7, {"neutral": 0.7})]  # no recognizer
        return summarize(segs, 8.0), {"skipped_s": 0.0, "audio_s": 8.0, "vad": "energy", "tracks": 1}

    monkeypatch.setattr(analysis, "analyze_audio", heard)
    a = make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 2.0)
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir)), "--csv", str(a))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0])[-4:] == ["text", "language", "tag_emotion", "events"]
    assert rows[0]["text"] == "'" + HOSTILE_TEXT and rows[0]["events"] == "laughter;cough"
    assert (rows[0]["language"], rows[0]["tag_emotion"]) == ("zh", "angry")
    assert rows[1]["text"] == "好的\n\x1b[2J@SUM(1)\r"  # inside a quoted cell: no formula at its start
    assert [rows[2]["text"], rows[2]["language"]] == ["", "nospeech"]
    assert [rows[3][k] for k in ("text", "language", "tag_emotion", "events")] == ["", "", "", ""]
    r = callmood("analyze", "-c", str(cfg_file(tmp_path, model_dir)), str(a))
    assert r.returncode == 0, r.stderr
    assert HOSTILE_TEXT in r.stdout and "0.800  好的 [2J@SUM(1)\n" in r.stdout and "0.700  (no words)\n" in r.stdout
    assert "\x1b" not in r.stdout
