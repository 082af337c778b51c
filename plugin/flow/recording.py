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
from plugin.core.data import CallAnalysis
from plugin.flow.analysis import analyze_audio
from plugin.model.loading import EmotionModel


@dataclass
class RecordingAnalysis:
    analysis: CallAnalysis
    notes: dict[str, Any]  # what was skipped, the tracks, the layout (the call's summary)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def analyze_recording(call_id: int, url: str, channel_roles: dict[int, str] | None, model: EmotionModel,
                      cfg: Config, keep_lease: Callable[..., None]) -> RecordingAnalysis:
    """Fetch, decode and analyse one call's recording.

    ``keep_lease(force=False)`` is called between stages and as windows are classified,
    so a long call keeps its job's lease (it raises once another worker has the job).
    Raises FetchError and DecodeError with the reason."""
    timings: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix=f"call{call_id}-", dir=_tmp_dir(cfg.data_dir)))
    try:
        t = time.perf_counter()
        fetched = fetch(url, workdir / "recording", cfg.fetch)
        timings["fetch"] = time.perf_counter() - t
        keep_lease(force=True)

        t = time.perf_counter()
        audio = decode(fetched.path, workdir / "decoded.wav", cfg.audio.max_duration_s)
        timings["decode"] = time.perf_counter() - t
        if cfg.worker.keep_recordings:
            keep = Path(cfg.data_dir) / "recordings"
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(fetched.path, keep / f"call-{call_id}")
        fetched.path.unlink()
        keep_lease(force=True)

        t = time.perf_counter()
        analysis, notes = analyze_audio(audio, model, cfg.audio, channel_roles,
                                        on_progress=lambda done, total: keep_lease())
        timings["segment_and_infer"] = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return RecordingAnalysis(analysis, notes, timings)


def _tmp_dir(data_dir: str) -> str:
    p = Path(data_dir) / "tmp"
    p.mkdir(parents=True, exist_ok=True)
    return str(p)
