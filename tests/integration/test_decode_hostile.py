"""Recordings made to hurt: decompression bombs, playlists and scripts that name other
files, video containers, and a source that never ends. Files are made with ffmpeg at
test time; a FIFO stands in for a recording that trickles forever."""

import os
import struct
import subprocess
import threading
import time

import pytest

from plugin.audio.decode import DecodeError, decode, ffmpeg_exe
from tests.helpers import make_audio


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def test_a_many_channel_bomb_is_refused_before_it_is_decoded(tmp_path):
    # The bomb was 8 channels x 4 h in a 3.9 MB FLAC (3.7 GB decoded); the same
    # shape, 10 minutes long, is a 0.3 MB FLAC that decodes to 154 MB.
    bomb = tmp_path / "bomb.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=7.1", "-t", 600, "-c:a", "flac", bomb)
    assert bomb.stat().st_size < 1_000_000
    out = tmp_path / "out.wav"
    t = time.perf_counter()
    with pytest.raises(DecodeError, match=r"recording has 8 audio channels; at most 2 are analysed "
                                          r"\(audio.max_channels\)"):
        decode(bomb, out)
    refused = time.perf_counter() - t
    assert not out.exists() and not list(tmp_path.glob("out.wav*"))
    # What refusing saves: decoding it all (allowed with max_channels: 8).
    t = time.perf_counter()
    audio = decode(bomb, out, max_channels=8)
    decoded = time.perf_counter() - t
    assert audio.channels == 8 and audio.duration == pytest.approx(600) and out.stat().st_size > 150_000_000
    assert refused < 1.0 and refused < decoded / 3, (refused, decoded)


def test_the_channel_cap_is_configurable_and_stereo_is_the_default(tmp_path):
    quad = tmp_path / "quad.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=quad", "-t", 2, quad)
    with pytest.raises(DecodeError, match="4 audio channels; at most 2"):
        decode(quad, tmp_path / "o.wav")
    with pytest.raises(DecodeError, match="4 audio channels; at most 3"):
        decode(quad, tmp_path / "o.wav", max_channels=3)
    assert decode(quad, tmp_path / "o.wav", max_channels=4).channels == 4
    assert decode(make_audio(tmp_path / "s", "wav_pcm", 16000, 2, 2.0), tmp_path / "s.wav").channels == 2


SECRET_LINE = "root:x:0:0"


@pytest.mark.parametrize("name,content", [
    ("recording", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"),
    ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:/etc/passwd\n#EXT-X-ENDLIST\n"),
    ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{audio}\n#EXT-X-ENDLIST\n"),
    ("recording", "ffconcat version 1.0\nfile /etc/passwd\nfile {audio}\n"),
    ("concat.txt", "ffconcat version 1.0\nfile '{audio}'\n"),
    ("recording", "[playlist]\nFile1=/etc/passwd\nNumberOfEntries=1\n"),
    ("recording", "#EXTM3U\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data\n"),
])
def test_playlists_and_scripts_naming_other_files_are_refused(tmp_path, name, content):
    # Even a playlist of a real local recording: ffmpeg reads the one file it is given.
    audio = make_audio(tmp_path / "real", "wav_pcm", 16000, 1, 2.0)
    src = tmp_path / name
    src.write_text(content.format(audio=audio), encoding="utf-8")
    with pytest.raises(DecodeError, match="cannot decode recording") as err:
        decode(src, tmp_path / "out.wav")
    assert SECRET_LINE not in str(err.value)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("ext,codec", [("ts", ["-c:a", "mp2"]), ("avi", ["-c:a", "pcm_s16le"]),
                                       ("nut", ["-c:a", "pcm_s16le"])])
def test_containers_that_are_not_call_recordings_are_refused(tmp_path, ext, codec):
    src = tmp_path / f"v.{ext}"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000", "-t", 1, *codec, src)
    with pytest.raises(DecodeError, match=r"not an audio file we read \(allowed containers: wav, w64, mp3"):
        decode(src, tmp_path / "out.wav")


@pytest.mark.parametrize("ext,codec", [("flac", "flac"), ("webm", "libopus"), ("au", "pcm_s16be"),
                                       ("aiff", "pcm_s16be"), ("caf", "pcm_s16le"), ("wv", "wavpack"),
                                       ("wma", "wmav2"), ("mka", "flac"), ("aac", "aac")])
def test_the_audio_containers_call_centers_produce_still_decode(tmp_path, ext, codec):
    src = tmp_path / f"a.{ext}"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000", "-t", 2, "-c:a", codec, src)
    audio = decode(src, tmp_path / "out.wav")
    assert audio.channels == 1 and audio.duration == pytest.approx(2.0, abs=0.2)  # aac pads a frame


def _wav_header(data_bytes: int, rate=16000, channels=1) -> bytes:
    return (b"RIFF" + struct.pack("<I", data_bytes + 36) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16) +
            b"data" + struct.pack("<I", data_bytes))


class Trickle:
    """A FIFO standing for an input that never ends: each reader gets a header promising
    hours of audio, a second of it, then a trickle."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.01)
                continue
            os.set_blocking(fd, True)
            try:
                os.write(fd, _wav_header(0xFFFFFF00) + bytes(32000))
                while not self.stop.is_set():
                    os.write(fd, bytes(64))
                    time.sleep(0.05)
            except OSError:  # the reader went away (BrokenPipe)
                pass
            finally:
                os.close(fd)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)


def test_an_input_that_never_ends_is_killed_at_the_timeout(tmp_path):
    trickle = Trickle(tmp_path / "endless.wav")
    try:
        t = time.perf_counter()
        with pytest.raises(DecodeError, match=r"took longer than 1.5s"):
            decode(trickle.path, tmp_path / "out.wav", timeout_s=1.5)
        assert 1.4 < time.perf_counter() - t < 4.0
    finally:
        trickle.close()
    assert not list(tmp_path.glob("out.wav*"))


@pytest.fixture(scope="module")
def slow_to_decode(tmp_path_factory):
    """Half an hour of 48 kHz FLAC: 1 MB, about 3 s to decode and resample here."""
    path = tmp_path_factory.mktemp("slow") / "long.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", 1800, "-c:a", "flac", "-compression_level", 0, path)
    return path


def test_ffmpeg_is_killed_at_the_decode_timeout(tmp_path, slow_to_decode):
    out = tmp_path / "out.wav"
    t = time.perf_counter()
    with pytest.raises(DecodeError, match=r"^decoding took longer than 0.5s \(audio.decode_timeout_s\)$"):
        decode(slow_to_decode, out, timeout_s=0.5)
    assert time.perf_counter() - t < 2.0
    assert not list(tmp_path.glob("out.wav*"))  # neither the partial output nor ffmpeg's messages


def test_on_wait_runs_while_ffmpeg_works_and_what_it_raises_stops_ffmpeg(tmp_path, slow_to_decode):
    calls = []

    def lease_lost():
        calls.append(time.perf_counter())
        raise RuntimeError("lease lost")
    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="lease lost"):
        decode(slow_to_decode, tmp_path / "out.wav", on_wait=lease_lost)
    assert len(calls) == 1 and calls[0] - t < 2.0
    assert not list(tmp_path.glob("out.wav*"))


@pytest.mark.parametrize("name,make,match", [
    ("bomb.flac", lambda p: ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=7.1", "-t", 600, "-c:a", "flac", p),
     "recording has 8 audio channels; at most 2"),
    ("list.m3u8", lambda p: p.write_text("#EXTM3U\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"),
     "cannot decode recording: Error opening input: Invalid data found"),
])
def test_uploads_to_predict_meet_the_same_limits(tmp_path, model_dir, sqlite_url, app_factory, name, make, match):
    from io import BytesIO

    from tests.conftest import make_config
    _, http = app_factory(make_config(tmp_path, model_dir, sqlite_url), model=True)
    src = tmp_path / name
    make(src)
    t = time.perf_counter()
    r = http.post("/predict", data={"file": (BytesIO(src.read_bytes()), name)}, content_type="multipart/form-data")
    assert r.status_code == 400 and match in r.json["error"] and SECRET_LINE not in r.text
    assert time.perf_counter() - t < 2.0


def test_ffmpeg_stopped_from_outside_is_a_retryable_interruption(tmp_path, monkeypatch):
    """systemd's default KillMode sends SIGTERM to every process of a stopping service,
    ffmpeg included: that is no fault of the recording, so the call is tried again."""
    import plugin.audio.decode as decode_mod

    src = make_audio(tmp_path / "long", "wav_pcm", 48000, 2, 900.0)
    monkeypatch.setattr(decode_mod, "WAIT_POLL_S", 0.05)
    stopped = []

    def stop_ffmpeg():  # what the service manager does, from outside
        if not stopped:
            stopped.append(subprocess.run(["pkill", "-TERM", "-P", str(os.getpid()), "ffmpeg"]).returncode)

    with pytest.raises(DecodeError, match="interrupted") as err:
        decode(src, tmp_path / "out.wav", on_wait=stop_ffmpeg)
    assert stopped == [0] and err.value.retryable
    assert not (tmp_path / "out.wav").exists()
