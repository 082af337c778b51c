"""Speech only: silero-vad finds the speech per channel; windows sit inside it with true times."""

from __future__ import annotations

import pytest

from plugin.audio import vad
from plugin.audio.decode import decode
from plugin.audio.segment import QUANTUM_S, Track, read
from plugin.config import AudioConfig
from plugin.flow.analysis import analyze_audio
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


@pytest.fixture
def model(emotion_model):
    return emotion_model


def test_speech_regions_follow_the_speakers(tmp_path):
    path = write_conversation(tmp_path / "call", _turns(), 18.0, channels=2, rate=8000, fmt="wav_mulaw")
    audio = decode(path, tmp_path / "d.wav")
    spans = {0: (1.0, 1.0 + _spoken(AGENT)), 1: (7.0, 7.0 + _spoken(CUSTOMER))}
    for ch, (a, b) in spans.items():
        [probs] = vad.speech_probs([lambda s, e: read(audio, Track(ch, "x"), s, e)], audio.frames)
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


def test_the_tracks_of_a_call_share_the_vads_batches(tmp_path):
    """Scoring both channels together gives each channel the probabilities it gets alone."""
    import numpy as np

    path = write_conversation(tmp_path / "call", _turns(), 18.0, channels=2, rate=8000, fmt="wav_mulaw")
    audio = decode(path, tmp_path / "d.wav")
    reads = [lambda s, e, ch=ch: read(audio, Track(ch, "x"), s, e) for ch in (0, 1)]
    together = vad.speech_probs(reads, audio.frames)
    alone = [vad.speech_probs([r], audio.frames)[0] for r in reads]
    assert [p.shape for p in together] == [p.shape for p in alone]
    assert max(float(np.abs(a - b).max()) for a, b in zip(together, alone)) < 1e-5
