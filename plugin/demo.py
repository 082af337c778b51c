"""The tutorial's demo API, kept for the people who used it.

    POST /predict  (multipart "file")  -> {filename, emotion, confidence, timestamp, segments}
    GET  /health                       -> {"status": "success", "message": "Model is ready for inference"}
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, jsonify, request
from sqlalchemy import func, select

from plugin.analysis import analyze_audio
from plugin.app import services
from plugin.audio.decode import DecodeError, decode
from plugin.inference import ModelUnavailable
from plugin.models import Delivery, Job

bp = Blueprint("demo", __name__)


@bp.get("/health")
def health():
    svc = services()
    detail = {"model": {"state": svc.model.state, "source": svc.config.model.path or svc.config.model.name},
              "rules": svc.rules_holder.status()}
    try:
        with svc.sessions() as s:
            detail["queue"] = {
                "jobs_waiting": s.execute(select(func.count(Job.id))
                                          .where(Job.status.in_(("queued", "running")))).scalar(),
                "deliveries_pending": s.execute(select(func.count(Delivery.id))
                                                .where(Delivery.status.in_(("pending", "sending")))).scalar(),
                "deliveries_dead": s.execute(select(func.count(Delivery.id))
                                             .where(Delivery.status == "dead")).scalar(),
            }
    except Exception as exc:
        return jsonify(status="error", message=f"database unavailable: {exc.__class__.__name__}",
                       detail=detail), 503
    if not svc.model.ready:
        return jsonify(status="error", message=f"Model not ready: {svc.model.reason}", detail=detail), 503
    return jsonify(status="success", message="Model is ready for inference", detail=detail)


@bp.post("/predict")
def predict():
    svc = services()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return jsonify(error="multipart field 'file' is required"), 400
    try:
        model = svc.model.get()
    except ModelUnavailable as exc:
        return jsonify(error=f"Model not ready: {exc}"), 503
    workdir = Path(tempfile.mkdtemp(prefix="predict-"))
    try:
        src = workdir / "upload"
        upload.save(src)
        try:
            audio = decode(src, workdir / "decoded.wav", svc.config.audio.max_duration_s)
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
    )
