"""The tutorial's demo endpoint, kept for the people who used it:

    POST /predict  (multipart "file")  -> {filename, emotion, confidence, timestamp, segments}

plus how the audio came, as in a call's summary (plugin/audio/decode.py): source_rate,
source_codec, source_format, resampler, narrowband, partial, declared_s, decoded_s.

(its GET /health is in plugin/web/health.py)

Uploads take turns in their own small pool (plugin/web/predict_pool.py): beyond it they
get 429 with Retry-After at once, so they never hold the threads webhooks need.
"""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request

from plugin.web.predict_pool import Busy, PredictPool
from plugin.web.services import KEY
from plugin.web.upload_audio import UploadRefused, hear_upload

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
    upload = request.files.get("file")
    try:  # decoded and analysed as the upload page's files are (plugin/web/upload_audio.py)
        heard = hear_upload(upload)
    except UploadRefused as exc:
        return jsonify(error=str(exc)), exc.status
    analysis, notes = heard.analysis, heard.notes
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
        **heard.audio,
        model=heard.model,  # {"trial": true} for a model made by make-random-model
    )
