"""GET /health (the tutorial's readiness answer, with detail) and GET /metrics (Prometheus)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plugin.store import queries
from plugin.web.auth.identity import may
from plugin.web.auth.marks import public
from plugin.web.services import get_services

bp = Blueprint("health", __name__)


@bp.get("/health")
@public
def health():
    """Anyone learns whether the service is ready; an admin also learns why not, and the
    state of the model, the rules and the queue."""
    body, status = _health()
    if not may("admin"):
        ready = status == 200
        body = {"status": body["status"], "message": "Model is ready for inference" if ready else "not ready"}
    return jsonify(body), status


def _health() -> tuple[dict, int]:
    svc = get_services()
    detail = {"model": {"state": svc.model.state, "source": svc.config.model.path or svc.config.model.name},
              "rules": svc.rules_holder.status()}
    try:
        detail["queue"] = queries.work_counts(svc.sessions)
    except Exception as exc:
        return dict(status="error", message=f"database unavailable: {exc.__class__.__name__}",
                    detail=detail), 503
    if not svc.model.ready:
        return dict(status="error", message=f"Model not ready: {svc.model.reason}", detail=detail), 503
    return dict(status="success", message="Model is ready for inference", detail=detail), 200


@bp.get("/metrics")
def metrics():
    return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}
