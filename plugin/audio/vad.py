"""Where the speech is, per track, with silero-vad (its model ships inside the pip package).

Silero scores 32 ms chunks one after another, carrying state. Each track is cut into
10 s pieces, and the pieces of all the call's tracks run side by side as one batch (each
piece starts from a fresh state, which silero settles within a fraction of a second), so
a 5-minute call is ~320 batched steps per track instead of ~9,400 single ones; at most
~8 minutes of audio are in memory at once.
"""

from __future__ import annotations

import threading
from itertools import groupby
from typing import Callable, Sequence

import numpy as np

from plugin.audio.decode import SAMPLE_RATE

STEP_SAMPLES = 512  # samples silero scores at a time at 16 kHz
PIECE_STEPS = 320  # 10.24 s per piece
GROUP = 48  # pieces per batch: ~8 minutes, 31 MB of float32

_local = threading.local()


def _model():
    """One silero model per thread: it keeps recurrent state between calls."""
    model = getattr(_local, "model", None)
    if model is None:
        import torch

        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad

        torch.set_num_threads(threads)  # importing silero_vad sets torch to 1 thread
        model = _local.model = load_silero_vad()
    return model


def speech_probs(reads: Sequence[Callable[[int, int], np.ndarray]], frames: int) -> list[np.ndarray]:
    """Speech probability of each step (STEP_SAMPLES samples) of each track of a call;
    ``reads[i](start, end)`` returns track i's float32 samples.

    The pieces of all tracks share the batches: a step costs about the same for 2 rows as
    for 48, so the two channels of a call up to ~4 minutes take the steps of one."""
    import torch

    model = _model()
    piece = PIECE_STEPS * STEP_SAMPLES
    n_pieces = -(-frames // piece)
    pieces = [(t, i) for t in range(len(reads)) for i in range(n_pieces)]
    out = [np.zeros(n_pieces * PIECE_STEPS, dtype=np.float32) for _ in reads]
    with torch.inference_mode():
        for first in range(0, len(pieces), GROUP):
            group = pieces[first:first + GROUP]
            block = np.zeros(len(group) * piece, dtype=np.float32)
            # Each track's pieces in this batch are consecutive: one read per track.
            for t, rows in groupby(range(len(group)), key=lambda row: group[row][0]):
                rows = list(rows)
                start = group[rows[0]][1] * piece
                x = reads[t](start, min(start + len(rows) * piece, frames))
                block[rows[0] * piece:rows[0] * piece + len(x)] = x
            chunks = torch.from_numpy(block).view(len(group), PIECE_STEPS, STEP_SAMPLES)
            model.reset_states()
            probs = np.empty((len(group), PIECE_STEPS), dtype=np.float32)
            for k in range(PIECE_STEPS):
                probs[:, k] = model(chunks[:, k], SAMPLE_RATE).view(-1).numpy()
            for row, (t, i) in enumerate(group):
                out[t][i * PIECE_STEPS:(i + 1) * PIECE_STEPS] = probs[row]
    steps = -(-frames // STEP_SAMPLES)
    return [o[:steps] for o in out]


def regions_from_probs(probs: np.ndarray, frames: int, threshold: float = 0.5, min_speech_s: float = 0.25,
                       min_silence_s: float = 0.3, pad_s: float = 0.1) -> list[tuple[int, int]]:
    """Speech regions as (start, end) sample offsets, silero's hysteresis rules.

    Speech starts at a chunk above `threshold` and ends after `min_silence_s` below
    `threshold - 0.15`; bursts shorter than `min_speech_s` are dropped; each region
    gets `pad_s` on both sides, and regions that then touch are merged.
    """
    low = max(threshold - 0.15, 0.01)
    min_silence = max(1, round(min_silence_s * SAMPLE_RATE / STEP_SAMPLES))
    found: list[tuple[int, int]] = []
    start, quiet_from = None, None
    for i, p in enumerate(probs):
        if p >= threshold:
            if start is None:
                start = i
            quiet_from = None
        elif start is not None and p < low:
            if quiet_from is None:
                quiet_from = i
            if i + 1 - quiet_from >= min_silence:
                found.append((start, quiet_from))
                start, quiet_from = None, None
    if start is not None:
        found.append((start, quiet_from if quiet_from is not None else len(probs)))

    pad = int(pad_s * SAMPLE_RATE)
    min_len = int(min_speech_s * SAMPLE_RATE)
    regions: list[tuple[int, int]] = []
    for a, b in found:
        a, b = a * STEP_SAMPLES, min(b * STEP_SAMPLES, frames)
        if b - a < min_len:
            continue
        a, b = max(0, a - pad), min(frames, b + pad)
        if regions and a <= regions[-1][1]:
            regions[-1] = (regions[-1][0], b)
        else:
            regions.append((a, b))
    return regions
