"""GET /health (the tutorial's readiness answer, with detail) and GET /metrics (Prometheus)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plugin.store import queries
from plugin.web.services import get_services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    svc = get_services()
    detail = {"model": {"state": svc.model.state, "source": svc.config.model.path or svc.config.model.name},
              "rules": svc.rules_holder.status()}
    try:
        detail["queue"] = queries.work_counts(svc.sessions)
    except Exception as exc:
        return jsonify(status="error", message=f"database unavailable: {exc.__class__.__name__}",
                       detail=detail), 503
    if not svc.model.ready:
        return jsonify(status="error", message=f"Model not ready: {svc.model.reason}", detail=detail), 503
    return jsonify(status="success", message="Model is ready for inference", detail=detail)


@bp.get("/metrics")
def metrics():
    return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}
