"""Is a decoded channel telephone audio (nothing above 4 kHz), whatever its file's rate?

emotion2vec was trained on 16 kHz speech and is sensitive to the missing 4-8 kHz band of
8 kHz telephone audio. A file at 8 kHz says so itself; one that a PBX or a recording
store upsampled to 16 kHz or 44.1 kHz before it reached us does not, but its spectrum
does. Measured here (tests/integration/test_decode_telephone.py makes these files):
telephone audio upsampled with ffmpeg's default resampler leaves 4.6-7.6 kHz some 80 dB
below the speech band (its images end by 4.5 kHz), and so does the same through a
44.1 kHz MP3; wideband speech keeps it within 25-40 dB, and even a 32 kbps stereo MP3,
whose encoder cuts above ~5.5 kHz, within about 55 dB. The line is drawn at 60 dB. A
resampler with hardly any anti-imaging filter (linear interpolation) leaves images up
there that this does not tell from speech: such a call is not flagged.

Measured cheaply: a few blocks of a few seconds spread over the call, in 32 ms frames,
keeping the louder half of the frames that are not silent (speech, not the silence
between), averaged into one power spectrum.
"""

from __future__ import annotations

import numpy as np

RATE = 16000
FRAME = 512  # 32 ms at 16 kHz
BLOCK_S = 4.0
BLOCKS = 4  # at most 16 s of each channel are read
SPEECH_BAND = (300.0, 3400.0)  # what a telephone line carries
HIGH_BAND = (4600.0, 7600.0)  # what it does not (clear of an upsampler's transition band)
NARROWBAND_DB = -60.0  # high band this far below the speech band: nothing there
SILENT_MS = 1e-6  # -60 dBFS mean square: frames below it are not judged
MIN_FRAMES = 8  # fewer loud frames than this (0.25 s): too quiet to tell


def spans(frames: int) -> list[tuple[int, int]]:
    """Up to BLOCKS blocks of BLOCK_S seconds, evenly spread over ``frames`` samples."""
    n = int(BLOCK_S * RATE)
    if frames <= n * BLOCKS:
        return [(0, frames)]
    starts = np.linspace(0, frames - n, BLOCKS).astype(int)
    return [(int(s), int(s) + n) for s in starts]


def high_band_db(blocks: list[np.ndarray]) -> float | None:
    """Power in 4.6-7.6 kHz against 0.3-3.4 kHz, in dB, over the louder speech frames of
    ``blocks`` (16 kHz float32); None when there is too little sound to tell."""
    frames = [b[: len(b) // FRAME * FRAME].reshape(-1, FRAME) for b in blocks if len(b) >= FRAME]
    if not frames:
        return None
    x = np.vstack(frames).astype(np.float64)
    energy = (x * x).mean(axis=1)
    audible = energy > SILENT_MS
    if audible.sum() < MIN_FRAMES:
        return None
    loud = audible & (energy >= np.median(energy[audible]))
    spectrum = (np.abs(np.fft.rfft(x[loud] * np.hanning(FRAME), axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    speech = spectrum[(freqs >= SPEECH_BAND[0]) & (freqs < SPEECH_BAND[1])].sum()
    high = spectrum[(freqs >= HIGH_BAND[0]) & (freqs < HIGH_BAND[1])].sum()
    if speech <= 0:
        return None
    return round(float(10 * np.log10(max(high, 1e-30) / speech)), 1)


def is_narrowband(source_rate: int | None, db: float | None) -> bool:
    return (source_rate is not None and source_rate <= 8000) or (db is not None and db < NARROWBAND_DB)
