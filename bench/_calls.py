"""The recordings of bench/throughput.py: stereo calls at 8 kHz, generated at bench time.

A few minutes of a two-sided conversation are synthesized once (tests.speech: espeak-ng),
agent on channel 0 and customer on channel 1, in turns with short pauses (0.2-0.6 s), the
listener now and then saying "okay" or "I see" over the speaker, and a longer pause (typing,
looking something up) every ninth turn. Each call is that conversation looped with ffmpeg
from an offset of its own to its length, as 8 kHz stereo mu-law WAV or MP3 (32 kbit/s).
Everything is cached in CACHE, so a second run generates nothing.

Speech share per channel is measured on the synthesized turns: the time covered by
utterances (espeak's output, its leading and trailing silence trimmed by tests.speech)
over the call's length, for that channel. The design aims at 40-60 % on each channel.
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

BASE_S = 240.0   # seconds of conversation synthesized once; calls loop it
RATE = 8000      # telephone audio
VERSION = "v1"   # in the cache names: a change of the conversation below makes new files
CALL_FORMATS = ("wav_mulaw", "mp3")

AGENT = [
    "Good morning, customer service, this is Anna speaking. How can I help you today?",
    "I am sorry to hear that. Could you give me your order number, please?",
    "Thank you. Let me check that for you, it will take a moment.",
    "I can see the return arrived at our warehouse on the twelfth of this month.",
    "The refund was approved, but the payment was sent to an old bank account.",
    "I understand. I will escalate this to our finance team right now.",
    "You will receive a confirmation by email within the hour, and the money in three days.",
    "Is there anything else I can help you with today?",
]
CUSTOMER = [
    "Hello. I have been waiting for my refund for three weeks now, and nobody answers my emails.",
    "It is four five seven two one. I already gave it to your colleague twice!",
    "Fine, but please hurry, I have been on hold for twenty minutes already.",
    "Then why is my money still not back? This is really unacceptable.",
    "That account was closed last year. I updated my details on your website.",
    "That is what the last person told me too. I want this solved today.",
    "All right. Thank you, I will wait for the email then.",
    "No, that is all. Thank you for finally helping me.",
]
BACKCHANNEL = ["Okay.", "I see.", "Mm-hm.", "Right.", "Yes."]


@dataclass(frozen=True)
class CallFile:
    index: int
    path: str
    fmt: str           # wav_mulaw or mp3
    seconds: float     # the call's length
    offset_s: float    # where in the base conversation it starts
    speech: tuple[float, float]  # share of speech on channel 0 (agent) and 1 (customer)

    def as_dict(self) -> dict:
        return asdict(self)


def conversation_turns(seconds: float, speak: Callable[[str], tuple]) -> list[tuple[int, float, str]]:
    """(channel, start_s, text) turns filling ``seconds``: alternating sides with 0.3-0.9 s
    between turns, a backchannel over every third turn, a 2.5 s pause every ninth."""
    turns, t, i = [], 0.6, 0
    while True:
        channel = i % 2
        text = (AGENT if channel == 0 else CUSTOMER)[(i // 2) % len(AGENT)]
        length = duration(speak(text))
        if t + length > seconds - 0.5:
            return turns
        turns.append((channel, t, text))
        if i % 3 == 2 and length > 2.5:  # the listener, over the speaker's middle
            turns.append((1 - channel, t + length / 2, BACKCHANNEL[(i // 4) % len(BACKCHANNEL)]))
        t += length + 0.2 + 0.1 * (i % 5) + (2.5 if i % 9 == 8 else 0.0)
        i += 1


def duration(spoken: tuple) -> float:
    samples, rate = spoken
    return len(samples) / rate


def base_conversation(cache: Path, progress: Callable[[str], None]) -> tuple[Path, list[list[tuple[float, float]]]]:
    """The synthesized base (8 kHz stereo PCM WAV) and each channel's speech spans, cached."""
    from tests.speech import speak, write_conversation

    wav = cache / f"throughput-base-{VERSION}-{BASE_S:g}s-8k-stereo.wav"
    spans_file = wav.with_suffix(".json")
    if wav.exists() and spans_file.exists():
        return wav, json.loads(spans_file.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    turns = conversation_turns(BASE_S, speak)
    progress(f"synthesizing {BASE_S:g} s of a stereo conversation ({len(turns)} utterances) ...")
    part = write_conversation(cache / f"throughput-base-{VERSION}.part", turns, BASE_S, channels=2,
                              rate=RATE, fmt="wav_pcm")
    spans: list[list[tuple[float, float]]] = [[], []]
    for channel, start, text in turns:
        spans[channel].append((start, start + duration(speak(text))))
    spans = [merge(s) for s in spans]  # a backchannel never overlaps its own side, but be exact
    spans_file.write_text(json.dumps(spans))
    part.rename(wav)
    return wav, spans


def merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def speech_share(spans: list[tuple[float, float]], offset_s: float, seconds: float) -> float:
    """Share of [0, seconds) covered by ``spans`` of the base looped from ``offset_s``."""
    covered, k = 0.0, 0
    while k * BASE_S - offset_s < seconds:
        shift = k * BASE_S - offset_s
        for a, b in spans:
            lo, hi = max(a + shift, 0.0), min(b + shift, seconds)
            covered += max(0.0, hi - lo)
        k += 1
    return covered / seconds


def plan(count: int, minutes: tuple[float, float], seed: int) -> list[tuple[float, str, float]]:
    """(seconds, format, offset_s) per call, deterministic from ``seed``: lengths spread over
    ``minutes`` (one per equal slice, placed at random in it, then shuffled), the two
    formats alternating, each call starting at its own point of the base conversation."""
    rng = random.Random(seed)
    lo, hi = minutes
    lengths = [round(60 * (lo + (hi - lo) * (i + rng.random()) / count), 1) for i in range(count)]
    rng.shuffle(lengths)
    return [(s, CALL_FORMATS[i % 2], round(rng.uniform(0, BASE_S), 1)) for i, s in enumerate(lengths)]


def make_calls(cache: Path, count: int, minutes: tuple[float, float], seed: int,
               progress: Callable[[str], None]) -> list[CallFile]:
    """The ``count`` calls of the plan, made where not cached."""
    from plugin.audio.decode import ffmpeg_exe
    from tests.helpers import FORMATS

    base, spans = base_conversation(cache, progress)
    calls = []
    for i, (seconds, fmt, offset) in enumerate(plan(count, minutes, seed)):
        ext, codec = FORMATS[fmt]
        path = cache / f"throughput-{VERSION}-{seconds:g}s-at{offset:g}-{fmt}.{ext}"
        if not path.exists():
            progress(f"call {i}: {seconds:g} s of {fmt} from {offset:g} s into the conversation ...")
            tmp = path.with_name("part-" + path.name)
            # -stream_loop repeats the input; -ss (after -i) skips into it; -t cuts to length.
            subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1",
                            "-i", str(base), "-ss", str(offset), "-t", str(seconds), "-ar", str(RATE),
                            "-ac", "2", *codec, str(tmp)], check=True)
            tmp.rename(path)
        share = tuple(round(speech_share(s, offset, seconds), 3) for s in spans)
        calls.append(CallFile(i, str(path), fmt, seconds, offset, share))
    return calls
