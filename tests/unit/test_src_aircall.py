"""The Aircall source on its own: the token at the door, call.ended mapped to a call, the
events that are not a finished recording, and malformed bodies. Fixtures use the fields
Aircall's API reference documents for webhooks (resource, event, timestamp, token, data)
and for the call object."""

import copy
import json

import pytest
from pydantic import ValidationError
from werkzeug.datastructures import Headers

from connectors.sources.aircall import AircallConfig, AircallSource
from connectors.sources.fields import queue_name
from connectors.sources.base import Accepted, EventError, Inbound, SignatureError

SRC = AircallSource()
TOKEN = "45XXYYZZa08"
CFG = AircallConfig(token=TOKEN)
REC = "https://aircall-recordings.example.com/calls/812345/recording.mp3?X-Amz-Expires=600&X-Amz-Signature=ab12"

CALL = {
    "id": 812345, "direct_link": "https://api.aircall.io/v1/calls/812345", "direction": "inbound",
    "status": "done", "missed_call_reason": None, "started_at": 1732622895, "answered_at": 1732622901,
    "ended_at": 1732623000, "duration": 105, "cost": "0", "hangup_cause": None,
    "raw_digits": "+33 6 12 34 56 78", "recording": REC, "asset": "https://assets.aircall.io/calls/812345/recording",
    "voicemail": None, "archived": False,
    "user": {"id": 456, "direct_link": "https://api.aircall.io/v1/users/456", "name": "Madelaine Dupont",
             "email": "madelaine.dupont@aircall.io", "available": True, "language": "en-US"},
    "contact": {"id": 789, "direct_link": "https://api.aircall.io/v1/contacts/789", "first_name": "Jean",
                "last_name": "Martin", "company_name": "ACME", "is_shared": True,
                "phone_numbers": [{"id": 1, "label": "Work", "value": "+33612345678"}], "emails": []},
    "number": {"id": 1234, "direct_link": "https://api.aircall.io/v1/numbers/1234", "name": "Support Line",
               "digits": "+33 1 76 36 06 95", "country": "FR", "time_zone": "Europe/Paris"},
    "tags": [], "comments": [], "teams": [],
}


def payload(event="call.ended", token=TOKEN, **call_changes):
    data = copy.deepcopy(CALL)
    data.update(call_changes)
    return {"resource": "call", "event": event, "timestamp": 1732623030, "token": token, "data": data}


def inbound(body) -> Inbound:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Inbound("POST", "https://callmood.example.com/webhooks/aircall",
                   Headers({"Content-Type": "application/json"}), {}, raw)


def test_the_token_in_the_body_authenticates():
    SRC.authenticate(inbound(payload()), CFG)


@pytest.mark.parametrize("body,cfg,match", [
    (payload(token="wrong-token"), CFG, "does not match"),
    (payload(token=""), CFG, "no token"),
    ({k: v for k, v in payload().items() if k != "token"}, CFG, "no token"),
    (payload(token=12345), CFG, "no token"),
    (payload(token="ü" * 11), CFG, "does not match"),  # non-ASCII must not crash the comparison
    (b"{not json", CFG, "not the JSON"),
    (b"[1, 2]", CFG, "no token"),
    (payload(), AircallConfig(), r"sources\.aircall\.token"),
])
def test_a_missing_wrong_or_unconfigured_token_is_refused(body, cfg, match):
    with pytest.raises(SignatureError, match=match):
        SRC.authenticate(inbound(body), cfg)


def test_call_ended_is_a_call_with_agent_customer_phone_and_line():
    [ev] = SRC.receive(inbound(payload()), CFG).events
    assert (ev.source, ev.call_id, ev.recording_url) == ("aircall", "812345", REC)
    assert ev.agent_id == "456"
    assert ev.customer_phone == "+33612345678"
    assert ev.customer_id is None  # Aircall's contact id is not the CRM's: the phone lookup decides
    assert ev.metadata["aircall_contact_id"] == "789"
    assert ev.queue == "Support-Line"
    assert ev.channel_roles is None  # one mixed recording
    assert ev.ticket_id is None
    assert "token" not in ev.raw and ev.raw["data"]["id"] == 812345  # the secret is never stored


def test_options_contact_as_customer_agent_by_email_and_channels():
    cfg = AircallConfig(token=TOKEN, contact_id_is_customer_id=True, agent_id_from="email",
                        channel_roles={0: "agent", 1: "customer"})
    [ev] = SRC.receive(inbound(payload()), cfg).events
    assert (ev.customer_id, ev.agent_id) == ("789", "madelaine.dupont@aircall.io")
    assert ev.channel_roles == {0: "agent", 1: "customer"}


@pytest.mark.parametrize("body,reason", [
    (payload("call.hungup"), "event:call.hungup"),  # fires before the recording is ready
    (payload("call.answered"), "event:call.answered"),
    (payload("contact.created"), "event:other"),
    (payload("some.future_event"), "event:other"),  # never a raw vendor value as a metric label
    (payload(recording=None, voicemail="https://aircall.example.com/vm.mp3", missed_call_reason="out_of_opening_hours"),
     "no_recording"),
    (payload(recording=""), "no_recording"),
    ({k: v for k, v in payload().items() if k != "data"} | {"data": {"id": 1}}, "no_recording"),
])
def test_what_is_not_a_finished_recording_is_ignored_with_a_known_reason(body, reason):
    received = SRC.receive(inbound(body), CFG)
    assert received.events == [] and received.ignored == [reason]


def test_comm_assets_generated_can_make_the_call_too():
    cfg = AircallConfig(token=TOKEN, events=["call.ended", "call.comm_assets_generated"])
    assert SRC.receive(inbound(payload("call.comm_assets_generated")), cfg).events[0].call_id == "812345"
    assert SRC.receive(inbound(payload("call.comm_assets_generated")), CFG).ignored == [
        "event:call.comm_assets_generated"]


@pytest.mark.parametrize("body,field", [
    (b"{not json", "body"),
    (b"[]", "body"),
    ({"resource": "call", "token": TOKEN, "data": CALL}, "event"),
    (payload() | {"data": "812345"}, "data"),
    (payload(id=None), "data.id"),
    (payload(id="81/../2"), "data.id"),
    (payload(id=True), "data.id"),
    (payload(recording="ftp://files.example.com/r.mp3"), "data.recording"),
    (payload(recording="javascript:alert(1)"), "data.recording"),
    (payload(recording="https://a.example.com\\@b.example.com/r.mp3"), "data.recording"),
    (payload(recording="https://a.example.com/r .mp3"), "data.recording"),
    (payload(user={"id": "<script>"}), "data.user.id"),
    (payload(user="456"), "data.user"),
    (payload(contact={"id": "a b"}), "data.contact.id"),
])
def test_malformed_calls_are_refused_naming_the_field(body, field):
    with pytest.raises(EventError) as err:
        SRC.receive(inbound(body), CFG)
    assert err.value.field == field
    assert "<script>" not in err.value.message  # never echo the value


def test_phones_that_are_not_numbers_and_missing_parties_are_none():
    [ev] = SRC.receive(inbound(payload(raw_digits="anonymous", user=None, contact=None, number=None)), CFG).events
    assert (ev.customer_phone, ev.agent_id, ev.customer_id, ev.queue) == (None, None, None, None)
    assert "aircall_contact_id" not in ev.metadata
    cfg = AircallConfig(token=TOKEN, phone_region="CN")
    [ev] = SRC.receive(inbound(payload(raw_digits="010 6552 9988")), cfg).events
    assert ev.customer_phone == "+861065529988"


def test_line_names_become_queues_or_nothing():
    assert queue_name("Support Line") == "Support-Line"
    assert queue_name("  Ventes  France ") == "Ventes-France"
    assert queue_name("投诉 热线") == "投诉-热线"
    assert queue_name("Sales / EMEA") is None and queue_name("") is None and queue_name(5) is None


def test_aircall_gets_a_200_whatever_happened():
    received = SRC.receive(inbound(payload()), CFG)
    assert SRC.answer(received, [Accepted(7, 9, False)]).status == 200
    answer = SRC.answer(SRC.receive(inbound(payload("call.hungup")), CFG), [])
    assert answer.status == 200 and json.loads(answer.body)["ignored"] == ["event:call.hungup"]


def test_without_api_credentials_the_pushed_url_is_downloaded():
    [ev] = SRC.receive(inbound(payload()), CFG).events
    [d] = SRC.downloads(ev, CFG, http=None)  # no API call is made
    assert (d.url, d.credential, d.role) == (REC, None, None)


@pytest.mark.parametrize("changes,match", [
    ({"api_id": "id-only"}, "both api_id and api_token"),
    ({"api_base": "https://api.aircall.io/v1"}, "no path"),
    ({"api_base": "https://user:pw@api.aircall.io"}, "no path, no credentials"),
    ({"phone_region": "XX"}, "region"),
    ({"events": ["call.hungup"]}, "events"),
    ({"agent_id_from": "name"}, "agent_id_from"),
])
def test_config_mistakes_are_named(changes, match):
    with pytest.raises(ValidationError, match=match):
        AircallConfig(token=TOKEN, **changes)
