"""Read queries for the API, the dashboard and /health: rows loaded with what their
serializers (plugin/web/serializers.py) read, in short sessions."""

from __future__ import annotations


from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from plugin.store.tables import AlertRow, Call, Delivery, Job, Notification, Segment

Sessions = sessionmaker[Session]

_ALERT_LOADS = (selectinload(AlertRow.deliveries), selectinload(AlertRow.feedback))
_NOTIFICATION_LOADS = (selectinload(Notification.alerts), selectinload(Notification.delivery))


def call(sessions: Sessions, call_id: int) -> Call | None:
    """One call with its jobs, segments, alerts, their deliveries and feedback."""
    with sessions() as s:
        return s.execute(select(Call).where(Call.id == call_id).options(
            selectinload(Call.jobs), selectinload(Call.segments),
            selectinload(Call.alerts).selectinload(AlertRow.deliveries),
            selectinload(Call.alerts).selectinload(AlertRow.feedback))).scalar()


def calls(sessions: Sessions, status: str | None = None, limit: int = 50,
          identity: str | None = None) -> list[Call]:
    """Recent calls, newest first (without their segments); ``identity``: only those whose
    customer was found that way (e.g. "unmatched")."""
    with sessions() as s:
        q = select(Call).options(selectinload(Call.jobs),
                                 selectinload(Call.alerts).selectinload(AlertRow.deliveries),
                                 selectinload(Call.alerts).selectinload(AlertRow.feedback))
        if status:
            q = q.where(Call.status == status)
        if identity:
            q = q.where(Call.identity == identity)
        return list(s.execute(q.order_by(Call.id.desc()).limit(limit)).scalars())


def alert(sessions: Sessions, alert_id: int) -> AlertRow | None:
    with sessions() as s:
        return s.execute(select(AlertRow).where(AlertRow.id == alert_id).options(*_ALERT_LOADS)).scalar()


def notifications(sessions: Sessions, status: str | None = None, receiver: str | None = None,
                  limit: int = 50) -> list[Notification]:
    """Supervisor notifications, newest first, with their alerts and delivery."""
    with sessions() as s:
        q = select(Notification).options(*_NOTIFICATION_LOADS)
        if status:
            q = q.where(Notification.status == status)
        if receiver:
            q = q.where(Notification.receiver == receiver)
        return list(s.execute(q.order_by(Notification.id.desc()).limit(limit)).scalars())


def notification(sessions: Sessions, notification_id: int) -> Notification | None:
    with sessions() as s:
        return s.execute(select(Notification).where(Notification.id == notification_id)
                         .options(*_NOTIFICATION_LOADS)).scalar()


def notifications_by_id(sessions: Sessions, ids: set[int]) -> dict[int, Notification]:
    """The notifications ``ids``, with their delivery."""
    if not ids:
        return {}
    with sessions() as s:
        return {n.id: n for n in s.execute(select(Notification).where(Notification.id.in_(ids))
                                           .options(selectinload(Notification.delivery))).scalars()}


def work_counts(sessions: Sessions) -> dict[str, int]:
    """What /health reports of the queues."""
    with sessions() as s:
        return {
            "jobs_waiting": s.execute(select(func.count(Job.id))
                                      .where(Job.status.in_(("queued", "running")))).scalar(),
            "deliveries_pending": s.execute(select(func.count(Delivery.id))
                                            .where(Delivery.status.in_(("pending", "sending")))).scalar(),
            "deliveries_dead": s.execute(select(func.count(Delivery.id))
                                         .where(Delivery.status == "dead")).scalar(),
        }


def customer_calls(sessions: Sessions, customer_id: str, negative: list[str], limit: int = 200) -> list[dict]:
    """One customer's calls, newest first: each with the share of the customer's speech in
    a ``negative`` emotion (the customer's windows; on a mono call the mixed track's) and
    its alerts. ``negative_share`` is None where no window of theirs was classified."""
    with sessions() as s:
        calls = s.execute(select(Call).where(Call.customer_id == customer_id)
                          .options(selectinload(Call.alerts).selectinload(AlertRow.feedback))
                          .order_by(Call.received_at.desc(), Call.id.desc()).limit(limit)).scalars().all()
        ids = [c.id for c in calls]
        shares: dict[int, tuple[int, int]] = {}
        if ids:
            neg = func.sum(case((Segment.label.in_(negative), 1), else_=0))
            for call_id, role, total, bad in s.execute(
                    select(Segment.call_id, Segment.role, func.count(), neg)
                    .where(Segment.call_id.in_(ids), Segment.role.in_(("customer", "mixed")))
                    .group_by(Segment.call_id, Segment.role)).all():
                # The customer's own track where there is one; the mixed track of a mono call.
                if role == "customer" or call_id not in shares:
                    shares[call_id] = (int(total), int(bad or 0))
        out = []
        for c in calls:
            total, bad = shares.get(c.id, (0, 0))
            out.append({"id": c.id, "received_at": c.received_at, "status": c.status, "emotion": c.emotion,
                        "duration_s": c.duration_s, "queue": c.queue, "agent_id": c.agent_id,
                        "negative_share": round(bad / total, 3) if total else None, "windows": total,
                        "alerts": [{"id": a.id, "rule": a.rule, "severity": a.severity,
                                    "verdict": a.feedback.verdict if a.feedback is not None else None}
                                   for a in c.alerts]})
        return out
