"""Decode errors that say what happened (issue 15, item 8's audio part): a file that is
plainly something else is named ("not an audio file (looks like PNG)"), not ffmpeg's
internals; a truncated recording, or one whose header claims more than it holds, is
analysed but marked partial with the declared and decoded durations. Files are made with
ffmpeg (and Python's zipfile) at test time."""

import io
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from plugin.audio.decode import DecodeError, audio_line, decode, ffmpeg_exe
from tests.conftest import event, make_config, signed
from tests.helpers import make_audio


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def image(tmp_path: Path, ext: str) -> bytes:
    out = tmp_path / f"picture.{ext}"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=1", "-frames:v", 1, out)
    return out.read_bytes()


def a_zip(tmp_path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("recording.wav", b"not really")
    return buf.getvalue()


NOT_AUDIO = {
    "PNG": lambda t: image(t, "png"),
    "JPEG": lambda t: image(t, "jpg"),
    "GIF": lambda t: image(t, "gif"),
    "PDF": lambda t: b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n",
    "HTML": lambda t: b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>\n",
    "XML": lambda t: (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                      b"<Message>Request has expired</Message></Error>"),
    "JSON": lambda t: b'{"code": 404, "message": "recording not found"}',
    "ZIP": a_zip,
}


@pytest.mark.parametrize("kind", NOT_AUDIO)
def test_a_file_that_is_something_else_is_named(tmp_path, kind):
    src = tmp_path / "recording.mp3"
    src.write_bytes(NOT_AUDIO[kind](tmp_path))
    with pytest.raises(DecodeError) as err:
        decode(src, tmp_path / "out.wav")
    message = str(err.value)
    assert message.startswith(f"cannot decode recording: not an audio file (looks like {kind}"), message
    assert "Invalid argument" not in message and "whitelist" not in message
    assert not err.value.retryable and not (tmp_path / "out.wav").exists()


def test_a_video_without_sound_says_so(tmp_path):
    src = tmp_path / "call.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=5", "-t", 1, "-c:v", "libx264", src)
    with pytest.raises(DecodeError,
                       match=r"^cannot decode recording: no audio stream in file \(it holds video only\)$"):
        decode(src, tmp_path / "out.wav")


def test_an_empty_file_says_so(tmp_path):
    src = tmp_path / "empty.wav"
    src.write_bytes(b"")
    with pytest.raises(DecodeError, match=r"^cannot decode recording: the file is empty \(0 bytes\)$"):
        decode(src, tmp_path / "out.wav")


def test_an_mp4_cut_short_says_it_is_incomplete(tmp_path):
    whole = make_audio(tmp_path / "call", "m4a_aac", 16000, 1, 6.0)  # its index (moov) comes last
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DecodeError, match=r"recording is incomplete: its MP4 index \(moov atom\) is missing"):
        decode(cut, tmp_path / "out.wav")


def truncated(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut-" + path.name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.mark.parametrize("fmt", ["wav_pcm", "wav_mulaw"])
def test_a_wav_truncated_at_half_is_analysed_and_partial(tmp_path, fmt):
    cut = truncated(make_audio(tmp_path / "call", fmt, 8000, 1, 8.0), 0.5)
    audio = decode(cut, tmp_path / "out.wav")
    d = audio.describe()
    assert audio.duration == pytest.approx(4.0, abs=0.1)
    assert d["partial"] is True and audio.partial
    assert d["declared_s"] == pytest.approx(8.0, abs=0.01) and d["decoded_s"] == pytest.approx(4.0, abs=0.1)
    assert "PARTIAL: 4.0 s of 8.0 s declared were decoded" in audio_line(d)


def _wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    return (b"RIFF" + struct.pack("<I", data_bytes + 36) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes))


def test_a_wav_whose_header_claims_60s_but_holds_3s_is_partial(tmp_path):
    # ffmpeg estimates such a file's duration from its size (3 s): the header is read here.
    pcm = make_audio(tmp_path / "call", "wav_pcm", 16000, 1, 3.0)
    audio = decode(pcm, tmp_path / "plain.wav")
    liar = tmp_path / "liar.wav"
    liar.write_bytes(_wav_header(60 * 32000) + audio.path.read_bytes()[audio._data_offset:])
    d = decode(liar, tmp_path / "out.wav").describe()
    assert d["partial"] is True
    assert d["declared_s"] == 60.0 and d["decoded_s"] == pytest.approx(3.0, abs=0.01)


def test_a_wav_of_unknown_length_is_not_partial(tmp_path):
    """Recorders that cannot seek back write 0 or 0xFFFFFFFF: no length is declared."""
    for size in (0, 0xFFFFFFFF):
        src = tmp_path / f"stream{size}.wav"
        src.write_bytes(_wav_header(0)[:-4] + struct.pack("<I", size) + bytes(32000 * 2))
        d = decode(src, tmp_path / "out.wav").describe()
        assert d["partial"] is False and d["declared_s"] is None and d["decoded_s"] == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("ext,codec", [("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),  # Xing/Info frame count
                                       ("mp3", ["-c:a", "libmp3lame", "-q:a", "4"]),  # VBR: Xing too
                                       ("flac", ["-c:a", "flac"])])  # STREAMINFO sample count
def test_other_containers_cut_short_are_partial_by_their_declared_length(tmp_path, ext, codec):
    src = tmp_path / f"call.{ext}"
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:r=44100", "-t", 10, *codec, src)
    assert decode(src, tmp_path / "whole.wav").describe()["partial"] is False
    d = decode(truncated(src, 0.5), tmp_path / "out.wav").describe()
    assert d["partial"] is True and d["declared_s"] == pytest.approx(10.0, abs=0.1)
    assert 3.0 < d["decoded_s"] < 6.0


@pytest.mark.parametrize("fmt,rate", [("wav_pcm", 16000), ("wav_mulaw", 8000), ("mp3", 44100), ("mp3", 8000),
                                      ("ogg_opus", 48000), ("m4a_aac", 16000), ("amr", 8000)])
def test_whole_recordings_are_not_partial(tmp_path, fmt, rate):
    d = decode(make_audio(tmp_path / "call", fmt, rate, 1, 5.0), tmp_path / "out.wav").describe()
    assert d["partial"] is False, d


def test_a_recording_cut_at_max_duration_is_not_partial(tmp_path):
    d = decode(make_audio(tmp_path / "long", "wav_pcm", 16000, 1, 6.0), tmp_path / "o.wav", 2.0).describe()
    assert d["partial"] is False and d["declared_s"] == 2.0 and d["decoded_s"] == pytest.approx(2.0, abs=0.01)


def test_a_partial_call_is_analysed_and_marked_in_the_api(tmp_path, model_dir, sqlite_url, app_factory,
                                                          clock, recordings):
    svc, client = app_factory(make_config(tmp_path, model_dir, sqlite_url), model=True, clock=clock)
    cut = truncated(make_audio(tmp_path / "call", "wav_pcm", 16000, 1, 12.0), 0.5)
    r = client.post("/webhooks/generic", **signed(event("cut-1", recordings.serve_file("/cut.wav", cut))))
    assert r.status_code == 202, r.text
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    call = client.get(f"/api/calls/{r.json['call_id']}").json
    assert call["status"] == "analyzed" and call["segments"], call
    summary = call["summary"]
    assert summary["partial"] is True
    assert summary["declared_s"] == pytest.approx(12.0, abs=0.01)
    assert summary["decoded_s"] == pytest.approx(6.0, abs=0.1)


def test_predict_names_the_file_and_marks_a_partial_one(tmp_path, model_dir, sqlite_url, app_factory):
    _, http = app_factory(make_config(tmp_path, model_dir, sqlite_url), model=True)

    def upload(data: bytes, name: str):
        return http.post("/predict", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")

    r = upload(image(tmp_path, "png"), "song.mp3")
    assert r.status_code == 400 and r.json["error"] == "cannot decode recording: not an audio file (looks like PNG)"

    cut = truncated(make_audio(tmp_path / "call", "wav_pcm", 16000, 1, 12.0), 0.5)
    r = upload(cut.read_bytes(), "cut.wav")
    assert r.status_code == 200, r.text
    assert r.json["partial"] is True and r.json["declared_s"] == pytest.approx(12.0, abs=0.01)
    assert r.json["decoded_s"] == pytest.approx(6.0, abs=0.1) and r.json["segments"]
