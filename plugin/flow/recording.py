"""The first half of a job, all IO and compute and no database: download the recording,
decode it, find the speech and classify its windows."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from plugin.audio.decode import DecodedAudio, decode
from plugin.audio.fetch import FetchError, fetch
from plugin.audio.merge import merge
from plugin.config import Config
from plugin.core import files
from plugin.core.data import MAX_PARTS, CallAnalysis, Download
from plugin.core.files import data_subdir, private_file
from plugin.flow.analysis import Listening, analyze_audio
from plugin.model.loading import EmotionModel


@dataclass
class RecordingAnalysis:
    analysis: CallAnalysis
    notes: dict[str, Any]  # what was skipped, the tracks, the layout (the call's summary)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def analyze_recording(call_id: int, downloads: list[Download], channel_roles: dict[int, str] | None,
                      model: EmotionModel, cfg: Config, checkpoint: Callable[[], None],
                      listening: Listening | None = None) -> RecordingAnalysis:
    """Fetch, decode and analyse one call's recording: one file holding the whole call (its
    channels named by ``channel_roles``), or one file per participant (each download's
    ``role``), which are put side by side as the channels of one.

    ``checkpoint()`` is called between stages, every few seconds while ffmpeg runs and as
    windows are classified: it raises (LeaseLost) once the job is no longer ours, and the
    work stops there (ffmpeg is killed). The lease itself is renewed meanwhile by its own
    thread (plugin/flow/leases.py). With ``listening``, the windows are transcribed too.
    Raises FetchError and DecodeError with the reason."""
    whole_call = len(downloads) == 1 and downloads[0].role is None
    timings: dict[str, float] = {"fetch": 0.0, "decode": 0.0}
    workdir = Path(tempfile.mkdtemp(prefix=f"call{call_id}-", dir=_tmp_dir(cfg.data_dir)))
    try:
        audio = decoded_call(call_id, downloads, cfg, workdir, checkpoint, timings, keep=cfg.worker.keep_recordings)
        if not whole_call:  # one file per participant: side by side, one channel each
            channel_roles = {i: d.role or "mixed" for i, d in enumerate(downloads)}

        t = time.perf_counter()
        analysis, notes = analyze_audio(audio, model, cfg.audio, channel_roles,
                                        on_progress=lambda done, total: checkpoint(), listening=listening)
        timings["segment_and_infer"] = time.perf_counter() - t
        if not whole_call:
            notes["files"] = len(downloads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return RecordingAnalysis(analysis, notes, timings)


def decoded_call(call_id: int, downloads: list[Download], cfg: Config, workdir: Path,
                 checkpoint: Callable[[], None] = lambda: None, timings: dict[str, float] | None = None,
                 keep: bool = False) -> DecodedAudio:
    """The call's recording fetched and decoded in ``workdir`` (16 kHz PCM WAV): the one
    file holding the whole call, or the participants' files side by side, one channel each.
    ``timings`` gains the seconds of "fetch" and "decode"; ``keep``: the copy
    worker.keep_recordings keeps (until retention.recordings_days). Raises FetchError and
    DecodeError with the reason, and whatever ``checkpoint()`` raises."""
    if not downloads:
        raise FetchError("the source gave nothing to download for this call")
    if len(downloads) > MAX_PARTS:
        raise FetchError(f"the call has {len(downloads)} recordings; at most {MAX_PARTS} are analysed")
    whole_call = len(downloads) == 1 and downloads[0].role is None
    timings = timings if timings is not None else {"fetch": 0.0, "decode": 0.0}
    decoded = []
    for i, d in enumerate(downloads):
        t = time.perf_counter()
        # An imported file is already here (and kept until retention says otherwise).
        local = imported_file(d.path, cfg.data_dir) if d.path is not None else None
        fetched_path = local or fetch(d.url, workdir / f"recording{i}", cfg.fetch, credential=d.credential).path
        timings["fetch"] += time.perf_counter() - t
        checkpoint()

        t = time.perf_counter()
        decoded.append(decode(fetched_path, private_file(workdir / f"decoded{i}.wav"),
                              cfg.audio.max_duration_s, max_channels=cfg.audio.max_channels,
                              timeout_s=cfg.audio.decode_timeout_s, on_wait=checkpoint))
        timings["decode"] += time.perf_counter() - t
        if local is None:
            if keep and whole_call:
                _keep(fetched_path, cfg, call_id)
            fetched_path.unlink()
        checkpoint()
    if whole_call:
        return decoded[0]
    t = time.perf_counter()
    audio = merge(decoded, workdir / "merged.wav")
    timings["decode"] += time.perf_counter() - t
    if keep:
        _keep(audio.path, cfg, call_id)
    checkpoint()
    return audio


def imported_file(path: str, data_dir: str) -> Path:
    """The copy `callmood import` made, checked to be one: a regular file named by a sha256
    directly in <data_dir>/imports (no link, nothing outside). Refused otherwise, not retried."""
    folder = (Path(data_dir) / files.IMPORTS).resolve()
    p = Path(path)
    if p.parent.resolve() != folder or not files.is_sha256(p.name):
        raise FetchError("an imported recording must be a file in data_dir/imports; refused", retryable=False)
    if p.is_symlink() or not p.is_file():
        raise FetchError(f"the imported file {p.name[:12]}... is no longer kept (removed after "
                         f"retention.recordings_days, or by callmood forget)", retryable=False)
    return p


def _keep(path: Path, cfg: Config, call_id: int) -> None:
    data_subdir(cfg.data_dir, files.RECORDINGS)
    shutil.copyfile(path, private_file(files.recording_copy(cfg.data_dir, call_id)))


def _tmp_dir(data_dir: str) -> str:
    return str(data_subdir(data_dir, files.TMP))  # 0700; mkdtemp makes each call's folder 0700 too
