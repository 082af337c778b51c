"""The first half of a job, all IO and compute and no database: download the recording,
decode it, find the speech and classify its windows."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from plugin.audio.decode import decode
from plugin.audio.fetch import fetch
from plugin.config import Config
from plugin.core import files
from plugin.core.data import CallAnalysis
from plugin.core.files import data_subdir, private_file
from plugin.flow.analysis import analyze_audio
from plugin.model.loading import EmotionModel


@dataclass
class RecordingAnalysis:
    analysis: CallAnalysis
    notes: dict[str, Any]  # what was skipped, the tracks, the layout (the call's summary)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def analyze_recording(call_id: int, url: str, channel_roles: dict[int, str] | None, model: EmotionModel,
                      cfg: Config, checkpoint: Callable[[], None]) -> RecordingAnalysis:
    """Fetch, decode and analyse one call's recording.

    ``checkpoint()`` is called between stages, every few seconds while ffmpeg runs and as
    windows are classified: it raises (LeaseLost) once the job is no longer ours, and the
    work stops there (ffmpeg is killed). The lease itself is renewed meanwhile by its own
    thread (plugin/flow/leases.py). Raises FetchError and DecodeError with the reason."""
    timings: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix=f"call{call_id}-", dir=_tmp_dir(cfg.data_dir)))
    try:
        t = time.perf_counter()
        fetched = fetch(url, workdir / "recording", cfg.fetch)
        timings["fetch"] = time.perf_counter() - t
        checkpoint()

        t = time.perf_counter()
        audio = decode(fetched.path, private_file(workdir / "decoded.wav"), cfg.audio.max_duration_s,
                       max_channels=cfg.audio.max_channels, timeout_s=cfg.audio.decode_timeout_s,
                       on_wait=checkpoint)
        timings["decode"] = time.perf_counter() - t
        if cfg.worker.keep_recordings:  # kept until retention.recordings_days (plugin/store/retention.py)
            data_subdir(cfg.data_dir, files.RECORDINGS)
            shutil.copyfile(fetched.path, private_file(files.recording_copy(cfg.data_dir, call_id)))
        fetched.path.unlink()
        checkpoint()

        t = time.perf_counter()
        analysis, notes = analyze_audio(audio, model, cfg.audio, channel_roles,
                                        on_progress=lambda done, total: checkpoint())
        timings["segment_and_infer"] = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return RecordingAnalysis(analysis, notes, timings)


def _tmp_dir(data_dir: str) -> str:
    return str(data_subdir(data_dir, files.TMP))  # 0700; mkdtemp makes each call's folder 0700 too
