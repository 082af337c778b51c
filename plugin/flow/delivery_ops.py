"""Operators' hands on the outbox: list deliveries, and send dead (or waiting) ones again.

`callmood deliveries list|retry` and the admin API (/api/deliveries) both come here. A
requeued delivery is the same row: it sends the body stored when it was planned, with the
same idempotency key (``callmood-delivery-<id>``), so a CRM that honours the key applies it
once however often it is requeued. Each requeue is logged with who asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from plugin.core.clock import Clock
from plugin.store.deliveries import DeliveryQueue
from plugin.store.tables import Delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeued:
    id: int
    outcome: str  # requeued | not_found | sending | no_body
    reason: str | None = None

    def json(self) -> dict:
        return {"id": self.id, "outcome": self.outcome, "reason": self.reason}

    def line(self) -> str:
        return f"delivery {self.id}: {self.outcome}" + (f" ({self.reason})" if self.reason else "")


WHY = {"sending": "being sent right now; its outcome is recorded first",
       "no_body": "it has no stored body to send: its template failed when it was planned (see its "
                  "error), or retention cleared the body (retention.delivery_bodies_days)",
       "not_found": "no such delivery"}


def retry_ids(queue: DeliveryQueue, ids: list[int], by: str) -> list[Requeued]:
    """Requeue the deliveries ``ids``, each with its outcome."""
    with queue.sessions() as s:
        found = {i: (status, bool(payload)) for i, status, payload in s.execute(
            select(Delivery.id, Delivery.status, Delivery.payload).where(Delivery.id.in_(ids))).all()}
    done = set(queue.requeue(ids))
    out = []
    for i in dict.fromkeys(ids):
        if i in done:
            out.append(Requeued(i, "requeued"))
        else:
            status, has_body = found.get(i, (None, False))
            outcome = "not_found" if status is None else "no_body" if not has_body else "sending"
            out.append(Requeued(i, outcome, WHY[outcome]))
    if done:
        log.info("deliveries %s requeued by %s", sorted(done), by)
    return out


def retry_status(queue: DeliveryQueue, clock: Clock, status: str, since_s: float, by: str) -> list[Requeued]:
    """Requeue every delivery in ``status`` (dead, or pending: now instead of after its
    backoff) created within ``since_s``."""
    with queue.sessions() as s:
        since = clock.now(s) - timedelta(seconds=since_s)
    done = queue.requeue(status=status, since=since)
    if done:
        log.info("%d %s deliveries requeued by %s: %s", len(done), status, by, done)
    return [Requeued(i, "requeued") for i in done]


def summary(done: list[Requeued]) -> str:
    n = sum(r.outcome == "requeued" for r in done)
    return f"{n} delivery(ies) requeued" + (f", {len(done) - n} not" if len(done) > n else "")
