"""Each labelled call's segment results, and each label's predicted emotion.

A labelled call (a "unit") is one stored call (``call_id``) or one file. A stored call's
results are read from the database (its Segment rows). A file's are read from the call
`callmood import` made of the same bytes (its external id is their sha256), when that call
was analysed; otherwise (or with ``fresh``) the file is decoded with plugin.audio.decode
(the one resampler) and analysed with plugin.flow.analysis.analyze_audio, as
`callmood analyze` does, once however many labels name it. The model is loaded only when
a file needs it, and only once every such file passed the cheap checks decode makes first
(probe_files). Stored calls are read a chunk at a time (stored_units), so the caller
counts each unit and lets its segments go.

A label's prediction: the windows of its role overlapping its [start, end), and the label
with the most overlapping seconds among them (tie: the higher summed confidence); a
whole-call label without a role takes the call's verdict (plugin.core.data.summarize).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from plugin.audio.decode import DecodeError, decode, probe
from plugin.config import AudioConfig, Config
from plugin.core import files, trial
from plugin.core.data import EMOTIONS, CallAnalysis, SegmentResult, summarize
from plugin.flow.analysis import analyze_audio
from plugin.flow.context import call_context
from plugin.flow.evaluate.labels import Label
from plugin.flow.evaluate.metrics import NONE
from plugin.model.loading import EmotionModel
from plugin.store.tables import SEGMENT_COLUMNS, Call, Segment, segment_result
from rules.conditions import role_segments

STORED, MODEL = "stored", "model"
IDS_PER_QUERY = 500  # calls (and their segments) read per query


@dataclass
class Unit:
    """One labelled call, with what the model made of it."""

    key: str  # Label.unit
    labels: list[Label]
    analysis: CallAnalysis
    context: dict[str, Any]  # what rules see of the call (plugin.flow.context.call_context)
    origin: str  # STORED or MODEL
    trial: bool  # a trial model (random weights) made these results


@dataclass
class FileJob:
    """A file the model has to analyse, with the labels that name it."""

    path: Path
    labels: list[Label]
    channels: dict[int, str] | None


@dataclass
class Plan:
    stored: dict[str, tuple[int, list[Label]]] = field(default_factory=dict)  # unit -> (call id, rows): stored_units
    to_run: dict[str, FileJob] = field(default_factory=dict)  # for the model
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)


@dataclass(frozen=True)
class Ran:
    """What became of one file the model was to analyse: its unit, or why there is none;
    and what the analysis noted about it (a channel layout it could not honour)."""

    job: FileJob
    unit: Unit | None
    failure: str = ""
    note: str = ""


@dataclass(frozen=True)
class Prediction:
    label: Label
    predicted: str  # an emotion, or NONE
    origin: str


def group(labels: Iterable[Label]) -> dict[str, list[Label]]:
    out: dict[str, list[Label]] = {}
    for label in labels:
        out.setdefault(label.unit, []).append(label)
    return out


def plan(labels: list[Label], sessions: sessionmaker[Session], max_bytes: int, fresh: bool = False) -> Plan:
    """What each labelled call's results come from: the stored ones, or the model (files).

    Every row that cannot be evaluated is a problem with its line: an unknown call id, a
    call not analysed or whose segments retention removed, a missing or unreadable file.
    Only the calls' state is read here; their segments are read later, a chunk of calls at
    a time (stored_units)."""
    out = Plan()
    units = group(labels)
    by_id = {rows[0].call_id: rows for rows in units.values() if rows[0].call_id is not None}
    by_file = {rows[0].file: rows for rows in units.values() if rows[0].file is not None}
    digests: dict[str, list[Path]] = {}  # two names of the same bytes: one imported call
    for path, rows in by_file.items():
        problem = _file_problem(path, rows[0].file_text, max_bytes) or _channels_problem(rows)
        if problem:
            out.problems += [(r.line, problem) for r in rows]
            continue
        out.to_run[rows[0].unit] = FileJob(path, rows, next((r.channels for r in rows if r.channels), None))
        if not fresh:
            digests.setdefault(_sha256(path), []).append(path)
    with sessions() as s:
        for call_id, call in _calls(s, list(by_id)).items():
            problem = _call_problem(call_id, call)
            if problem:
                out.problems += [(r.line, problem) for r in by_id[call_id]]
            else:
                out.stored[f"call:{call_id}"] = (call_id, by_id[call_id])
        # A file imported and analysed: the workers' results, no model run. One not analysed
        # (yet), or whose segments retention removed, is run through the model instead.
        for digest, call in _imported(s, list(digests)).items():
            if _call_problem(call.id, call):
                continue
            for path in digests[digest]:
                rows = by_file[path]
                out.stored[rows[0].unit] = (call.id, rows)
                out.to_run.pop(rows[0].unit, None)
    out.problems.sort()
    return out


def stored_units(sessions: sessionmaker[Session], stored: dict[str, tuple[int, list[Label]]],
                 chunk: int = IDS_PER_QUERY) -> Iterator[Unit]:
    """The unit of each stored call, read ``chunk`` calls at a time (their rows and segments in
    one query each, in a short session), so a large labels file never holds every call's
    segments at once."""
    by_call: dict[int, list[tuple[str, list[Label]]]] = {}
    for key, (call_id, rows) in stored.items():
        by_call.setdefault(call_id, []).append((key, rows))
    for ids in _chunks(sorted(by_call), chunk):
        with sessions() as s:
            calls = {c.id: c for c in s.execute(select(Call).where(Call.id.in_(ids))).scalars()}
            segments = _segments(s, ids)
            units = [_stored(key, rows, calls[call_id], segments[call_id])
                     for call_id in ids for key, rows in by_call[call_id]]
        yield from units


def probe_files(jobs: Iterable[FileJob], cfg: AudioConfig) -> list[tuple[int, str]]:
    """The lines of files the model would fail to decode, found before it is loaded: what
    plugin.audio.decode.decode checks first (ffmpeg reads the first moment of the first
    audio stream; at most audio.max_channels channels), a fraction of a second per file."""
    problems: list[tuple[int, str]] = []
    for job in jobs:
        try:
            probed = probe(job.path, cfg.decode_timeout_s)
        except DecodeError as exc:
            problem = f"file: {job.labels[0].file_text!r}: {exc}"
        else:
            if probed.channels <= cfg.max_channels:
                continue
            problem = (f"file: {job.labels[0].file_text!r}: recording has {probed.channels} audio channels; at most "
                       f"{cfg.max_channels} are analysed (audio.max_channels)")
        problems += [(r.line, problem) for r in job.labels]
    return problems


def run_model(jobs: Iterable[FileJob], cfg: Config, model: EmotionModel,
              progress: Callable[[list[FileJob]], Iterable[FileJob]] = lambda js: js) -> Iterator[Ran]:
    """Decode and analyse each file once, as `callmood analyze` does, one Ran per file. A
    file that fails (it passed probe_files, yet does not decode, or its analysis raises)
    is a Ran without a unit, saying why: the other files' results are kept."""
    for job in progress(list(jobs)):
        text = job.labels[0].file_text
        with tempfile.TemporaryDirectory(prefix="callmood-evaluate-") as tmp:
            try:
                audio = decode(job.path, Path(tmp) / "decoded.wav", cfg.audio.max_duration_s,
                               max_channels=cfg.audio.max_channels, timeout_s=cfg.audio.decode_timeout_s)
            except DecodeError as exc:
                yield Ran(job, None, f"file: {text!r}: {exc}")
                continue
            try:
                analysis, notes = analyze_audio(audio, model, cfg.audio, job.channels)
            except Exception as exc:  # noqa: BLE001 -- one file's failure must not discard the others' hours
                why = ": ".join([type(exc).__name__] + (str(exc).splitlines() or [])[:1])[:200]
                yield Ran(job, None, f"file: {text!r}: cannot analyse: {why}")
                continue
        ctx = _file_context(job.path, analysis.duration)
        unit = Unit(job.labels[0].unit, job.labels, analysis, ctx, MODEL, model.trial)
        yield Ran(job, unit, note=str(notes.get("layout_note") or ""))


def predict(label: Label, analysis: CallAnalysis) -> str:
    """The emotion the model gives the part of the call ``label`` names, or NONE."""
    if label.whole and label.role is None:
        return analysis.emotion or NONE  # the call's verdict, as the call page shows it
    # "customer" falls back to the mixed track when the call has no customer's own, as rules do.
    segs = analysis.segments if label.role is None else role_segments(analysis, label.role)[1]
    lo = label.start if label.start is not None else float("-inf")
    hi = label.end if label.end is not None else float("inf")
    seconds: dict[str, float] = {}
    confidence: dict[str, float] = {}
    for s in segs:
        overlap = round(min(s.end, hi) - max(s.start, lo), 6)
        if overlap > 0:
            seconds[s.label] = seconds.get(s.label, 0.0) + overlap
            confidence[s.label] = confidence.get(s.label, 0.0) + s.confidence
    if not seconds:
        return NONE

    def rank(e: str) -> tuple[float, float, int]:  # then EMOTIONS order, so a tie never depends on luck
        return (round(seconds[e], 6), round(confidence[e], 6), -EMOTIONS.index(e) if e in EMOTIONS else -99)

    return max(seconds, key=rank)


def predictions(unit: Unit) -> list[Prediction]:
    """One prediction per label of ``unit``."""
    return [Prediction(label, predict(label, unit.analysis), unit.origin) for label in unit.labels]


# --- reading -------------------------------------------------------------------------

def _chunks(ids: list, n: int = IDS_PER_QUERY) -> Iterable[list]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


# Planning reads only what says whether a call can be used (not whole rows: a large labels
# file would hold every call's event and summary).
_STATE = (Call.id, Call.status, Call.summary)


def _calls(s: Session, ids: list[int]) -> dict[int, Any]:
    found: dict[int, Any] = {i: None for i in ids}
    for chunk in _chunks(ids):
        for row in s.execute(select(*_STATE).where(Call.id.in_(chunk))):
            found[row.id] = row
    return found


def _imported(s: Session, digests: list[str]) -> dict[str, Any]:
    """The calls `callmood import` made of these contents, by sha256 (id, status, summary)."""
    found: dict[str, Any] = {}
    for chunk in _chunks(digests):
        for row in s.execute(select(*_STATE, Call.external_id).where(Call.source == files.IMPORT_SOURCE,
                                                                     Call.external_id.in_(chunk))):
            found[row.external_id] = row
    return found


def _segments(s: Session, ids: list[int]) -> dict[int, list[SegmentResult]]:
    """The segments of the calls ``ids`` (one chunk of stored_units)."""
    out: dict[int, list[SegmentResult]] = {i: [] for i in ids}
    for chunk in _chunks(ids):
        for row in s.execute(select(Segment.call_id, *SEGMENT_COLUMNS)
                             .where(Segment.call_id.in_(chunk))
                             .order_by(Segment.call_id, Segment.channel, Segment.start)):
            out[row.call_id].append(segment_result(row))
    return out


def _call_problem(call_id: int, call: Any) -> str | None:
    """Why the call (a row with status and summary, or None) cannot be evaluated, if it cannot."""
    if call is None:
        return f"call_id {call_id}: no such call"
    if call.status != "analyzed":
        return (f"call_id {call_id}: not analysed (status {call.status}); label it once a worker has "
                f"analysed it, or label its recording file")
    purged = ((call.summary or {}).get("purged") or {}).get("segments")
    if purged:
        return (f"call_id {call_id}: its per-segment results were removed by the retention policy on "
                f"{purged} (retention.segments_days); label a call analysed since, or its recording file")
    return None


def _stored(key: str, rows: list[Label], call: Call, segments: list[SegmentResult]) -> Unit:
    duration = call.duration_s if call.duration_s is not None else max((x.end for x in segments), default=0.0)
    ctx = call_context(call)
    ctx["duration_s"] = duration
    return Unit(key, rows, summarize(segments, duration), ctx, STORED, trial.recorded(call.summary))


def _file_context(path: Path, duration: float) -> dict[str, Any]:
    # What a webhook's call gives rules, for an unsaved call of this file (as `callmood analyze`).
    return call_context(Call(source="cli", external_id=str(path), queue=None, recording_url=str(path),
                             duration_s=duration, event={}))


def _file_problem(path: Path, text: str, max_bytes: int) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"file: {text!r}: no such file ({path})"
    except OSError as exc:
        return f"file: {text!r}: cannot read: {exc.strerror}"
    if not path.is_file():
        return f"file: {text!r}: not a file ({path})"
    if st.st_size == 0:
        return f"file: {text!r}: empty"
    if st.st_size > max_bytes:
        return f"file: {text!r}: {st.st_size} bytes; at most {max_bytes} (fetch.max_bytes)"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"file: {text!r}: cannot read: {exc.strerror}"
    return None


def _channels_problem(rows: list[Label]) -> str | None:
    """Rows naming one file must agree on its channels (one file is analysed once)."""
    given = [r for r in rows if r.channels]
    for r in given[1:]:
        if r.channels != given[0].channels:
            return f"channels: the rows of {r.file_text!r} give different channels (lines {given[0].line} and {r.line})"
    return None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
