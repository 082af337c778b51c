"""Real synthesized speech for tests, made at test time without any system package.

Tones and noise (tests.helpers.make_audio) are not speech to a neural voice activity
detector such as silero-vad, so tests of speech segmentation need real speech. This
module drives libespeak-ng through ctypes; the library and its espeak-ng-data come in
the `espeakng-loader` wheel from PyPI, so no espeak-ng binary or apt package is needed.

libespeak-ng keeps global state, so calls are serialised with a lock. Its pitch flutter
carries over from one utterance to the next, so the same text can come out a few
milliseconds different depending on what was spoken before in the process; speak()
caches by (text, voice), so within a process the same text always gives the same samples,
and a given sequence of calls gives the same audio in every run.

Self-check (run from the repository root): python -m tests.speech
"""

from __future__ import annotations

import ctypes
import subprocess
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from plugin.audio.decode import ffmpeg_exe
from tests.helpers import FORMATS

_AUDIO_OUTPUT_SYNCHRONOUS = 2          # espeak_AUDIO_OUTPUT
_INITIALIZE_DONT_EXIT = 0x8000         # return an error instead of calling exit()
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)

_LOCK = threading.Lock()               # libespeak-ng keeps global state: one caller at a time
_engine: tuple[ctypes.CDLL, int] | None = None
_chunks: list[bytes] = []


@_SYNTH_CALLBACK
def _on_samples(wav, numsamples, events):
    if wav and numsamples > 0:
        _chunks.append(ctypes.string_at(wav, numsamples * 2))
    return 0                           # 0 = go on synthesizing


def _init() -> tuple[ctypes.CDLL, int]:
    """Load and initialise libespeak-ng once per process (call with _LOCK held);
    returns the library and its output sample rate."""
    global _engine
    if _engine is None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     espeakng_loader.get_data_path().encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        lib.espeak_SetSynthCallback(_on_samples)
        _engine = (lib, rate)
    return _engine


@lru_cache(maxsize=256)
def _speak_bytes(text: str, voice: str) -> tuple[bytes, int]:
    with _LOCK:
        lib, rate = _init()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        data = text.encode("utf-8") + b"\0"
        _chunks.clear()
        status = lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
        pcm = b"".join(_chunks)
        _chunks.clear()
    if status != 0 or not pcm:
        raise RuntimeError(f"espeak_Synth failed (status {status}) for {text!r}")
    return pcm, rate


def speak(text: str, voice: str = "en") -> tuple[np.ndarray, int]:
    """Synthesize `text`; returns (int16 mono samples, sample_rate)."""
    pcm, rate = _speak_bytes(text, voice)
    samples = np.frombuffer(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples) > 64)      # trim espeak's leading/trailing silence
    if not loud.size:
        raise ValueError(f"espeak-ng produced no sound for {text!r}")
    return samples[loud[0]:loud[-1] + 1].copy(), rate


def write_conversation(path: Path, turns: list[tuple[int, float, str]], seconds: float,
                       channels: int = 1, rate: int = 16000, fmt: str = "wav_pcm") -> Path:
    """A recording of `seconds` of silence (plus very faint noise, about -70 dBFS) into which each
    turn (channel, start_s, text) is spoken on that channel at that time. channels=2 gives a
    stereo file (e.g. agent on channel 0, customer on 1); channels=1 ignores the channel index.
    Encodes with ffmpeg in the given format, using the same FORMATS table and ffmpeg as
    tests/helpers.py, resampling to `rate`. Returns the path actually written (suffix from FORMATS)."""
    ext, codec = FORMATS[fmt]
    path = Path(path).with_suffix("." + ext)
    with _LOCK:
        src_rate = _init()[1]
    noise_rms = 32768 * 10 ** (-70 / 20)
    mix = np.random.default_rng(0).normal(0.0, noise_rms, (round(seconds * src_rate), channels))
    for ch, start_s, text in turns:
        if channels > 1 and not 0 <= ch < channels:
            raise ValueError(f"turn on channel {ch} but the recording has {channels}")
        samples, _ = speak(text)
        start = round(start_s * src_rate)
        if start < 0 or start + len(samples) > len(mix):
            raise ValueError(f"turn {text!r} at {start_s}s ({len(samples) / src_rate:.2f}s long) "
                             f"does not fit in {seconds}s")
        mix[start:start + len(samples), ch if channels > 1 else 0] += samples
    pcm = np.clip(np.round(mix), -32768, 32767).astype("<i2").tobytes()
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y",
           "-f", "s16le", "-ar", str(src_rate), "-ac", str(channels), "-i", "pipe:0",
           "-ar", str(rate), "-ac", str(channels), *codec, str(path)]
    subprocess.run(cmd, input=pcm, check=True)
    return path


if __name__ == "__main__":
    import tempfile
    import time

    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from plugin.audio.decode import decode

    for sentence in ["Hello, thank you for calling. How can I help you today?",
                     "I have been waiting for my refund for three weeks and nobody answers.",
                     "I am sorry to hear that, let me check your order right away."]:
        t0 = time.perf_counter()
        samples, sr = speak(sentence)
        print(f"speak: {len(samples) / sr:.2f}s of speech at {sr} Hz in "
              f"{time.perf_counter() - t0:.3f}s: {sentence!r}")

    model = load_silero_vad()
    turns = [(0, 1.0, "Hello, thank you for calling. How can I help you today?"),
             (1, 6.0, "I have been waiting for my refund for three weeks and nobody answers.")]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, rate in [("wav_pcm", 16000), ("wav_pcm", 8000), ("mp3", 16000), ("mp3", 8000)]:
            src = write_conversation(Path(tmp) / f"call_{rate}", turns, 12.0, channels=2,
                                     rate=rate, fmt=fmt)
            audio = decode(src, Path(tmp) / "decoded.wav", 60)
            print(f"{src.name}: {audio.channels} channels, {audio.duration:.2f}s decoded")
            for ch in range(audio.channels):
                placed = []
                for c, start, text in turns:
                    samples, sr = speak(text)
                    if c == ch:
                        placed.append((start, round(start + len(samples) / sr, 2)))
                found = get_speech_timestamps(torch.from_numpy(audio.channel(ch)), model,
                                              sampling_rate=16000, return_seconds=True)
                print(f"  channel {ch}: placed {placed}  detected "
                      f"{[(r['start'], r['end']) for r in found]}")
