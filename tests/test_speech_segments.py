"""Speech only: silero-vad finds the speech per channel; windows sit inside it with true times."""

from __future__ import annotations

import pytest

from plugin.analysis import analyze_audio
from plugin.audio import vad
from plugin.audio.decode import decode
from plugin.audio.segment import QUANTUM_S, Track, read
from plugin.config import AudioConfig, ModelConfig
from plugin.inference import EmotionModel
from tests.conftest import event, make_config
from tests.speech import speak, write_conversation

AGENT = "Good morning, thank you for calling. How can I help you today?"
CUSTOMER = ("I was charged twice for the same order and nobody answered my emails. "
            "I want my money back today.")
PAD = 0.3  # speech_pad_s (0.1 s) plus silero's lag as speech fades out


def _spoken(text: str) -> float:
    samples, rate = speak(text)
    return len(samples) / rate


def _turns():
    return [(0, 1.0, AGENT), (1, 7.0, CUSTOMER)]


@pytest.fixture(scope="module")
def model(model_dir):
    return EmotionModel(ModelConfig(path=str(model_dir), device="cpu"))


def test_speech_regions_follow_the_speakers(tmp_path):
    path = write_conversation(tmp_path / "call", _turns(), 18.0, channels=2, rate=8000, fmt="wav_mulaw")
    audio = decode(path, tmp_path / "d.wav")
    spans = {0: (1.0, 1.0 + _spoken(AGENT)), 1: (7.0, 7.0 + _spoken(CUSTOMER))}
    for ch, (a, b) in spans.items():
        probs = vad.speech_probs(lambda s, e: read(audio, Track(ch, "x"), s, e), audio.frames)
        regions = [(s / 16000, e / 16000) for s, e in vad.regions_from_probs(probs, audio.frames)]
        assert regions, f"no speech found on channel {ch}"
        assert all(a - PAD <= s and e <= b + PAD for s, e in regions), (ch, regions, (a, b))
        assert sum(e - s for s, e in regions) >= 0.7 * (b - a)  # most of the turn is speech


def test_only_speech_is_classified_per_channel(tmp_path, model):
    path = write_conversation(tmp_path / "call", _turns(), 18.0, channels=2, rate=8000, fmt="mp3")
    audio = decode(path, tmp_path / "d.wav")
    analysis, notes = analyze_audio(audio, model, AudioConfig(), {0: "agent", 1: "customer"})
    spans = {"agent": (1.0, 1.0 + _spoken(AGENT)), "customer": (7.0, 7.0 + _spoken(CUSTOMER))}
    assert {s.role for s in analysis.segments} == {"agent", "customer"}
    for s in analysis.segments:
        a, b = spans[s.role]
        assert a - PAD <= s.start < s.end <= b + PAD, (s, spans[s.role])
        length = s.end - s.start
        assert 1.0 - 1e-6 <= length <= 3.0 + 1e-6
        assert abs(length / QUANTUM_S - round(length / QUANTUM_S)) < 1e-3  # a few lengths: batches
    assert analysis.segments == sorted(analysis.segments, key=lambda s: (s.channel, s.start))
    # 36 s of track audio, ~9 s of it speech: the rest is skipped and the notes say so.
    assert notes["vad"] == "silero" and notes["audio_s"] == pytest.approx(36.0, abs=0.1)
    assert notes["classified_s"] == pytest.approx(sum(s.end - s.start for s in analysis.segments), abs=0.01)
    assert notes["skipped_s"] == pytest.approx(notes["audio_s"] - notes["classified_s"], abs=0.01)
    assert notes["skipped_s"] > 20 and notes["classified_s"] <= notes["speech_s"] + 1e-6


def test_mono_call_stays_mono(tmp_path, model):
    path = write_conversation(tmp_path / "mono", _turns(), 16.0, channels=1, rate=16000, fmt="ogg_opus")
    audio = decode(path, tmp_path / "d.wav")
    analysis, notes = analyze_audio(audio, model, AudioConfig(), None)
    assert analysis.segments and {s.role for s in analysis.segments} == {"mixed"}
    assert {s.channel for s in analysis.segments} == {-1} and notes["audio_s"] == pytest.approx(16.0, abs=0.1)


def test_vad_off_classifies_everything(tmp_path, model):
    path = write_conversation(tmp_path / "mono", [(0, 1.0, AGENT)], 9.0)
    audio = decode(path, tmp_path / "d.wav")
    analysis, notes = analyze_audio(audio, model, AudioConfig(vad="off"), None)
    assert [(s.start, s.end) for s in analysis.segments] == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]
    assert notes["skipped_s"] == 0


def test_speech_calls_end_to_end_in_parallel(tmp_path, model_dir, db_url, service_factory, recordings, crm,
                                             wecom):
    """Several stereo calls at once: two worker threads, shared batches, speech-only segments."""
    cfg = make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom,
                      audio={"vad": "silero"}, worker={"concurrency": 2})
    svc = service_factory(cfg)
    ids = []
    for i in range(3):
        path = write_conversation(tmp_path / f"c{i}", _turns(), 16.0, channels=2, rate=8000, fmt="wav_mulaw")
        url = recordings.serve_file(f"/rec/c{i}.wav", path)
        r = svc.post_event(event(f"sp-{i}", url, channels={"0": "agent", "1": "customer"}))
        assert r.status_code == 202, r.text
        ids.append(r.json()["call_id"])
    for call_id in ids:
        call = svc.wait_call(call_id, timeout=120)
        assert call["status"] == "analyzed", call
        roles = {s["role"] for s in call["segments"]}
        assert roles == {"agent", "customer"}
        customer = [s for s in call["segments"] if s["role"] == "customer"]
        assert min(s["start"] for s in customer) >= 7.0 - PAD  # nothing before the customer spoke
        assert call["summary"]["vad"] == "silero" and call["summary"]["skipped_s"] > 15
        assert call["alerts"] and call["alerts"][0]["role"] == "customer"
    model = svc.svc.model.get()
    assert model.batcher.batches_run >= 1
