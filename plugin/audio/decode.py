"""Decode a recording to 16 kHz 16-bit PCM, channels kept apart.

The decoded file is memory-mapped, so a one-hour stereo call is not held in
memory several times over.

A recording comes from whoever can send a webhook or upload to /predict, so ffmpeg is
held on a short leash: it reads only the local file (``-protocol_whitelist file``) and
only audio containers (``-format_whitelist``: no playlists or concat scripts that would
open other files by path); the first audio stream is probed before anything is decoded,
so a file with more channels than ``audio.max_channels`` is refused at once; the
decoded size is capped twice (``-t`` for the duration, ``-fs`` for the bytes, so a header
that lies cannot fill the disk), and ffmpeg is killed after ``audio.decode_timeout_s``.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from plugin.core.files import private_opener

SAMPLE_RATE = 16000
# The demuxers of the containers call centers and phone systems produce; ffmpeg's name for
# mp4/m4a/3gp is "mov", for webm "matroska".
AUDIO_FORMATS = ("wav", "w64", "mp3", "flac", "ogg", "mov", "mp4", "m4a", "3gp", "aac", "amr", "amrnb",
                 "amrwb", "gsm", "au", "matroska", "webm", "aiff", "caf", "wv", "asf")
DEFAULT_MAX_DURATION_S = 4 * 3600.0  # AudioConfig's defaults, for callers that pass none
DEFAULT_MAX_CHANNELS = 2
DEFAULT_TIMEOUT_S = 300.0
PROBE_SECONDS = 0.1  # decoded to learn the channel count
STDERR_TAIL = 4096
NICE = 10  # ffmpeg's scheduling priority (0 normal, 19 lowest)
WAIT_POLL_S = 1.0  # how often on_wait is called while ffmpeg runs
_CONTEXT = re.compile(r"^(\[[^\]]* @ 0x[0-9a-f]+\]\s*)+")  # where in ffmpeg a message comes from


class DecodeError(Exception):
    """The file is not audio we read (corrupt, empty, not audio, over a limit), or, with
    ``retryable``, ffmpeg was stopped from outside and another attempt may do better."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg that ships inside the imageio-ffmpeg wheel (no system package needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class DecodedAudio:
    path: Path
    channels: int
    frames: int
    sample_rate: int = SAMPLE_RATE
    _data_offset: int = 44

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def _pcm(self) -> np.ndarray:
        return np.memmap(self.path, dtype="<i2", mode="r", offset=self._data_offset,
                         shape=(self.frames, self.channels))

    def channel(self, index: int, start: int = 0, end: int | None = None) -> np.ndarray:
        """Samples [start, end) of one channel as float32 in [-1, 1)."""
        # One float32 copy (astype then divide would make two: it matters for long reads).
        return np.multiply(self._pcm()[start:end, index], np.float32(1 / 32768), dtype=np.float32)

    def mixed(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """All channels averaged to mono."""
        x = self._pcm()[start:end].astype(np.float32).mean(axis=1)
        x /= 32768.0
        return x


def decode(src: str | Path, dest: str | Path, max_duration_s: float | None = None, *,
           max_channels: int = DEFAULT_MAX_CHANNELS, timeout_s: float = DEFAULT_TIMEOUT_S,
           on_wait: Callable[[], None] | None = None) -> DecodedAudio:
    """Decode ``src`` to a 16 kHz PCM WAV at ``dest`` and describe it.

    ``on_wait`` is called every second while ffmpeg runs (to renew a lease, say);
    whatever it raises stops ffmpeg and is raised from here."""
    dest = Path(dest)
    max_duration_s = max_duration_s or DEFAULT_MAX_DURATION_S
    deadline = time.monotonic() + timeout_s
    channels = probe_channels(src, timeout_s)
    if channels > max_channels:
        raise DecodeError(f"recording has {channels} audio channels; at most {max_channels} are "
                          f"analysed (audio.max_channels)")
    frames_cap = int(max_duration_s * SAMPLE_RATE) + SAMPLE_RATE
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *_input(src),
           "-map", "0:a:0", "-vn", "-t", f"{max_duration_s:g}", "-ac", str(channels),
           "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
           "-fs", str(frames_cap * channels * 2 + 4096), "-f", "wav", str(dest)]
    log = dest.with_name(dest.name + ".log")
    try:
        code = _run(cmd, log, deadline, timeout_s, on_wait)
        if _interrupted(code, said_nothing=log.stat().st_size == 0):
            raise DecodeError("decoding was interrupted: ffmpeg was stopped by a signal", retryable=True)
        if code != 0:
            raise DecodeError(f"cannot decode recording: {_reason(log, code)}")
        layout = _wav_layout(dest)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        log.unlink(missing_ok=True)
    got_channels, offset, data_bytes = layout
    frames = min(data_bytes // (2 * got_channels), frames_cap)
    if frames == 0:
        dest.unlink(missing_ok=True)
        raise DecodeError("cannot decode recording: no audio samples")
    return DecodedAudio(dest, got_channels, frames, SAMPLE_RATE, offset)


def probe_channels(src: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """The channel count of ``src``'s first audio stream, from decoding its first moment
    (imageio-ffmpeg ships no ffprobe); DecodeError when it is no audio we read."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *_input(src),
           "-map", "0:a:0", "-vn", "-t", str(PROBE_SECONDS), "-c:a", "pcm_s16le", "-f", "wav", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=min(timeout_s, 60), start_new_session=True)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"cannot decode recording: reading its header took longer than "
                          f"{min(timeout_s, 60):g}s") from None
    if _interrupted(proc.returncode, said_nothing=not proc.stderr.strip()):
        raise DecodeError("decoding was interrupted: ffmpeg was stopped by a signal", retryable=True)
    if proc.returncode != 0:
        raise DecodeError(f"cannot decode recording: {_explain(proc.stderr, proc.returncode)}")
    head = proc.stdout
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE" or len(head) < 44:
        raise DecodeError("cannot decode recording: no audio samples")
    return _channels_of(head)


def _input(src: str | Path) -> list[str]:
    # The "file:" prefix keeps a name that starts with "-" or holds ":" a plain path.
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(AUDIO_FORMATS),
            "-i", "file:" + str(Path(src).resolve())]


def _run(cmd: list[str], log: Path, deadline: float, timeout_s: float,
         on_wait: Callable[[], None] | None) -> int:
    """Run ffmpeg with its messages in ``log`` (not in memory: a corrupt file can make
    megabytes of them); kill it at ``deadline`` or when ``on_wait`` raises."""
    with open(log, "wb", opener=private_opener) as err:
        # A session of its own: Ctrl-C in a terminal signals the foreground process group,
        # and the worker, not ffmpeg, decides what a stop means for the call.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    _lower_priority(proc.pid)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DecodeError(f"decoding took longer than {timeout_s:g}s (audio.decode_timeout_s)")
            try:
                return proc.wait(timeout=min(left, WAIT_POLL_S))
            except subprocess.TimeoutExpired:
                if on_wait is not None:
                    on_wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _lower_priority(pid: int) -> None:
    """Decoding is batch work: on a busy box the web receiver (webhooks, the API) and the
    model come first. A nice of 10 costs ffmpeg nothing when the CPUs are idle."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, NICE)
    except (AttributeError, OSError):  # not on this OS, or the process is already gone
        pass


def _interrupted(code: int, said_nothing: bool) -> bool:
    """ffmpeg was killed, or stopped on SIGTERM/SIGINT (exit 255 with nothing to say), as
    systemd's default KillMode does to every process of a stopping service: not the
    recording's fault."""
    return code < 0 or (code == 255 and said_nothing)


def _reason(log: Path, code: int) -> str:
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - STDERR_TAIL))
        return _explain(f.read(), code)


def _explain(stderr: bytes, code: int) -> str:
    """ffmpeg's own words for what went wrong, the most telling line of them."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    text = "\n".join(lines)
    if "Format not on whitelist" in text:
        return f"not an audio file we read (allowed containers: {', '.join(AUDIO_FORMATS)})"
    if "not on whitelist" in text:  # a protocol: a file that names another file or URL
        return "the file refers to other files or URLs, which are not read"
    if "matches no streams" in text:
        return "no audio stream in file"
    # "[in#0 @ 0x55c5ec29be80] Error opening input: ..." -> "Error opening input: ..."
    useful = [_CONTEXT.sub("", ln) for ln in lines if not ln.startswith("Error opening input file")]
    return useful[-1] if useful else f"ffmpeg exited {code}"


def _channels_of(head: bytes) -> int:
    pos = 12
    while pos + 8 <= len(head):
        cid, clen = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"fmt " and pos + 12 <= len(head):
            return struct.unpack("<H", head[pos + 10:pos + 12])[0]
        pos += 8 + clen + (clen & 1)
    raise DecodeError("cannot decode recording: no audio format found")


def _wav_layout(path: Path) -> tuple[int, int, int]:
    """(channels, offset of the PCM data, its length) from a RIFF/WAVE header."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        riff = f.read(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise DecodeError("decoder wrote no WAV header")
        channels = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise DecodeError("decoded WAV has no data chunk")
            cid, clen = head[:4], struct.unpack("<I", head[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(clen)
                channels = struct.unpack("<H", fmt[2:4])[0]
                continue
            if cid == b"data":
                offset = f.tell()
                # ffmpeg leaves the length at 0 or 0xFFFFFFFF when it cannot seek back.
                length = min(clen, size - offset) if clen not in (0, 0xFFFFFFFF) else size - offset
                if channels is None:
                    raise DecodeError("decoded WAV has no format chunk")
                return channels, offset, length
            f.seek(clen + (clen & 1), 1)
