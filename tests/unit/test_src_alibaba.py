"""The Alibaba CCC source at the door: the push token, the event array, which events make a
call, and how CCC API errors are sorted into worth-retrying or not (no network here).

Fixtures use the fields CCC documents for its events
(https://help.aliyun.com/zh/ccs/use-cases/event-notification-formats)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from connectors.sources.alibaba import (IGNORED_DISABLED, IGNORED_NOT_AUDIO, IGNORED_NOT_RECORDING,
                                        IGNORED_OTHER_INSTANCE, IGNORED_UNKNOWN, AlibabaConfig, AlibabaSource,
                                        CccApiError, _call)
from connectors.sources.base import EventError, Inbound, SignatureError

TOKEN = "f3b1c2d4e5a6978812345678abcdef00"
SRC = AlibabaSource()


def cfg(**kw) -> AlibabaConfig:
    return AlibabaConfig(**{"token": TOKEN, "instance_id": "ccc-test", **kw})


def inbound(body, token: str | None = TOKEN, header: str | None = None) -> Inbound:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    query = {"token": [token]} if token is not None else {}
    headers = {"X-CallMood-Token": header} if header is not None else {}
    return Inbound("POST", "https://callmood.example.com/webhooks/alibaba", headers, query, raw)


def dual_track(contact="job-6538214103689", **kw) -> dict:
    return {"eventTime": "2021-04-14T02:34:00.447Z", "eventType": "DualTrackRecordingReady",
            "instanceId": "ccc-test", "contactId": contact, "agentId": "agent@ccc-test",
            "callType": "INBOUND", "caller": "13800138000", "callee": "057128820000",
            "skillGroupId": "skillgroup@ccc-test", "mediaType": "AUDIO", **kw}


def recording_ready(contact="job-6538214103689", **kw) -> dict:
    return {"eventTime": "2021-04-14T02:34:00.447Z", "eventType": "RecordingReady", "instanceId": "ccc-test",
            "contactId": contact, "agentIds": "agent@ccc-test,other@ccc-test", "duration": 60,
            "startTime": "2021-04-14T01:56:55Z", "endTime": "2021-04-14T01:57:25Z",
            "fileName": f"{contact}.wav",
            "downloadURL": f"https://ccc.oss-cn-shanghai.aliyuncs.com/ccc-record-mixed/{contact}.wav", **kw}


def released(contact="job-6538214103689") -> dict:
    return {"eventTime": "2021-04-14T02:33:59.000Z", "eventType": "Released", "instanceId": "ccc-test",
            "contactId": contact, "channelId": "19aafd79-ba0c-4102-8e58-9a699d4e5811", "callType": "INBOUND",
            "caller": "13800138000", "callee": "057128820000", "agentId": "agent@ccc-test"}


# --- authentication -------------------------------------------------------------------------

def test_the_token_in_the_url_or_the_header_lets_a_push_in():
    SRC.authenticate(inbound([]), cfg())
    SRC.authenticate(inbound([], token=None, header=TOKEN), cfg())


@pytest.mark.parametrize("token, header, says", [
    (None, None, "missing token"),
    ("", None, "missing token"),
    ("wrong-token-wrong-token-wrong!!", None, "does not match"),
    (TOKEN[:-1], None, "does not match"),
    (None, "wrong-token-wrong-token-wrong!!", "does not match"),
    ("凭证" * 10, None, "does not match"),  # non-ASCII: compared as bytes, no TypeError
])
def test_a_missing_or_wrong_token_is_refused_without_echoing_it(token, header, says):
    with pytest.raises(SignatureError) as err:
        SRC.authenticate(inbound([], token=token, header=header), cfg())
    assert says in str(err.value) and TOKEN not in str(err.value)
    if token:
        assert token not in str(err.value)


def test_without_a_configured_token_every_push_is_refused_naming_the_key():
    with pytest.raises(SignatureError, match=r"sources\.alibaba\.token"):
        SRC.authenticate(inbound([]), AlibabaConfig())


def test_a_short_token_is_a_config_error():
    with pytest.raises(ValidationError):
        AlibabaConfig(token="short")


# --- the events -----------------------------------------------------------------------------

def test_a_dual_track_event_is_a_call_with_the_documented_fields():
    got = SRC.receive(inbound([dual_track()]), cfg())
    assert got.ignored == [] and len(got.events) == 1
    ev = got.events[0]
    assert (ev.source, ev.call_id, ev.agent_id, ev.queue) == (
        "alibaba", "job-6538214103689", "agent@ccc-test", "skillgroup@ccc-test")
    assert ev.customer_phone == "+8613800138000"  # INBOUND: the caller is the customer
    assert ev.channel_roles == {0: "agent", 1: "customer"}
    assert ev.customer_id is None  # CCC has no CRM id: the plugin looks the phone up
    assert ev.recording_url.startswith("https://ccc.cn-shanghai.aliyuncs.com/?Action=GetMultiChannelRecording")
    assert "ContactId=job-6538214103689" in ev.recording_url and "InstanceId=ccc-test" in ev.recording_url
    assert ev.raw == dual_track() and ev.metadata["eventType"] == "DualTrackRecordingReady"


def test_outbound_calls_take_the_customer_from_the_callee_and_unknown_types_give_no_phone():
    ev = SRC.receive(inbound([dual_track(callType="OUTBOUND", caller="057128820000", callee="139 0013 9000")]),
                     cfg()).events[0]
    assert ev.customer_phone == "+8613900139000"
    ev = SRC.receive(inbound([dual_track(callType="INTERNAL")]), cfg()).events[0]
    assert ev.customer_phone is None
    ev = SRC.receive(inbound([dual_track(caller="anonymous")]), cfg()).events[0]
    assert ev.customer_phone is None  # not a phone number: no phone, not an error


def test_recording_ready_names_its_agents_as_a_list_and_the_first_one_is_kept():
    ev = SRC.receive(inbound([recording_ready()]), cfg()).events[0]
    assert (ev.call_id, ev.agent_id, ev.customer_phone) == ("job-6538214103689", "agent@ccc-test", None)
    assert ev.metadata["duration"] == 60


def test_several_events_in_one_push_are_several_calls_and_the_rest_is_counted():
    push = [released("job-1"), dual_track("job-1"), recording_ready("job-1"), dual_track("job-2"),
            {"eventType": "AgentCheckIn", "instanceId": "ccc-test", "agentId": "agent@ccc-test"},
            {"eventType": "SomethingNew", "instanceId": "ccc-test"},
            {"eventType": "CDRReady", "instanceId": "ccc-test", "contactId": "job-3"},
            dual_track("job-4", instanceId="ccc-other"),
            dual_track("job-5", mediaType="CHAT")]
    got = SRC.receive(inbound(push), cfg())
    assert [e.call_id for e in got.events] == ["job-1", "job-1", "job-2"]  # the plugin makes job-1 one call
    assert got.ignored == [IGNORED_NOT_RECORDING, IGNORED_NOT_RECORDING, IGNORED_UNKNOWN, IGNORED_DISABLED,
                           IGNORED_OTHER_INSTANCE, IGNORED_NOT_AUDIO]


def test_the_operator_picks_which_recording_events_make_calls():
    got = SRC.receive(inbound([dual_track("job-1"), recording_ready("job-2"),
                               {"eventType": "CDRReady", "instanceId": "ccc-test", "contactId": "job-3"}]),
                      cfg(events=["CDRReady"]))
    assert [e.call_id for e in got.events] == ["job-3"] and got.ignored == [IGNORED_DISABLED] * 2


def test_without_an_instance_id_any_instance_of_the_account_is_taken():
    got = SRC.receive(inbound([dual_track(instanceId="ccc-other")]), cfg(instance_id=None))
    assert got.events[0].raw["instanceId"] == "ccc-other"


def test_one_event_object_is_taken_as_a_push_of_one_and_an_empty_array_is_nothing():
    assert len(SRC.receive(inbound(dual_track()), cfg()).events) == 1
    got = SRC.receive(inbound([]), cfg())
    assert (got.events, got.ignored) == ([], [])


def test_mono_per_party_calls_carry_no_channel_map():
    ev = SRC.receive(inbound([dual_track()]), cfg(recording_layout="mono_per_party")).events[0]
    assert ev.channel_roles is None and "Action=ListMonoRecordings" in ev.recording_url


def test_the_channel_order_is_configurable():
    ev = SRC.receive(inbound([dual_track()]), cfg(channel_roles={0: "customer", 1: "agent"})).events[0]
    assert ev.channel_roles == {0: "customer", 1: "agent"}
    with pytest.raises(ValidationError):
        cfg(channel_roles={0: "agent", 1: "agent"})


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"),
    (b'"a string"', "body"),
    ([1], "[0]"),
    ([{"instanceId": "ccc-test"}], "[0].eventType"),
    ([dual_track(contactId=None)], "[0].contactId"),
    ([dual_track(contactId="../../etc/passwd")], "[0].contactId"),
    ([dual_track(contactId=123)], "[0].contactId"),
    ([released(), dual_track(agentId="<script>")], "[1].agentId"),
    ([recording_ready(agentIds="a b@x")], "[0].agentIds"),
    ([dual_track(skillGroupId="x\ny")], "[0].skillGroupId"),
    ([dual_track(instanceId=None)], "[0].instanceId"),
    ([{"eventType": "Released"}] * 1001, "body"),
])
def test_a_malformed_push_is_refused_naming_the_field(body, field):
    with pytest.raises(EventError) as err:
        SRC.receive(inbound(body), cfg())
    assert err.value.field == field
    assert "passwd" not in err.value.message and "<script>" not in err.value.message


def test_the_answer_is_code_zero_whatever_was_in_the_push():
    for received in (SRC.receive(inbound([dual_track()]), cfg()), SRC.receive(inbound([released()]), cfg())):
        a = SRC.answer(received, [])
        assert (a.status, json.loads(a.body), a.content_type) == (200, {"code": 0}, "application/json")


def test_the_api_endpoint_is_a_host_not_a_url():
    assert cfg(api_endpoint="127.0.0.1:8080").endpoint() == "127.0.0.1:8080"
    assert cfg(region="cn-beijing").endpoint() == "ccc.cn-beijing.aliyuncs.com"
    for bad in ("https://ccc.cn-shanghai.aliyuncs.com", "ccc.example.com/path", "user@host"):
        with pytest.raises(ValidationError):
            cfg(api_endpoint=bad)


# --- API errors: retry or not ---------------------------------------------------------------

def _raise(exc):
    def send():
        raise exc
    return send


@pytest.mark.parametrize("make, code, retryable", [
    (lambda e: e.ClientException(status_code=404, code="NotExists.InstanceId", message="no such instance"),
     "NotExists.InstanceId", False),
    (lambda e: e.ClientException(status_code=400, code="Parameter.Blank", message="blank"), "Parameter.Blank", False),
    (lambda e: e.ClientException(status_code=404, code="InvalidAccessKeyId.NotFound", message="no key"),
     "InvalidAccessKeyId.NotFound", False),
    (lambda e: e.ClientException(status_code=400, code="Throttling.User", message="flow control"),
     "Throttling.User", True),
    (lambda e: e.ThrottlingException(status_code=429, code="Throttling", message="slow down", retry_after=3),
     "Throttling", True),
    (lambda e: e.ServerException(status_code=503, code="ServiceUnavailable", message="busy"),
     "ServiceUnavailable", True),
])
def test_api_errors_name_the_api_and_code_and_say_whether_to_retry(make, code, retryable):
    from alibabacloud_tea_openapi import exceptions

    with pytest.raises(CccApiError) as err:
        _call("GetMultiChannelRecording", _raise(make(exceptions)))
    assert (err.value.api, err.value.code, err.value.retryable) == ("GetMultiChannelRecording", code, retryable)
    assert str(err.value).startswith(f"Alibaba CCC GetMultiChannelRecording failed: {code}")


def test_no_answer_at_all_is_worth_retrying():
    from darabonba.exceptions import UnretryableException
    from darabonba.policy.retry import RetryPolicyContext

    refused = UnretryableException(RetryPolicyContext(exception=ConnectionRefusedError("connection refused")))
    with pytest.raises(CccApiError) as err:
        _call("ListMonoRecordings", _raise(refused))
    assert err.value.retryable and err.value.code == "NetworkError"
    with pytest.raises(CccApiError) as err:
        _call("ListMonoRecordings", _raise(ConnectionResetError("reset")))
    assert err.value.retryable
