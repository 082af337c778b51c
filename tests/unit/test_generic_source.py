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


# --- hostile input at the door ------------------------------------------------------------

ATTACK = "../../../admin/users/1/delete?confirm=yes#"


@pytest.mark.parametrize("field", ["call_id", "customer_id", "agent_id", "ticket_id", "queue", "scenario"])
@pytest.mark.parametrize("value,why", [
    (ATTACK, "contains '/'"),
    ("x\n### 假标题 fake heading", "U+000A"),
    ("<@all>", "contains '<'"),
    ("[click](http://evil.example)", "contains '['"),
    ("a b", "U+0020"),
    ('x"y', "contains '\"'"),
    ("100%25", "contains '%'"),
    ("..", "only dots"),
    ("x" * 129, "at most 128"),
    ("ab\u202ecd", "U+202E"),
])
def test_ids_with_unsafe_characters_are_refused_naming_the_field(field, value, why):
    with pytest.raises(EventError) as err:
        SRC.parse(raw({**BODY, field: value}))
    assert err.value.field == field and why in err.value.message


@pytest.mark.parametrize("phone,why", [("+86 138\n> 级别 critical", "U+000A"), ("<@all>", "'<'"),
                                       ("call me maybe", "'c'"), ("1" * 40, "at most 32"), ("12", "2 digits")])
def test_customer_phone_must_be_a_phone_number(phone, why):
    with pytest.raises(EventError) as err:
        SRC.parse(raw({**BODY, "customer_phone": phone}))
    assert err.value.field == "customer_phone" and why in err.value.message


def test_unicode_ids_and_blank_optional_fields_are_fine():
    ev = SRC.parse(raw({**BODY, "customer_id": "客户-42", "agent_id": "", "ticket_id": " ", "customer_phone": ""}))
    assert (ev.customer_id, ev.agent_id, ev.ticket_id, ev.customer_phone) == ("客户-42", None, None, None)


@pytest.mark.parametrize("body,field,match", [
    (b'{"call_id": "c1", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "body", "nested more than 32"),
    (b'[' * 100_000, "body", "nested more than 32"),
    (b'{"call_id": "c1", "score": 1e999}', "body", "too large"),
    (b'{"call_id": "c1", "score": Infinity}', "body", "Infinity is not valid JSON"),
    (b'{"call_id": "c\\u0000", "customer_id": "u1"}', "call_id", "NUL"),
    (b'{"call_id": "c1", "crm": {"note": "a\\u0000"}}', "crm.note", "NUL"),
    (b'{"call_id": "c1", "crm": "\\udc00"}', "crm", "lone surrogate"),
])
def test_json_the_database_cannot_hold_is_refused_at_the_door(body, field, match):
    with pytest.raises(EventError, match=match) as err:
        SRC.parse(body)
    assert err.value.field == field


# --- the replay window --------------------------------------------------------------------

REPLAY = GenericConfig(secret="k", replay_tolerance_s=300)
NOW = 1_767_225_600


def stamped(t=NOW, secret="k", body=None):
    return {"X-CallMood-Signature": sign(body or raw(), secret, timestamp=t)}


def test_a_timestamped_signature_within_the_window_is_accepted():
    assert stamped()["X-CallMood-Signature"].startswith(f"t={NOW},v1=")
    for t in (NOW, NOW - 300, NOW + 300):
        SRC.verify(stamped(t), raw(), REPLAY, now=NOW)
    # several v1 values (a secret being rotated): any one may match
    header = stamped()["X-CallMood-Signature"] + ",v1=" + "0" * 64
    SRC.verify({"X-CallMood-Signature": header}, raw(), REPLAY, now=NOW)


@pytest.mark.parametrize("headers,match", [
    (stamped(NOW - 301), "signed 301s ago, outside the 300s tolerance"),
    (stamped(NOW - 86400 * 30), "signed 2592000s ago"),
    (stamped(NOW + 301), "signed 301s in the future"),
    (stamped(secret="other"), "does not match the body and timestamp"),
    ({"X-CallMood-Signature": sign(raw(), "k")}, "must be t=<unix seconds>,v1="),  # no timestamp: refused
    ({"X-CallMood-Signature": f"t={NOW}"}, "must be t="),
    ({"X-CallMood-Signature": f"t=abc,v1={'0' * 64}"}, "must be t="),
    ({"X-CallMood-Signature": f"t={NOW},t={NOW},v1={'0' * 64}"}, "must be t="),
    ({"X-CallMood-Signature": f"t={'9' * 40},v1={'0' * 64}"}, "must be t="),
    ({"X-CallMood-Signature": f"t=١٢٣,v1={'0' * 64}"}, "must be t="),  # Arabic-Indic digits
])
def test_replayed_or_malformed_timestamped_signatures_are_refused(headers, match):
    with pytest.raises(SignatureError, match=match):
        SRC.verify(headers, raw(), REPLAY, now=NOW)


def test_the_timestamp_is_signed_so_it_cannot_be_moved():
    header = stamped(NOW - 3600)["X-CallMood-Signature"].replace(f"t={NOW - 3600}", f"t={NOW}")
    with pytest.raises(SignatureError, match="does not match"):
        SRC.verify({"X-CallMood-Signature": header}, raw(), REPLAY, now=NOW)


def test_the_body_is_signed_with_the_timestamp():
    with pytest.raises(SignatureError, match="does not match"):
        SRC.verify(stamped(), raw().replace(b"u1", b"u2"), REPLAY, now=NOW)
