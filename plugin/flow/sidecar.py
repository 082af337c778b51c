"""The sidecar of `callmood import`: a CSV or JSON file naming, for each recording, what a
webhook would have said about its call.

CSV, a header row first (only ``file`` is required; an empty cell is "not known")::

    file,customer_id,customer_phone,agent_id,queue,ticket_id,channels
    2026-11-24/0001.wav,cust-42,13800138000,agent-7,support,T-1001,"0=agent,1=customer"

JSON, a list of objects with the same keys (``channels`` also as {"0": "agent", ...})::

    [{"file": "0001.wav", "customer_id": "cust-42", "customer_phone": "+8613800138000"}]

``file`` is a path relative to the sidecar's own folder, written with "/": never absolute,
never through "..", never a hidden name, and still inside that folder once links are
followed. Every other field is checked as the webhook checks it (plugin/core/ids.py); the
phone number is stored as E.164 (plugin/core/phones.py, identity.default_region). Each
problem names the sidecar, the line (JSON: the item) and the column.

The sidecar is written by whoever can write into the drop folder: hostile by default.
"""

from __future__ import annotations

import csv
import errno
import io
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from plugin.core import files, ids, safe_json
from plugin.core.phones import e164

COLUMNS = ("file", "customer_id", "customer_phone", "agent_id", "queue", "ticket_id", "channels")
ID_COLUMNS = ("customer_id", "agent_id", "queue", "ticket_id")
ROLES = ("agent", "customer")
MAX_BYTES = 16 * 1024 * 1024  # a day of a large center is some ten thousand rows: well below
MAX_ROWS = 200_000


class SidecarError(Exception):
    """The sidecar cannot be read at all (not CSV/JSON, no ``file`` column, too large)."""


@dataclass(frozen=True)
class SidecarRow:
    """What a sidecar row says about one recording's call."""

    where: str  # "calls.csv:3" or "calls.json: item 2", for messages
    customer_id: str | None = None
    customer_phone: str | None = None  # E.164
    agent_id: str | None = None
    queue: str | None = None
    ticket_id: str | None = None
    channel_roles: dict[int, str] | None = None


@dataclass
class Sidecar:
    """A sidecar read: the rows by the resolved path of the file they name, the rows that
    are wrong (by that path, when the path itself is fine), and the problems of rows whose
    ``file`` is unusable (a hostile path, say)."""

    path: Path
    rows: dict[Path, SidecarRow] = field(default_factory=dict)
    refused: dict[Path, str] = field(default_factory=dict)  # file -> "calls.csv:4: customer_phone: ..."
    problems: list[str] = field(default_factory=list)  # rows that name no usable file


def read_sidecar(path: Path, region: str) -> Sidecar:
    """Read and check ``path`` (CSV or JSON by its extension); SidecarError when it cannot
    be read as a whole."""
    try:  # a link in a drop folder is not followed: it could name any file this user reads
        with open(path, "rb", opener=files.no_follow_opener) as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        why = "it is a link (a sidecar is read only as a file of its own)" if exc.errno == errno.ELOOP \
            else exc.strerror
        raise SidecarError(f"{path}: cannot read: {why}") from None
    if len(raw) > MAX_BYTES:
        raise SidecarError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    items = _json_items(path, raw) if path.suffix.lower() == ".json" else _csv_items(path, raw)
    out = Sidecar(path)
    seen: dict[Path, str] = {}
    for where, item in items:
        if item.get("file") is None and "_problem" in item:  # a row that names no file at all
            out.problems.append(f"{where}: {item['_problem']}")
            continue
        target, problem = _target(path.parent, item.get("file"))
        if target is None:
            out.problems.append(f"{where}: file: {problem}")
            continue
        if target in seen:
            out.problems.append(f"{where}: file: {item['file']!r} is already described at {seen[target]}")
            continue
        seen[target] = where
        info, problem = _info(where, item, region)
        if problem:
            out.refused[target] = problem
        else:
            out.rows[target] = info
    return out


def _csv_items(path: Path, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    name = path.name
    try:
        text = raw.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError as exc:
        raise SidecarError(f"{name}: not UTF-8 (byte {exc.start}); save it as CSV UTF-8") from None
    if "\x00" in text:
        raise SidecarError(f"{name}: contains NUL characters; not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise SidecarError(f"{name}:1: {exc}") from None
    _check_columns(f"{name}:1", header)
    items = []
    try:
        for row in reader:
            where = f"{name}:{reader.line_num}"
            if not any(c.strip() for c in row):
                continue  # a blank line
            if len(row) != len(header):
                items.append((where, {"file": None, "_problem": f"has {len(row)} cells; the header has "
                                                              f"{len(header)}"}))
                continue
            items.append((where, {k: v for k, v in zip(header, row)}))
            if len(items) > MAX_ROWS:
                raise SidecarError(f"{name}: more than {MAX_ROWS} rows")
    except csv.Error as exc:
        raise SidecarError(f"{name}:{reader.line_num}: {exc}") from None
    return items


def _json_items(path: Path, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    name = path.name
    try:
        data = safe_json.loads(raw)
    except safe_json.UnsafeJson as exc:
        raise SidecarError(f"{name}: {exc}") from None
    if not isinstance(data, list):
        raise SidecarError(f"{name}: expected a JSON list of objects, one per recording")
    if len(data) > MAX_ROWS:
        raise SidecarError(f"{name}: more than {MAX_ROWS} items")
    items = []
    for i, item in enumerate(data, 1):
        where = f"{name}: item {i}"
        if not isinstance(item, dict):
            items.append((where, {"file": None, "_problem": "is not an object"}))
            continue
        unknown = [k for k in item if k not in COLUMNS]
        if unknown:
            item = {"file": item.get("file"),
                    "_problem": f"{str(unknown[0])[:40]!r}: unknown key (known: {', '.join(COLUMNS)})"}
        items.append((where, item))
    return items


def _check_columns(where: str, header: list[str]) -> None:
    if "file" not in header:
        raise SidecarError(f"{where}: no 'file' column (the header row names the columns: "
                           f"{', '.join(COLUMNS)})")
    for h in header:
        if h not in COLUMNS:
            raise SidecarError(f"{where}: column {h!r}: unknown column (known: {', '.join(COLUMNS)})")
    dup = next((h for h in header if header.count(h) > 1), None)
    if dup:
        raise SidecarError(f"{where}: column {dup!r} appears twice")


def _target(folder: Path, value: Any) -> tuple[Path | None, str]:
    """The recording a row's ``file`` names, inside ``folder``; or None and why not."""
    if not isinstance(value, str) or not value.strip():
        return None, "is required (the recording's path, relative to the sidecar's folder)"
    value = value.strip()
    if len(value) > 1024 or any(not c.isprintable() for c in value) or "\\" in value:
        return None, "must be a path written with '/', without control characters or backslashes"
    rel = PurePosixPath(value)
    if rel.is_absolute() or ":" in rel.parts[0]:
        return None, f"{value!r} must be relative to the sidecar's folder, not absolute"
    if any(p in ("..", ".") or p.startswith(".") for p in rel.parts):
        return None, f"{value!r} must stay inside the sidecar's folder (no '..', '.' or hidden names)"
    base = folder.resolve()
    target = (base / Path(*rel.parts)).resolve()  # links followed: must still be inside
    if not target.is_relative_to(base):
        return None, f"{value!r} leads outside the sidecar's folder"
    return target, ""


def _info(where: str, item: dict[str, Any], region: str) -> tuple[SidecarRow | None, str]:
    if "_problem" in item:
        return None, f"{where}: {item['_problem']}"
    values: dict[str, Any] = {}
    for column in ID_COLUMNS + ("customer_phone",):
        value = _text(item.get(column))
        if value is _BAD:
            return None, f"{where}: {column}: must be text"
        if value is None:
            continue
        if column == "customer_phone":
            problem = ids.phone_problem(value)
            number = e164(value, region) if problem is None else None
            if number is None:
                return None, f"{where}: {column}: " + (problem or f"is not a phone number (read in region {region})")
            value = number
        else:
            problem = ids.id_problem(value)
            if problem:
                return None, f"{where}: {column}: {problem}"
        values[column] = value
    roles, problem = _channels(item.get("channels"))
    if problem:
        return None, f"{where}: channels: {problem}"
    return SidecarRow(where, channel_roles=roles, **values), ""


_BAD = object()


def _text(value: Any) -> Any:
    """A cell as stripped text, None when empty; numbers in JSON (a ticket id, a phone
    number) as their digits; anything else _BAD."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return _BAD
    return value.strip() or None


def _channels(value: Any) -> tuple[dict[int, str] | None, str]:
    """"0=agent,1=customer" (or {"0": "agent", "1": "customer"}) as {0: "agent", 1: "customer"}."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, ""
    if isinstance(value, str):
        pairs = [p.partition("=") for p in value.split(",")]
        if any(not sep for _, sep, _ in pairs):
            return None, "must be written like 0=agent,1=customer"
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict) or not value:
        return None, "must be written like 0=agent,1=customer"
    out: dict[int, str] = {}
    for k, role in value.items():
        if not (isinstance(k, str) and k.isascii() and k.isdigit() and int(k) <= 7):
            return None, f"channel {str(k)[:20]!r} must be a channel index 0-7"
        if role not in ROLES:
            return None, f"role {str(role)[:20]!r} must be agent or customer"
        out[int(k)] = role
    return out, ""
