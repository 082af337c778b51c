"""The Alibaba CCC source against real things: its pushes through the app (token, event
array, {"code": 0}, one call per contact), and its downloads through Alibaba's own SDK
against a local stand-in of the CCC API that checks each request is signed the Alibaba way
(the signature recomputed with the SDK's own signer), whose signed OSS URLs point at
another local server holding real audio made with ffmpeg."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from alibabacloud_tea_openapi.utils import Utils
from prometheus_client import REGISTRY

from connectors.sources import SOURCES
from connectors.sources.alibaba import AlibabaConfig, AlibabaSource, CccApiError
from plugin.audio.decode import ffmpeg_exe
from plugin.audio.fetch import fetch
from plugin.config import FetchConfig
from plugin.core.data import CallEvent
from plugin.store.tables import Call, Job
from tests.conftest import make_config
from tests.helpers import FakeServer, Recorded, Reply, free_port, make_audio

AK_ID, AK_SECRET = "LTAI5tTestAccessKeyId", "test-access-key-secret-never-logged"
TOKEN = "9c1d2e3f4a5b6c7d8e9f00112233445566778899"
INSTANCE = "ccc-test"
SRC = AlibabaSource()
FETCH = FetchConfig(allow_networks=["127.0.0.0/8"], timeout_s=5, max_seconds=10)


# --- a stand-in of the CCC API ----------------------------------------------------------------

class CccApi:
    """Answers CCC actions on 127.0.0.1 as the real API does, after checking the request is
    signed with ACS3-HMAC-SHA256 by the configured AccessKey (else 400 SignatureDoesNotMatch,
    the vendor's code)."""

    def __init__(self, server: FakeServer, secret: str = AK_SECRET):
        self.server, self.secret = server, secret
        self.answers: dict[str, Reply] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []  # (action, query) of each signed request
        server.routes["/"] = self.handle

    def handle(self, rec: Recorded) -> Reply:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        problem = self.signature_problem(rec, headers)
        if problem:
            return Reply(400, {"Code": "SignatureDoesNotMatch", "Message": problem, "RequestId": "stand-in"})
        action = headers["x-acs-action"]
        query = dict(parse_qsl(urlsplit(rec.path).query))
        self.seen.append((action, query))
        return self.answers.get(action, Reply(400, {"Code": "InvalidAction.NotFound", "Message": action}))

    def signature_problem(self, rec: Recorded, headers: dict[str, str]) -> str | None:
        scheme, _, fields = headers.get("authorization", "").partition(" ")
        if scheme != "ACS3-HMAC-SHA256":
            return "not signed with ACS3-HMAC-SHA256"
        parts = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
        if parts.get("Credential") != AK_ID:
            return "not the configured AccessKey id"
        for needed in ("x-acs-date", "x-acs-signature-nonce", "x-acs-version", "x-acs-action",
                       "x-acs-content-sha256", "host"):
            if needed not in parts.get("SignedHeaders", "").split(";"):
                return f"{needed} is not signed"
        if headers["x-acs-version"] != "2020-07-01":
            return "not the 2020-07-01 API"
        if headers["x-acs-content-sha256"] != hashlib.sha256(rec.body).hexdigest():
            return "x-acs-content-sha256 does not match the body"
        sent = datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if abs((datetime.now(timezone.utc) - sent).total_seconds()) > 900:
            return "x-acs-date is not now"
        # The signature, recomputed by the SDK's own signer over what arrived.
        request = _Signed(rec.method, urlsplit(rec.path).path or "/", dict(parse_qsl(urlsplit(rec.path).query)),
                          {h: headers[h] for h in parts["SignedHeaders"].split(";")})
        expected = Utils.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"],
                                           AK_ID, self.secret)
        if expected != headers["authorization"]:
            return "the signature does not match"
        return None


class _Signed:
    def __init__(self, method, pathname, query, headers):
        self.method, self.pathname, self.query, self.headers = method, pathname, query, headers


def ok(data) -> Reply:
    return Reply(200, {"Code": "OK", "HttpStatusCode": 200, "Message": "", "RequestId": "req-1", "Data": data})


@pytest.fixture
def ccc(fake) -> CccApi:
    return CccApi(fake())


def api_cfg(ccc: CccApi, **kw) -> AlibabaConfig:
    return AlibabaConfig(**{"token": TOKEN, "instance_id": INSTANCE, "access_key_id": AK_ID,
                            "access_key_secret": AK_SECRET, "api_endpoint": f"127.0.0.1:{ccc.server.port}",
                            "api_protocol": "http", "api_timeout_s": 5, **kw})


def stored(contact: str, cfg: AlibabaConfig) -> CallEvent:
    """The call as the plugin hands it back to the source at analysis time."""
    push = [{"eventType": "DualTrackRecordingReady", "instanceId": INSTANCE, "contactId": contact,
             "agentId": "agent@ccc-test", "callType": "INBOUND", "caller": "13800138000"}]
    [event] = SRC.receive(_inbound(push), cfg).events
    return event


def _inbound(body):
    from connectors.sources.base import Inbound
    return Inbound("POST", "https://x/webhooks/alibaba", {}, {"token": [TOKEN]}, json.dumps(body).encode())


def to_mkv(wav: Path) -> Path:
    """GetMultiChannelRecording's format: Matroska, the channels as recorded."""
    out = wav.with_suffix(".mkv")
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "pcm_s16le",
                    str(out)], check=True)
    return out


def oss_url(recordings: FakeServer, path: str, file: Path) -> str:
    # An OSS URL signed for a day, as CCC answers it: its signature is in the query.
    return recordings.serve_file(path, file) + "?Expires=1657014031&OSSAccessKeyId=LTAIoss&Signature=abc%3D"


# --- downloads --------------------------------------------------------------------------------

def test_multi_channel_recording_is_fetched_through_the_signed_api_and_its_url_at_once(ccc, fake, tmp_path):
    recordings = fake()
    mkv = to_mkv(make_audio(tmp_path / "call", "wav_pcm", channels=2, seconds=2))
    ccc.answers["GetMultiChannelRecording"] = ok({"FileName": "job-1.mkv",
                                                  "FileUrl": oss_url(recordings, "/ccc-record-mixed/job-1.mkv", mkv)})
    cfg = api_cfg(ccc)
    call = stored("job-1", cfg)

    [d] = SRC.downloads(call, cfg, requests.Session())

    assert ccc.seen == [("GetMultiChannelRecording", {"ContactId": "job-1", "InstanceId": INSTANCE})]
    assert d.credential is None and d.role is None  # the URL is signed by OSS: nothing of ours goes along
    assert call.channel_roles == {0: "agent", 1: "customer"}
    got = fetch(d.url, tmp_path / "got.mkv", FETCH, credential=d.credential)
    assert got.path.read_bytes() == mkv.read_bytes()
    assert "Signature=abc%3D" in recordings.requests[0].path


def test_mono_per_party_recordings_come_back_one_per_role(ccc, fake, tmp_path):
    recordings = fake()
    agent = make_audio(tmp_path / "agent", "wav_pcm", seconds=2)
    customer = make_audio(tmp_path / "customer", "wav_mulaw", seconds=2)
    ccc.answers["ListMonoRecordings"] = ok([
        {"FileName": "job-2-agent.wav", "FileUrl": oss_url(recordings, "/ccc-test/job-2-agent.wav", agent),
         "AgentId": "agent@ccc-test", "AgentName": "坐席小王", "ContactId": "job-2", "Duration": "2000",
         "SkillGroupId": "skillgroup@ccc-test", "RamId": "26972543893791", "StartTime": "1620259200000"},
        {"FileName": "job-2-customer.wav", "FileUrl": oss_url(recordings, "/ccc-test/job-2-customer.wav", customer),
         "ContactId": "job-2", "Duration": "2000", "StartTime": "1620259200000"}])
    cfg = api_cfg(ccc, recording_layout="mono_per_party")

    downloads = SRC.downloads(stored("job-2", cfg), cfg, requests.Session())

    assert ccc.seen == [("ListMonoRecordings", {"ContactId": "job-2", "InstanceId": INSTANCE})]
    assert [d.role for d in downloads] == ["agent", "customer"]
    for d, file in zip(downloads, (agent, customer)):
        assert d.credential is None
        assert fetch(d.url, tmp_path / f"{d.role}.wav", FETCH).path.read_bytes() == file.read_bytes()


@pytest.mark.parametrize("answer, code, retryable", [
    (Reply(404, {"Code": "NotExists.InstanceId", "Message": "The specified instance ccc-test does not exist.",
                 "RequestId": "r", "HttpStatusCode": 404}), "NotExists.InstanceId", False),
    (Reply(400, {"Code": "Throttling.User", "Message": "Request was denied due to user flow control.",
                 "RequestId": "r"}), "Throttling.User", True),
    (Reply(503, {"Code": "ServiceUnavailable", "Message": "The request has failed due to a temporary failure.",
                 "RequestId": "r"}), "ServiceUnavailable", True),
    (ok({}), "NoRecording", True),  # not generated yet: later
    (ok({"FileUrl": "file:///etc/passwd"}), "BadFileUrl", False),
])
def test_api_errors_name_the_api_and_code_and_never_the_secret(ccc, answer, code, retryable):
    ccc.answers["GetMultiChannelRecording"] = answer
    cfg = api_cfg(ccc)
    with pytest.raises(CccApiError) as err:
        SRC.downloads(stored("job-3", cfg), cfg, requests.Session())
    assert (err.value.code, err.value.retryable) == (code, retryable)
    assert "GetMultiChannelRecording" in str(err.value) and code in str(err.value)
    assert AK_SECRET not in str(err.value) and AK_SECRET not in repr(err.value.__dict__)


def test_a_wrong_secret_is_the_vendors_signature_error_and_not_retried(ccc):
    cfg = api_cfg(ccc, access_key_secret="another-secret-entirely")
    with pytest.raises(CccApiError) as err:
        SRC.downloads(stored("job-4", cfg), cfg, requests.Session())
    assert (err.value.code, err.value.retryable) == ("SignatureDoesNotMatch", False)
    assert ccc.seen == []  # the stand-in did not answer an unsigned request
    assert "another-secret-entirely" not in str(err.value)


def test_an_api_that_does_not_answer_is_retried_later():
    cfg = AlibabaConfig(token=TOKEN, instance_id=INSTANCE, access_key_id=AK_ID, access_key_secret=AK_SECRET,
                        api_endpoint=f"127.0.0.1:{free_port()}", api_protocol="http", api_timeout_s=2)
    with pytest.raises(CccApiError) as err:
        SRC.downloads(stored("job-5", cfg), cfg, requests.Session())
    assert (err.value.code, err.value.retryable) == ("NetworkError", True)


def test_without_credentials_nothing_is_asked_and_the_error_names_the_keys(ccc):
    cfg = api_cfg(ccc, access_key_id=None)
    with pytest.raises(CccApiError, match="access_key_id") as err:
        SRC.downloads(stored("job-6", cfg), cfg, requests.Session())
    assert not err.value.retryable and ccc.server.requests == []


# --- the push, through the app -----------------------------------------------------------------

def push(client, events, token: str | None = TOKEN, headers=None):
    url = "/webhooks/alibaba" + (f"?token={token}" if token is not None else "")
    return client.post(url, data=json.dumps(events), headers={"Content-Type": "application/json", **(headers or {})})


def dual_track(contact: str, **kw) -> dict:
    return {"eventTime": "2021-04-14T02:34:00.447Z", "eventType": "DualTrackRecordingReady",
            "instanceId": INSTANCE, "contactId": contact, "agentId": "agent@ccc-test", "callType": "INBOUND",
            "caller": "13800138000", "callee": "057128820000", "skillGroupId": "skillgroup@ccc-test", **kw}


@pytest.fixture
def ali(tmp_path, db_url, clock, app_factory):
    if "alibaba" not in SOURCES:
        pytest.skip("the alibaba source is not registered yet")
    cfg = make_config(tmp_path, None, db_url, sources={"alibaba": {"token": TOKEN, "instance_id": INSTANCE}})
    return app_factory(cfg, clock=clock)


def ignored(reason: str) -> float:
    """callmood_webhook_ignored_total{source="alibaba",reason=...} now (the registry is the process's)."""
    return REGISTRY.get_sample_value("callmood_webhook_ignored_total",
                                             {"source": "alibaba", "reason": reason}) or 0.0


def calls(svc) -> list[Call]:
    with svc.sessions() as s:
        return list(s.query(Call).filter(Call.source == "alibaba").order_by(Call.id))


def test_a_push_without_the_right_token_is_refused_and_nothing_is_stored(ali):
    svc, client = ali
    for r in (push(client, [dual_track("job-1")], token=None),
              push(client, [dual_track("job-1")], token="not-the-token-not-the-token"),
              push(client, [dual_track("job-1")], token=None, headers={"X-CallMood-Token": "wrong-wrong-wrong"})):
        assert r.status_code == 401 and TOKEN not in r.get_data(as_text=True)
    assert calls(svc) == []


def test_recording_events_make_one_call_per_contact_and_ccc_gets_code_zero(ali):
    svc, client = ali
    events = [{"eventType": "Released", "instanceId": INSTANCE, "contactId": "job-1", "callType": "INBOUND",
               "caller": "13800138000"},
              dual_track("job-1"),
              {"eventType": "RecordingReady", "instanceId": INSTANCE, "contactId": "job-1",
               "agentIds": "agent@ccc-test", "duration": 60},
              dual_track("job-2", callType="OUTBOUND", callee="13900139000")]
    r = push(client, events)
    assert (r.status_code, r.json) == (200, {"code": 0})
    again = push(client, events)  # CCC pushing again (a lost answer): nothing new
    assert (again.status_code, again.json) == (200, {"code": 0})
    got = calls(svc)
    assert [(c.external_id, c.customer_phone, c.agent_id, c.queue) for c in got] == [
        ("job-1", "+8613800138000", "agent@ccc-test", "skillgroup@ccc-test"),
        ("job-2", "+8613900139000", "agent@ccc-test", "skillgroup@ccc-test")]
    assert got[0].channel_roles == {"0": "agent", "1": "customer"}
    assert TOKEN not in json.dumps(got[0].event) and TOKEN not in got[0].recording_url
    with svc.sessions() as s:
        assert s.query(Job).filter(Job.call_id.in_([c.id for c in got])).count() == 2


def test_a_push_of_events_that_are_not_recordings_is_acknowledged_and_stores_nothing(ali):
    svc, client = ali
    before = {r: ignored(r) for r in ("event:not-recording", "instance:other")}
    r = push(client, [{"eventType": "AgentCheckIn", "instanceId": INSTANCE, "agentId": "agent@ccc-test"},
                      {"eventType": "Released", "instanceId": INSTANCE, "contactId": "job-9"},
                      {"eventType": "Established", "instanceId": INSTANCE, "contactId": "job-9"},
                      dual_track("job-10", instanceId="ccc-someone-else")])
    assert (r.status_code, r.json) == (200, {"code": 0})
    assert calls(svc) == []
    assert ignored("event:not-recording") - before["event:not-recording"] == 3
    assert ignored("instance:other") - before["instance:other"] == 1


def test_a_malformed_push_is_a_400_naming_the_field_and_stores_nothing(ali):
    svc, client = ali
    r = push(client, [dual_track("job-1"), dual_track("../job")])
    assert r.status_code == 400 and r.json["field"] == "[1].contactId"
    r = client.post(f"/webhooks/alibaba?token={TOKEN}", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["field"] == "body"
    assert calls(svc) == []


# --- end to end: push, then the worker asks the API and analyses ----------------------------------

@pytest.fixture
def ali_with_api(tmp_path, sqlite_url, clock, app_factory, model_dir, ccc):
    """The app with the shared model, the alibaba source pointed at the CCC stand-in."""
    def make(**source):
        cfg = make_config(tmp_path, model_dir, sqlite_url, sources={"alibaba": {
            "token": TOKEN, "instance_id": INSTANCE, "access_key_id": AK_ID, "access_key_secret": AK_SECRET,
            "api_endpoint": f"127.0.0.1:{ccc.server.port}", "api_protocol": "http", **source}})
        return app_factory(cfg, model=True, clock=clock)
    return make


def work(svc, client, call_id: int) -> dict:
    job_id = svc.jobs.claim("worker")
    assert job_id is not None
    svc.pipeline().run_job(job_id, "worker")
    return client.get(f"/api/calls/{call_id}").json


def pushed_call(svc, contact: str) -> int:
    [call] = [c for c in calls(svc) if c.external_id == contact]
    return call.id


def test_a_pushed_call_is_analysed_from_its_multi_channel_recording(ali_with_api, ccc, fake, tmp_path):
    recordings = fake()
    mkv = to_mkv(make_audio(tmp_path / "call", "wav_pcm", channels=2, seconds=4))
    ccc.answers["GetMultiChannelRecording"] = ok({"FileName": "job-e1.mkv",
                                                  "FileUrl": oss_url(recordings, "/mixed/job-e1.mkv", mkv)})
    svc, client = ali_with_api()
    assert push(client, [dual_track("job-e1")]).json == {"code": 0}

    call = work(svc, client, pushed_call(svc, "job-e1"))

    assert call["status"] == "analyzed", call
    assert {s["role"] for s in call["segments"]} == {"agent", "customer"}
    assert {(s["channel"], s["role"]) for s in call["segments"]} == {(0, "agent"), (1, "customer")}


def test_a_pushed_call_is_analysed_from_its_per_party_recordings(ali_with_api, ccc, fake, tmp_path):
    recordings = fake()
    agent = make_audio(tmp_path / "agent", "wav_pcm", seconds=4)
    customer = make_audio(tmp_path / "customer", "wav_pcm", seconds=4)
    ccc.answers["ListMonoRecordings"] = ok([
        {"FileUrl": oss_url(recordings, "/mono/customer.wav", customer), "ContactId": "job-e2"},
        {"FileUrl": oss_url(recordings, "/mono/agent.wav", agent), "AgentId": "agent@ccc-test",
         "ContactId": "job-e2"}])
    svc, client = ali_with_api(recording_layout="mono_per_party")
    assert push(client, [dual_track("job-e2")]).json == {"code": 0}

    call = work(svc, client, pushed_call(svc, "job-e2"))

    assert call["status"] == "analyzed", call
    assert {s["role"] for s in call["segments"]} == {"agent", "customer"}


def test_an_api_error_that_will_not_change_fails_the_call_at_once_naming_api_and_code(ali_with_api, ccc):
    ccc.answers["GetMultiChannelRecording"] = Reply(404, {
        "Code": "NotExists.InstanceId", "Message": "The specified instance ccc-test does not exist.",
        "RequestId": "r", "HttpStatusCode": 404})
    svc, client = ali_with_api()
    push(client, [dual_track("job-e3")])

    call = work(svc, client, pushed_call(svc, "job-e3"))

    assert call["status"] == "failed" and call["jobs"][0]["status"] == "failed", call
    error = call["jobs"][0]["last_error"]
    assert "GetMultiChannelRecording" in error and "NotExists.InstanceId" in error
    assert AK_SECRET not in json.dumps(call)


def test_throttling_puts_the_call_back_for_later(ali_with_api, ccc):
    ccc.answers["GetMultiChannelRecording"] = Reply(400, {"Code": "Throttling.User", "Message": "flow control",
                                                          "RequestId": "r"})
    svc, client = ali_with_api()
    push(client, [dual_track("job-e4")])

    call = work(svc, client, pushed_call(svc, "job-e4"))

    assert call["jobs"][0]["status"] == "queued" and "Throttling.User" in call["jobs"][0]["last_error"], call
