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

Every path to the model (the worker, /predict, ``callmood analyze``, the per-party files
merge.py puts side by side) decodes here, so all of them hear a call through one
resampler: ffmpeg's ``aresample`` with libsoxr, named in ``SOXR`` and recorded with
every result, beside the rate, codec and container the file came in. Why soxr: a steep,
linear-phase band limit (nothing of 8-22 kHz folds into what the model hears) that does
the same on every build that has it, and the resampler Python speech tooling uses by
default (librosa's ``soxr_hq`` is this precision, 20 bits); ffmpeg's own swr is the
fallback only where an ffmpeg without libsoxr is used (IMAGEIO_FFMPEG_EXE), and then says
so in ``resampler``. No dither: the same file always gives the same samples.

What is learnt on the way is kept with the result (``DecodedAudio.sources``): whether
the call is narrowband (plugin/audio/bandwidth.py), and whether it is partial: the
file declares a longer duration (its header: WAV data size, MP3 Xing frames, FLAC
STREAMINFO, MP4 moov) than it holds, as a download cut short does. A partial recording
is analysed, and marked.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from plugin.audio import bandwidth, ffmpeg_info
from plugin.audio.sniff import looks_like
from plugin.core.files import private_opener

logger = logging.getLogger(__name__)

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
# The one resampler (see above). precision=20 bits is soxr's "HQ" recipe; cheby=0 keeps its
# linear-phase passband; the float -> 16-bit conversion happens in the same filter, undithered.
SOXR = f"aresample={SAMPLE_RATE}:resampler=soxr:precision=20:cheby=0:osf=s16:dither_method=none"
SWR = (f"aresample={SAMPLE_RATE}:resampler=swr:filter_type=kaiser:kaiser_beta=9:filter_size=32:"
       f"phase_shift=10:linear_interp=1:exact_rational=1:cutoff=0.97:osf=s16:dither_method=none")
# A recording is partial when it holds this much less than its header declares (containers
# declare their length to the frame; decoders' padding and delay are some 50 ms).
PARTIAL_TOLERANCE_S = 1.0
EXIT_REQUESTED = "Immediate exit requested"  # ffmpeg's AVERROR_EXIT: it caught a signal


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


_chosen: list[str] = []  # the answer, once this ffmpeg gave one (not a failure to ask it)


def resampler() -> str:
    """The aresample filter every decode uses: soxr where this ffmpeg has it (the bundled
    one does), else swr with its settings spelled out.

    Only an answer is kept for the process: ffmpeg that ran and refused soxr. One that
    could not be asked (no fork under load, killed, past the timeout) gives swr for this
    decode only, recorded as such, and is asked again next time; caching that would make
    every later call of this process be heard through another resampler than the rest."""
    if _chosen:
        return _chosen[0]
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
           "anullsrc=r=8000:cl=mono", "-t", "0.05", "-af", SOXR, "-f", "null", "-"]
    try:
        code = subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("could not ask ffmpeg (%s) whether it has libsoxr (%s): this decode resamples with "
                       "swr; asked again at the next", ffmpeg_exe(), exc.__class__.__name__)
        return SWR
    if code < 0:  # killed by a signal: no answer either
        return SWR
    if code != 0:
        logger.warning("this ffmpeg (%s) has no libsoxr: resampling with swr, so scores may differ "
                       "slightly from an install with the bundled ffmpeg", ffmpeg_exe())
    _chosen[:] = [SOXR if code == 0 else SWR]
    return _chosen[0]


@dataclass(frozen=True)
class SourceFile:
    """One file as it came, and what decoding it found."""

    rate: int | None  # Hz of its first audio stream, as the file declares it
    codec: str | None  # ffmpeg's name: pcm_mulaw, pcm_s16le, mp3, aac, opus, amr_nb...
    container: str | None  # ffmpeg's demuxer: wav, mp3, mov (mp4/m4a), ogg, matroska...
    decoded_s: float
    declared_s: float | None  # what its header declares, where it declares anything
    high_band_db: tuple[float | None, ...] = ()  # per decoded channel: see bandwidth.py

    @property
    def narrowband(self) -> bool:
        return any(bandwidth.is_narrowband(self.rate, db) for db in self.high_band_db or (None,))

    @property
    def narrowband_reason(self) -> str | None:
        if self.rate is not None and self.rate <= 8000:
            return f"the recording is {self.rate} Hz (telephone band, nothing above {self.rate // 2} Hz)"
        low = [db for db in self.high_band_db if db is not None and db < bandwidth.NARROWBAND_DB]
        if low:
            return (f"no sound above 4.6 kHz ({min(low):g} dB against the speech band) although the file "
                    f"is {self.rate or '?'} Hz: telephone audio upsampled before it reached us")
        return None

    @property
    def partial(self) -> bool:
        return self.declared_s is not None and self.declared_s - self.decoded_s > PARTIAL_TOLERANCE_S

    def describe(self) -> dict:
        out = {"source_rate": self.rate, "source_codec": self.codec, "source_format": self.container,
               "narrowband": self.narrowband, "high_band_db": list(self.high_band_db),
               "partial": self.partial, "declared_s": _round(self.declared_s),
               "decoded_s": _round(self.decoded_s)}
        if self.narrowband:
            out["narrowband_reason"] = self.narrowband_reason
        return out


@dataclass
class DecodedAudio:
    path: Path
    channels: int
    frames: int
    sample_rate: int = SAMPLE_RATE
    _data_offset: int = 44
    sources: tuple[SourceFile, ...] = ()  # the file(s) it was decoded from; several once merged
    resampler: str | None = None  # the aresample filter used (see SOXR)

    @property
    def narrowband(self) -> bool:
        return any(s.narrowband for s in self.sources)

    @property
    def partial(self) -> bool:
        return any(s.partial for s in self.sources)

    def describe(self) -> dict:
        """How the audio came and was decoded, for the call's summary, the API and /predict:
        the source rate, codec and container, the resampler, ``narrowband`` (with its
        reason) and ``partial`` (with declared and decoded seconds)."""
        out: dict = {"resampler": self.resampler, "narrowband": self.narrowband, "partial": self.partial}
        if len(self.sources) == 1:
            return {**self.sources[0].describe(), **out}
        if self.sources:  # one file per participant: the lowest rate is the one that limits
            rates = [s.rate for s in self.sources if s.rate]
            out["source_rate"] = min(rates) if rates else None
            reasons = [s.narrowband_reason for s in self.sources if s.narrowband]
            if reasons:
                out["narrowband_reason"] = reasons[0]
            out["sources"] = [s.describe() for s in self.sources]
        return out

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


def audio_line(described: dict) -> str:
    """``DecodedAudio.describe()`` (or a call's summary) in one line, for `callmood analyze`:
    "8000 Hz pcm_mulaw/wav -> 16 kHz (soxr); NARROWBAND: ...; PARTIAL: 3.0 s of 60.0 s declared"."""
    rate = described.get("source_rate")
    came = f"{rate or '?'} Hz {described.get('source_codec') or '?'}/{described.get('source_format') or '?'}"
    filt = described.get("resampler") or "?"
    line = f"{came} -> 16 kHz ({'soxr' if 'resampler=soxr' in filt else filt})"
    if described.get("narrowband"):
        line += f"; NARROWBAND: {described.get('narrowband_reason')}"
    if described.get("partial"):
        line += (f"; PARTIAL: {described.get('decoded_s') or 0:.1f} s of {described.get('declared_s') or 0:.1f} s "
                 f"declared were decoded")
    return line


def decode(src: str | Path, dest: str | Path, max_duration_s: float | None = None, *,
           max_channels: int = DEFAULT_MAX_CHANNELS, timeout_s: float = DEFAULT_TIMEOUT_S,
           on_wait: Callable[[], None] | None = None) -> DecodedAudio:
    """Decode ``src`` to a 16 kHz PCM WAV at ``dest`` and describe it.

    ``on_wait`` is called every second while ffmpeg runs (to renew a lease, say);
    whatever it raises stops ffmpeg and is raised from here."""
    dest = Path(dest)
    max_duration_s = max_duration_s or DEFAULT_MAX_DURATION_S
    deadline = time.monotonic() + timeout_s
    probed = probe(src, timeout_s)
    if probed.channels > max_channels:
        raise DecodeError(f"recording has {probed.channels} audio channels; at most {max_channels} are "
                          f"analysed (audio.max_channels)")
    frames_cap = int(max_duration_s * SAMPLE_RATE) + SAMPLE_RATE
    filt = resampler()
    # No -ar: the rate is set by the one filter, so nothing else resamples on the way.
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "level+error", "-y", *_input(src),
           "-map", "0:a:0", "-vn", "-t", f"{max_duration_s:g}", "-ac", str(probed.channels),
           "-af", filt, "-c:a", "pcm_s16le",
           "-fs", str(frames_cap * probed.channels * 2 + 4096), "-f", "wav", str(dest)]
    log = dest.with_name(dest.name + ".log")
    try:
        code = _run(cmd, log, deadline, timeout_s, on_wait)
        if _interrupted(code, said_nothing=log.stat().st_size == 0, errors=_tail(log)):
            raise DecodeError("decoding was interrupted: ffmpeg was stopped by a signal", retryable=True)
        if code != 0:
            raise DecodeError(f"cannot decode recording: {_reason(log, code)}")
        got_channels, rate, offset, data_bytes = _wav_layout(dest)
        if rate != SAMPLE_RATE:  # the filter above sets it: anything else is a broken ffmpeg
            raise DecodeError(f"decoder wrote {rate} Hz, not {SAMPLE_RATE} Hz")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        log.unlink(missing_ok=True)
    frames = min(data_bytes // (2 * got_channels), frames_cap)
    if frames == 0:
        dest.unlink(missing_ok=True)
        raise DecodeError("cannot decode recording: no audio samples")
    audio = DecodedAudio(dest, got_channels, frames, SAMPLE_RATE, offset, resampler=filt)
    declared = probed.info.declared_s
    if probed.info.container == "wav":  # ffmpeg guesses from the file's size where a WAV header lies
        declared = ffmpeg_info.wav_declared_s(src) or declared
    if declared is not None:
        declared = min(declared, max_duration_s)  # what -t lets through is all that is expected
    audio.sources = (SourceFile(probed.info.rate, probed.info.codec, probed.info.container, audio.duration,
                            declared, tuple(_high_band_db(audio, ch) for ch in range(got_channels))),)
    return audio


def _high_band_db(audio: DecodedAudio, channel: int) -> float | None:
    return bandwidth.high_band_db([audio.channel(channel, a, b) for a, b in bandwidth.spans(audio.frames)])


@dataclass(frozen=True)
class Probe:
    channels: int
    info: ffmpeg_info.InputInfo


def probe(src: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> Probe:
    """The channel count of ``src``'s first audio stream, from decoding its first moment
    (imageio-ffmpeg ships no ffprobe), and what ffmpeg's dump of the input says (rate,
    codec, container, declared duration); DecodeError, saying what the file is where
    that is plain, when it is no audio we read."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info", *_input(src),
           "-map", "0:a:0", "-vn", "-t", str(PROBE_SECONDS), "-c:a", "pcm_s16le", "-f", "wav", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=min(timeout_s, 60), start_new_session=True)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"cannot decode recording: reading its header took longer than "
                          f"{min(timeout_s, 60):g}s") from None
    msgs = ffmpeg_info.messages(proc.stderr)
    if _interrupted(proc.returncode, said_nothing=not ffmpeg_info.errors(msgs),
                    errors="\n".join(ffmpeg_info.errors(msgs))):
        raise DecodeError("decoding was interrupted: ffmpeg was stopped by a signal", retryable=True)
    if proc.returncode != 0:
        raise DecodeError(f"cannot decode recording: {_what_it_is(src) or _explain(msgs, proc.returncode)}")
    head = proc.stdout
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE" or len(head) < 44:
        raise DecodeError(f"cannot decode recording: {_what_it_is(src) or 'no audio samples'}")
    return Probe(_channels_of(head), ffmpeg_info.input_info(msgs))


def probe_channels(src: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    return probe(src, timeout_s).channels


def _what_it_is(src: str | Path) -> str | None:
    """Said instead of ffmpeg's words where the file is plainly something else."""
    try:
        if Path(src).stat().st_size == 0:
            return "the file is empty (0 bytes)"
    except OSError:
        return None
    kind = looks_like(src)
    return f"not an audio file (looks like {kind})" if kind else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


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


def _interrupted(code: int, said_nothing: bool, errors: str = "") -> bool:
    """ffmpeg was killed, or stopped on SIGTERM/SIGINT (exit 255 with nothing to say, or
    with "Immediate exit requested", its word for a signal caught while demuxing), as
    systemd's default KillMode does to every process of a stopping service: not the
    recording's fault."""
    return code < 0 or (code == 255 and (said_nothing or EXIT_REQUESTED in errors))


def _tail(log: Path) -> str:
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - STDERR_TAIL))
        return f.read().decode("utf-8", "replace")


def _reason(log: Path, code: int) -> str:
    return _explain(ffmpeg_info.messages(_tail(log)), code)


def _explain(msgs: list[tuple[str, str]], code: int) -> str:
    """ffmpeg's own words for what went wrong, the most telling line of them."""
    lines = ffmpeg_info.errors(msgs)
    text = "\n".join(lines)
    if "Format not on whitelist" in text:
        return f"not an audio file we read (allowed containers: {', '.join(AUDIO_FORMATS)})"
    if "not on whitelist" in text:  # a protocol: a file that names another file or URL
        return "the file refers to other files or URLs, which are not read"
    if "matches no streams" in text:
        if any(level == "info" and t.lstrip().startswith("Stream #") and ": Video:" in t for level, t in msgs):
            return "no audio stream in file (it holds video only)"
        return "no audio stream in file"
    if "moov atom not found" in text:  # an MP4/M4A keeps its index at the end, by default
        return ("the recording is incomplete: its MP4 index (moov atom) is missing, as when a "
                "download or an upload was cut short")
    # "Error opening input: ..." is the useful one of ffmpeg's three "Error opening" lines.
    useful = [ln for ln in lines if not ln.startswith("Error opening input file")]
    return useful[-1] if useful else f"ffmpeg exited {code}"


def _channels_of(head: bytes) -> int:
    pos = 12
    while pos + 8 <= len(head):
        cid, clen = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"fmt " and pos + 12 <= len(head):
            return struct.unpack("<H", head[pos + 10:pos + 12])[0]
        pos += 8 + clen + (clen & 1)
    raise DecodeError("cannot decode recording: no audio format found")


def _wav_layout(path: Path) -> tuple[int, int, int, int]:
    """(channels, sample rate, offset of the PCM data, its length) from a RIFF/WAVE header."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        riff = f.read(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise DecodeError("decoder wrote no WAV header")
        channels = rate = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise DecodeError("decoded WAV has no data chunk")
            cid, clen = head[:4], struct.unpack("<I", head[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(clen)
                channels, rate = struct.unpack("<HI", fmt[2:8])
                continue
            if cid == b"data":
                offset = f.tell()
                # ffmpeg leaves the length at 0 or 0xFFFFFFFF when it cannot seek back.
                length = min(clen, size - offset) if clen not in (0, 0xFFFFFFFF) else size - offset
                if channels is None:
                    raise DecodeError("decoded WAV has no format chunk")
                return channels, rate, offset, length
            f.seek(clen + (clen & 1), 1)
