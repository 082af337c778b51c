"""The delivery loop: send each stored Delivery through its sink until it succeeds or
the retry policy gives up (then it is 'dead', visible in the API, the call page and
/health).

A stopping process hands back the deliveries it is still sending (``hand_back_all``):
they are due again at once, for any process, instead of waiting out their lease.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import requests

from connectors.sinks import SendResult, Sink
from plugin.core import metrics, scrub
from plugin.store.deliveries import DeliveryQueue
from plugin.store.tables import Delivery

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, deliveries: DeliveryQueue, sinks: dict[str, Sink], timeout_s: float):
        self.deliveries = deliveries  # its clock times the outcomes, its policy decides retries
        self.sinks = sinks
        self.timeout_s = timeout_s  # per request, unless the sink sets its own
        self._lock = threading.Lock()
        self._sending: dict[int, str] = {}  # delivery id -> the owner sending it, in this process
        self._handed_back: set[int] = set()
        self._closed = False

    def deliver_one(self, http: requests.Session, owner: str) -> bool:
        """Claim and attempt one due delivery; False when none is due (or we are stopping)."""
        delivery_id = self.deliveries.claim(owner)
        if delivery_id is None:
            return False
        with self._lock:
            closed = self._closed
            if not closed:
                self._sending[delivery_id] = owner
        if closed:  # claimed as the process began to stop
            self.deliveries.release(delivery_id, owner)
            return False
        try:
            return self._attempt(delivery_id, http, owner)
        finally:
            with self._lock:
                self._sending.pop(delivery_id, None)

    def sending(self) -> list[int]:
        """The deliveries this process is sending now."""
        with self._lock:
            return sorted(self._sending)

    def hand_back_all(self) -> list[int]:
        """Release every delivery being sent here (the process is stopping), and claim no
        more; the ids that were still ours. A send that completes afterwards is not recorded
        and the delivery is sent again: the sinks get the same idempotency key."""
        with self._lock:
            self._closed = True
            sending = dict(self._sending)
            self._handed_back.update(sending)
        back = []
        for delivery_id, owner in sending.items():
            try:
                if self.deliveries.release(delivery_id, owner):
                    back.append(delivery_id)
            except Exception:  # the database is away: the lease will expire instead
                log.exception("delivery %s: could not hand it back; it is sent again when its lease expires",
                              delivery_id)
        return back

    def _attempt(self, delivery_id: int, http: requests.Session, owner: str) -> bool:
        with self.deliveries.sessions() as s:
            d = s.get(Delivery, delivery_id)
            sink_name, payload, attempts = d.sink, d.payload, d.attempts
        result = self._send(delivery_id, sink_name, payload, http)
        error = scrub.text(result.error) if result.error else result.error  # stored, shown and logged

        policy = self.deliveries.policy
        delay = None if result.ok else policy.next_try_in(attempts, result.retryable)
        with self.deliveries.sessions.begin() as s:
            now = self.deliveries.clock.now(s)
            if result.ok:
                values = dict(status="delivered", delivered_at=now, last_error=None)
            elif delay is None:
                values = dict(status="dead", last_error=error)
                log.error("delivery %s to %s is dead after %d attempt(s): %s",
                          delivery_id, sink_name, attempts, error)
            else:
                values = dict(status="pending", last_error=error, next_attempt_at=now + timedelta(seconds=delay))
                log.warning("delivery %s to %s failed (attempt %d): %s; retry in %.0fs",
                            delivery_id, sink_name, attempts, error, delay)
            if not self.deliveries.settle(s, delivery_id, owner, last_status_code=result.status_code, **values):
                if delivery_id in self._handed_back:
                    log.info("delivery %s: handed back while sending (stopping); it is sent again", delivery_id)
                else:
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

    def drain(self, http: requests.Session, owner: str, limit: int = 100,
              stop: threading.Event | None = None) -> int:
        """Attempt every due delivery (up to ``limit``, until ``stop`` is set); returns how
        many were attempted."""
        n = 0
        while n < limit and not (stop is not None and stop.is_set()) and self.deliver_one(http, owner):
            n += 1
        return n
