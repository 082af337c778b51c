"""SenseVoiceSmall through FunASR: loading, batching and determinism on random weights,
and what the hand-set stand-in (tests/asr_standin.py) hears through the whole analysis:
the words, the tags, the masking, every format a call center records in."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.audio.decode import decode
from plugin.config import AsrConfig, AudioConfig
from plugin.flow.analysis import Listening, analyze_audio, listening
from plugin.model.asr import SpeechModel, SpeechService
from plugin.model.common import ModelUnavailable
from plugin.model.sensevoice_dir import SPECIAL_TAGS, VOCAB_SIZE
from tests.asr_standin import RATE, write_call

AUDIO = AudioConfig(vad="energy")


@pytest.fixture(scope="module")
def random_speech(speech_dir) -> SpeechModel:
    return SpeechModel(AsrConfig(path=str(speech_dir), batch_size=4), "cpu")


def test_the_random_model_loads_with_sensevoices_vocabulary_and_special_ids(random_speech):
    sp = random_speech.automodel.kwargs["tokenizer"].sp
    assert sp.get_piece_size() == VOCAB_SIZE
    for tag, i in SPECIAL_TAGS.items():
        assert sp.piece_to_id(tag) == i
    assert random_speech.automodel.kwargs["frontend"].dither == 0.0
    assert type(random_speech.automodel.model).__name__ == "SenseVoiceSmall"


def test_windows_of_any_length_each_get_a_transcript_and_the_same_one_in_any_batch(random_speech):
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (48000, 48000, 16000, 48000, 30000, 48000)]
    together = random_speech.transcribe(windows)
    assert len(together) == len(windows)
    alone = [random_speech.transcribe([w])[0] for w in windows]
    assert together == alone  # equal lengths share batches unpadded; no dither: the same words
    assert random_speech.transcribe(windows) == together
    assert random_speech.batcher.largest_batch == 4  # batch_size 4: four 3 s windows in one forward


def test_the_stand_in_hears_its_sentences_with_its_tags(speech_model, standin):
    heard = speech_model.transcribe([standin.audio(s, 3.0) for s in ("我要投诉", "我要退款，不然我打12315。")])
    assert [h.text for h in heard] == ["我要投诉", "我要退款，不然我打12315。"]
    assert {(h.language, h.tag_emotion, h.events) for h in heard} == {("zh", "angry", ())}


@pytest.mark.parametrize("fmt,codec", [
    ("wav", None),
    ("wav", ["-ar", "8000", "-c:a", "pcm_mulaw"]),  # G.711 μ-law, 8 kHz: what PBXs record
    ("wav", ["-ar", "8000", "-c:a", "pcm_alaw"]),
    ("mp3", ["-ar", "16000", "-c:a", "libmp3lame", "-b:a", "64k"]),
])
def test_a_stereo_call_is_transcribed_per_channel_in_the_formats_call_centers_record(
        tmp_path, emotion_model, speech_model, standin, fmt, codec):
    path = write_call(tmp_path / f"call.{fmt}", standin,
                      [["您好，请问有什么可以帮您？", None, "好的，我帮您查一下。"],
                       [None, "我要退款，不然我打12315。", None]], codec=codec)
    audio = decode(path, tmp_path / "decoded.wav")
    analysis, notes = analyze_audio(audio, emotion_model, AUDIO, {0: "agent", 1: "customer"},
                                    listening=Listening(speech_model))
    said = sorted((s.role, s.start, s.text) for s in analysis.segments)
    assert said == [("agent", 0.0, "您好，请问有什么可以帮您？"), ("agent", 6.0, "好的，我帮您查一下。"),
                    ("customer", 3.0, "我要退款，不然我打12315。")]
    assert notes["transcribed"] == 3
    s = next(s for s in analysis.segments if s.role == "customer")
    assert (s.language, s.tag_emotion, s.normalized) == ("zh", "angry", "我要退款不然我打12315")


def test_phone_numbers_are_masked_before_anything_keeps_them(tmp_path, emotion_model, speech_model, standin):
    path = write_call(tmp_path / "call.wav", standin, [["我的手机是13812345678"]])
    audio = decode(path, tmp_path / "decoded.wav")
    masked, _ = analyze_audio(audio, emotion_model, AUDIO, listening=Listening(speech_model, mask=("phone",)))
    assert masked.segments[0].text == "我的手机是*******5678"
    assert "13812345678" not in masked.segments[0].normalized
    kept, _ = analyze_audio(audio, emotion_model, AUDIO, listening=Listening(speech_model, mask=()))
    assert kept.segments[0].text == "我的手机是13812345678"  # asr.mask_numbers: [] says so


def test_asr_windows_emotion_transcribes_only_windows_a_rule_could_use(tmp_path, emotion_model, speech_model,
                                                                       standin):
    path = write_call(tmp_path / "call.wav", standin, [["我要投诉", "我要退款，不然我打12315。", "我要投"]])
    audio = decode(path, tmp_path / "decoded.wav")
    every, _ = analyze_audio(audio, emotion_model, AUDIO, listening=Listening(speech_model))
    labels = [s.label for s in every.segments]  # whatever the random emotion model says
    some, notes = analyze_audio(audio, emotion_model, AUDIO,
                                listening=Listening(speech_model, labels=frozenset({labels[1]})))
    assert [s.text is not None for s in some.segments] == [label == labels[1] for label in labels]
    assert notes["transcribed"] == labels.count(labels[1])
    assert [s.label for s in some.segments] == labels  # the emotions are the same either way


def test_listening_follows_the_config_and_the_rules(speech_model):
    from rules.engine import load_rules
    from tests.conftest import HERE

    rules = load_rules(HERE / "rules")
    assert listening(None, AsrConfig()) is None
    every = listening(speech_model, AsrConfig(mask_numbers=["phone"]))
    assert (every.labels, every.mask) == (None, ("phone",))
    named = {e for sc in rules.scenarios for r in sc.rules for c in r.when.clauses() for e in c.emotions or ()}
    assert listening(speech_model, AsrConfig(windows="emotion"), rules).labels == frozenset(named)


def test_a_missing_speech_model_is_said_in_one_line_and_auto_goes_on_without_words(tmp_path):
    auto = SpeechService(AsrConfig(path=str(tmp_path / "nowhere")))
    assert not auto.settled
    assert auto.try_load("cpu") is False
    assert auto.reason == f"asr.path {str(tmp_path / 'nowhere')!r} is not a directory"
    assert auto.settled and auto.get() is None  # auto: calls go on without words
    required = SpeechService(AsrConfig(enabled=True, path=str(tmp_path / "nowhere")))
    required.try_load("cpu")
    assert not required.settled
    with pytest.raises(ModelUnavailable, match="speech model not ready: asr.path"):
        required.get()
    off = SpeechService(AsrConfig(enabled=False, path=str(tmp_path / "nowhere")))
    assert off.settled and off.try_load("cpu") and off.get() is None and off.state == "off"


def test_a_directory_of_another_funasr_model_is_refused(model_dir):
    with pytest.raises(ModelUnavailable, match="is a Emotion2vec, not SenseVoiceSmall"):
        SpeechModel(AsrConfig(path=str(model_dir)), "cpu")


def test_the_stand_ins_audio_is_what_its_docstring_says(standin):
    x = standin.audio("我要投诉", 3.0)
    assert x.dtype == np.float32 and len(x) == 3 * RATE and np.abs(x).max() <= 0.3 + 1e-6


def _cli_config(tmp_path, model_dir, asr: str):
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {model_dir}}}\naudio: {{vad: energy}}\nasr: {asr}\n")
    return str(p)


def test_callmood_analyze_prints_and_exports_what_was_said(tmp_path, model_dir, standin):
    import csv
    import io

    from tests.helpers import run_cli

    path = write_call(tmp_path / "call.wav", standin, [["我要投诉", "我的手机是13812345678"]])
    cfg = _cli_config(tmp_path, model_dir, f"{{path: {standin.path}}}")
    r = run_cli("analyze", "-c", cfg, "--csv", str(path))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["start"], x["text"], x["language"], x["tag_emotion"]) for x in rows] == [
        ("0.0", "我要投诉", "zh", "angry"), ("3.0", "我的手机是*******5678", "zh", "angry")]
    r = run_cli("analyze", "-c", cfg, str(path))
    assert r.returncode == 0 and "我要投诉" in r.stdout and "13812345678" not in r.stdout


def test_callmood_analyze_goes_on_without_words_and_says_why(tmp_path, model_dir):
    from tests.helpers import make_audio, run_cli

    a = make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0)
    r = run_cli("analyze", "-c", _cli_config(tmp_path, model_dir, f"{{path: {tmp_path / 'none'}}}"), str(a))
    assert r.returncode == 0, r.stderr
    assert f"no transcripts: asr.path {str(tmp_path / 'none')!r} is not a directory" in r.stderr
    r = run_cli("analyze", "-c", _cli_config(tmp_path, model_dir, f"{{enabled: true, path: {tmp_path / 'none'}}}"),
                str(a))
    assert r.returncode == 1 and "speech model not ready: asr.path" in r.stderr


def test_health_and_the_banner_say_when_the_speech_model_is_missing(tmp_path, model_dir, sqlite_url, app_factory):
    from tests.conftest import make_config

    svc, client = app_factory(make_config(tmp_path, model_dir, sqlite_url,
                                          asr={"enabled": "auto", "path": str(tmp_path / "none")}), model=True)
    first = client.get("/health").json  # not tried yet: workers wait for the first attempt
    assert first["status"] == "degraded" and first["detail"]["asr"]["state"] == "not loaded"
    assert "speech model loading, calls wait for it" in first["message"]
    svc.model.try_load_speech()
    h = client.get("/health").json
    assert h["status"] == "degraded" and "speech model not loaded: asr.path" in h["message"]
    assert h["detail"]["asr"] == {"state": "unavailable", "source": str(tmp_path / "none"), "enabled": "auto",
                                  "reason": f"asr.path {str(tmp_path / 'none')!r} is not a directory"}
    page = client.get("/dashboard", headers={"Accept-Language": "en"})
    assert "calls are analysed without their words" in page.get_data(as_text=True)


def test_funasrs_timestamp_index_error_costs_one_window_its_words_not_the_batch(random_speech, monkeypatch):
    real = random_speech.automodel.generate
    bad = np.zeros(48000, np.float32) + 0.01

    def flaky(**kw):  # FunASR 1.4's token timestamps raise IndexError on some text
        if len(kw["input"]) > 1 or np.array_equal(kw["input"][0], bad):
            raise IndexError("list index out of range")
        return real(**kw)

    monkeypatch.setattr(random_speech.automodel, "generate", flaky)
    good = np.random.default_rng(1).standard_normal(48000).astype(np.float32) * 0.1
    heard = random_speech.transcribe([good, bad, good])
    assert heard[1].text == "" and heard[0] == heard[2] and heard[0].text


def test_nothing_but_the_configured_model_is_asked_for(speech_dir, monkeypatch):
    """No VAD, punctuation or speaker model, no update check, no newer-revision check, no
    remote code: what AutoModel is given."""
    import funasr

    seen = {}
    real = funasr.AutoModel

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    monkeypatch.setattr(funasr, "AutoModel", spy)
    SpeechModel(AsrConfig(path=str(speech_dir)), "cpu")
    assert seen["model"] == str(speech_dir.resolve())
    assert seen["disable_update"] is True and seen["check_latest"] is False
    assert not {"vad_model", "punc_model", "spk_model", "trust_remote_code", "remote_code"} & set(seen)


def test_a_number_read_out_across_two_windows_is_masked_in_both(tmp_path, emotion_model, speech_model, standin):
    path = write_call(tmp_path / "call.wav", standin, [["我的手机是138", "12345678，记一下", "我要投诉"]])
    audio = decode(path, tmp_path / "decoded.wav")
    analysis, _ = analyze_audio(audio, emotion_model, AUDIO, listening=Listening(speech_model, mask=("phone",)))
    assert [s.text for s in analysis.segments] == ["我的手机是***", "****5678，记一下", "我要投诉"]
    assert all("1381234" not in (s.normalized or "") for s in analysis.segments)


def test_numbers_are_masked_in_the_matching_form_too(tmp_path, emotion_model, speech_model, standin, monkeypatch):
    """A number behind separators the masker does not know is still masked once normalize
    joins it up: the matching form never keeps a number the words would not show."""
    from plugin.core.transcript import Parsed

    monkeypatch.setattr(speech_model, "transcribe", lambda xs: [Parsed("电话138|1234|5678", "zh", None, ())] * len(xs))
    path = write_call(tmp_path / "call.wav", standin, [["我要投诉"]])
    audio = decode(path, tmp_path / "decoded.wav")
    analysis, _ = analyze_audio(audio, emotion_model, AUDIO, listening=Listening(speech_model, mask=("phone",)))
    [seg] = analysis.segments
    assert seg.text == "电话138|1234|5678"  # "|" is no separator a speaker's pause becomes
    assert seg.normalized == "电话*******5678"


def test_a_failing_speech_model_costs_the_words_not_the_call(tmp_path, emotion_model, speech_model, standin,
                                                             monkeypatch):
    def broken(xs):
        raise RuntimeError("CUDA out of memory\nmore")

    monkeypatch.setattr(speech_model, "transcribe", broken)
    path = write_call(tmp_path / "call.wav", standin, [["我要投诉", "我要投"]])
    audio = decode(path, tmp_path / "decoded.wav")
    analysis, notes = analyze_audio(audio, emotion_model, AUDIO, listening=Listening(speech_model))
    assert len(analysis.segments) == 2 and all(s.text is None for s in analysis.segments)
    assert notes["transcript"] == "failed: RuntimeError: CUDA out of memory" and notes["transcribed"] == 0


def test_health_is_not_ready_while_a_required_speech_model_is_missing(tmp_path, model_dir, sqlite_url, app_factory):
    from tests.conftest import make_config

    svc, client = app_factory(make_config(tmp_path, model_dir, sqlite_url,
                                          asr={"enabled": True, "path": str(tmp_path / "none")}), model=True)
    svc.model.try_load_speech()
    r = client.get("/health")
    assert r.status_code == 503 and r.json["message"].startswith("Speech model not ready: asr.path")
    assert client.application.test_client().get("/health").json == {"status": "error", "message": "not ready"}
