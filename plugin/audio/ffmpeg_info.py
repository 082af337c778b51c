"""What ffmpeg says about a recording: its messages by level, and what its input dump
tells of the file (container, codec and rate of the first audio stream, the duration the
file declares); and, for WAV, the duration its header declares.

ffmpeg runs with ``-loglevel level+info``, so every message line carries its level
("[error] ...", "[in#0 @ 0x55...] [info]   Duration: ..."). Tags and titles in the file
are printed too, but indented deeper (and their continuation lines start with ":"), so
the patterns below, anchored at the dump's own indentation, do not match what the file's
author wrote.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

ERROR_LEVELS = ("panic", "fatal", "error")
_LINE = re.compile(r"^(?:\[[^\]]* @ 0x[0-9a-f]+\]\s*)*\[(panic|fatal|error|warning|info|verbose|debug|trace)\] ?(.*)$")
_INPUT = re.compile(r"^Input #0, ([a-z0-9_]+)[a-z0-9_,]*, from ")
_DURATION = re.compile(r"^  Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^  Stream #0:\d+\S*: (Audio|Video): ([a-z0-9_]+)")
_HZ = re.compile(r", (\d{3,7}) Hz")
ESTIMATED = "Estimating duration from bitrate"  # a guess from the file's size, not a declaration
WAV_PLACEHOLDERS = (0, 0xFFFFFFFF)  # "unknown length", written by recorders that cannot seek back
WAV_MAX_CHUNKS = 64


@dataclass(frozen=True)
class InputInfo:
    container: str | None = None  # ffmpeg's demuxer: wav, mp3, mov (mp4/m4a), ogg...
    codec: str | None = None  # of the first audio stream: pcm_mulaw, mp3, aac, opus...
    rate: int | None = None  # Hz, of the first audio stream
    declared_s: float | None = None  # the duration the file's header declares
    has_video: bool = False


def messages(stderr: bytes | str) -> list[tuple[str, str]]:
    """(level, text) per line; an untagged line continues the message before it."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    out: list[tuple[str, str]] = []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if m:
            out.append((m.group(1), m.group(2).rstrip()))
        elif raw.strip() and out:
            out.append((out[-1][0], raw.strip()))
    return out


def errors(msgs: list[tuple[str, str]]) -> list[str]:
    return [text.strip() for level, text in msgs if level in ERROR_LEVELS and text.strip()]


def input_info(msgs: list[tuple[str, str]]) -> InputInfo:
    """What the dump of input #0 says (it stops at the output's dump)."""
    container = codec = None
    rate = None
    declared = None
    has_video = False
    estimated = any(ESTIMATED in text for level, text in msgs if level == "warning")
    in_input = False
    for level, text in msgs:
        if level != "info":
            continue
        if m := _INPUT.match(text):
            container, in_input = m.group(1), True
            continue
        if not in_input:
            continue
        if text.startswith(("Output #", "Stream mapping:")):
            break
        if (m := _DURATION.match(text)) and not estimated:
            declared = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        elif m := _STREAM.match(text):
            if m.group(1) == "Video":
                has_video = True
            elif codec is None:  # the first audio stream is the one decoded (-map 0:a:0)
                codec = m.group(2)
                hz = _HZ.search(text)
                rate = int(hz.group(1)) if hz else None
    return InputInfo(container, codec, rate, declared, has_video)


def wav_declared_s(path: str | Path) -> float | None:
    """The duration a RIFF/WAVE header declares (data chunk size / byte rate), None when
    the file is no WAV or declares no length. ffmpeg does not tell it: for a WAV whose
    data chunk claims more than the file holds it estimates from the file's size."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            riff = f.read(12)
            if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            byte_rate = None
            for _ in range(WAV_MAX_CHUNKS):
                head = f.read(8)
                if len(head) < 8:
                    return None
                cid, clen = head[:4], struct.unpack("<I", head[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(clen, 64))
                    if len(fmt) < 12:
                        return None
                    byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    f.seek(clen + (clen & 1) - len(fmt), 1)
                    continue
                if cid == b"data":
                    if not byte_rate or clen in WAV_PLACEHOLDERS or clen >= 0xFFFFFF00:
                        return None
                    return clen / byte_rate
                if f.tell() + clen > size:  # a chunk that runs past the end: no data chunk follows
                    return None
                f.seek(clen + (clen & 1), 1)
    except (OSError, struct.error):
        return None
    return None
