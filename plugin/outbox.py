"""The delivery loop: send each stored Delivery through its sink until it succeeds
or runs out of attempts (then it is 'dead', visible in the API and dashboard)."""

from __future__ import annotations

import logging
from datetime import timedelta

import requests

from connectors.sinks import SendResult
from plugin import metrics, queue
from plugin.models import Delivery, utcnow
from plugin.services import Services

log = logging.getLogger(__name__)


def deliver_one(svc: Services, http: requests.Session, owner: str) -> bool:
    """Claim and attempt one due delivery; False when none is due."""
    cfg = svc.config.deliveries
    delivery_id = queue.claim_delivery(svc.sessions, owner, cfg.lease_s)
    if delivery_id is None:
        return False
    with svc.sessions() as s:
        d = s.get(Delivery, delivery_id)
        sink_name, payload, attempts = d.sink, d.payload, d.attempts
    sink = svc.sinks.get(sink_name)
    if sink is None:
        result = SendResult(False, None, f"sink {sink_name!r} is not configured")
    else:
        timeout = sink.cfg.timeout_s or cfg.timeout_s
        try:
            result = sink.send(payload, http, timeout, f"callmood-delivery-{delivery_id}")
        except Exception as exc:  # a sink bug must not kill the loop
            log.exception("sink %s crashed", sink_name)
            result = SendResult(False, None, f"{exc.__class__.__name__}: {exc}")

    if result.ok:
        values = dict(status="delivered", delivered_at=utcnow(), last_error=None)
    elif attempts >= cfg.max_attempts or not result.retryable:
        values = dict(status="dead", last_error=result.error)
        log.error("delivery %s to %s is dead after %d attempt(s): %s",
                  delivery_id, sink_name, attempts, result.error)
    else:
        delay = queue.backoff(attempts, cfg.backoff_base_s, cfg.backoff_max_s)
        values = dict(status="pending", last_error=result.error,
                      next_attempt_at=utcnow() + timedelta(seconds=delay))
        log.warning("delivery %s to %s failed (attempt %d): %s; retry in %.0fs",
                    delivery_id, sink_name, attempts, result.error, delay)
    with svc.sessions.begin() as s:
        if not queue.settle_delivery(s, delivery_id, owner, last_status_code=result.status_code, **values):
            log.warning("delivery %s: lease lost while sending; its new holder records the outcome",
                        delivery_id)
            return True
    metrics.DELIVERIES.labels(sink=sink_name, outcome=values["status"]).inc()
    return True


def drain(svc: Services, http: requests.Session, owner: str, limit: int = 100) -> int:
    """Attempt every due delivery (up to ``limit``); returns how many were attempted."""
    n = 0
    while n < limit and deliver_one(svc, http, owner):
        n += 1
    return n
