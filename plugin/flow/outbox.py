"""The delivery loop: send each stored Delivery through its sink until it succeeds or
the retry policy gives up (then it is 'dead', visible in the API, the call page and
/health)."""

from __future__ import annotations

import logging
from datetime import timedelta

import requests

from connectors.sinks import SendResult, Sink
from plugin.core import metrics
from plugin.store.deliveries import DeliveryQueue
from plugin.store.tables import Delivery

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, deliveries: DeliveryQueue, sinks: dict[str, Sink], timeout_s: float):
        self.deliveries = deliveries  # its clock times the outcomes, its policy decides retries
        self.sinks = sinks
        self.timeout_s = timeout_s  # per request, unless the sink sets its own

    def deliver_one(self, http: requests.Session, owner: str) -> bool:
        """Claim and attempt one due delivery; False when none is due."""
        delivery_id = self.deliveries.claim(owner)
        if delivery_id is None:
            return False
        with self.deliveries.sessions() as s:
            d = s.get(Delivery, delivery_id)
            sink_name, payload, attempts = d.sink, d.payload, d.attempts
        result = self._send(delivery_id, sink_name, payload, http)

        policy = self.deliveries.policy
        delay = None if result.ok else policy.next_try_in(attempts, result.retryable)
        with self.deliveries.sessions.begin() as s:
            now = self.deliveries.clock.now(s)
            if result.ok:
                values = dict(status="delivered", delivered_at=now, last_error=None)
            elif delay is None:
                values = dict(status="dead", last_error=result.error)
                log.error("delivery %s to %s is dead after %d attempt(s): %s",
                          delivery_id, sink_name, attempts, result.error)
            else:
                values = dict(status="pending", last_error=result.error, next_attempt_at=now + timedelta(seconds=delay))
                log.warning("delivery %s to %s failed (attempt %d): %s; retry in %.0fs",
                            delivery_id, sink_name, attempts, result.error, delay)
            if not self.deliveries.settle(s, delivery_id, owner, last_status_code=result.status_code, **values):
                log.warning("delivery %s: lease lost while sending; its new holder records the outcome",
                            delivery_id)
                return True
        metrics.DELIVERIES.labels(sink=sink_name, outcome=values["status"]).inc()
        return True

    def _send(self, delivery_id: int, sink_name: str, payload: dict, http: requests.Session) -> SendResult:
        sink = self.sinks.get(sink_name)
        if sink is None:
            return SendResult(False, None, f"sink {sink_name!r} is not configured")
        try:
            return sink.send(payload, http, sink.cfg.timeout_s or self.timeout_s, f"callmood-delivery-{delivery_id}")
        except Exception as exc:  # a sink bug must not kill the loop
            log.exception("sink %s crashed", sink_name)
            return SendResult(False, None, f"{exc.__class__.__name__}: {exc}")

    def drain(self, http: requests.Session, owner: str, limit: int = 100) -> int:
        """Attempt every due delivery (up to ``limit``); returns how many were attempted."""
        n = 0
        while n < limit and self.deliver_one(http, owner):
            n += 1
        return n
