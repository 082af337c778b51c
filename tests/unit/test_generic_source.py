import json

import pytest

from connectors.sources import SOURCES, EventError, SignatureError
from connectors.sources.generic import GenericConfig, sign

SRC = SOURCES["generic"]
CFG = GenericConfig(secret="k")
BODY = {"call_id": "c1", "recording_url": "https://pbx.example.com/r/c1.wav", "customer_id": "u1",
        "customer_phone": "+86 138", "agent_id": "a1", "queue": "finance", "ticket_id": "T1",
        "channels": {"0": "agent", "1": "customer"}, "crm_extra": {"x": 1}}


def raw(body=BODY):
    return json.dumps(body).encode()


def test_valid_signature_and_event():
    SRC.verify({"X-CallMood-Signature": sign(raw(), "k")}, raw(), CFG)
    SRC.verify({"X-CallMood-Signature": sign(raw(), "k")[len("sha256="):]}, raw(), CFG)  # bare hex
    ev = SRC.parse(raw())
    assert (ev.call_id, ev.customer_id, ev.agent_id, ev.queue, ev.ticket_id) == ("c1", "u1", "a1", "finance", "T1")
    assert ev.channel_roles == {0: "agent", 1: "customer"}
    assert ev.metadata == {"crm_extra": {"x": 1}}


@pytest.mark.parametrize("headers,cfg,match", [
    ({}, CFG, "missing X-CallMood-Signature"),
    ({"X-CallMood-Signature": "sha256=00"}, CFG, "does not match"),
    ({"X-CallMood-Signature": sign(raw(), "other")}, CFG, "does not match"),
    ({"X-CallMood-Signature": sign(raw(), "k")}, GenericConfig(), "no secret configured"),
    ({"X-CallMood-Signature": "sha256=ü" + "0" * 63}, CFG, "does not match"),
])
def test_bad_signatures(headers, cfg, match):
    with pytest.raises(SignatureError, match=match):
        SRC.verify(headers, raw(), cfg)


def test_signature_covers_the_raw_bytes():
    tampered = raw().replace(b"u1", b"u2")
    with pytest.raises(SignatureError):
        SRC.verify({"X-CallMood-Signature": sign(raw(), "k")}, tampered, CFG)


@pytest.mark.parametrize("change,field", [
    ({"call_id": None}, "call_id"),
    ({"recording_url": "ftp://x/y.wav"}, "recording_url"),
    ({"customer_id": ""}, "customer_id"),
    ({"channels": {"left": "agent"}}, "channels"),
    ({"channels": {"0": "boss"}}, "channels"),
    ({"call_id": 12}, "call_id"),
])
def test_malformed_events_name_the_field(change, field):
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    with pytest.raises(EventError) as err:
        SRC.parse(raw(body))
    assert err.value.field == field


def test_nan_is_not_json():
    body = raw().replace(b'"crm_extra": {"x": 1}', b'"score": NaN')
    with pytest.raises(EventError, match="NaN is not valid JSON"):
        SRC.parse(body)


def test_not_json_or_not_object():
    with pytest.raises(EventError, match="not valid JSON"):
        SRC.parse(b"{oops")
    with pytest.raises(EventError, match="expected a JSON object"):
        SRC.parse(b"[1, 2]")
