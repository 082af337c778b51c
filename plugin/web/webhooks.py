"""POST /webhooks/<source>: authenticate the vendor, read its event, store the call and
its job in one transaction (plugin/flow/intake.py), then answer the way the vendor
expects, at once. The same event twice makes one call.

At the door, for every source: bad or missing authentication -> 401 and nothing stored;
a malformed body -> 400 naming the field; a well-formed event that is not a finished
recording -> 2xx, nothing stored, counted in callmood_webhook_ignored_total.

POST /webhooks/<source>/token: the OAuth2 client-credentials token endpoint of a source
that takes tokens we issue (TCCC); 404 for the others.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify, request

from connectors.sources import SOURCES, Answer, EventError, Inbound, SignatureError
from plugin.core import metrics
from plugin.web.auth.marks import no_csrf, public
from plugin.web.services import get_services

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

MAX_EVENT_BYTES = 1024 * 1024


def _source(source: str):
    svc = get_services()
    src, cfg = SOURCES.get(source), svc.config.source(source)
    if src is None or cfg is None or not cfg.enabled:
        return svc, None, None
    return svc, src, cfg


def _unknown(source: str):
    metrics.WEBHOOKS.labels(source="unknown", outcome="unknown_source").inc()
    return jsonify(error=f"unknown or disabled source {source!r}"), 404


def _unset_secret(svc, source: str):
    """503 while a ${NAME} of this source's config is unset (`serve` refuses to start so,
    but an app built otherwise must never check a signature against "${NAME}" as written)."""
    missing = svc.config.unset_env(f"sources.{source}")
    if missing is None:
        return None
    metrics.WEBHOOKS.labels(source=source, outcome="not_configured").inc()
    log.error("webhook %s refused: %s: environment variable %s is not set", source, *missing)
    return jsonify(error=f"source {source!r} is not configured on this server"), 503


def _inbound(cfg) -> Inbound | None:
    """The request as the source sees it, or None when it is too large."""
    if (request.content_length or 0) > MAX_EVENT_BYTES:
        return None
    body = request.get_data(cache=False)
    if len(body) > MAX_EVENT_BYTES:
        return None
    url = request.url
    if cfg.public_url:  # the URL the vendor called, in front of our proxy (Twilio signs it)
        url = cfg.public_url.rstrip("/") + request.full_path.rstrip("?")
    return Inbound(method=request.method, url=url, headers=request.headers,
                   query=request.args.to_dict(flat=False), body=body, remote_addr=request.remote_addr)


def _reply(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status, content_type=answer.content_type)


@bp.post("/webhooks/<source>")
@public  # authenticated by the vendor's own scheme (a signature, a token, basic auth)
@no_csrf
def receive(source: str):
    svc, src, cfg = _source(source)
    if src is None:
        return _unknown(source)
    unset = _unset_secret(svc, source)
    if unset is not None:
        return unset
    req = _inbound(cfg)
    if req is None:
        return jsonify(error=f"event larger than {MAX_EVENT_BYTES} bytes"), 413
    try:
        src.authenticate(req, cfg, time.time())
    except SignatureError as exc:
        metrics.WEBHOOKS.labels(source=source, outcome="bad_signature").inc()
        log.warning("webhook %s refused: %s", source, exc)
        return jsonify(error=f"invalid signature: {exc}"), 401
    try:
        received = src.receive(req, cfg)
    except EventError as exc:
        metrics.WEBHOOKS.labels(source=source, outcome="malformed").inc()
        return jsonify(error=exc.message, field=exc.field), 400
    for reason in received.ignored:
        metrics.WEBHOOK_IGNORED.labels(source=source, reason=reason).inc()
    accepted = svc.intake().take(source, received)
    if accepted is None:
        metrics.WEBHOOKS.labels(source=source, outcome="duplicate_push").inc()
        return _reply(src.answer(received, []))
    for a in accepted:
        metrics.WEBHOOKS.labels(source=source, outcome="duplicate" if a.duplicate else "accepted").inc()
    if not received.events:
        metrics.WEBHOOKS.labels(source=source, outcome="ignored").inc()
    return _reply(src.answer(received, accepted))


@bp.post("/webhooks/<source>/token")
@public  # the client's id and secret are its authentication (RFC 6749 client credentials)
@no_csrf
def token(source: str):
    svc, src, cfg = _source(source)
    if src is None or not hasattr(src, "issue_token"):
        return _unknown(source)
    unset = _unset_secret(svc, source)
    if unset is not None:
        return unset
    req = _inbound(cfg)
    if req is None:
        return jsonify(error=f"request larger than {MAX_EVENT_BYTES} bytes"), 413
    answer = src.issue_token(req, cfg, time.time())
    if answer.status >= 400:
        metrics.WEBHOOKS.labels(source=source, outcome="bad_token_request").inc()
        log.warning("token request for %s refused (HTTP %s)", source, answer.status)
    return _reply(answer)
