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


def deliver_one(svc: Services, http: requests.Session) -> bool:
    """Claim and attempt one due delivery; False when none is due."""
    cfg = svc.config.deliveries
    delivery_id = queue.claim_delivery(svc.sessions, cfg.lease_s)
    if delivery_id is None:
        return False
    with svc.sessions() as s:
        d = s.get(Delivery, delivery_id)
        sink_name, payload = d.sink, d.payload
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
    with svc.sessions.begin() as s:
        d = s.get(Delivery, delivery_id)
        d.last_status_code = result.status_code
        d.lease_expires_at = None
        if result.ok:
            d.status, d.delivered_at, d.last_error = "delivered", utcnow(), None
        elif d.attempts >= cfg.max_attempts:
            d.status, d.last_error = "dead", result.error
            log.error("delivery %s to %s is dead after %d attempts: %s",
                      delivery_id, sink_name, d.attempts, result.error)
        else:
            delay = queue.backoff(d.attempts, cfg.backoff_base_s, cfg.backoff_max_s)
            d.status, d.last_error = "pending", result.error
            d.next_attempt_at = utcnow() + timedelta(seconds=delay)
            log.warning("delivery %s to %s failed (attempt %d): %s; retry in %.0fs",
                        delivery_id, sink_name, d.attempts, result.error, delay)
        metrics.DELIVERIES.labels(sink=sink_name, outcome=d.status).inc()
    return True


def drain(svc: Services, http: requests.Session, limit: int = 100) -> int:
    """Attempt every due delivery (up to ``limit``); returns how many were attempted."""
    n = 0
    while n < limit and deliver_one(svc, http):
        n += 1
    return n
