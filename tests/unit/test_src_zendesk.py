"""The Zendesk source on its own: the webhook signature (base64 HMAC-SHA256 over the
signature timestamp + the body, computed here the way Zendesk's docs show it, not with the
module's own helper), the replay window, the trigger's body mapped to a call, and what is
not a call."""

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError
from werkzeug.datastructures import Headers

from connectors.sources.base import EventError, Inbound, SignatureError
from connectors.sources.fields import queue_name
from connectors.sources.zendesk import ZendeskConfig, ZendeskSource

SRC = ZendeskSource()
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="  # the shape of a Zendesk signing secret
CFG = ZendeskConfig(signing_secret=SECRET, subdomain="acme")
STAMP = "2026-11-24T02:02:00Z"
NOW = datetime(2026, 11, 24, 2, 2, 30, tzinfo=timezone.utc).timestamp()  # 30 s after signing

# The body the README tells the operator to paste into the trigger, as Zendesk renders it.
BODY = {"ticket_id": "35436", "via": "Phone call (inbound)", "customer_phone": "+1 (415) 555-0132",
        "customer_id": "crm-000123", "agent_id": "1900000123", "queue": "Tier 1 Support"}


def zendesk_signature(body: bytes, secret: str, timestamp: str) -> str:
    # https://developer.zendesk.com/documentation/webhooks/verifying/: base64(HMACSHA256(TIMESTAMP + BODY))
    return base64.b64encode(hmac.new(secret.encode(), (timestamp + body.decode()).encode(), hashlib.sha256)
                            .digest()).decode()


def inbound(body=BODY, secret=SECRET, stamp=STAMP, signature=None, invocation="8350205582", drop=()) -> Inbound:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = Headers({
        "Content-Type": "application/json", "X-Zendesk-Account-Id": "123456",
        "X-Zendesk-Webhook-Id": "01F1KRFQ6BG29CNWFR60NK5FNY", "X-Zendesk-Webhook-Invocation-Id": invocation,
        "X-Zendesk-Webhook-Signature": signature if signature is not None else zendesk_signature(raw, secret, stamp),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp})
    for name in drop:
        del headers[name]
    return Inbound("POST", "https://callmood.example.com/webhooks/zendesk", headers, {}, raw)


def test_a_request_signed_by_zendesk_passes():
    SRC.authenticate(inbound(), CFG, now=NOW)
    lower = inbound()
    SRC.authenticate(Inbound(lower.method, lower.url, Headers({k.lower(): v for k, v in lower.headers.items()}),
                             {}, lower.body), CFG, now=NOW)  # header names are case-insensitive


@pytest.mark.parametrize("req,cfg,match", [
    (inbound(secret="another-secret"), CFG, "does not match"),
    (inbound(signature=""), CFG, "missing X-Zendesk-Webhook-Signature header"),
    (inbound(drop=["X-Zendesk-Webhook-Signature"]), CFG, "missing X-Zendesk-Webhook-Signature header"),
    (inbound(drop=["X-Zendesk-Webhook-Signature-Timestamp"]), CFG, "missing X-Zendesk-Webhook-Signature-Timestamp"),
    (inbound(signature="ü" * 44), CFG, "does not match"),  # non-ASCII must not crash the comparison
    (inbound(signature=zendesk_signature(json.dumps(BODY).encode(), SECRET, "2026-11-24T02:02:01Z")), CFG,
     "does not match"),  # the timestamp is signed: another one breaks the signature
    (inbound(), ZendeskConfig(subdomain="acme"), r"sources\.zendesk\.signing_secret"),
])
def test_bad_missing_or_unconfigured_signatures_are_refused(req, cfg, match):
    with pytest.raises(SignatureError, match=match):
        SRC.authenticate(req, cfg, now=NOW)


def test_the_signature_covers_the_raw_bytes():
    req = inbound()
    tampered = Inbound(req.method, req.url, req.headers, {}, req.body.replace(b"35436", b"35437"))
    with pytest.raises(SignatureError, match="does not match"):
        SRC.authenticate(tampered, CFG, now=NOW)


def test_requests_signed_outside_the_replay_window_are_refused():
    with pytest.raises(SignatureError, match="signed 301s ago, outside the 300s tolerance"):
        SRC.authenticate(inbound(), CFG, now=NOW + 271)
    with pytest.raises(SignatureError, match="in the future"):
        SRC.authenticate(inbound(), CFG, now=NOW - 400)
    SRC.authenticate(inbound(), ZendeskConfig(signing_secret=SECRET, replay_tolerance_s=0), now=NOW + 86400)
    with pytest.raises(SignatureError, match="not an ISO 8601 time"):  # signed, yet no time: refused
        SRC.authenticate(inbound(stamp="yesterday"), CFG, now=NOW)


def test_the_trigger_body_is_a_call_on_its_ticket():
    received = SRC.receive(inbound(), CFG)
    [ev] = received.events
    assert (ev.source, ev.call_id, ev.ticket_id) == ("zendesk", "35436", "35436")  # the write-back's ticket
    assert ev.recording_url == "https://acme.zendesk.com/api/v2/tickets/35436/comments.json"
    assert (ev.customer_id, ev.agent_id, ev.queue) == ("crm-000123", "1900000123", "Tier-1-Support")
    assert ev.customer_phone == "+14155550132"
    assert ev.channel_roles is None
    assert received.push_id == "8350205582"  # a repeated invocation is answered at once


def test_placeholders_the_ticket_has_no_value_for_are_left_out():
    body = {"ticket_id": "35436", "via": "", "customer_phone": "", "customer_id": "", "agent_id": "",
            "queue": ""}
    [ev] = SRC.receive(inbound(body), CFG).events
    assert (ev.customer_phone, ev.customer_id, ev.agent_id, ev.queue) == (None, None, None, None)
    [ev] = SRC.receive(inbound({"ticket_id": 35436, "extra": "kept"}), ZendeskConfig(signing_secret=SECRET)).events
    assert ev.call_id == "35436" and ev.metadata == {"extra": "kept"}
    assert ev.recording_url == "zendesk:ticket:35436"  # no account configured yet: downloads() says so


def test_a_voicemail_ticket_is_ignored():
    received = SRC.receive(inbound(dict(BODY, via="Voicemail")), CFG)
    assert received.events == [] and received.ignored == ["via:voicemail"]


@pytest.mark.parametrize("via", ["Phone call (inbound)", "Phone call (outbound)", "电话呼叫(呼入)", "", None])
def test_other_tickets_are_taken_the_triggers_conditions_chose_them(via):
    # {{ticket.via}} renders in the account's language: an unknown word must not drop calls.
    assert SRC.receive(inbound(dict(BODY, via=via)), CFG).events


@pytest.mark.parametrize("body,field", [
    (b"{not json", "body"),
    (b'"35436"', "body"),
    ({"via": "Phone call (inbound)"}, "ticket_id"),
    (dict(BODY, ticket_id=""), "ticket_id"),
    (dict(BODY, ticket_id="{{ticket.id}}"), "ticket_id"),  # the placeholder pasted where it does not render
    (dict(BODY, ticket_id="1/../2"), "ticket_id"),
    (dict(BODY, ticket_id=True), "ticket_id"),
    (dict(BODY, agent_id="<img src=x>"), "agent_id"),
    (dict(BODY, customer_id="a b"), "customer_id"),
    (dict(BODY, customer_phone={"x": 1}), "customer_phone"),
])
def test_malformed_bodies_are_refused_naming_the_field(body, field):
    with pytest.raises(EventError) as err:
        SRC.receive(inbound(body), CFG)
    assert err.value.field == field
    assert "<img" not in err.value.message


def test_a_hostile_invocation_id_is_not_used():
    assert SRC.receive(inbound(invocation="a b <x>"), CFG).push_id is None


def test_group_names_become_queues_or_nothing():
    assert queue_name("Tier 1 Support") == "Tier-1-Support"
    assert queue_name("Billing/Refunds") is None and queue_name("") is None and queue_name(None) is None


@pytest.mark.parametrize("changes,match", [
    ({"subdomain": "acme.zendesk.com"}, "subdomain"),
    ({"api_base": "https://acme.zendesk.com/api/v2"}, "no path"),
    ({"replay_tolerance_s": -1}, "replay_tolerance_s"),
    ({"phone_region": "ZZ"}, "region"),
])
def test_config_mistakes_are_named(changes, match):
    with pytest.raises(ValidationError, match=match):
        ZendeskConfig(signing_secret=SECRET, **changes)


def test_api_base_wins_over_subdomain():
    assert ZendeskConfig(subdomain="acme").base_url() == "https://acme.zendesk.com"
    assert ZendeskConfig(subdomain="acme", api_base="http://127.0.0.1:8080/").base_url() == "http://127.0.0.1:8080"
    assert ZendeskConfig().base_url() is None


def test_the_api_credentials_are_bound_to_the_zendesk_host_and_its_port():
    class Comments:
        status_code = 200
        content = json.dumps({"comments": [{"type": "VoiceComment", "created_at": "2026-11-24T02:05:00Z", "data": {
            "recording_url": "https://acme.zendesk.com/api/v2/channels/voice/calls/CA9f3c/twilio/call/recording"}}]
        }).encode()

    class Http:
        def get(self, url, **kw):
            assert url == "https://acme.zendesk.com/api/v2/tickets/35436/comments.json"
            assert kw["allow_redirects"] is False
            return Comments()

    cfg = ZendeskConfig(signing_secret=SECRET, subdomain="acme", email="a@acme.com", api_token="t0k")
    [d] = SRC.downloads(SRC.receive(inbound(), cfg).events[0], cfg, Http())
    assert (d.credential.host, d.credential.port) == ("acme.zendesk.com", 443)
    assert d.credential.applies_to("acme.zendesk.com", 443) and not d.credential.applies_to("acme.zendesk.com", 80)
    assert "t0k" not in repr(d.credential)
    Comments.content = Comments.content.replace(b"https://acme.zendesk.com", b"http://acme.zendesk.com")
    [d] = SRC.downloads(SRC.receive(inbound(), cfg).events[0], cfg, Http())
    assert d.credential is None  # never over plain http
