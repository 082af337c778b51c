"""POST /webhooks/<source>: verify, normalize, and store the call and its job in
one transaction, then answer 202 at once. The same event twice makes one job."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from connectors.sources import SOURCES, EventError, SignatureError
from plugin.core import metrics
from plugin.core.data import CallEvent
from plugin.store.jobs import JobQueue
from plugin.store.tables import Call, Job
from plugin.web.auth.marks import no_csrf, public
from plugin.web.services import get_services

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

MAX_EVENT_BYTES = 1024 * 1024


@bp.post("/webhooks/<source>")
@public  # signed by the helpdesk (HMAC over the body): the signature is its authentication
@no_csrf
def receive(source: str):
    svc = get_services()
    src, cfg = SOURCES.get(source), svc.config.source(source)
    if src is None or cfg is None or not cfg.enabled:
        metrics.WEBHOOKS.labels(source="unknown", outcome="unknown_source").inc()
        return jsonify(error=f"unknown or disabled source {source!r}"), 404
    if (request.content_length or 0) > MAX_EVENT_BYTES:
        return jsonify(error=f"event larger than {MAX_EVENT_BYTES} bytes"), 413
    body = request.get_data(cache=False)
    try:
        src.verify(request.headers, body, cfg)
    except SignatureError as exc:
        metrics.WEBHOOKS.labels(source=source, outcome="bad_signature").inc()
        log.warning("webhook %s refused: %s", source, exc)
        return jsonify(error=f"invalid signature: {exc}"), 401
    try:
        event = src.parse(body)
    except EventError as exc:
        metrics.WEBHOOKS.labels(source=source, outcome="malformed").inc()
        return jsonify(error=exc.message, field=exc.field), 400
    call_id, job_id, duplicate = accept(svc.sessions, svc.jobs, event)
    metrics.WEBHOOKS.labels(source=source, outcome="duplicate" if duplicate else "accepted").inc()
    return jsonify(status="duplicate" if duplicate else "accepted", call_id=call_id, job_id=job_id), 202


def accept(sessions: sessionmaker[Session], jobs: JobQueue, event: CallEvent) -> tuple[int, int, bool]:
    """Store the call and its analysis job together; (call id, job id, was it a duplicate)."""
    try:
        with sessions.begin() as s:
            found = _existing(s, event)
            if found:
                return (*found, True)
            call = Call(source=event.source, external_id=event.call_id,
                        recording_url=event.recording_url, customer_id=event.customer_id,
                        customer_phone=event.customer_phone, agent_id=event.agent_id,
                        queue=event.queue, ticket_id=event.ticket_id,
                        channel_roles={str(k): v for k, v in event.channel_roles.items()}
                        if event.channel_roles else None,
                        event=event.raw, received_at=jobs.clock.now(s))
            s.add(call)
            s.flush()
            job = jobs.enqueue(s, call.id)
            return call.id, job.id, False
    except IntegrityError:
        # Two deliveries of the same event raced; the other one won.
        with sessions() as s:
            found = _existing(s, event)
        if found:
            return (*found, True)
        raise


def _existing(s, event: CallEvent) -> tuple[int, int] | None:
    row = s.execute(select(Call.id, Job.id).join(Job, Job.call_id == Call.id)
                    .where(Call.source == event.source, Call.external_id == event.call_id)
                    .order_by(Job.id).limit(1)).first()
    return (row[0], row[1]) if row else None
