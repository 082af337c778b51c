"""The labels file of `callmood evaluate`: people's verdicts on calls or parts of calls.

CSV, UTF-8 (a BOM, as Excel writes, is fine), a header row naming the columns in any order::

    file,call_id,start,end,role,emotion,channels,scenario
    calls/0001.wav,,0:12,0:18.5,customer,生气,"0=agent,1=customer",finance_complaint
    ,1042,,,,neutral,,

- ``file`` (a recording, relative to the labels file's folder) or ``call_id`` (a stored
  call: CallMood's id, as the API and the call page show it): one of the two per row.
- ``start``, ``end``: both or neither; seconds ("12.5") or "mm:ss(.f)"; neither = the whole call.
- ``role``: customer, agent or mixed; empty = the call's verdict (whole call) or every track.
- ``emotion``: one of plugin.core.data.EMOTIONS, FunASR's Chinese name (生气, 中立...),
  "<unk>", or the "生气/angry" form.
- ``channels``: for a stereo file, "0=agent,1=customer" (as the import sidecar writes it).
- ``scenario``: the scenario whose threshold sweep this call counts for (default: every one).
- ``note``: free text, not read.

Every problem is collected with its line ("labels.csv:7: emotion: ..."); the caller
evaluates nothing while there is one.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from plugin.core.data import EMOTIONS, normalize_label
from plugin.flow.sidecar import _channels as sidecar_channels  # one reading of "0=agent,1=customer"

COLUMNS = ("file", "call_id", "start", "end", "role", "emotion", "channels", "scenario", "note")
ROLES = ("customer", "agent", "mixed")
MAX_BYTES = 32 * 1024 * 1024
MAX_ROWS = 100_000
SHOWN_PROBLEMS = 20  # more are counted, not listed: the first ones show what to fix

# FunASR's names of emotion2vec+'s labels (plugin/model/modeldir.LABEL_TOKENS, before the "/").
CHINESE = {"生气": "angry", "厌恶": "disgusted", "恐惧": "fearful", "开心": "happy", "中立": "neutral",
           "其他": "other", "难过": "sad", "吃惊": "surprised"}

_TIME = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")  # [h:]mm:ss(.f)


class LabelsError(Exception):
    """The labels cannot be evaluated; ``problems`` lists every reason, each with its line."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def lines(self) -> list[str]:
        """The problems to print: the first SHOWN_PROBLEMS, then how many more."""
        shown = self.problems[:SHOWN_PROBLEMS]
        more = len(self.problems) - len(shown)
        return shown + ([f"... and {more} more problem(s)"] if more else [])


@dataclass(frozen=True)
class Label:
    """One row of the labels file, checked."""

    line: int
    emotion: str  # one of EMOTIONS
    file: Path | None = None  # resolved against the labels file's folder
    file_text: str = ""  # as written, for messages and predictions.csv
    call_id: int | None = None
    start: float | None = None
    end: float | None = None
    role: str | None = None  # customer | agent | mixed; None = the call's verdict / every track
    channels: dict[int, str] | None = None
    scenario: str | None = None

    @property
    def unit(self) -> str:
        """The labelled call this row belongs to: one file, or one stored call."""
        return f"call:{self.call_id}" if self.call_id is not None else f"file:{self.file}"

    @property
    def whole(self) -> bool:
        return self.start is None


def read_labels(path: str | Path) -> list[Label]:
    """Every row of ``path``, checked; LabelsError listing every problem otherwise."""
    path = Path(path)
    name = path.name
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise LabelsError(f"{name}: larger than {MAX_BYTES // (1024 * 1024)} MB; split it into several files")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{name}: not UTF-8 (byte {exc.start}); save it as CSV UTF-8") from None
    if "\x00" in text:
        raise LabelsError(f"{name}: contains NUL characters; not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise LabelsError(f"{name}:1: {exc}") from None
    _check_header(name, header)
    # Excel saves the empty columns right of the table too ("file,emotion,,"): a column with
    # no name is ignored while it is empty all the way down, and refused where it holds a value.
    unnamed = [i for i, h in enumerate(header) if not h]
    named = [(i, h) for i, h in enumerate(header) if h]
    folder = path.resolve().parent
    labels: list[Label] = []
    problems: list[str] = []
    header_problems: list[str] = []
    rows = 0
    try:
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue  # a blank line
            rows += 1
            if rows > MAX_ROWS:
                raise LabelsError(f"{name}: more than {MAX_ROWS} rows; split it into several files")
            if len(row) != len(header):
                problems.append(f"{name}:{line}: has {len(row)} cells; the header has {len(header)}")
                continue
            for i in unnamed:
                if row[i].strip():
                    header_problems.append(f"{name}:1: column {i + 1} has no name, but line {line} has a value "
                                           f"in it; name it ({', '.join(COLUMNS)}) or empty it")
                    unnamed.remove(i)  # said once per column
                    break
            label, problem = parse_row({h: row[i] for i, h in named}, line, folder)
            if problem:
                problems.append(f"{name}:{line}: {problem}")
            else:
                labels.append(label)
    except csv.Error as exc:
        raise LabelsError(header_problems + problems + [f"{name}:{reader.line_num}: {exc}"]) from None
    if header_problems or problems:
        raise LabelsError(header_problems + problems)
    if not labels:
        raise LabelsError(f"{name}: no labels (a header row, then one row per label)")
    return labels


def _check_header(name: str, header: list[str]) -> None:
    where = f"{name}:1"
    if not any(header):
        raise LabelsError(f"{where}: no header row (it names the columns: {', '.join(COLUMNS)})")
    header = [h for h in header if h]  # columns without a name: read_labels checks they stay empty
    for h in header:
        if h not in COLUMNS:
            raise LabelsError(f"{where}: column {h[:40]!r}: unknown column (known: {', '.join(COLUMNS)})")
    dup = next((h for h in header if header.count(h) > 1), None)
    if dup:
        raise LabelsError(f"{where}: column {dup!r} appears twice")
    if "emotion" not in header:
        raise LabelsError(f"{where}: no 'emotion' column (the true emotion of each row)")
    if "file" not in header and "call_id" not in header:
        raise LabelsError(f"{where}: no 'file' or 'call_id' column (which call each row labels)")
    if ("start" in header) != ("end" in header):
        raise LabelsError(f"{where}: give both 'start' and 'end' columns, or neither")


def parse_row(cells: dict[str, str], line: int, folder: Path) -> tuple[Label | None, str]:
    """One row as a Label, or None and what is wrong with it (naming the column)."""
    get = {k: (v or "").strip() for k, v in cells.items()}
    emotion = parse_emotion(get.get("emotion", ""))
    if emotion is None:
        given = get.get("emotion", "")
        return None, ("emotion: is required" if not given else
                      f"emotion: {given[:40]!r} is not an emotion (known: {', '.join(EMOTIONS)}, "
                      f"or FunASR's names: {' '.join(CHINESE)} <unk>)")
    file_text, call_text = get.get("file", ""), get.get("call_id", "")
    if bool(file_text) == bool(call_text):
        return None, "give either file or call_id (one of the two)"
    file = call_id = None
    if file_text:
        if len(file_text) > 1024 or any(not c.isprintable() for c in file_text):
            return None, "file: must be a path without control characters"
        file = (folder / file_text).resolve()
    else:
        if not (call_text.isascii() and call_text.isdigit() and 0 < int(call_text) < 2 ** 63):
            return None, f"call_id: {call_text[:40]!r} must be a call's number, as the call page shows it"
        call_id = int(call_text)
    start_text, end_text = get.get("start", ""), get.get("end", "")
    if bool(start_text) != bool(end_text):
        return None, "give both start and end, or neither (the whole call)"
    start = end = None
    if start_text:
        start, problem = parse_time(start_text)
        if problem:
            return None, f"start: {problem}"
        end, problem = parse_time(end_text)
        if problem:
            return None, f"end: {problem}"
        if end <= start:
            return None, f"end ({end_text}) must be after start ({start_text})"
    role = get.get("role", "").lower() or None
    if role is not None and role not in ROLES:
        return None, f"role: {get['role'][:40]!r} must be one of {', '.join(ROLES)}, or empty"
    channels, problem = sidecar_channels(get.get("channels") or None)
    if problem:
        return None, f"channels: {problem}"
    if channels and call_id is not None:
        return None, "channels: only for a file (a stored call keeps the layout it was analysed with)"
    scenario = get.get("scenario") or None
    if scenario is not None and (len(scenario) > 64 or any(not c.isprintable() for c in scenario)):
        return None, "scenario: must be a scenario's name"
    return Label(line=line, emotion=emotion, file=file, file_text=file_text, call_id=call_id, start=start,
                 end=end, role=role, channels=channels, scenario=scenario), ""


def parse_emotion(text: str) -> str | None:
    """'angry', 'Angry', '生气', '生气/angry', '<unk>' -> one of EMOTIONS; None if it is none."""
    text = text.strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split("/")]
    if len(parts) > 2 or not all(parts):  # "/" or "生气/": normalize_label would read "" as unknown
        return None
    names = {CHINESE.get(p, normalize_label(p)) for p in parts}  # '生气/angry': both must agree
    if len(names) != 1:
        return None
    [name] = names
    return name if name in EMOTIONS else None


def parse_time(text: str) -> tuple[float, str]:
    """'12.5' or 'mm:ss(.f)' (also 'h:mm:ss') in seconds; (0, why) when it is neither."""
    m = _TIME.match(text)
    if m:
        hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
        if seconds >= 60 or (m.group(1) is not None and minutes >= 60):
            return 0.0, f"{text[:40]!r}: minutes and seconds must be below 60"
        return hours * 3600 + minutes * 60 + seconds, ""
    try:
        value = float(text)
    except ValueError:
        return 0.0, f"{text[:40]!r} must be seconds (12.5) or mm:ss (0:12.5)"
    if not math.isfinite(value) or value < 0:
        return 0.0, f"{text[:40]!r} must be a time from the call's start (0 or more seconds)"
    return value, ""
