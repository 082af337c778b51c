"""Telephone audio, one way (issue 15, item 4): every recording reaches the model through
decode()'s one resampler, which is recorded with the source's rate, codec and container;
narrowband calls (8 kHz, or upsampled from 8 kHz before they reached us) are flagged in
the call's summary, the API and /predict. Files are made with ffmpeg at test time."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from plugin.audio.decode import SOXR, audio_line, decode, ffmpeg_exe, resampler
from plugin.audio.merge import merge
from tests.conftest import event, make_config, signed
from tests.helpers import make_audio


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def upsampled(tmp_path: Path, narrow: Path, rate: int, codec: list[str], ext: str) -> Path:
    """What a PBX or a recording store does before the file reaches us: the 8 kHz call
    resampled (ffmpeg's default swr here) to a wideband rate."""
    out = tmp_path / f"up{rate}.{ext}"
    ffmpeg("-i", narrow, "-ar", rate, *codec, out)
    return out


def test_the_bundled_ffmpeg_resamples_with_soxr():
    assert resampler() == SOXR
    assert "resampler=soxr" in SOXR and "dither_method=none" in SOXR


@pytest.mark.parametrize("fmt,codec", [("wav_mulaw", "pcm_mulaw"), ("mp3", "mp3"), ("amr", "amr_nb")])
def test_an_8khz_call_is_narrowband_with_its_source_recorded(tmp_path, fmt, codec):
    audio = decode(make_audio(tmp_path / "phone", fmt, 8000, 1, 4.0), tmp_path / "o.wav")
    d = audio.describe()
    assert audio.sample_rate == 16000 and audio.duration == pytest.approx(4.0, abs=0.1)
    assert d["source_rate"] == 8000 and d["source_codec"] == codec and d["resampler"] == SOXR
    assert d["narrowband"] is True and "8000 Hz" in d["narrowband_reason"]
    assert d["partial"] is False
    # and the spectrum agrees: nothing above 4.6 kHz
    assert d["high_band_db"][0] < -60
    assert audio_line(d).startswith(f"8000 Hz {codec}/") and "-> 16 kHz (soxr); NARROWBAND: " in audio_line(d)


@pytest.mark.parametrize("fmt,rate", [("wav_pcm", 44100), ("mp3", 44100), ("wav_pcm", 16000),
                                      ("m4a_aac", 48000)])
def test_a_wideband_call_is_not_narrowband(tmp_path, fmt, rate):
    audio = decode(make_audio(tmp_path / "wide", fmt, rate, 2, 4.0), tmp_path / "o.wav")
    d = audio.describe()
    assert d["source_rate"] == rate and d["resampler"] == SOXR
    assert d["narrowband"] is False and "narrowband_reason" not in d
    assert all(db > -45 for db in d["high_band_db"]), d["high_band_db"]


@pytest.mark.parametrize("rate,codec,ext", [(16000, ["-c:a", "pcm_s16le"], "wav"),
                                            (44100, ["-c:a", "libmp3lame", "-b:a", "64k"], "mp3")])
def test_an_8khz_call_upsampled_before_it_reached_us_is_narrowband_by_its_spectrum(tmp_path, rate, codec, ext):
    narrow = make_audio(tmp_path / "phone", "wav_mulaw", 8000, 1, 6.0)
    audio = decode(upsampled(tmp_path, narrow, rate, codec, ext), tmp_path / "o.wav")
    d = audio.describe()
    assert d["source_rate"] == rate  # the file itself says wideband...
    assert d["narrowband"] is True and d["high_band_db"][0] < -60  # ...its spectrum does not
    assert "upsampled" in d["narrowband_reason"] and f"{rate} Hz" in d["narrowband_reason"]


def test_one_narrowband_channel_is_enough_and_each_channel_is_measured(tmp_path):
    wide = make_audio(tmp_path / "agent", "wav_pcm", 16000, 1, 4.0)
    narrow = upsampled(tmp_path, make_audio(tmp_path / "cust", "wav_mulaw", 8000, 1, 4.0), 16000,
                       ["-c:a", "pcm_s16le"], "wav")
    stereo = tmp_path / "stereo.wav"
    ffmpeg("-i", wide, "-i", narrow, "-filter_complex", "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]",
           "-map", "[a]", "-c:a", "pcm_s16le", stereo)
    d = decode(stereo, tmp_path / "o.wav").describe()
    agent_db, customer_db = d["high_band_db"]
    assert agent_db > -45 and customer_db < -60 and d["narrowband"] is True


def test_the_same_file_always_gives_the_same_samples(tmp_path):
    src = make_audio(tmp_path / "call", "mp3", 44100, 2, 5.0)
    a, b = decode(src, tmp_path / "a.wav"), decode(src, tmp_path / "b.wav")
    assert a.frames == b.frames and a.resampler == b.resampler == SOXR
    for ch in range(2):
        assert np.array_equal(a.channel(ch), b.channel(ch))


def test_the_resampler_is_soxr_hq_to_the_last_bit(tmp_path):
    """The samples are those of libsoxr's HQ recipe (python-soxr, librosa's default
    resampler 'soxr_hq'), to within half a 16-bit step: the filter named is the one used,
    and nothing else resamples on the way."""
    soxr = pytest.importorskip("soxr")
    soundfile = pytest.importorskip("soundfile")
    src = make_audio(tmp_path / "wide", "wav_pcm", 44100, 1, 3.0)
    raw, rate = soundfile.read(src, dtype="float64")
    assert rate == 44100
    expected = soxr.resample(raw, 44100, 16000, quality="HQ")
    got = decode(src, tmp_path / "o.wav").channel(0)
    assert len(got) == len(expected)
    assert np.abs(got[100:-100] - expected[100:-100]).max() <= 1.5 / 32768


def test_per_party_files_put_side_by_side_keep_each_source(tmp_path):
    agent = decode(make_audio(tmp_path / "agent", "wav_pcm", 16000, 1, 4.0), tmp_path / "a.wav")
    customer = decode(make_audio(tmp_path / "cust", "amr", 8000, 1, 3.0), tmp_path / "c.wav")
    merged = merge([agent, customer], tmp_path / "m.wav")
    d = merged.describe()
    assert d["resampler"] == SOXR and d["source_rate"] == 8000  # the lowest rate is the one that limits
    assert d["narrowband"] is True and "8000 Hz" in d["narrowband_reason"] and d["partial"] is False
    assert [(s["source_rate"], s["source_codec"], s["narrowband"]) for s in d["sources"]] == [
        (16000, "pcm_s16le", False), (8000, "amr_nb", True)]


def test_funasr_is_fed_16khz_arrays_and_resamples_nothing(model_dir, monkeypatch):
    """FunASR's own frontend would resample an array it is told is at another rate; ours
    are 16 kHz and it is told nothing else, so its resamplers are never called."""
    from funasr.utils import load_utils

    from plugin.config import ModelConfig
    from plugin.model.loading import EmotionModel

    def refuse(*a, **k):
        raise AssertionError("FunASR resampled a waveform")

    # load_utils resamples with torchaudio where it is installed, else with librosa.
    monkeypatch.setattr(load_utils.librosa, "resample", refuse)
    if load_utils.torchaudio is not None:
        monkeypatch.setattr(load_utils.torchaudio.transforms, "Resample", refuse)
    model = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", engine="funasr"))
    x = np.full(16000 * 2, 0.01, dtype=np.float32)
    scores = model.classify([x])
    assert len(scores) == 1 and abs(sum(scores[0].values()) - 1) < 1e-3
    # The patch is where FunASR would resample: told the array is 8 kHz, it does.
    with pytest.raises(AssertionError, match="resampled"):
        model.automodel.generate(input=[x], fs=8000, granularity="utterance", extract_embedding=False,
                                 disable_pbar=True)


def test_the_summary_the_api_and_predict_say_it(tmp_path, model_dir, sqlite_url, app_factory, clock, recordings):
    svc, client = app_factory(make_config(tmp_path, model_dir, sqlite_url), model=True, clock=clock)
    phone = make_audio(tmp_path / "phone", "wav_mulaw", 8000, 2, 7.0)
    url = recordings.serve_file("/phone.wav", phone)
    r = client.post("/webhooks/generic", **signed(event("tel-1", url, channels={"0": "agent", "1": "customer"})))
    assert r.status_code == 202, r.text
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    call = client.get(f"/api/calls/{r.json['call_id']}").json
    assert call["status"] == "analyzed", call
    summary = call["summary"]
    assert summary["source_rate"] == 8000 and summary["source_codec"] == "pcm_mulaw"
    assert summary["source_format"] == "wav" and summary["resampler"] == SOXR
    assert summary["narrowband"] is True and "8000 Hz" in summary["narrowband_reason"]
    assert summary["partial"] is False and summary["declared_s"] == pytest.approx(7.0, abs=0.01)

    r = client.post("/predict", data={"file": (phone.open("rb"), "phone.wav")}, content_type="multipart/form-data")
    assert r.status_code == 200, r.text
    body = r.json
    assert body["source_rate"] == 8000 and body["resampler"] == SOXR and body["narrowband"] is True
    assert body["partial"] is False and body["segments"]
