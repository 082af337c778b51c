"""The durable delivery queue (the outbox): every statement on the deliveries table that
claims or settles a send, behind one object. Claims and leases work as for jobs
(plugin/store/jobs.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from plugin.core import scrub
from plugin.core.clock import Clock
from plugin.core.retry import RetryPolicy
from plugin.store.tables import Delivery


CHUNK = 500


class DeliveryQueue:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, lease_s: float, policy: RetryPolicy):
        self.sessions = sessions
        self.clock = clock
        self.lease_s = lease_s
        self.policy = policy

    def add(self, s: Session, sink: str, payload: dict[str, Any], *, alert_id: int | None = None,
            notification_id: int | None = None, dead_because: str | None = None,
            order_key: str | None = None) -> Delivery:
        """A delivery in the caller's transaction, due now; or already dead, with the reason
        (a payload that could not be rendered is never sent). ``order_key``: deliveries of
        one key are sent oldest first, each after the one before it is settled."""
        now = self.clock.now(s)
        d = Delivery(alert_id=alert_id, notification_id=notification_id, sink=sink, payload=payload,
                     status="dead" if dead_because else "pending",
                     last_error=scrub.text(dead_because)[:2000] if dead_because else None,
                     next_attempt_at=now, created_at=now, order_key=order_key)
        s.add(d)
        return d

    def claim(self, owner: str, lease_s: float | None = None) -> int | None:
        lease = timedelta(seconds=self.lease_s if lease_s is None else lease_s)
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            claimable = or_(and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
                            and_(Delivery.status == "sending", Delivery.lease_expires_at < now))
            # In order per customer and sink: not while an earlier one of its key is unsettled
            # (waiting out a CRM's outage, say); dead and delivered ones no longer hold it.
            earlier = aliased(Delivery)
            waits = exists().where(earlier.order_key == Delivery.order_key, earlier.id < Delivery.id,
                                   earlier.status.in_(("pending", "sending")))
            claimable = and_(claimable, or_(Delivery.order_key.is_(None), ~waits))
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

    def take_backlog(self, sink: str, owner: str, exclude: int, same: Callable[[dict[str, Any]], bool],
                     limit: int = 200) -> list[tuple[int, dict[str, Any]]]:
        """Claim the sink's other pending deliveries that ``same`` accepts (those a rate
        limit holds back with the one being sent), oldest first, without counting an
        attempt: the caller sends them merged into one message."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            rows = s.execute(select(Delivery.id, Delivery.payload)
                             .where(Delivery.sink == sink, Delivery.status == "pending", Delivery.id != exclude)
                             .order_by(Delivery.id).limit(limit).with_for_update(skip_locked=True)).all()
            picked = [(i, p) for i, p in rows if p and same(p)]
            if picked:
                s.execute(update(Delivery).where(Delivery.id.in_([i for i, _ in picked]),
                                                 Delivery.status == "pending")
                          .values(status="sending", lease_owner=owner,
                                  lease_expires_at=now + timedelta(seconds=self.lease_s)))
            return picked

    def settle_merged(self, s: Session, ids: list[int], owner: str, into: int | None, **values: Any) -> None:
        """The outcome of a merged send for the deliveries it carried: delivered (``into``:
        the delivery whose message it was), or back to pending as they were."""
        if not ids:
            return
        stmt = update(Delivery).where(Delivery.id.in_(ids), Delivery.lease_owner == owner,
                                      Delivery.status == "sending")
        if into is not None:
            s.execute(stmt.values(lease_owner=None, lease_expires_at=None, merged_into=into,
                                  note=f"sent merged into delivery {into}'s message (rate limit)", **values))
        else:
            s.execute(stmt.values(status="pending", lease_owner=None, lease_expires_at=None))

    def requeue(self, ids: list[int] | None = None, *, status: str = "dead",
                since: datetime | None = None) -> list[int]:
        """Send these deliveries again (``ids``; or every one in ``status`` created since
        ``since``), due now, with their stored bodies and their idempotency keys (the key is
        the delivery's id: callmood-delivery-<id>). Deliveries being sent are left alone, as
        are those with no body (it could not be rendered, or retention cleared it).
        Returns the ids requeued."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            q = select(Delivery.id, Delivery.payload).where(Delivery.status != "sending")
            if ids is not None:
                q = q.where(Delivery.id.in_(ids))
            else:
                q = q.where(Delivery.status == status)
                if since is not None:
                    q = q.where(Delivery.created_at >= since)
            picked = [i for i, p in s.execute(q.with_for_update()).all() if p]
            for at in range(0, len(picked), CHUNK):  # SQLite binds at most 32,766 values a statement
                s.execute(update(Delivery).where(Delivery.id.in_(picked[at:at + CHUNK]), Delivery.status != "sending")
                          .values(status="pending", attempts=0, next_attempt_at=now, requeued_at=now,
                                  lease_owner=None, lease_expires_at=None, delivered_at=None, merged_into=None))
            return sorted(picked)

    def listing(self, status: str | None = None, sink: str | None = None, since: datetime | None = None,
                limit: int = 50) -> list[Delivery]:
        """Deliveries newest first (alerts', notifications' and the review report's alike)."""
        with self.sessions() as s:
            q = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
            if status:
                q = q.where(Delivery.status == status)
            if sink:
                q = q.where(Delivery.sink == sink)
            if since is not None:
                q = q.where(Delivery.created_at >= since)
            rows = s.execute(q).scalars().all()
            s.expunge_all()
            return list(rows)


def idempotency_key(delivery_id: int) -> str:
    """What every send of a delivery carries (the Idempotency-Key header, or the sink's own
    dedupe marker): the same on every retry and after a requeue."""
    return f"callmood-delivery-{delivery_id}"
