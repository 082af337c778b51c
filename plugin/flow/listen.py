"""The recording as the call page plays it: one WAV a browser can play (16 kHz PCM, the
call's channels as they were analysed, so the page's timeline and the player agree), made
on first listen and kept a day (``files.listening_copy``, in data_dir/tmp).

Made from the copy ``worker.keep_recordings`` kept while retention keeps it, from the copy
`callmood import` made, or else fetched from the source again, as the worker fetches it
(the same safe download and limits, the same credentials, a vendor API asked for a fresh
URL where the source needs one). One file per participant is put side by side, as for
analysis. Never for a call whose raw event retention removed (its recording is gone too).

It runs in a web request, so it is bounded: one copy is made at a time in this process
(another listener gets "busy, try again" at once rather than holding a server thread), a
failure is remembered for a few minutes (no download again on every view), and the copies
together stay under ``MAX_TOTAL_BYTES`` (the oldest go first).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import requests
from sqlalchemy.orm import Session, sessionmaker

from plugin.audio.decode import DecodeError, decode
from plugin.audio.fetch import FetchError
from plugin.config import Config
from plugin.core import files, scrub
from plugin.core.data import MAX_PARTS
from plugin.core.files import data_subdir
from plugin.flow.pipeline import downloads_for, stored_event
from plugin.flow.recording import decoded_call
from plugin.store.tables import Call

MAX_TOTAL_BYTES = 4 * 1024 ** 3  # every listening copy together
FAILURE_MEMORY_S = 300.0

_making = threading.Lock()  # one copy made at a time, in this process
_failed: dict[tuple[str, int], tuple[float, str]] = {}  # (data_dir, call id) -> (when, why)


class NotPlayable(Exception):
    """Why a call's recording cannot be played (one line)."""


class PreparingElsewhere(Exception):
    """Another recording is being prepared: ask again in a few seconds."""


def listening_copy(call_id: int, config: Config, sessions: sessionmaker[Session]) -> Path:
    """The call's playable WAV, made now if there is none; raises NotPlayable or PreparingElsewhere."""
    dest = files.listening_copy(config.data_dir, call_id)
    if dest.is_file():
        return dest
    key = (str(config.data_dir), call_id)
    failed = _failed.get(key)
    if failed and time.monotonic() - failed[0] < FAILURE_MEMORY_S:
        raise NotPlayable(failed[1])
    if not _making.acquire(timeout=2.0):
        raise PreparingElsewhere("another recording is being prepared; try again in a few seconds")
    try:
        if dest.is_file():  # made while we waited
            return dest
        try:
            _make(call_id, config, sessions, dest)
        except NotPlayable as exc:
            now = time.monotonic()
            for k in [k for k, (at, _) in _failed.items() if now - at >= FAILURE_MEMORY_S]:
                del _failed[k]  # forgotten: the dict stays as small as the recent failures
            _failed[key] = (now, str(exc))
            raise
        _failed.pop(key, None)
        # A customer forgotten meanwhile (`callmood forget`): no copy of their call stays.
        with sessions() as s:
            if s.get(Call, call_id) is None:
                dest.unlink(missing_ok=True)
                raise NotPlayable(f"no call {call_id}")
        _trim(dest.parent, keep=dest)
        return dest
    finally:
        _making.release()


def _make(call_id: int, config: Config, sessions: sessionmaker[Session], dest: Path) -> None:
    with sessions() as s:
        call = s.get(Call, call_id)
        if call is None:
            raise NotPlayable(f"no call {call_id}")
        purged = (call.summary or {}).get("purged", {}).get("event") if isinstance(call.summary, dict) else None
        stored = stored_event(call)
    kept = files.recording_copy(config.data_dir, call_id)
    if purged and not kept.is_file():
        raise NotPlayable(f"retention removed this call's recording link on {purged} (retention.raw_events_days)")
    tmp = Path(tempfile.mkdtemp(prefix=f"listen{call_id}-", dir=data_subdir(config.data_dir, files.TMP)))
    try:
        audio = _decoded(call_id, stored, config, tmp, kept)
        os.chmod(audio, 0o600)
        os.replace(audio, dest)  # whole or not at all: a listener never gets half a file
    except (FetchError, DecodeError, ValueError, OSError) as exc:
        raise NotPlayable(scrub.text(f"the recording could not be fetched or decoded: {exc}")[:500]) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _decoded(call_id: int, stored, config: Config, tmp: Path, kept: Path) -> Path:
    if kept.is_file():  # worker.keep_recordings: the whole call, or the participants side by side
        return decode(kept, tmp / "call.wav", config.audio.max_duration_s,
                      max_channels=max(config.audio.max_channels, MAX_PARTS),
                      timeout_s=config.audio.decode_timeout_s).path
    with requests.Session() as http:
        http.trust_env = False
        downloads = downloads_for(config, stored, http)
    return decoded_call(call_id, downloads, config, tmp).path  # as the worker fetches and decodes it


def _trim(folder: Path, keep: Path) -> None:
    """The oldest listening copies go until all of them fit in MAX_TOTAL_BYTES."""
    copies = []
    for p in folder.glob("listen-call-*.wav"):
        try:
            st = p.stat()
        except OSError:
            continue
        copies.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in copies)
    for _, size, p in sorted(copies):
        if total <= MAX_TOTAL_BYTES:
            break
        if p != keep:
            p.unlink(missing_ok=True)
            total -= size
