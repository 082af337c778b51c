"""The TCCC source on its own: the recording push as TCCC documents it (the sample of
https://cloud.tencent.com/document/product/679/67258), its two auth modes (basicAuth, and
OAuth2 client-credentials tokens we issue), the answer, and a call record as sync sees it."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
from pydantic import ValidationError
from werkzeug.datastructures import Headers

from connectors.sources.base import EventError, Inbound, SignatureError
from connectors.sources.tccc import TcccConfig, TcccSource
from connectors.sources.tccc_tokens import make_token as _make, token_problem as _problem

SRC = TcccSource()
SECRET = "0123456789abcdef0123456789abcdef"
NOW = 1_790_000_000.0
SESSION = "e97be0ab-1ef6-4ad2-a8c4-2b2bbfb18e55"
AGENT_URL = ("http://recorder-10018504.cos.ap-shanghai.myqcloud.com/def/month12/"
             "000-339708937-12367-473aa3561921478d8c57b425bd9d4b29-000-1608130637.mp3")
CUSTOMER_URL = AGENT_URL.replace("000-1608130637", "001-1608130637")


def cfg(**kw) -> TcccConfig:
    return TcccConfig(**({"username": "tccc-push", "password": "p@ss:word"} | kw))


def oauth_cfg(**kw) -> TcccConfig:
    return TcccConfig(**({"client_id": "tccc-client", "client_secret": SECRET} | kw))


def push(**fields) -> dict:
    """The documented sample (an agent's recording), with ``fields`` changed."""
    data = {"SdkAppId": 1400264214, "RecordId": "1608130650", "SessionId": SESSION, "Timestamp": 1608130650,
            "EndpointUser": "lululing@tencent.com", "RecordURL": AGENT_URL}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def make_token(c: TcccConfig, now: float) -> str:
    return _make(c.client_id, c.client_secret, c.token_ttl_s, now)


def token_problem(token: str, c: TcccConfig, now: float) -> str | None:
    return _problem(token, c.client_id, c.client_secret, now)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def inbound(body: dict | bytes | str = b"", url: str = "https://cm.example.com/webhooks/tccc?action=record&version=1",
            auth: str | None = basic("tccc-push", "p@ss:word"), uuid: str | None = "5b8f1d0c-6a2e-4f7b-9c3d-1e2f3a4b5c6d",
            content_type: str = "application/json;charset=utf8", **headers) -> Inbound:
    h = Headers({"Content-Type": content_type})
    if auth is not None:
        h["Authorization"] = auth
    if uuid is not None:
        h["X-TCCC-PUSH-UUID"] = uuid
    for k, v in headers.items():
        h[k.replace("_", "-")] = v
    raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    return Inbound("POST", url, h, parse_qs(urlsplit(url).query), raw)


# --- the recording push ------------------------------------------------------------------------

def test_the_documented_sample_is_the_agents_part_of_its_session():
    got = SRC.receive(inbound(push()), cfg())
    assert got.push_id == "5b8f1d0c-6a2e-4f7b-9c3d-1e2f3a4b5c6d" and got.assemble_s == 120 and got.ignored == []
    (ev,) = got.events
    assert (ev.source, ev.call_id, ev.recording_url) == ("tccc", SESSION, AGENT_URL)
    assert [(r.url, r.role, r.id) for r in ev.recordings] == [(AGENT_URL, "agent", "1608130650")]
    assert (ev.agent_id, ev.customer_phone, ev.customer_id, ev.channel_roles) == ("lululing@tencent.com", None, None, None)
    assert ev.metadata == {"SdkAppId": 1400264214, "Timestamp": 1608130650}
    assert ev.raw == push()


@pytest.mark.parametrize("endpoint, phone", [("13800138000", "+8613800138000"), ("008613800138000", "+8613800138000"),
                                             (13800138000, "+8613800138000"), ("+14155550100", "+14155550100"),
                                             ("protected-7f3a", None)])
def test_a_phone_number_or_anything_not_an_email_is_the_customer(endpoint, phone):
    (ev,) = SRC.receive(inbound(push(EndpointUser=endpoint, RecordId="1608130651", RecordURL=CUSTOMER_URL)),
                        cfg()).events
    assert [(r.role, r.id) for r in ev.recordings] == [("customer", "1608130651")]
    assert (ev.customer_phone, ev.agent_id) == (phone, None)


def test_which_endpoints_are_agents_is_configurable():
    # Agents on desk phones known by extension number, say.
    c = cfg(agent_endpoint_pattern=r"8\d{3}|[^@\s]+@[^@\s]+")
    assert SRC.receive(inbound(push(EndpointUser="8001")), c).events[0].recordings[0].role == "agent"
    assert SRC.receive(inbound(push(EndpointUser="13800138000")), c).events[0].recordings[0].role == "customer"
    assert SRC.receive(inbound(push(EndpointUser="a@b.cn")), c).events[0].recordings[0].role == "agent"


def test_record_url_by_default_custom_record_url_when_preferred_or_alone():
    custom = "https://my-bucket-1250000000.cos.ap-guangzhou.myqcloud.com/tccc/1608130650.mp3"
    assert SRC.receive(inbound(push(CustomRecordURL=custom)), cfg()).events[0].recording_url == AGENT_URL
    ev = SRC.receive(inbound(push(CustomRecordURL=custom)), cfg(prefer_custom_record_url=True)).events[0]
    assert ev.recording_url == ev.recordings[0].url == custom
    assert SRC.receive(inbound(push(RecordURL="", CustomRecordURL=custom)), cfg()).events[0].recording_url == custom


def test_a_push_naming_no_participant_is_the_whole_call_laid_out_as_configured():
    got = SRC.receive(inbound(push(EndpointUser="")), cfg(channel_roles={0: "agent", 1: "customer"}))
    (ev,) = got.events
    assert got.assemble_s is None and ev.recordings == () and ev.channel_roles == {0: "agent", 1: "customer"}
    assert SRC.receive(inbound(push(EndpointUser=None)), cfg()).events[0].channel_roles is None  # mixed


@pytest.mark.parametrize("query, reason", [("action=cdr&version=1", "action:cdr"), ("action=voicemail", "action:voicemail"),
                                           ("action=CDR", "action:cdr"), ("action=%3Cscript%3E", "action:other"),
                                           ("action=seatstatus", "action:other"), ("", "action:other")])
def test_other_pushes_are_acknowledged_and_counted_never_parsed(query, reason):
    got = SRC.receive(inbound(b"{not even json", url=f"https://cm.example.com/webhooks/tccc?{query}", uuid="x y"), cfg())
    assert (got.events, got.ignored) == ([], [reason])


def test_a_push_for_another_application_is_ignored_when_ours_is_configured():
    got = SRC.receive(inbound(push(SdkAppId=1400000001)), cfg(sdk_app_id=1400264214))
    assert (got.events, got.ignored) == ([], ["sdkappid:other"])
    assert SRC.receive(inbound(push()), cfg(sdk_app_id=1400264214)).events


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"), (b"[1]", "body"), (push(SessionId=None), "SessionId"),
    (push(SessionId="../../etc/passwd"), "SessionId"), (push(SessionId="x" * 129), "SessionId"),
    (push(RecordId="1 OR 1=1"), "RecordId"), (push(RecordURL=None), "RecordURL"),
    (push(RecordURL="javascript:alert(1)"), "RecordURL"), (push(RecordURL="http://a.example/x y.mp3"), "RecordURL"),
    (push(RecordURL="http://evil.example\\@cos.myqcloud.com/x"), "RecordURL"),
    (push(CustomRecordURL="file:///etc/passwd"), "CustomRecordURL"),
    (push(EndpointUser="<img src=x>@evil"), "EndpointUser"), (push(EndpointUser="a b@c"), "EndpointUser"),
    (push(SdkAppId="many"), "SdkAppId")])
def test_malformed_pushes_name_the_field_and_never_echo_the_value(body, field):
    with pytest.raises(EventError) as e:
        SRC.receive(inbound(body), cfg())
    assert e.value.field == field
    assert "passwd" not in e.value.message and "alert" not in e.value.message and "OR 1" not in e.value.message


@pytest.mark.parametrize("uuid", ["", "a b", "x" * 129, "5b8f1d0c\t6a2e", "<5b8f>"])
def test_the_push_uuid_is_checked(uuid):
    with pytest.raises(EventError) as e:
        SRC.receive(inbound(push(), uuid=uuid), cfg())
    assert e.value.field == "X-TCCC-PUSH-UUID"
    assert SRC.receive(inbound(push(), uuid=None), cfg()).push_id is None  # none sent: parts still dedupe by RecordId


def test_the_answer_is_errcode_zero_whatever_became_of_the_push():
    for received in (SRC.receive(inbound(push()), cfg()), SRC.receive(inbound(url="https://h/webhooks/tccc?action=cdr"), cfg())):
        a = SRC.answer(received, [])
        assert (a.status, json.loads(a.body), a.content_type) == (200, {"ErrCode": 0, "ErrMsg": "ok"}, "application/json")


def test_downloads_are_each_participants_file_with_its_role():
    ev = SRC.receive(inbound(push()), cfg()).events[0]
    (d,) = SRC.downloads(ev, cfg(), None)
    assert (d.url, d.role, d.credential) == (AGENT_URL, "agent", None)  # presigned COS URLs need nothing


# --- basicAuth ---------------------------------------------------------------------------------

def test_unconfigured_refuses_everything_and_names_the_keys():
    with pytest.raises(SignatureError) as e:
        SRC.authenticate(inbound(push()), TcccConfig(), NOW)
    assert "sources.tccc.username + password" in str(e.value) and "client_id + client_secret" in str(e.value)


@pytest.mark.parametrize("auth, words", [
    (None, "missing Authorization"), ("", "missing Authorization"), (basic("tccc-push", "wrong"), "is not the configured one"),
    (basic("someone", "p@ss:word"), "is not the configured one"), (basic("tccc-push", "p@ss:wor"), "is not the configured one"),
    ("Basic !!!notbase64", "is not the configured one"), ("Basic " + base64.b64encode(b"no-colon").decode(), "is not the configured one"),
    ("Bearer v1.a.b", "must be Basic"), ("Digest x", "must be Basic")])
def test_basic_auth_refuses_anything_but_the_configured_pair(auth, words):
    with pytest.raises(SignatureError) as e:
        SRC.authenticate(inbound(push(), auth=auth), cfg(), NOW)
    assert words in str(e.value) and "p@ss" not in str(e.value)


def test_basic_auth_accepts_the_configured_pair_a_password_may_hold_colons():
    SRC.authenticate(inbound(push()), cfg(), NOW)
    SRC.authenticate(inbound(push(), auth="basic " + basic("tccc-push", "p@ss:word")[6:]), cfg(), NOW)


# --- OAuth2 client credentials ------------------------------------------------------------------

def token_request(body: str = f"grant_type=client_credentials&client_id=tccc-client&client_secret={SECRET}",
                  **kw) -> Inbound:
    return inbound(body, url="https://cm.example.com/webhooks/tccc/token", uuid=None, auth=kw.pop("auth", None),
                   content_type=kw.pop("content_type", "application/x-www-form-urlencoded"), **kw)


def issued(answer) -> str:
    data = json.loads(answer.body)
    assert answer.status == 200 and data["token_type"] == "Bearer" and data["expires_in"] == 7200
    return data["access_token"]


def test_a_token_is_issued_for_the_client_credentials_in_the_body_and_pushes_carry_it():
    token = issued(SRC.issue_token(token_request(), oauth_cfg(), NOW))
    SRC.authenticate(inbound(push(), auth=f"Bearer {token}"), oauth_cfg(), NOW + 7199)


def test_a_token_is_issued_for_credentials_in_a_basic_header_form_encoded_as_rfc_6749_says():
    c = oauth_cfg(client_id="tccc client:1", client_secret=SECRET + "+/:")
    auth = basic(quote_plus("tccc client:1"), quote_plus(SECRET + "+/:"))
    token = issued(SRC.issue_token(token_request("grant_type=client_credentials", auth=auth), c, NOW))
    SRC.authenticate(inbound(push(), auth=f"Bearer {token}"), c, NOW)


def test_a_json_token_request_is_accepted_too_and_grant_type_may_be_left_out():
    body = json.dumps({"client_id": "tccc-client", "client_secret": SECRET})
    issued(SRC.issue_token(token_request(body, content_type="application/json"), oauth_cfg(), NOW))
    issued(SRC.issue_token(token_request(f"client_id=tccc-client&client_secret={SECRET}"), oauth_cfg(), NOW))


@pytest.mark.parametrize("body, auth, status, error", [
    (f"grant_type=client_credentials&client_id=tccc-client&client_secret={SECRET[:-1]}x", None, 401, "invalid_client"),
    (f"grant_type=client_credentials&client_id=other&client_secret={SECRET}", None, 401, "invalid_client"),
    ("grant_type=client_credentials&client_id=tccc-client", None, 401, "invalid_client"),
    ("grant_type=client_credentials", basic("tccc-client", "nope-nope-nope-nope"), 401, "invalid_client"),
    (f"grant_type=password&client_id=tccc-client&client_secret={SECRET}", None, 400, "unsupported_grant_type"),
    (b"client_id=\xff", None, 400, "invalid_request")])
def test_wrong_client_credentials_get_the_rfc_6749_error(body, auth, status, error):
    a = SRC.issue_token(token_request(body, auth=auth), oauth_cfg(), NOW)
    assert (a.status, json.loads(a.body)["error"]) == (status, error)
    assert SECRET not in a.body.decode()


def test_issuing_tokens_unconfigured_names_the_keys():
    a = SRC.issue_token(token_request(), cfg(), NOW)
    assert a.status == 401 and json.loads(a.body)["error"] == "invalid_client"
    assert "sources.tccc.client_id and client_secret" in json.loads(a.body)["error_description"]


def test_a_token_expires_and_dies_with_its_secret_and_client():
    token = make_token(oauth_cfg(), NOW)
    assert token_problem(token, oauth_cfg(), NOW + 7199) is None
    assert "expired" in token_problem(token, oauth_cfg(), NOW + 7200)
    assert "signature" in token_problem(token, oauth_cfg(client_secret=SECRET[::-1]), NOW)  # rotated secret
    assert "another client" in token_problem(token, oauth_cfg(client_id="renamed"), NOW)
    short = make_token(oauth_cfg(token_ttl_s=60), NOW)
    assert token_problem(short, oauth_cfg(), NOW + 59) is None and token_problem(short, oauth_cfg(), NOW + 60)
    with pytest.raises(SignatureError, match="expired"):
        SRC.authenticate(inbound(push(), auth=f"Bearer {token}"), oauth_cfg(), NOW + 9000)


def test_a_forged_or_tampered_token_is_refused():
    v, payload, mac = make_token(oauth_cfg(), NOW).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    longer = base64.urlsafe_b64encode(json.dumps(claims | {"e": claims["e"] + 10**6}).encode()).decode().rstrip("=")
    for forged in (f"{v}.{longer}.{mac}", f"{v}.{payload}.{mac[:-2]}AA", f"v2.{payload}.{mac}", "v1..", "x" * 600,
                   f"{v}.{payload}.{mac}.x", "ünïcode.a.b", ""):
        assert token_problem(forged, oauth_cfg(), NOW) is not None, forged
        with pytest.raises(SignatureError):
            SRC.authenticate(inbound(push(), auth=f"Bearer {forged}"), oauth_cfg(), NOW)


def test_with_both_modes_configured_either_is_accepted():
    both = cfg(client_id="tccc-client", client_secret=SECRET)
    SRC.authenticate(inbound(push()), both, NOW)
    SRC.authenticate(inbound(push(), auth=f"Bearer {make_token(both, NOW)}"), both, NOW)
    with pytest.raises(SignatureError, match="Basic or Bearer"):
        SRC.authenticate(inbound(push(), auth=None), both, NOW)


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [{"username": "u"}, {"client_id": "c"}, {"client_id": "c", "client_secret": "short"},
                                 {"secret_id": "AKID"}, {"agent_endpoint_pattern": "(["},
                                 {"channel_roles": {9: "agent"}}, {"channel_roles": {0: "boss"}},
                                 {"api_endpoint": "ftp://x"}, {"api_endpoint": "http://h/path"},
                                 {"api_endpoint": "user@h"}, {"assemble_wait_s": -1}, {"token_ttl_s": 10}])
def test_config_mistakes_are_refused(bad):
    with pytest.raises(ValidationError):
        TcccConfig(**bad)


def test_config_endpoint_forms():
    for ok in ("ccc.tencentcloudapi.com", "ccc.intl.tencentcloudapi.com", "http://127.0.0.1:8080", "https://h:443"):
        assert TcccConfig(api_endpoint=ok).api_endpoint == ok


# --- a call record, as sync lists it ---------------------------------------------------------------

def cdr(**fields) -> dict:
    """A TelCdrInfo (DescribeTelCdr, API 2020-02-10) of an inbound call, as a dict."""
    data = {"SessionId": SESSION, "Caller": "008613800138000", "Callee": "008675500000000", "Direction": 0,
            "CallType": 2, "Duration": 42, "EndStatus": 1, "EndStatusString": "ok", "Time": 1608130600,
            "RecordId": "1608130651", "RecordURL": CUSTOMER_URL, "SkillGroup": "billing", "SdkAppId": 1400264214,
            "SeatUser": {"Mail": "lululing@tencent.com", "StaffNumber": "1001"},
            "ServeParticipants": [{"Mail": "lululing@tencent.com", "RecordId": "1608130650", "RecordURL": AGENT_URL,
                                   "Type": "staffSeat", "Sequence": 0}]}
    data.update(fields)
    return data


def test_a_call_record_gives_the_same_session_and_parts_as_the_pushes():
    got = SRC.from_cdr(cdr(), cfg())
    (ev,) = got.events
    assert got.assemble_s == 120 and got.push_id is None
    assert (ev.call_id, ev.customer_phone, ev.agent_id, ev.queue) == (SESSION, "+8613800138000", "lululing@tencent.com", "billing")
    assert [(r.url, r.role, r.id) for r in ev.recordings] == [(CUSTOMER_URL, "customer", "1608130651"),
                                                             (AGENT_URL, "agent", "1608130650")]
    pushed = SRC.receive(inbound(push()), cfg()).events[0].recordings[0]
    assert pushed in ev.recordings  # the agent's pushed part and the listed one are one part


def test_a_call_record_outbound_transferred_or_without_recordings():
    ev = SRC.from_cdr(cdr(Direction=1, Caller="008675500000000", Callee="13900139000"), cfg()).events[0]
    assert ev.customer_phone == "+8613900139000"
    second = {"Mail": "second@tencent.com", "RecordId": "1608130652", "RecordURL": AGENT_URL + "?2"}
    ev = SRC.from_cdr(cdr(ServeParticipants=cdr()["ServeParticipants"] + [second, {"Mail": "x@y", "RecordURL": ""}]),
                      cfg()).events[0]
    assert [r.role for r in ev.recordings] == ["customer", "agent", "agent"]
    assert SRC.from_cdr(cdr(RecordURL="", ServeParticipants=[]), cfg()).ignored == ["no-recording"]
    assert SRC.from_cdr(cdr(SessionId="../x"), cfg()).ignored == ["invalid"]
    assert SRC.from_cdr(cdr(Caller="", ProtectedCaller="p-1"), cfg()).events[0].customer_phone is None
    odd = SRC.from_cdr(cdr(SkillGroup="账单 组", SeatUser={"Mail": "<b>"}, RecordURL="javascript:x"), cfg()).events[0]
    assert (odd.queue, odd.agent_id, [r.role for r in odd.recordings]) == (None, None, ["agent"])
