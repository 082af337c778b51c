"""Put several decoded recordings of one call side by side as the channels of one file.

Contact centers that record each participant to a file of their own (TCCC, Alibaba's
mono-per-party recordings) give the agent and the customer as two files; the rest of the
pipeline reads one multi-channel file with a role per channel. Each file becomes one
channel (a file with two channels is mixed down to one: it holds one participant), the
shorter ones padded with silence. The files start together (the vendors record each
leg from the call's start).

Written a few seconds at a time: a long call is never held in memory whole.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from plugin.audio.decode import SAMPLE_RATE, DecodedAudio, DecodeError
from plugin.core.files import private_opener

CHUNK_FRAMES = SAMPLE_RATE * 10
HEADER_BYTES = 44
WAV_MAX_DATA = 0xFFFFFFFF - 36


def merge(parts: list[DecodedAudio], dest: str | Path) -> DecodedAudio:
    """One WAV at ``dest`` whose channel i is ``parts[i]`` (mixed to mono)."""
    dest = Path(dest)
    channels = len(parts)
    frames = max(p.frames for p in parts)
    if frames * channels * 2 > WAV_MAX_DATA:  # a RIFF size is 32 bits
        raise DecodeError(f"{channels} recordings of {frames / SAMPLE_RATE / 3600:.1f} h are too long to analyse "
                          f"side by side (at most {WAV_MAX_DATA // (channels * 2 * SAMPLE_RATE * 3600)} h each)")
    with open(dest, "wb", opener=private_opener) as out:
        out.write(_header(channels, frames))
        for start in range(0, frames, CHUNK_FRAMES):
            end = min(start + CHUNK_FRAMES, frames)
            block = np.zeros((end - start, channels), dtype="<i2")
            for i, part in enumerate(parts):
                if start >= part.frames:
                    continue
                stop = min(end, part.frames)
                pcm = part._pcm()[start:stop]
                block[: stop - start, i] = pcm.mean(axis=1).astype("<i2") if part.channels > 1 else pcm[:, 0]
            out.write(block.tobytes())
    # Each part came through decode() and its one resampler; no samples are resampled here.
    # What each file came as (rate, codec, narrowband, partial) is kept, one source per part.
    return DecodedAudio(dest, channels, frames, SAMPLE_RATE, HEADER_BYTES,
                        sources=tuple(s for p in parts for s in p.sources), resampler=parts[0].resampler)


def _header(channels: int, frames: int) -> bytes:
    data = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, SAMPLE_RATE, SAMPLE_RATE * channels * 2,
                                    channels * 2, 16)
            + b"data" + struct.pack("<I", data))
