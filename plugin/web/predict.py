"""The tutorial's demo endpoint, kept for the people who used it:

    POST /predict  (multipart "file")  -> {filename, emotion, confidence, timestamp, segments}

plus how the audio came, as in a call's summary (plugin/audio/decode.py): source_rate,
source_codec, source_format, resampler, narrowband, partial, declared_s, decoded_s.

(its GET /health is in plugin/web/health.py)

Uploads take turns in their own small pool (plugin/web/predict_pool.py): beyond it they
get 429 with Retry-After at once, so they never hold the threads webhooks need.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from plugin.audio.decode import DecodeError, decode
from plugin.core import files
from plugin.core.files import data_subdir
from plugin.flow.analysis import analyze_audio
from plugin.model.loading import ModelUnavailable
from plugin.web.predict_pool import Busy, PredictPool
from plugin.web.services import KEY, get_services

bp = Blueprint("predict", __name__)
POOL = "callmood.predict_pool"


@bp.record_once
def _make_pool(state) -> None:
    server = state.app.extensions[KEY].config.server
    state.app.extensions[POOL] = PredictPool(server.predict_concurrency, server.predict_queue,
                                             server.predict_wait_s)


@bp.post("/predict")
def predict():
    try:
        with current_app.extensions[POOL].turn():  # before the body is parsed: a refusal costs nothing
            return _predict()
    except Busy as exc:
        return jsonify(error=str(exc)), exc.status, {"Retry-After": str(exc.retry_after_s)}


def _predict():
    svc = get_services()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return jsonify(error="multipart field 'file' is required"), 400
    try:
        model = svc.model.get()
    except ModelUnavailable as exc:
        return jsonify(error=f"Model not ready: {exc}"), 503
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
            return jsonify(error=str(exc)), 400
        analysis, notes = analyze_audio(audio, model, svc.config.audio)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not analysis.segments:
        return jsonify(error="no speech long enough to classify "
                             f"(need at least {svc.config.audio.min_segment_s}s of speech)"), 422
    return jsonify(
        filename=upload.filename,
        emotion=analysis.emotion,
        confidence=round(analysis.confidence, 4),
        timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration=round(analysis.duration, 3),
        segments=[{"start": s.start, "end": s.end, "emotion": s.label,
                   "confidence": round(s.confidence, 4)} for s in analysis.segments],
        skipped_silence_s=notes["skipped_s"],  # not speech (or too quiet): not classified
        # As in a call's summary: the source rate, codec and container, the resampler,
        # narrowband (telephone audio) and partial (the file holds less than it declares).
        **audio.describe(),
        model=model.provenance(),  # {"trial": true} for a model made by make-random-model
    )
