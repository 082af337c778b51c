"""TCCC through the real app: the recording push as TCCC sends it (one per participant,
basicAuth or an OAuth2 token we issued, X-TCCC-PUSH-UUID), assembled into one call; the
call records API (DescribeTelCdr) through the official SDK against a local stand-in that
checks TC3-HMAC-SHA256 the way Tencent Cloud does; the recordings downloaded and analysed."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import func, select
from tencentcloud.common.sign import Sign

from connectors.sources import SOURCES
from connectors.sources.base import VendorApiError
from connectors.sources.tccc_tokens import make_token
from plugin.audio.fetch import fetch
from plugin.core import metrics
from plugin.flow.pipeline import stored_event
from plugin.flow.sync import sync_source
from plugin.store.tables import Call, Job, WebhookPush
from tests.conftest import T0, make_config
from tests.helpers import Recorded, Reply, make_audio

SRC = SOURCES["tccc"]
APP_ID = 1400264214
CLIENT_SECRET = "0123456789abcdef0123456789abcdef"
TCCC = {"sdk_app_id": APP_ID, "username": "tccc-push", "password": "p@ss:word",
        "client_id": "tccc-client", "client_secret": CLIENT_SECRET}
SESSION = "e97be0ab-1ef6-4ad2-a8c4-2b2bbfb18e55"
AGENT = "lululing@tencent.com"
REC = "http://recorder-10018504.cos.ap-shanghai.myqcloud.com/def/month12/000-{}.mp3"


def config(tmp_path, db_url, model_dir=None, **tccc):
    return make_config(tmp_path, model_dir, db_url, sources={"tccc": TCCC | tccc})


def basic(user="tccc-push", password="p@ss:word") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def record(endpoint: str = AGENT, record_id: str = "1608130650", url: str | None = None, session: str = SESSION,
           **fields) -> dict:
    """A recording push's body, the documented fields only."""
    return {"SdkAppId": APP_ID, "RecordId": record_id, "SessionId": session, "Timestamp": 1608130650,
            "EndpointUser": endpoint, "RecordURL": url or REC.format(record_id)} | fields


def post(client, body, auth: str | None = None, uuid: str | None = None, action: str = "record"):
    headers = {"Content-Type": "application/json;charset=utf8", "X-TCCC-PUSH-UUID": uuid or f"push-{time.time_ns()}"}
    headers["Authorization"] = basic() if auth is None else auth
    if auth == "":
        del headers["Authorization"]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/webhooks/tccc?action={action}&version=1", data=data, headers=headers)


def ok(r) -> None:
    assert (r.status_code, r.json) == (200, {"ErrCode": 0, "ErrMsg": "ok"}), r.text


def calls(svc) -> list[Call]:
    with svc.sessions() as s:
        return s.execute(select(Call).order_by(Call.id)).scalars().all()


def jobs(svc) -> list[Job]:
    with svc.sessions() as s:
        return s.execute(select(Job).order_by(Job.id)).scalars().all()


def ignored(reason: str) -> float:
    return metrics.WEBHOOK_IGNORED.labels(source="tccc", reason=reason)._value.get()


# --- the door --------------------------------------------------------------------------------

def test_bad_or_missing_auth_is_401_and_nothing_is_stored(tmp_path, db_url, app_factory, clock):
    svc, client = app_factory(config(tmp_path, db_url), clock=clock, role=None)
    cfg = svc.config.source("tccc")
    for auth in ("", basic(password="wrong"), basic(user="admin"), "Bearer nonsense",
                 f"Bearer {make_token(cfg.client_id, CLIENT_SECRET, 7200, time.time() - 7201)}",  # expired
                 f"Bearer {make_token(cfg.client_id, 'f' * 32, 7200, time.time())}"):  # another secret
        r = post(client, record(), auth=auth, uuid="5b8f1d0c-6a2e-4f7b-9c3d-1e2f3a4b5c6d")
        assert r.status_code == 401 and "invalid signature" in r.json["error"], auth
        assert "p@ss" not in r.text and CLIENT_SECRET not in r.text
    assert calls(svc) == []
    with svc.sessions() as s:  # a refused push does not use up its push id either
        assert s.scalar(select(func.count()).select_from(WebhookPush)) == 0


def test_unconfigured_refuses_every_push_naming_the_keys(tmp_path, db_url, app_factory, clock):
    svc, client = app_factory(make_config(tmp_path, None, db_url, sources={"tccc": {}}), clock=clock, role=None)
    r = post(client, record())
    assert r.status_code == 401 and "sources.tccc.username + password" in r.json["error"]
    assert calls(svc) == []


def test_agent_then_customer_push_is_one_call_with_two_recordings_due_at_once(tmp_path, db_url, app_factory, clock):
    svc, client = app_factory(config(tmp_path, db_url), clock=clock, role=None)
    ok(post(client, record()))
    (call,), (job,) = calls(svc), jobs(svc)
    assert (call.source, call.external_id, call.agent_id, call.customer_phone) == ("tccc", SESSION, AGENT, None)
    assert job.run_after == T0 + timedelta(seconds=120)  # waiting for the other side

    clock.t = T0 + timedelta(seconds=5)
    ok(post(client, record("008613800138000", "1608130651")))
    (call,), (job,) = calls(svc), jobs(svc)
    assert call.recordings == [{"url": REC.format("1608130650"), "role": "agent", "id": "1608130650"},
                               {"url": REC.format("1608130651"), "role": "customer", "id": "1608130651"}]
    assert (call.agent_id, call.customer_phone) == (AGENT, "+8613800138000")
    assert job.run_after == clock.t and svc.jobs.claim("worker") == job.id  # both sides in: due now


def test_one_push_only_is_analysed_after_assemble_wait_s(tmp_path, db_url, app_factory, clock):
    svc, client = app_factory(config(tmp_path, db_url, assemble_wait_s=30), clock=clock, role=None)
    ok(post(client, record("13800138000", "1608130651")))
    assert svc.jobs.claim("worker") is None
    clock.t = T0 + timedelta(seconds=29)
    assert svc.jobs.claim("worker") is None
    clock.t = T0 + timedelta(seconds=30)
    assert svc.jobs.claim("worker") == jobs(svc)[0].id


def test_a_retried_push_is_answered_and_looked_at_once(tmp_path, db_url, app_factory, clock):
    svc, client = app_factory(config(tmp_path, db_url), clock=clock, role=None)
    for _ in range(3):  # TCCC retries at most 3 times, with the same X-TCCC-PUSH-UUID
        ok(post(client, record(), uuid="5b8f1d0c-6a2e-4f7b-9c3d-1e2f3a4b5c6d"))
    ok(post(client, record(), uuid="another-push-of-the-same-file"))  # same RecordId: one part
    (call,) = calls(svc)
    assert len(call.recordings) == 1 and len(jobs(svc)) == 1
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(WebhookPush)) == 2


def test_other_pushes_are_acknowledged_counted_and_not_stored(tmp_path, db_url, app_factory, clock):
    svc, client = app_factory(config(tmp_path, db_url), clock=clock, role=None)
    before = {r: ignored(r) for r in ("action:cdr", "action:voicemail", "action:other", "sdkappid:other")}
    cdr = {"SdkAppId": APP_ID, "SessionId": SESSION, "Caller": "008613800138000", "Direction": 0,
           "RecordId": "1608130651", "ServeParticipants": []}
    ok(post(client, cdr, action="cdr"))
    ok(post(client, {"SdkAppId": APP_ID, "SessionId": SESSION, "EndpointUser": 13123456789,
                     "RecordURL": REC.format("vm")}, action="voicemail"))
    ok(post(client, {"whatever": 1}, action="seatStatus"))
    ok(post(client, record(SdkAppId=1400000001)))
    assert {r: ignored(r) - n for r, n in before.items()} == {r: 1 for r in before}
    assert calls(svc) == []


@pytest.mark.parametrize("body, field", [(b"{", "body"), (record(SessionId="a/../b"), "SessionId"),
                                         (record(RecordURL="ftp://x/y.mp3"), "RecordURL")])
def test_a_malformed_push_is_400_naming_the_field(tmp_path, sqlite_url, app_factory, clock, body, field):
    svc, client = app_factory(config(tmp_path, sqlite_url), clock=clock, role=None)
    r = post(client, body)
    assert (r.status_code, r.json["field"]) == (400, field)
    assert calls(svc) == []


# --- OAuth2 client credentials ------------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_tccc_gets_a_token_and_pushes_with_it_until_the_secret_changes(tmp_path, sqlite_url, app_factory, clock):
    svc, client = app_factory(config(tmp_path, sqlite_url), clock=clock, role=None)
    r = client.post("/webhooks/tccc/token", data="grant_type=client_credentials",
                    headers=FORM | {"Authorization": basic("tccc-client", CLIENT_SECRET)})
    assert r.status_code == 200, r.json
    assert r.json["token_type"] == "Bearer" and r.json["expires_in"] == 7200
    assert r.headers["Cache-Control"] == "no-store"  # RFC 6749 5.1
    token = r.json["access_token"]
    ok(post(client, record(), auth=f"Bearer {token}"))

    wrong = client.post("/webhooks/tccc/token", data="grant_type=client_credentials",
                        headers=FORM | {"Authorization": basic("tccc-client", "x" * 32)})
    assert (wrong.status_code, wrong.json["error"]) == (401, "invalid_client")
    assert client.post("/webhooks/generic/token").status_code == 404  # only sources that issue tokens

    # The operator rotates the client secret: every token issued with the old one is dead.
    _, rotated = app_factory(config(tmp_path, sqlite_url, client_secret="f" * 32), clock=clock, role=None)
    r = post(rotated, record("13800138000", "1608130651"), auth=f"Bearer {token}")
    assert r.status_code == 401 and "signature" in r.json["error"]
    assert [len(c.recordings) for c in calls(svc)] == [1]


@pytest.mark.parametrize("content_type, body", [
    ("application/x-www-form-urlencoded",
     urlencode({"grant_type": "client_credentials", "client_id": "tccc-client", "client_secret": CLIENT_SECRET})),
    ("application/json", json.dumps({"grant_type": "client_credentials", "client_id": "tccc-client",
                                     "client_secret": CLIENT_SECRET}))])
def test_client_credentials_in_the_body_reach_the_token_endpoint(tmp_path, sqlite_url, app_factory, clock,
                                                                 content_type, body):
    """RFC 6749 2.3.1 allows the id and secret as form fields (TCCC does not say which it
    sends): the form must reach the source intact."""
    svc, client = app_factory(config(tmp_path, sqlite_url), clock=clock, role=None)
    r = client.post("/webhooks/tccc/token", data=body, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.json
    ok(post(client, record(), auth=f"Bearer {r.json['access_token']}"))


# --- downloads and the whole way through -------------------------------------------------------------

def test_each_participants_file_downloads_as_its_role(tmp_path, db_url, app_factory, clock, fake):
    cos = fake()
    agent_file = make_audio(tmp_path / "agent", "mp3", 8000, 1, 2.0)
    customer_file = make_audio(tmp_path / "customer", "mp3", 8000, 1, 2.0)
    agent_url = cos.serve_file("/def/month12/agent.mp3", agent_file) + "?sign=q-sign-algorithm%3Dsha1"
    customer_url = cos.serve_file("/def/month12/customer.mp3", customer_file)
    svc, client = app_factory(config(tmp_path, db_url), clock=clock, role=None)
    ok(post(client, record(url=agent_url)))
    ok(post(client, record("13800138000", "1608130651", url=customer_url)))

    (call,) = calls(svc)
    downloads = SRC.downloads(stored_event(call), svc.config.source("tccc"), requests.Session())
    assert [(d.url, d.role, d.credential) for d in downloads] == [(agent_url, "agent", None),
                                                                  (customer_url, "customer", None)]
    for d, file in zip(downloads, (agent_file, customer_file)):
        got = fetch(d.url, tmp_path / f"{d.role}.mp3", svc.config.fetch, credential=d.credential)
        assert got.path.read_bytes() == file.read_bytes()
    assert all("Authorization" not in r.headers for r in cos.requests)  # COS URLs need nothing


def test_a_custom_bucket_behind_basic_auth_gets_the_configured_credential(tmp_path, sqlite_url, app_factory, clock,
                                                                         fake):
    bucket = fake()
    audio = make_audio(tmp_path / "c", "wav_pcm", 8000, 1, 1.0)
    bucket.routes["/tccc/1608130650.wav"] = lambda rec: (
        Reply(200, audio.read_bytes(), {"Content-Type": "audio/wav"}) if rec.headers.get("Authorization") == basic("cm", "pw")
        else Reply(401, b"no"))
    host = f"127.0.0.1:{bucket.port}"
    svc, client = app_factory(config(tmp_path, sqlite_url, prefer_custom_record_url=True,
                                     download=[{"host": host, "username": "cm", "password": "pw"}]),
                              clock=clock, role=None)
    ok(post(client, record(CustomRecordURL=f"{bucket.url}/tccc/1608130650.wav")))
    (d,) = SRC.downloads(stored_event(calls(svc)[0]), svc.config.source("tccc"), requests.Session())
    assert d.url == f"{bucket.url}/tccc/1608130650.wav" and d.credential is not None
    got = fetch(d.url, tmp_path / "got.wav", svc.config.fetch, credential=d.credential)
    assert got.path.read_bytes() == audio.read_bytes()


def test_two_pushes_are_analysed_as_agent_and_customer(tmp_path, model_dir, sqlite_url, app_factory, clock, fake):
    cos = fake()
    agent_url = cos.serve_file("/a.wav", make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0))
    customer_url = cos.serve_file("/c.mp3", make_audio(tmp_path / "c", "mp3", 8000, 1, 4.0))
    svc, client = app_factory(config(tmp_path, sqlite_url, model_dir), model=True, clock=clock, role=None)
    ok(post(client, record(url=agent_url)))
    ok(post(client, record("008613800138000", "1608130651", url=customer_url)))
    job_id = svc.jobs.claim("worker")
    assert job_id is not None
    svc.pipeline().run_job(job_id, "worker")
    (call,) = calls(svc)
    assert call.status == "analyzed", call.error
    assert set(call.summary["roles"]) == {"agent", "customer"}  # one file each, one track each


# --- reconcile: DescribeTelCdr through the SDK ---------------------------------------------------------

SECRET_ID, SECRET_KEY = "AKIDtcccsynctest", "tccc-sync-secret-key"


def tc3_problem(rec: Recorded) -> str | None:
    """What is wrong with ``rec``'s TC3-HMAC-SHA256 signature, recomputed as Tencent Cloud
    does (canonical request over content-type;host and the body's SHA-256, the SDK's own
    key derivation), or None."""
    h = {k.lower(): v for k, v in rec.headers.items()}
    auth = h.get("authorization", "")
    prefix = "TC3-HMAC-SHA256 Credential="
    if not auth.startswith(prefix):
        return "no TC3-HMAC-SHA256 Authorization"
    try:
        cred, signed, sig = (p.strip() for p in auth[len(prefix):].split(","))
        secret_id, date, service, term = cred.split("/")
    except ValueError:
        return "malformed Authorization"
    if (secret_id, service, term, signed) != (SECRET_ID, "ccc", "tc3_request", "SignedHeaders=content-type;host"):
        return f"wrong credential scope {cred!r} / {signed!r}"
    stamp = int(h["x-tc-timestamp"])
    if abs(time.time() - stamp) > 300 or date != datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d"):
        return "stale timestamp or wrong date"
    canonical = "\n".join([rec.method, "/", "", f"content-type:{h['content-type']}\nhost:{h['host']}\n",
                           "content-type;host", hashlib.sha256(rec.body).hexdigest()])
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(stamp), f"{date}/ccc/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    if sig != "Signature=" + Sign.sign_tc3(SECRET_KEY, date, "ccc", to_sign):
        return "signature does not match"
    if (h.get("x-tc-action"), h.get("x-tc-version")) != ("DescribeTelCdr", "2020-02-10"):
        return "not DescribeTelCdr 2020-02-10"
    return None


def stand_in(records: list[dict], seen: list[dict]):
    """DescribeTelCdr as Tencent Cloud answers it: the records in the asked window, a page
    at a time; a request whose signature does not check out gets AuthFailure."""
    def answer(rec: Recorded) -> Reply:
        problem = tc3_problem(rec)
        if problem:
            return Reply(200, {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": problem},
                                            "RequestId": "r-1"}}, {"Content-Type": "application/json"})
        q = rec.json()
        seen.append(q)
        hits = [r for r in records if q["StartTimeStamp"] <= r["Time"] < q["EndTimeStamp"]]
        page = hits[q["PageNumber"] * q["PageSize"]:(q["PageNumber"] + 1) * q["PageSize"]]
        return Reply(200, {"Response": {"TotalCount": len(hits), "TelCdrList": page, "RequestId": "r-2"}},
                     {"Content-Type": "application/json"})
    return answer


def cdr(session: str, t: int, agent_id: str | None = "1608130650", customer_id: str | None = "1608130651") -> dict:
    return {"SessionId": session, "Time": t, "Caller": "008613800138000", "Callee": "008675500000000",
            "Direction": 0, "CallType": 2, "EndStatus": 1, "EndStatusString": "ok", "Duration": 30,
            "RecordId": customer_id or "", "RecordURL": REC.format(customer_id) if customer_id else "",
            "SeatUser": {"Mail": AGENT},
            "ServeParticipants": [{"Mail": AGENT, "Type": "staffSeat", "RecordId": agent_id,
                                   "RecordURL": REC.format(agent_id)}] if agent_id else []}


def sync_config(tmp_path, db_url, api, **kw):
    return config(tmp_path, db_url, secret_id=SECRET_ID, secret_key=SECRET_KEY, api_endpoint=api.url, **kw)


def test_sync_stores_missed_calls_and_adds_nothing_twice(tmp_path, db_url, app_factory, clock, fake):
    now = datetime(2026, 11, 24, 2, 0)
    t = int(now.replace(tzinfo=timezone.utc).timestamp())
    api, seen = fake(), []
    api.routes["/"] = stand_in([cdr(SESSION, t - 600), cdr("missed-session-2", t - 300, "2001", "2002"),
                                cdr("unanswered-3", t - 200, None, None)], seen)
    svc, client = app_factory(sync_config(tmp_path, db_url, api), clock=clock, role=None)
    ok(post(client, record()))  # the agent's part of SESSION came by push; the rest was missed

    report = sync_source(svc.config, svc.intake(), "tccc", 86400, now=now)
    assert (report.listed, report.new, report.already, report.ignored) == (3, 2, 0, {"no-recording": 1})
    assert seen == [{"SdkAppId": APP_ID, "StartTimeStamp": t - 86400, "EndTimeStamp": t, "PageSize": 100,
                     "PageNumber": 0}]
    first, second = calls(svc)
    assert [r["id"] for r in first.recordings] == ["1608130650", "1608130651"]  # the push's part, not doubled
    assert [(r["role"], r["id"]) for r in second.recordings] == [("customer", "2002"), ("agent", "2001")]
    assert (second.customer_phone, second.agent_id) == ("+8613800138000", AGENT)
    assert all(j.run_after <= clock.t for j in jobs(svc))  # both sides in: due now

    again = sync_source(svc.config, svc.intake(), "tccc", 86400, now=now)
    assert (again.new, again.already) == (0, 2) and len(calls(svc)) == 2


def test_sync_pages_and_splits_long_windows(tmp_path, sqlite_url, fake):
    until = datetime(2026, 11, 24)
    t = int(until.replace(tzinfo=timezone.utc).timestamp())
    api, seen = fake(), []
    api.routes["/"] = stand_in([cdr(f"s-{i}", t - 3600 - i) for i in range(101)] + [cdr("old", t - 95 * 86400)], seen)
    cfg = sync_config(tmp_path, sqlite_url, api).source("tccc")
    got = list(SRC.sync(cfg, requests.Session(), until - timedelta(days=100), until))
    assert sorted(r.events[0].call_id for r in got) == sorted([f"s-{i}" for i in range(101)] + ["old"])
    assert [(q["PageNumber"], q["EndTimeStamp"] - q["StartTimeStamp"] <= 89 * 86400) for q in seen] == \
        [(0, True), (0, True), (1, True)]


def test_sync_failures_say_what_without_the_key(tmp_path, sqlite_url, fake):
    api = fake()
    api.routes["/"] = stand_in([], [])
    cfg = sync_config(tmp_path, sqlite_url, api).source("tccc").model_copy(update={"secret_key": "not-the-key"})
    with pytest.raises(VendorApiError) as e:
        list(SRC.sync(cfg, requests.Session(), datetime(2026, 11, 23), datetime(2026, 11, 24)))
    assert "AuthFailure.SignatureFailure" in str(e.value) and "not-the-key" not in str(e.value)
    with pytest.raises(VendorApiError, match="secret_id, secret_key and sdk_app_id"):
        list(SRC.sync(cfg.model_copy(update={"secret_id": None, "secret_key": None}), requests.Session(),
                      datetime(2026, 11, 23), datetime(2026, 11, 24)))
