"""The WeCom application's callback URL (接收消息服务器): where WeCom reports a verdict
button pressed on an alert card the wecom_app sink sent.

    GET  /wecom/callback/<sink>?msg_signature=&timestamp=&nonce=&echostr=   URL verification
    POST /wecom/callback/<sink>?msg_signature=&timestamp=&nonce=            <xml><Encrypt>…</Encrypt></xml>

Set it in the WeCom admin console (应用管理 > the app > 接收消息 > 设置API接收) as
``<server.public_url>/wecom/callback/<sink name>`` with the sink's ``callback_token`` and
``callback_aes_key``. Open without a login, like the webhooks: WeCom proves each request
with its signature and the AES key (connectors/wecom_crypto.py); anything that fails
them is a 403 and changes nothing. WeCom wants an answer within 5 seconds and retries
otherwise: the verdict is stored and answered at once (plugin/flow/verdicts.py), repeats
are dropped, and the card is updated afterwards by the delivery loop.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request

from connectors.sinks.wecom_app import WeComAppSink
from connectors.wecom_crypto import CryptoError, WeComCrypto, parse_xml
from plugin.flow.verdicts import CardEvent, apply_card_verdict
from plugin.web.auth.marks import no_csrf, public
from plugin.web.services import get_services

log = logging.getLogger(__name__)
bp = Blueprint("wecom_callback", __name__)

MAX_BODY_BYTES = 64 * 1024  # a card event is well under 2 KB


def _sink(name: str) -> tuple[WeComAppSink, WeComCrypto]:
    sink = get_services().sinks.get(name)
    if not isinstance(sink, WeComAppSink) or not (sink.cfg.callback_token and sink.cfg.callback_aes_key):
        abort(404, "no WeCom app sink with a callback under that name")
    return sink, WeComCrypto(sink.cfg.callback_token, sink.cfg.callback_aes_key, sink.cfg.corpid)


def _query() -> tuple[str, str, str]:
    values = tuple(request.args.get(k, "") for k in ("msg_signature", "timestamp", "nonce"))
    if not all(values) or any(len(v) > 128 for v in values):
        abort(400, "msg_signature, timestamp and nonce are required")
    return values


@bp.get("/wecom/callback/<name>")
@public  # WeCom's own signature and encryption authenticate it
def verify_url(name: str):
    sink, crypto = _sink(name)
    signature, timestamp, nonce = _query()
    echostr = request.args.get("echostr", "")
    if not echostr or len(echostr) > 4096:
        abort(400, "echostr is required")
    try:
        plain = crypto.check_signature(signature, timestamp, nonce, echostr)
    except CryptoError as exc:
        log.warning("wecom callback %s: URL verification refused: %s", name, exc)
        abort(403, "signature or encryption does not match this sink's callback_token and callback_aes_key")
    return Response(plain, mimetype="text/plain")


@bp.post("/wecom/callback/<name>")
@public
@no_csrf
def receive(name: str):
    sink, crypto = _sink(name)
    signature, timestamp, nonce = _query()
    if (request.content_length or 0) > MAX_BODY_BYTES:
        abort(413, f"a callback is at most {MAX_BODY_BYTES} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY_BYTES:
        abort(413, f"a callback is at most {MAX_BODY_BYTES} bytes")
    try:
        fields = parse_xml(crypto.decrypt_message(body, signature, timestamp, nonce))
    except CryptoError as exc:
        log.warning("wecom callback %s: refused: %s", name, exc)
        abort(403, "signature or encryption does not match this sink's callback_token and callback_aes_key")
    if fields.get("MsgType") != "event" or fields.get("Event") != "template_card_event":
        return Response("", mimetype="text/plain")  # other events (entering the app...): nothing to do
    try:
        ev = CardEvent(from_user=_field(fields, "FromUserName"), create_time=_field(fields, "CreateTime"),
                       event_key=_field(fields, "EventKey"), task_id=_field(fields, "TaskId"),
                       response_code=fields.get("ResponseCode", ""))
    except ValueError as exc:
        abort(400, str(exc))
    svc = get_services()
    outcome = apply_card_verdict(svc.sessions, svc.clock, svc.deliveries, sink, ev)
    log.info("wecom callback %s: %s", name, outcome)
    # An empty answer: WeCom shows the user nothing more, and the card update follows.
    return Response("", mimetype="text/plain")


def _field(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value or len(value) > 1024 or not value.isprintable():
        raise ValueError(f"the card event's {name} is missing or malformed")
    return value
