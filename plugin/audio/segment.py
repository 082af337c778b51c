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


def windows(audio: DecodedAudio, track: Track, window_s: float, min_segment_s: float) -> list[Window]:
    step = int(round(window_s * audio.sample_rate))
    min_len = int(round(min_segment_s * audio.sample_rate))
    out = []
    for start in range(0, audio.frames, step):
        end = min(start + step, audio.frames)
        if end - start < min_len:
            break
        out.append(Window(track.channel, track.role, start, end))
    return out


def samples(audio: DecodedAudio, w: Window) -> np.ndarray:
    if w.channel < 0:
        return audio.mixed(w.start, w.end) if audio.channels > 1 else audio.channel(0, w.start, w.end)
    return audio.channel(w.channel, w.start, w.end)


def dbfs(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return 20 * np.log10(rms) if rms > 0 else -200.0
