"""The database tables every stage reads and writes.

Every arrow in the flow that crosses a process or network boundary goes through
these rows, so a crash anywhere loses nothing. Each stage is idempotent thanks
to the unique keys: results by call+channel+start, alerts by call+rule,
deliveries by alert+sink (or by notification).

Times are naive UTC and have no Python-side defaults: whoever writes a row takes the
time from the one clock (plugin/core/clock.py), so no row carries another clock's time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from plugin.core.data import SegmentResult


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_calls_source_external"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    recording_url: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    customer_phone: Mapped[str | None] = mapped_column(String(64), index=True)  # the red-flag list's search
    agent_id: Mapped[str | None] = mapped_column(String(255))
    queue: Mapped[str | None] = mapped_column(String(255))  # the helpdesk's queue
    ticket_id: Mapped[str | None] = mapped_column(String(255))
    channel_roles: Mapped[dict | None] = mapped_column(JSON)
    # One file per participant ([{"url", "role", "id"}], gathered as they are pushed); None
    # when recording_url holds the whole call.
    recordings: Mapped[list | None] = mapped_column(JSON)
    # How customer_id was found: "given" by the event, "matched" from the phone number by
    # the lookup (plugin/flow/identity.py), "unmatched" when the lookup knew no customer.
    identity: Mapped[str | None] = mapped_column(String(16))
    event: Mapped[dict] = mapped_column(JSON)  # the payload as received, for audit and replay
    # received -> analyzed | failed
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # the review report reads a period
    analyzed_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    duration_s: Mapped[float | None] = mapped_column(Float)
    scenario: Mapped[str | None] = mapped_column(String(64))  # the scenario the rules picked
    emotion: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict | None] = mapped_column(JSON)
    timings: Mapped[dict | None] = mapped_column(JSON)  # seconds per stage

    jobs: Mapped[list[Job]] = relationship(back_populates="call", order_by="Job.id")
    segments: Mapped[list[Segment]] = relationship(
        back_populates="call", order_by="(Segment.channel, Segment.start)")
    alerts: Mapped[list[AlertRow]] = relationship(back_populates="call", order_by="AlertRow.id")


class Job(Base):
    """One unit of work for a worker, claimed with a lease that expires if the worker dies."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "run_after"),
                      Index("ix_jobs_finished", "status", "finished_at"))  # /health: failed lately

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="analyze")
    # queued -> running -> done | failed ; running with an expired lease is claimable again
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    call: Mapped[Call] = relationship(back_populates="jobs")


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("call_id", "channel", "start", name="uq_segments_call_channel_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    channel: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict] = mapped_column(JSON)
    # What was said (SenseVoice), numbers masked; NULL where no recognizer ran. Personal
    # data: retention's segments_days and `callmood forget` remove it with the row.
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    tag_emotion: Mapped[str | None] = mapped_column(String(32))
    events: Mapped[list | None] = mapped_column(JSON)
    normalized: Mapped[str | None] = mapped_column(Text)

    call: Mapped[Call] = relationship(back_populates="segments")


# What a stored segment gives back as a SegmentResult (the backtest and `callmood evaluate`
# replay rules on them): select these, with Segment.call_id, and hand each row to segment_result.
SEGMENT_COLUMNS = (Segment.start, Segment.end, Segment.channel, Segment.role, Segment.label, Segment.confidence,
                   Segment.scores, Segment.text, Segment.language, Segment.tag_emotion, Segment.events,
                   Segment.normalized)


def segment_result(row) -> SegmentResult:
    return SegmentResult(start=row.start, end=row.end, channel=row.channel, role=row.role, label=row.label,
                         confidence=row.confidence, scores=dict(row.scores or {}), text=row.text,
                         language=row.language, tag_emotion=row.tag_emotion, events=tuple(row.events or ()),
                         normalized=row.normalized)


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("call_id", "rule", name="uq_alerts_call_rule"),
                      # The red-flag list ranks each customer's alerts from this index alone
                      # (plugin/store/flagged.py), never reading the rows' JSON and text.
                      Index("ix_alerts_customer_recent", "customer_id", "id", "created_at", "severity", "scenario"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    rule: Mapped[str] = mapped_column(String(128))
    scenario: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(32))
    emotions: Mapped[list] = mapped_column(JSON)
    share: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    matched: Mapped[list] = mapped_column(JSON)  # [[start, end], ...]
    summary: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # the red-flag list's date range
    labels: Mapped[dict] = mapped_column(JSON, default=dict)  # the rule's labels, for routing
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # measures behind the verdict
    # What routing did with it: [{"receiver", "outcome", "reason", "notification_id"}]
    routing: Mapped[list] = mapped_column(JSON, default=list)

    call: Mapped[Call] = relationship(back_populates="alerts")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="alert", order_by="Delivery.id")
    feedback: Mapped[Feedback | None] = relationship(back_populates="alert", uselist=False)


class Notification(Base):
    """A supervisor notification for one receiver and group (a customer, or the digest).

    Alerts join an open notification until it is flushed into a Delivery; a later alert
    for the same group within the cooldown is suppressed unless its severity is higher."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_group", "receiver", "group_key", "status"),
                      Index("ix_notifications_due", "status", "flush_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receiver: Mapped[str] = mapped_column(String(128))
    sink: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="alert")  # alert | digest
    status: Mapped[str] = mapped_column(String(16), default="open")  # open -> flushed
    severity: Mapped[str] = mapped_column(String(16))  # the worst of its alerts
    flush_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    flushed_at: Mapped[datetime | None] = mapped_column(DateTime)

    alerts: Mapped[list[AlertRow]] = relationship(secondary="notification_alerts", order_by="AlertRow.id")
    delivery: Mapped[Delivery | None] = relationship(back_populates="notification", uselist=False)


class NotificationAlert(Base):
    __tablename__ = "notification_alerts"

    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), primary_key=True)


class Feedback(Base):
    """A supervisor's verdict on an alert: the ground truth backtests measure precision with."""

    __tablename__ = "alert_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), unique=True)
    verdict: Mapped[str] = mapped_column(String(16))  # correct | false_alarm
    by: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    alert: Mapped[AlertRow] = relationship(back_populates="feedback")


class Delivery(Base):
    """An outbound action (the outbox): retried with backoff until delivered or visibly dead."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "sink", name="uq_deliveries_alert_sink"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # Sent once whoever stores it (the review report: plugin/flow/report/send.py).
        Index("ix_deliveries_dedupe_key", "dedupe_key", unique=True),
        # A delivery waits for the earlier ones of its order key (plugin/store/deliveries.py).
        Index("ix_deliveries_order_key", "order_key", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A rule's own action belongs to its alert; a routed notification to its Notification.
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"), unique=True)
    sink: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)  # rendered at planning time; retries send the same body
    # pending -> sending -> delivered | pending (retry) | dead
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A delivery of neither an alert nor a notification (the review report) is stored once
    # under this key, e.g. "report:daily:2026-11-24:wecom:markdown"; None for the others.
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    # "<len>:<sink>:<customer>": one sink's deliveries about one customer are sent in the order
    # they were planned (a CRM down for an hour gets them oldest first); None: no order kept.
    order_key: Mapped[str | None] = mapped_column(String(255))
    # On success, what the sink did other than asked ("ticket 42 is closed: ..."), or that
    # the rate limit merged this delivery into another one's message.
    note: Mapped[str | None] = mapped_column(Text)
    merged_into: Mapped[int | None] = mapped_column(Integer)  # the delivery whose message carried this one
    requeued_at: Mapped[datetime | None] = mapped_column(DateTime)  # last `deliveries retry`

    alert: Mapped[AlertRow | None] = relationship(back_populates="deliveries")
    notification: Mapped[Notification | None] = relationship(back_populates="delivery")


# --- people and machines allowed in (plugin/web/auth/) ---------------------------------

class SinkSend(Base):
    """One message counted against a sink's rate limit (connectors/sinks/base.py Limit): the
    WeCom robot's 20 a minute, the WeCom app's per-member limits. Kept in the database so the
    limit holds across every worker; rows older than the longest window are deleted."""

    __tablename__ = "sink_sends"
    __table_args__ = (Index("ix_sink_sends_key_at", "sink", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sink: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))  # e.g. "robot", "user:zhangsan"
    at: Mapped[datetime] = mapped_column(DateTime)
    delivery_id: Mapped[int | None] = mapped_column(Integer)


class WeComCallback(Base):
    """A verdict button pressed in WeCom (plugin/web/wecom_callback.py), stored before it is
    answered. WeCom retries a callback it got no answer to: the unique key drops repeats."""

    __tablename__ = "wecom_callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sink: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)  # sink, FromUserName, CreateTime, TaskId
    from_user: Mapped[str] = mapped_column(String(128))
    task_id: Mapped[str] = mapped_column(String(128))
    event_key: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(255))  # what was done, e.g. "correct: alerts 4, 5"
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class User(Base):
    """Someone who logs in: a local account (argon2 password hash) or one made on first
    sign-in through single sign-on (no password here)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | supervisor | admin
    password_hash: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="local")  # local | oidc | proxy
    # Bumped on password change, role change, disable or "log out everywhere": sessions
    # carry the number they were made with and end when it moves on.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime)


class ApiToken(Base):
    """A bearer token for /api/* and scrapers. Only its SHA-256 is kept: it is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class LoginFailure(Base):
    """One failed login, kept a short while: attempts are throttled per account and per
    address across every web process (so not in memory)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), index=True)  # "user:<name>" or "ip:<address>"
    at: Mapped[datetime] = mapped_column(DateTime, index=True)


class WebhookPush(Base):
    """A vendor's push id (TCCC's X-TCCC-PUSH-UUID), remembered so a retried push is
    answered and not processed twice."""

    __tablename__ = "webhook_pushes"
    __table_args__ = (UniqueConstraint("source", "push_id", name="uq_webhook_pushes_source_push"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    push_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class PhoneLookup(Base):
    """The CRM's answer for one phone number (E.164), cached: customer_id None = no customer."""

    __tablename__ = "phone_lookups"

    phone: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    looked_up_at: Mapped[datetime] = mapped_column(DateTime)


# --- who is handling a red-flagged customer (plugin/store/handling.py) -------------------

class CustomerHandling(Base):
    """Who is handling a red-flagged customer now: acknowledged (someone is looking) and/or
    assigned to someone. One row per customer; "release" removes it. Every change is also
    kept in ``customer_handling_events``."""

    __tablename__ = "customer_handling"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)
    assigned_to: Mapped[str | None] = mapped_column(String(128))  # a users.name
    assigned_by: Mapped[str | None] = mapped_column(String(128))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class HandlingEvent(Base):
    """One acknowledge, assign or release of a red-flagged customer, by whom and when."""

    __tablename__ = "customer_handling_events"
    __table_args__ = (Index("ix_customer_handling_events_customer", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))  # acknowledge | assign | release
    by: Mapped[str] = mapped_column(String(128))
    assignee: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime)
