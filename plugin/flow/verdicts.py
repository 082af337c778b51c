"""Verdicts given on a WeCom card (a supervisor pressed "确认 Correct" or "误报 False alarm"
on an alert the wecom_app sink sent): the same feedback store the dashboard, the API and
`callmood rules backtest` use, then the card updated to show the verdict and who gave it.

Store first, work after: one transaction records the press (``wecom_callbacks``, unique
per sink, member, time, card and button, so WeCom's retries of a callback change nothing),
the verdict on every alert the card was about, and a delivery that updates the card; the
callback is answered as soon as it commits, and the delivery loop calls WeCom.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from connectors.sinks.wecom_app import WeComAppSink, parse_button_key, update_card_payload
from plugin.core.clock import Clock
from plugin.store.deliveries import DeliveryQueue
from plugin.store.feedback import write_feedback
from plugin.store.tables import Delivery, NotificationAlert, WeComCallback

log = logging.getLogger(__name__)

MAX_AGE_S = 72 * 3600  # a card's response code lives this long (update_template_card)
MAX_AHEAD_S = 600  # clocks disagree a little


@dataclass(frozen=True)
class CardEvent:
    """The fields of a template_card_event WeCom sent (decrypted, signature checked)."""

    from_user: str
    create_time: str
    event_key: str
    task_id: str
    response_code: str


def card_task_id(payload: dict) -> str | None:
    card = ((payload or {}).get("body") or {}).get("template_card")
    return card.get("task_id") if isinstance(card, dict) else None


def apply_card_verdict(sessions: sessionmaker[Session], clock: Clock, deliveries: DeliveryQueue,
                       sink: WeComAppSink, ev: CardEvent) -> str:
    """Record the verdict ``ev`` gives; what was done, in a few words (logged and stored)."""
    parsed = parse_button_key(ev.event_key)
    if parsed is None:
        return "ignored: not a CallMood button"
    verdict, notification_id = parsed
    # A press is answered within WeCom's 72 hours of its response code; an older one (a
    # captured callback played again after its dedupe row is gone) changes nothing.
    with sessions() as s:
        now = clock.now(s)
    try:
        pressed = datetime.fromtimestamp(int(ev.create_time), timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return "ignored: CreateTime is not a time"
    if not now - timedelta(seconds=MAX_AGE_S) <= pressed <= now + timedelta(seconds=MAX_AHEAD_S):
        return f"ignored: pressed at {pressed:%Y-%m-%d %H:%M}Z, not within the last 72 hours"
    key = hashlib.sha256("\0".join((sink.name, ev.from_user, ev.create_time, ev.task_id, ev.event_key))
                         .encode()).hexdigest()
    for attempt in range(2):
        try:
            with sessions.begin() as s:
                if s.execute(select(WeComCallback.id).where(WeComCallback.dedupe_key == key)).first():
                    return "duplicate: already recorded"
                outcome = _apply(s, clock, deliveries, sink, ev, verdict, notification_id)
                s.add(WeComCallback(sink=sink.name, dedupe_key=key, from_user=ev.from_user[:128],
                                    task_id=ev.task_id[:128], event_key=ev.event_key[:128], outcome=outcome[:255],
                                    received_at=clock.now(s)))
            log.info("wecom card %s: %s pressed %s: %s", ev.task_id, ev.from_user, verdict, outcome)
            return outcome
        except IntegrityError:  # the same callback (or a verdict on the same alert) at the same moment
            if attempt:
                raise
    raise AssertionError("unreachable")


def _apply(s: Session, clock: Clock, deliveries: DeliveryQueue, sink: WeComAppSink, ev: CardEvent,
           verdict: str, notification_id: int) -> str:
    sent = s.execute(select(Delivery).where(Delivery.notification_id == notification_id)).scalar()
    # The card must be the one we sent for that notification through this sink: a button
    # key names a notification, the task id proves which card was pressed.
    if sent is None or sent.sink != sink.name or card_task_id(sent.payload) != ev.task_id:
        return f"ignored: card {ev.task_id[:64]} is not notification {notification_id}'s"
    alert_ids = s.execute(select(NotificationAlert.alert_id)
                          .where(NotificationAlert.notification_id == notification_id)
                          .order_by(NotificationAlert.alert_id)).scalars().all()
    now = clock.now(s)
    by = f"wecom:{ev.from_user}"
    for alert_id in alert_ids:
        write_feedback(s, alert_id, now, {"verdict": verdict, "by": by, "note": None})
    try:
        update = update_card_payload(sink.cfg.agentid, ev.response_code, [ev.from_user], verdict, ev.from_user,
                                     atall=True)
    except ValueError as exc:  # no usable response code: the verdict stands, the card stays as it was
        deliveries.add(s, sink.name, {}, dead_because=f"cannot update card {ev.task_id[:64]}: {exc}")
    else:
        deliveries.add(s, sink.name, update)
    return f"{verdict} on alert(s) {', '.join(map(str, alert_ids))} by {ev.from_user}"
