"""One uploaded recording heard: saved under data_dir/tmp, decoded, analysed, removed.

Shared by the tutorial's ``POST /predict`` (plugin/web/predict.py) and the upload page's
``POST /upload/analyze`` (plugin/web/upload_page.py), both inside predict_pool's turns, so
the two decode, cut and classify alike and neither keeps anything of the file.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from werkzeug.datastructures import FileStorage

from plugin.audio.decode import DecodeError, decode
from plugin.core import files
from plugin.core.data import CallAnalysis
from plugin.core.files import data_subdir
from plugin.flow.analysis import analyze_audio, listening
from plugin.model.loading import ModelUnavailable
from plugin.web.services import get_services
from rules.engine import RuleSet


class UploadRefused(Exception):
    """The upload cannot be heard; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HeardUpload:
    analysis: CallAnalysis
    notes: dict  # analyze_audio's notes: tracks, skipped seconds, a layout note, why no words
    audio: dict  # how the audio came (DecodedAudio.describe())
    model: dict  # the model's provenance ({"trial": ..., "precision": ...})


def hear_upload(upload: FileStorage | None, channel_roles: dict[int, str] | None = None,
                words: bool = False, rules: RuleSet | None = None) -> HeardUpload:
    """Decode and analyse the multipart ``file`` (with ``words``, transcribed too, where the
    speech model is loaded: the windows ``rules`` listen to, the caller's one reading of
    them, so the same version listens and judges); raises UploadRefused (400, 422, 503).
    Wanted words the speech model cannot give say why in ``notes["transcript"]``."""
    svc = get_services()
    if upload is None or not upload.filename:
        raise UploadRefused("multipart field 'file' is required", 400)
    try:
        model = svc.model.get()
    except ModelUnavailable as exc:
        raise UploadRefused(f"Model not ready: {exc}", 503) from None
    # Under data_dir/tmp (0700), where the purge clears what a crash left, not the system /tmp.
    workdir = Path(tempfile.mkdtemp(prefix="predict-", dir=data_subdir(svc.config.data_dir, files.TMP)))
    try:
        src = workdir / "upload"
        upload.save(src)
        try:
            audio = decode(src, workdir / "decoded.wav", svc.config.audio.max_duration_s,
                           max_channels=svc.config.audio.max_channels,
                           timeout_s=svc.config.audio.decode_timeout_s)
        except DecodeError as exc:
            raise UploadRefused(str(exc), 400) from None
        speech = svc.model.speech
        listen = listening(speech.model, svc.config.asr, rules) if words else None
        analysis, notes = analyze_audio(audio, model, svc.config.audio, channel_roles, listening=listen)
        if words and listen is None and svc.config.asr.wanted:
            notes = {**notes, "transcript": f"none: {speech.reason}"}  # asr is on, its model is not loaded
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not analysis.segments:
        raise UploadRefused("no speech long enough to classify "
                            f"(need at least {svc.config.audio.min_segment_s}s of speech)", 422)
    return HeardUpload(analysis, notes, audio.describe(), model.provenance())
