"""`callmood import PATH...`: the day's recordings from files, folders and globs, each one
call (source "import"), analysed by the workers like any other.

- Which files: a file named on the command line; in a folder, and its subfolders, every
  file whose extension is an audio format (AUDIO_SUFFIXES), hidden names and links
  skipped; a glob ("day/*.wav", "**/*.mp3") the same way, for shells that did not expand it.
- What is known of each call: the sidecar (plugin/flow/sidecar.py): ``--sidecar FILE``, or
  in each folder holding recordings the file named ``imports.sidecar`` (calls.csv). A file
  whose row is wrong is refused (importing it without its customer would make a call that
  importing it again cannot fix); a file without a row is imported with nothing known.
- One call per content: the call's external id is the sha256 of the file's bytes, so the
  same recording imported twice, or under two names, is one call.
- How the worker reads it: the file is copied (0600) to <data_dir>/imports/<sha256>; the
  pipeline gives a call of source "import" that copy and nothing else (plugin/flow/pipeline.py,
  recording.py). No webhook source is called "import": a local path is never a webhook's.
- How long the copy stays: as a kept recording (retention.recordings_days after the call
  was received, once it is analysed or failed), or until `callmood forget` removes its customer.

The scheduled import (``imports.schedule``) reads ``imports.folder`` in the worker and, with
``imports.after: move``, moves each file that became a call (new or not) to the done folder.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from connectors.sources import SOURCES
from connectors.sources.base import Received
from plugin.config import Config
from plugin.core import files
from plugin.core.data import CallEvent
from plugin.flow.intake import Intake
from plugin.flow.sidecar import Sidecar, SidecarError, SidecarRow, read_sidecar
from plugin.store.tables import Call

log = logging.getLogger(__name__)

# Extensions of the containers plugin/audio/decode.py reads (its AUDIO_FORMATS, as files are named).
AUDIO_SUFFIXES = frozenset((".wav", ".w64", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".3gp",
                            ".aac", ".amr", ".awb", ".gsm", ".au", ".aif", ".aiff", ".caf", ".wv", ".wma",
                            ".asf", ".webm", ".mka"))
CHUNK = 1024 * 1024
assert files.IMPORT_SOURCE not in SOURCES, "a webhook source must never be able to name local files"

Progress = Callable[[list[Path]], Iterable[Path]]


@dataclass
class ImportReport:
    new: list[tuple[Path, int]] = field(default_factory=list)  # (file, call id)
    already: list[tuple[Path, int, str]] = field(default_factory=list)  # (file, call id, its status)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file or sidecar row, why)
    waiting: int = 0  # scheduled: changed less than imports.min_age_s ago, taken next time
    moved: int = 0  # scheduled with after: move

    def line(self) -> str:
        extra = f", {self.waiting} still being written (next run)" if self.waiting else ""
        return (f"{len(self.new)} new call(s), {len(self.already)} already imported, "
                f"{len(self.refused)} refused{extra}")


class BatchImportError(Exception):
    """The import cannot start (a sidecar that cannot be read, no such --sidecar)."""


def import_paths(paths: list[str], config: Config, intake: Intake, sidecar: str | None = None,
                 progress: Progress = lambda fs: fs, scheduled: bool = False) -> ImportReport:
    """Import the recordings ``paths`` name (files, folders, globs)."""
    report = ImportReport()
    cfg = config.imports
    # The done folder holds what was imported already: never walked again (by hand either).
    skip = {cfg.done_path.resolve()} if cfg.done_path else set()
    found = _collect(paths, report, skip, {cfg.sidecar} | ({Path(sidecar).name} if sidecar else set()))
    rows = _sidecars(found, sidecar, cfg.sidecar, config.identity.default_region, report)
    if scheduled and cfg.min_age_s:
        settled = time.time() - cfg.min_age_s
        young = {p for p in found if _mtime(p) > settled}
        report.waiting = len(young)
        found = [p for p in found if p not in young]
    for path in progress(found):
        info = rows.get(path)
        if isinstance(info, str):
            report.refused.append((str(path), info))
            continue
        try:
            _one(path, info, config, intake, report)
        except FileNotFoundError:
            continue  # taken meanwhile (another worker's run moved it)
        except OSError as exc:  # ELOOP: a link put in the file's place after the walk
            why = "is a link now (links are not imported)" if exc.errno == errno.ELOOP else exc.strerror
            report.refused.append((str(path), f"cannot read: {why}"))
    return report


def _collect(paths: list[str], report: ImportReport, skip: set[Path], sidecar_names: set[str]) -> list[Path]:
    """The recordings ``paths`` name, each once (by resolved path), in a stable order."""
    out: dict[Path, None] = {}

    def walk(folder: Path) -> None:
        for root, dirs, names in os.walk(folder):  # links to folders are not followed
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skip)
            for n in sorted(names):
                p = here / n
                if not n.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES and not p.is_symlink() and p.is_file():
                    out.setdefault(p.resolve())

    for given in paths:
        p = Path(given)
        if p.is_dir():
            walk(p)
        elif p.is_file():
            if p.name in sidecar_names:
                continue  # `callmood import day/*` names the sidecar too
            if p.suffix.lower() not in AUDIO_SUFFIXES:
                why = f"not a recording by its extension ({p.suffix or 'none'}; read are {' '.join(sorted(AUDIO_SUFFIXES))})"
                report.refused.append((given, why))
                continue
            out.setdefault(p.resolve())
        elif glob.has_magic(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                report.refused.append((given, "no file matches"))
            for m in map(Path, matches):
                if m.is_dir() and not m.is_symlink():
                    walk(m)
                elif m.suffix.lower() in AUDIO_SUFFIXES and not m.name.startswith(".") and m.is_file() \
                        and not m.is_symlink():
                    out.setdefault(m.resolve())
        else:
            report.refused.append((given, "no such file or folder"))
    return list(out)


def _sidecars(found: list[Path], explicit: str | None, name: str, region: str,
              report: ImportReport) -> dict[Path, SidecarRow | str]:
    """Each recording's sidecar row (SidecarRow), or why its row is refused (str)."""
    if explicit:
        if not Path(explicit).is_file():
            raise BatchImportError(f"--sidecar {explicit}: no such file")
        sidecars = [Path(explicit).resolve()]
    else:
        sidecars = sorted({p.parent / name for p in found if (p.parent / name).is_file()})
    rows: dict[Path, SidecarRow | str] = {}
    for path in sidecars:
        try:
            side: Sidecar = read_sidecar(path, region)
        except SidecarError as exc:
            raise BatchImportError(f"sidecar {exc}") from None
        for problem in side.problems:
            report.refused.append((str(path), problem))
        for target, why in side.refused.items():
            rows[target] = why
        for target, info in side.rows.items():
            rows.setdefault(target, info)
    return rows


def _one(path: Path, info: SidecarRow | None, config: Config, intake: Intake, report: ImportReport) -> None:
    size = path.stat().st_size
    limit = config.fetch.max_bytes
    if size == 0 or size > limit:
        why = "empty" if size == 0 else f"{size} bytes; at most {limit} (fetch.max_bytes)"
        report.refused.append((str(path), why))
        return
    digest = _sha256(path, limit)
    if digest is None:
        report.refused.append((str(path), f"grew past {limit} bytes while it was read (fetch.max_bytes)"))
        return
    with intake.sessions() as s:  # known already: nothing copied, nothing written
        known = s.execute(select(Call.id, Call.status).where(Call.source == files.IMPORT_SOURCE,
                                                             Call.external_id == digest)).first()
    if known:
        report.already.append((path, known[0], known[1]))
        return
    if not _copy(path, files.imported_copy(config.data_dir, digest), config.data_dir, limit):
        report.refused.append((str(path), "changed while it was imported; import it again once it is complete"))
        return
    event = CallEvent(
        source=files.IMPORT_SOURCE, call_id=digest, recording_url=f"{files.IMPORT_SOURCE}:{digest}",
        customer_id=info and info.customer_id, customer_phone=info and info.customer_phone,
        agent_id=info and info.agent_id, queue=info and info.queue, ticket_id=info and info.ticket_id,
        channel_roles=info and info.channel_roles,
        raw={"file": path.name, "bytes": size, "sidecar": info.where if info else None})
    [accepted] = intake.take(files.IMPORT_SOURCE, Received(events=[event]))
    if accepted.duplicate:  # imported at the same moment by another run
        report.already.append((path, accepted.call_id, "received"))
    else:
        report.new.append((path, accepted.call_id))


def _sha256(path: Path, limit: int) -> str | None:
    """The hex sha256 of the file's bytes; None past ``limit`` bytes."""
    h, read = hashlib.sha256(), 0
    with open(path, "rb", opener=files.no_follow_opener) as f:  # not a link swapped in since the walk
        while chunk := f.read(CHUNK):
            read += len(chunk)
            if read > limit:
                return None
            h.update(chunk)
    return h.hexdigest()


def _copy(src: Path, dest: Path, data_dir: str, limit: int) -> bool:
    """Copy ``src`` to ``dest`` (0600, whole or not at all); False when the bytes copied do
    not hash to ``dest``'s name (the file changed since it was hashed)."""
    files.data_subdir(data_dir, files.IMPORTS)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with open(src, "rb", opener=files.no_follow_opener) as f, \
                open(tmp, "wb", opener=files.private_opener) as out:
            copied = 0
            while chunk := f.read(CHUNK):
                copied += len(chunk)
                if copied > limit:
                    return False
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != dest.name:
            return False
        os.replace(tmp, dest)  # another run that copied the same bytes wrote the same file
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


# --- the drop folder, on a schedule -----------------------------------------------------

def run_drop_folder(config: Config, intake: Intake) -> ImportReport:
    """Import ``imports.folder`` once, then move what became a call (``imports.after``)."""
    cfg = config.imports
    folder = Path(cfg.folder or "")
    if not cfg.folder or not folder.is_dir():
        raise BatchImportError(f"imports.folder {cfg.folder!r} is not a folder")
    report = import_paths([str(folder)], config, intake, scheduled=True)
    done = cfg.done_path
    if done is not None:
        for path, call_id, *_ in report.new + report.already:
            if _move(path, folder.resolve(), done):
                report.moved += 1
    return report


def _move(path: Path, folder: Path, done: Path) -> bool:
    """Move ``path`` to the same place under ``done``; a name already taken there gets a
    number, so nothing there is overwritten."""
    try:
        rel = path.relative_to(folder)
    except ValueError:
        rel = Path(path.name)
    target = done / rel
    n = 1
    while target.exists():
        target = target.with_name(f"{rel.stem}.{n}{rel.suffix}")
        n += 1
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
    except OSError as exc:
        log.warning("import: could not move %s to %s: %s", path.name, target.parent, exc.strerror)
        return False
    return True


def scheduled_import(config: Config, intake: Intake) -> None:
    """One scheduled run (imports.schedule); problems are logged, the next run tries again."""
    try:
        report = run_drop_folder(config, intake)
    except Exception as exc:  # noqa: BLE001 -- a scheduled job logs and waits for its next run
        log.warning("import of %s failed: %s", config.imports.folder, exc)
        return
    if report.new or report.refused:
        log.info("import of %s: %s", config.imports.folder, report.line())
    for what, why in report.refused:
        log.warning("import: refused %s: %s", what, why)
