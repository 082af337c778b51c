"""Decoding the formats call centers produce, made with ffmpeg at test time."""

import numpy as np
import pytest

from plugin.audio.decode import DecodeError, decode
from plugin.audio.segment import Track, tracks_for, windows
from tests.helpers import make_audio, make_silence


@pytest.mark.parametrize("fmt,rate,channels", [
    ("wav_pcm", 8000, 1), ("wav_pcm", 16000, 2), ("wav_pcm", 44100, 1), ("wav_mulaw", 8000, 2),
    ("mp3", 44100, 2), ("mp3", 8000, 1), ("ogg_opus", 16000, 2), ("m4a_aac", 16000, 1),
    ("m4a_aac", 44100, 2), ("amr", 8000, 1),
])
def test_formats_decode_to_16k_with_channels_kept(tmp_path, fmt, rate, channels):
    src = make_audio(tmp_path / "in", fmt, rate, channels, 5.0)
    audio = decode(src, tmp_path / "out.wav")
    assert audio.sample_rate == 16000 and audio.channels == channels
    assert audio.duration == pytest.approx(5.0, abs=0.1)
    for ch in range(channels):
        x = audio.channel(ch)
        assert x.dtype == np.float32 and len(x) == audio.frames
        assert 0.05 < np.abs(x).max() <= 1.0
    if channels == 2:  # the two channels carry different tones
        assert not np.allclose(audio.channel(0)[:16000], audio.channel(1)[:16000], atol=0.05)
        assert audio.mixed().shape == (audio.frames,)


def test_max_duration_cuts_long_recordings(tmp_path):
    audio = decode(make_audio(tmp_path / "long", "wav_pcm", 16000, 1, 6.0), tmp_path / "o.wav", 2.0)
    assert audio.duration == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("content", [b"", b"hello, I am text, not audio" * 50, b"RIFF\x00\x00\x00\x00WAVE",
                                     b"\xff\xfb" + bytes(range(256)) * 20])
def test_corrupt_input_is_a_clear_error(tmp_path, content):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    with pytest.raises(DecodeError, match="cannot decode recording"):
        decode(bad, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


def test_windows_and_tracks(tmp_path):
    audio = decode(make_audio(tmp_path / "s", "wav_pcm", 16000, 2, 7.5), tmp_path / "o.wav")
    tracks, note = tracks_for(audio, {0: "agent", 1: "customer"})
    assert tracks == [Track(0, "agent"), Track(1, "customer")] and note is None
    w = windows(audio, tracks[1], 3.0, 1.0)
    assert [(x.start, x.end) for x in w] == [(0, 48000), (48000, 96000), (96000, 120000)]
    assert windows(audio, tracks[1], 3.0, 2.0)[-1].end == 96000  # 1.5 s tail dropped

    mono = decode(make_audio(tmp_path / "m", "wav_pcm", 16000, 1, 3.0), tmp_path / "m-out.wav")
    tracks, note = tracks_for(mono, {0: "agent", 1: "customer"})
    assert tracks == [Track(-1, "mixed")] and "mono" in note


@pytest.mark.parametrize("vad", ["silero", "energy"])
def test_silence_is_not_classified(tmp_path, emotion_model, vad):
    from plugin.config import AudioConfig
    from plugin.flow.analysis import analyze_audio

    audio = decode(make_silence(tmp_path / "quiet.wav", 6.0), tmp_path / "o.wav")
    analysis, notes = analyze_audio(audio, emotion_model, AudioConfig(vad=vad))
    assert analysis.segments == [] and analysis.emotion is None
    assert notes["skipped_s"] == pytest.approx(6.0) and notes["classified_s"] == 0
