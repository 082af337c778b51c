"""Where alerts go: the configured sinks, the delivery queue they are planned into, and
the links messages carry. One place turns "this sink, this context" into a stored delivery."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy.orm import Session

from connectors.sinks import Sink
from plugin.core import scrub
from plugin.flow.context import Links
from plugin.store.deliveries import DeliveryQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    sinks: dict[str, Sink]
    deliveries: DeliveryQueue
    links: Links

    def plan(self, s: Session, sink: Sink, ctx: dict[str, Any] | Callable[[], dict[str, Any]], *,
             alert_id: int | None = None, notification_id: int | None = None,
             order_key: str | None = None) -> None:
        """Store the payload ``sink`` renders from ``ctx`` (or from what ``ctx()`` builds) as a
        delivery, in the caller's transaction.

        A context or template that fails on this call's data makes that one delivery dead,
        with the reason; the call's analysis and the other deliveries stand."""
        owner = f"alert {alert_id}" if alert_id is not None else f"notification {notification_id}"
        try:
            payload = sink.render(ctx() if callable(ctx) else ctx)
        except Exception as exc:
            reason = scrub.text(f"cannot render payload: {exc.__class__.__name__}: {exc}")
            log.error("%s: sink %s: %s", owner, sink.name, reason)
            self.deliveries.add(s, sink.name, {}, alert_id=alert_id, notification_id=notification_id,
                                dead_because=reason)
        else:
            self.deliveries.add(s, sink.name, payload, alert_id=alert_id, notification_id=notification_id,
                                order_key=order_key)


def customer_order_key(sink: str, call: dict[str, Any]) -> str:
    """One sink's deliveries about one customer go out in the order planned: the key they
    share. A call without a customer id is its own customer."""
    who = call.get("customer_id") or f"call:{call.get('id')}"
    key = f"{len(sink)}:{sink}:{who}"  # the length: no sink name and customer id make another pair's key
    if len(key) > 255:
        key = key[:200] + "~" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return key
