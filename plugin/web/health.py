"""GET /health (the tutorial's readiness answer, with detail, and "degraded" when things
failed lately), GET /health/live (liveness) and GET /metrics (Prometheus).

/health answers 503 until the model is loaded (and while the database is unreachable):
the readiness an orchestrator or a load balancer asks. Ready, it answers 200, with
status "degraded" instead of "success" while calls failed or deliveries died within
``server.health_window_s`` (an hour), or while an edit of the rules stands refused:
working, but someone should look; a restart fixes none of it, so it stays 200.
/health/live answers 200 whenever this process serves requests, for a liveness probe.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plugin.store import failures, queries
from plugin.web.auth.identity import may
from plugin.web.auth.marks import public
from plugin.web.services import get_services

bp = Blueprint("health", __name__)

# What someone who is not an admin learns: the status, never why (an admin gets the detail).
PUBLIC_MESSAGES = {"success": "Model is ready for inference", "degraded": "ready, degraded",
                   "error": "not ready"}


@bp.get("/health")
@public
def health():
    """Anyone learns whether the service is ready, and whether degraded; an admin also
    learns why, and the state of the model, the rules, the queue and recent failures."""
    body, status = _health()
    if not may("admin"):
        body = {"status": body["status"], "message": PUBLIC_MESSAGES[body["status"]]}
    return jsonify(get_services().model.honest(body)), status  # says "trial model, random weights" while one is loaded


@bp.get("/health/live")
@public
def live():
    """Liveness: 200 while this process serves requests, whatever the model (loading,
    or not there offline), the database or recent failures; restarting fixes none."""
    return jsonify(status="alive"), 200


def _health() -> tuple[dict, int]:
    svc = get_services()
    detail = {"model": {"state": svc.model.state, "source": svc.config.model.path or svc.config.model.name},
              "rules": svc.rules_holder.status()}
    model = svc.model.model
    if model is not None:  # which precision runs, and why (model.precision: auto picks by the hardware)
        detail["model"].update({k: getattr(model, k, None) for k in ("device", "precision", "precision_reason",
                                                                      "batch_size")})
    speech = svc.model.speech
    detail["asr"] = {"state": speech.state, "source": svc.config.asr.path or svc.config.asr.name,
                     "enabled": svc.config.asr.enabled}
    if speech.state != "ready" and svc.config.asr.wanted:
        detail["asr"]["reason"] = speech.reason
    if speech.model is not None:
        detail["asr"].update(device=speech.model.device, precision=speech.model.precision,
                             batch_size=speech.model.batch_size)
    window_s = svc.config.server.health_window_s
    try:
        detail["queue"] = queries.work_counts(svc.sessions)
        recent = failures.recent(svc.sessions, svc.clock, window_s)
    except Exception as exc:
        return dict(status="error", message=f"database unavailable: {exc.__class__.__name__}",
                    detail=detail), 503
    detail["recent"] = recent.json()
    if not svc.model.ready:
        return dict(status="error", message=f"Model not ready: {svc.model.reason}", detail=detail), 503
    if svc.config.asr.enabled is True and not speech.ready:  # workers wait for it, as for the model
        return dict(status="error", message=f"Speech model not ready: {speech.reason}", detail=detail), 503
    problems = degraded_because(recent, detail["rules"])
    if svc.config.asr.wanted and not speech.ready:
        # auto: workers wait for the first attempt, then analyse calls without words.
        problems.append(f"speech model not loaded: {speech.reason}" if speech.attempts
                        else f"speech model loading, calls wait for it: {speech.reason}")
    if problems:
        return dict(status="degraded", message="Model is ready for inference; degraded: " + "; ".join(problems),
                    detail=detail), 200
    return dict(status="success", message="Model is ready for inference", detail=detail), 200


def degraded_because(recent: failures.Recent, rules: dict) -> list[str]:
    """What makes a ready service degraded, one phrase each (empty: nothing)."""
    within = f"in the last {_span(recent.window_s)}"
    out = []
    if recent.calls_failed:
        out.append(f"{recent.calls_failed} call(s) failed {within} (callmood calls rerun --failed)")
    if recent.deliveries_dead:
        out.append(f"{recent.deliveries_dead} delivery(ies) died {within}")
    if rules.get("status") == "refused":
        out.append("an edit of the rules was refused; the last good rules are in force (detail.rules.refused)")
    return out


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@bp.get("/metrics")
def metrics():
    return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}
