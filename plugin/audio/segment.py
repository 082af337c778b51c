"""Cut a decoded call into fixed windows per channel, keeping true timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plugin.audio.decode import DecodedAudio


@dataclass(frozen=True)
class Window:
    channel: int  # -1 = all channels mixed
    role: str
    start: int  # samples
    end: int


@dataclass(frozen=True)
class Track:
    """One stream to analyse: a channel with a known role, or the mixed call."""

    channel: int  # -1 = mixed
    role: str


def tracks_for(audio: DecodedAudio, channel_roles: dict[int, str] | None) -> tuple[list[Track], str | None]:
    """Which streams to analyse, and a note when the layout could not be honoured."""
    if channel_roles and audio.channels >= 2:
        usable = {ch: role for ch, role in sorted(channel_roles.items()) if 0 <= ch < audio.channels}
        if usable:
            return [Track(ch, role) for ch, role in usable.items()], None
        return [Track(-1, "mixed")], "channel layout names no channel present in the recording; analysed mixed"
    if channel_roles and audio.channels == 1:
        return [Track(-1, "mixed")], "channel layout given but the recording is mono; analysed mixed"
    return [Track(-1, "mixed")], None


# Tails are trimmed to a multiple of this, so windows come in a few lengths only and
# batch without padding (see plugin/model/batched.py); it trims at most 0.25 s off a tail.
QUANTUM_S = 0.25


def windows(audio: DecodedAudio, track: Track, window_s: float, min_segment_s: float,
            regions: list[tuple[int, int]] | None = None) -> list[Window]:
    """Fixed windows inside each region (default: the whole track), true offsets kept.

    A region's remainder shorter than a window becomes one shorter, end-aligned window
    if it is at least min_segment_s long; shorter scraps are not judged.
    """
    step = int(round(window_s * audio.sample_rate))
    min_len = int(round(min_segment_s * audio.sample_rate))
    quantum = int(QUANTUM_S * audio.sample_rate)
    out = []
    for a, b in regions if regions is not None else [(0, audio.frames)]:
        start = a
        while start + step <= b:
            out.append(Window(track.channel, track.role, start, start + step))
            start += step
        tail = (b - start) // quantum * quantum
        if tail >= min_len and tail > 0:
            out.append(Window(track.channel, track.role, b - tail, b))
    return out


def samples(audio: DecodedAudio, w: Window) -> np.ndarray:
    return read(audio, Track(w.channel, w.role), w.start, w.end)


def read(audio: DecodedAudio, track: Track, start: int, end: int) -> np.ndarray:
    """float32 samples of a track, read from the memory-mapped decode."""
    if track.channel < 0:
        return audio.mixed(start, end) if audio.channels > 1 else audio.channel(0, start, end)
    return audio.channel(track.channel, start, end)


def dbfs(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return 20 * np.log10(rms) if rms > 0 else -200.0
