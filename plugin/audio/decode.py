"""Decode any recording ffmpeg reads to 16 kHz 16-bit PCM, channels kept apart.

The decoded file is memory-mapped, so a one-hour stereo call is not held in
memory several times over.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


class DecodeError(Exception):
    """The file is not audio ffmpeg can read (corrupt, empty, not audio)."""


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


def decode(src: str | Path, dest: str | Path, max_duration_s: float | None = None) -> DecodedAudio:
    """Decode ``src`` to a 16 kHz PCM WAV at ``dest`` and describe it."""
    dest = Path(dest)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-i", str(src), "-map", "0:a:0", "-vn"]
    if max_duration_s:
        cmd += ["-t", str(max_duration_s)]
    cmd += ["-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        dest.unlink(missing_ok=True)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"ffmpeg exited {proc.returncode}"
        if "matches no streams" in reason:
            reason = "no audio stream in file"
        raise DecodeError(f"cannot decode recording: {reason}")
    channels, offset, data_bytes = _wav_layout(dest)
    frames = data_bytes // (2 * channels)
    if frames == 0:
        dest.unlink(missing_ok=True)
        raise DecodeError("cannot decode recording: no audio samples")
    return DecodedAudio(dest, channels, frames, SAMPLE_RATE, offset)


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
