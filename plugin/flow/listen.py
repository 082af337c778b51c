"""The recording as the call page plays it: one WAV a browser can play (16 kHz PCM, the
call's channels as they were analysed, so the page's timeline and the player agree), made
on first listen and kept a day (``files.listening_copy``, in data_dir/tmp).

Made from the copy ``worker.keep_recordings`` kept while retention keeps it, from the copy
`callmood import` made, or else fetched from the source again, as the worker fetches it
(the same safe download, the same credentials, a vendor API asked for a fresh URL where
the source needs one). One file per participant is put side by side, as for analysis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import requests
from sqlalchemy.orm import Session, sessionmaker

from plugin.audio.decode import DecodeError, decode
from plugin.audio.fetch import FetchError, fetch
from plugin.audio.merge import merge
from plugin.config import Config
from plugin.core import files, scrub
from plugin.core.data import MAX_PARTS
from plugin.core.files import data_subdir, private_file
from plugin.flow.pipeline import downloads_for, stored_event
from plugin.flow.recording import imported_file
from plugin.store.tables import Call

_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


class NotPlayable(Exception):
    """Why a call's recording cannot be played (one line)."""


def listening_copy(call_id: int, config: Config, sessions: sessionmaker[Session]) -> Path:
    """The call's playable WAV, made now if there is none; raises NotPlayable."""
    dest = files.listening_copy(config.data_dir, call_id)
    with _lock(call_id):  # two listeners of one call: one download
        if dest.is_file():
            return dest
        with sessions() as s:
            call = s.get(Call, call_id)
            if call is None:
                raise NotPlayable(f"no call {call_id}")
            stored = stored_event(call)
        tmp = Path(tempfile.mkdtemp(prefix=f"listen{call_id}-", dir=data_subdir(config.data_dir, files.TMP)))
        try:
            audio = _decoded(call_id, stored, config, tmp)
            os.replace(audio, private_file(dest))
        except (FetchError, DecodeError, ValueError, OSError) as exc:
            raise NotPlayable(scrub.text(f"the recording could not be fetched or decoded: {exc}")[:500]) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


def _decoded(call_id: int, stored, config: Config, tmp: Path) -> Path:
    kept = files.recording_copy(config.data_dir, call_id)
    if kept.is_file():  # worker.keep_recordings: the whole call, or the participants side by side
        return decode(kept, tmp / "call.wav", config.audio.max_duration_s, max_channels=8,
                      timeout_s=config.audio.decode_timeout_s).path
    with requests.Session() as http:
        http.trust_env = False
        downloads = downloads_for(config, stored, http)
    if not downloads:
        raise FetchError("the source gave nothing to download for this call")
    if len(downloads) > MAX_PARTS:
        raise FetchError(f"the call has {len(downloads)} recordings; at most {MAX_PARTS}")
    parts = []
    for i, d in enumerate(downloads):
        src = (imported_file(d.path, config.data_dir) if d.path is not None
               else fetch(d.url, tmp / f"recording{i}", config.fetch, credential=d.credential).path)
        parts.append(decode(src, tmp / f"decoded{i}.wav", config.audio.max_duration_s,
                            max_channels=config.audio.max_channels, timeout_s=config.audio.decode_timeout_s))
    whole_call = len(downloads) == 1 and downloads[0].role is None
    return parts[0].path if whole_call else merge(parts, tmp / "merged.wav").path


def _lock(call_id: int) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(call_id, threading.Lock())
