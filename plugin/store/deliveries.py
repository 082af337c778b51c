"""The durable delivery queue (the outbox): every statement on the deliveries table that
claims or settles a send, behind one object. Claims and leases work as for jobs
(plugin/store/jobs.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from plugin.core import scrub
from plugin.core.clock import Clock
from plugin.core.retry import RetryPolicy
from plugin.store.tables import Delivery


class DeliveryQueue:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, lease_s: float, policy: RetryPolicy):
        self.sessions = sessions
        self.clock = clock
        self.lease_s = lease_s
        self.policy = policy

    def add(self, s: Session, sink: str, payload: dict[str, Any], *, alert_id: int | None = None,
            notification_id: int | None = None, dead_because: str | None = None) -> Delivery:
        """A delivery in the caller's transaction, due now; or already dead, with the reason
        (a payload that could not be rendered is never sent)."""
        now = self.clock.now(s)
        d = Delivery(alert_id=alert_id, notification_id=notification_id, sink=sink, payload=payload,
                     status="dead" if dead_because else "pending",
                     last_error=scrub.text(dead_because)[:2000] if dead_because else None,
                     next_attempt_at=now, created_at=now)
        s.add(d)
        return d

    def claim(self, owner: str, lease_s: float | None = None) -> int | None:
        lease = timedelta(seconds=self.lease_s if lease_s is None else lease_s)
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            claimable = or_(and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
                            and_(Delivery.status == "sending", Delivery.lease_expires_at < now))
            pick = (select(Delivery.id).where(claimable).order_by(Delivery.next_attempt_at, Delivery.id)
                    .limit(1).with_for_update(skip_locked=True).scalar_subquery())
            stmt = (update(Delivery).where(Delivery.id == pick)
                    .values(status="sending", attempts=Delivery.attempts + 1, lease_owner=owner,
                            lease_expires_at=now + lease)
                    .returning(Delivery.id))
            return s.execute(stmt).scalar()

    def release(self, delivery_id: int, owner: str) -> bool:
        """Hand a delivery we are sending back, due now (a stopping process; whether the
        sink got it is unknown, so it is sent again): this attempt does not count. False
        if we no longer hold it."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            res = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner,
                                                   Delivery.status == "sending")
                            .values(status="pending", next_attempt_at=now, attempts=Delivery.attempts - 1,
                                    lease_owner=None, lease_expires_at=None))
            return res.rowcount == 1

    def settle(self, s: Session, delivery_id: int, owner: str, **values: Any) -> bool:
        """Record a send's outcome, only if we still hold the delivery's lease."""
        if values.get("last_error"):  # errors carry URLs: a robot's ?key=, a token in a query
            values["last_error"] = scrub.text(values["last_error"])[:2000]
        res = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner,
                                               Delivery.status == "sending")
                        .values(lease_expires_at=None, **values))
        return res.rowcount == 1
