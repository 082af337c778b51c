"""The delivery loop: send each stored Delivery through its sink until it succeeds or
the retry policy gives up (then it is 'dead', visible in the API, the call page and
/health).

A stopping process hands back the deliveries it is still sending (``hand_back_all``):
they are due again at once, for any process, instead of waiting out their lease.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import timedelta

import requests

from connectors.sinks import SendResult, Sink
from connectors.sinks.base import MAX_RETRY_AFTER_S
from plugin.core import metrics, scrub
from plugin.store.deliveries import DeliveryQueue, idempotency_key
from plugin.store.sink_limits import SinkLimiter
from plugin.store.tables import Delivery

log = logging.getLogger(__name__)

THROTTLE_FREE_S = 86400.0  # throttled attempts of a delivery younger than this do not count
THROTTLE_WAIT_S = 60.0  # after "busy" with no word on when to come back


class Outbox:
    def __init__(self, deliveries: DeliveryQueue, sinks: dict[str, Sink], timeout_s: float):
        self.deliveries = deliveries  # its clock times the outcomes, its policy decides retries
        self.limiter = SinkLimiter(deliveries.sessions, deliveries.clock)
        self.sinks = sinks
        self.timeout_s = timeout_s  # per request, unless the sink sets its own
        self._lock = threading.Lock()
        self._sending: dict[int, str] = {}  # delivery id -> the owner sending it, in this process
        self._handed_back: set[int] = set()
        self._carried: dict[int, list[int]] = {}  # delivery id -> the deliveries merged into its message
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
            carried = {i: (owner, list(self._carried.get(i, ()))) for i, owner in sending.items()}
            self._handed_back.update(sending)
        back = []
        for delivery_id, owner in sending.items():
            try:
                if self.deliveries.release(delivery_id, owner):
                    back.append(delivery_id)
                if carried[delivery_id][1]:  # deliveries merged into its message: pending again as they were
                    with self.deliveries.sessions.begin() as s:
                        self.deliveries.settle_merged(s, carried[delivery_id][1], owner, None)
            except Exception:  # the database is away: the lease will expire instead
                log.exception("delivery %s: could not hand it back; it is sent again when its lease expires",
                              delivery_id)
        return back

    def _attempt(self, delivery_id: int, http: requests.Session, owner: str) -> bool:
        with self.deliveries.sessions() as s:
            d = s.get(Delivery, delivery_id)
            sink_name, payload, attempts = d.sink, d.payload, d.attempts
            age_s = (self.deliveries.clock.now(s) - (d.requeued_at or d.created_at)).total_seconds()
        sink = self.sinks.get(sink_name)
        try:
            body, merged, waiting = self._within_limits(delivery_id, sink, sink_name, payload, owner)
        except Exception as exc:  # the limit's bookkeeping failed (the database): a failed, counted attempt
            log.exception("delivery %s to %s: rate limit check failed", delivery_id, sink_name)
            return self._settle(delivery_id, sink_name, owner, attempts, age_s,
                                SendResult(False, None, f"rate limit check failed: {exc.__class__.__name__}: {exc}"))
        if waiting is not None:  # over the API's limit: wait for a slot; not an attempt
            return self._settle(delivery_id, sink_name, owner, attempts, 0.0, waiting, quiet=True)
        with self._lock:
            self._carried[delivery_id] = merged
        try:
            result = self._send(delivery_id, sink, sink_name, body, http)
            return self._settle(delivery_id, sink_name, owner, attempts, age_s, result, merged=merged)
        finally:
            with self._lock:
                self._carried.pop(delivery_id, None)

    def _within_limits(self, delivery_id: int, sink: Sink | None, sink_name: str, payload: dict,
                       owner: str) -> tuple[dict, list[int], SendResult | None]:
        """(what to send, the deliveries merged into it, None) once a slot is taken; or
        (payload, [], a throttled result saying how long to wait) when none is free."""
        limits = self._limits(sink, payload)
        if not limits:
            return payload, [], None
        slot = self.limiter.take(sink_name, limits, delivery_id)
        if not slot.ok:
            return payload, [], SendResult(False, None, f"rate limit ({slot.why}): waiting {slot.wait_s:.0f}s "
                                                        "for a slot", throttled=True, retry_after=slot.wait_s)
        if slot.left > 0 or sink.merge([payload]) is None:
            return payload, [], None
        # The last slot of the window: it carries what waits for the same people, as much
        # as one message holds (the rest waits for the next window).
        keys = {lim.key for lim in limits}
        backlog = self.deliveries.take_backlog(
            sink_name, owner, delivery_id,
            lambda p: {lim.key for lim in self._limits(sink, p)} == keys and sink.merge([p]) is not None)
        if not backlog:
            return payload, [], None
        combined = sink.merge([payload] + [p for _, p in backlog])
        carried = (int(combined.get("merged", len(backlog) + 1)) - 1) if combined is not None else 0
        carried = max(0, min(carried, len(backlog)))
        left_over = [i for i, _ in backlog[carried:]]
        if left_over:
            with self.deliveries.sessions.begin() as s:
                self.deliveries.settle_merged(s, left_over, owner, None)
        if not carried:
            return payload, [], None
        log.info("delivery %s to %s: the rate limit's last slot carries %d waiting deliveries (%d wait on)",
                 delivery_id, sink_name, carried, len(left_over))
        return combined, [i for i, _ in backlog[:carried]], None

    @staticmethod
    def _limits(sink: Sink | None, payload: dict) -> list:
        if sink is None or not payload:
            return []
        try:
            return sink.limits(payload)
        except Exception:  # a payload stored by an older version, say: sent unlimited
            log.exception("sink %s: limits of a payload", sink.name)
            return []

    def _settle(self, delivery_id: int, sink_name: str, owner: str, attempts: int, age_s: float,
                result: SendResult, *, merged: list[int] = (), quiet: bool = False) -> bool:
        error = scrub.text(result.error) if result.error else result.error  # stored, shown and logged
        policy = self.deliveries.policy
        delay = None
        # A throttled attempt (429, 45009, our own rate limit) does not count for the first
        # day of a delivery (since planned or requeued): a busy API must not kill an alert,
        # and an API that answers nothing but "busy" for a day still ends dead.
        free = result.throttled and age_s < THROTTLE_FREE_S
        if not result.ok:
            counted = attempts - 1 if free else attempts
            delay = policy.next_try_in(counted, result.retryable)
            wait = result.retry_after
            if wait is not None and not (math.isfinite(wait) and wait >= 0):  # NaN, inf: not a time
                wait = None
            if delay is not None and result.throttled:
                # When the API said; else a minute (the backoff would not grow: no attempt counted).
                delay = min(max(wait if wait is not None else THROTTLE_WAIT_S, 1.0), MAX_RETRY_AFTER_S)
            elif delay is not None and wait:
                delay = min(max(delay, wait), MAX_RETRY_AFTER_S)
        with self.deliveries.sessions.begin() as s:
            now = self.deliveries.clock.now(s)
            if result.ok:
                values = dict(status="delivered", delivered_at=now, last_error=None, note=result.note)
            elif delay is None:
                values = dict(status="dead", last_error=error)
                log.error("delivery %s to %s is dead after %d attempt(s): %s",
                          delivery_id, sink_name, attempts, error)
            else:
                values = dict(status="pending", last_error=error, next_attempt_at=now + timedelta(seconds=delay))
                if free:
                    values["attempts"] = attempts - 1
                (log.info if quiet else log.warning)("delivery %s to %s failed (attempt %d): %s; retry in %.0fs",
                                                     delivery_id, sink_name, attempts, error, delay)
            settled = self.deliveries.settle(s, delivery_id, owner, last_status_code=result.status_code, **values)
            # The deliveries its message carried: delivered with it (they were sent, whoever
            # records the main one), else pending again as they were.
            if result.ok:
                self.deliveries.settle_merged(s, list(merged), owner, delivery_id, status="delivered",
                                              delivered_at=now, last_error=None,
                                              last_status_code=result.status_code)
            else:
                self.deliveries.settle_merged(s, list(merged), owner, None)
        if not settled:
            if delivery_id in self._handed_back:
                log.info("delivery %s: handed back while sending (stopping); it is sent again", delivery_id)
            else:
                log.warning("delivery %s: lease lost while sending; its new holder records the outcome",
                            delivery_id)
            return True
        metrics.DELIVERIES.labels(sink=sink_name, outcome=values["status"]).inc()
        return True

    def _send(self, delivery_id: int, sink: Sink | None, sink_name: str, payload: dict,
              http: requests.Session) -> SendResult:
        if sink is None:
            return SendResult(False, None, f"sink {sink_name!r} is not configured")
        try:
            return sink.send(payload, http, sink.cfg.timeout_s or self.timeout_s, idempotency_key(delivery_id))
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
