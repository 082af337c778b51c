"""Aircall through the app (Flask's test client, SQLite and PostgreSQL): the token at the
door, events that are not a finished recording, the same call twice; then the download: a
fresh recording URL asked from a local stand-in of the Aircall API that demands Basic auth
(api_id:api_token), and the recording itself (a real MP3 made with ffmpeg); and one call end
to end through the worker."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import select

from connectors.sources.aircall import AircallApiError, AircallConfig, AircallSource
from connectors.sources.base import Inbound
from plugin.audio.fetch import fetch
from plugin.store.tables import Call, Job
from tests.conftest import make_config
from tests.helpers import Recorded, Reply, free_port, make_audio
from tests.unit.test_src_aircall import TOKEN, payload

SRC = AircallSource()
API_ID, API_TOKEN = "b39c5a3c0ec7b6ca0b", "f1d2e3c4b5a6978812345"


def post(client, body):
    return client.post("/webhooks/aircall", data=json.dumps(body), headers={"Content-Type": "application/json"})


def ignored(reason: str) -> float:
    return REGISTRY.get_sample_value("callmood_webhook_ignored_total", {"source": "aircall", "reason": reason}) or 0.0


@pytest.fixture
def aircall(tmp_path, db_url, clock, app_factory):
    """(services, client) of an app whose Aircall source has its token."""
    return app_factory(make_config(tmp_path, None, db_url, sources={"aircall": {"token": TOKEN}}), clock=clock)


def test_a_wrong_missing_or_unconfigured_token_is_401_and_stores_nothing(aircall, tmp_path, sqlite_url, app_factory):
    svc, client = aircall
    r = post(client, payload(token="not-the-token"))
    assert r.status_code == 401 and "does not match" in r.json["error"]
    assert TOKEN not in r.text and "not-the-token" not in r.text
    r = post(client, {k: v for k, v in payload().items() if k != "token"})
    assert r.status_code == 401 and "no token" in r.json["error"]
    r = client.post("/webhooks/aircall", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    assert client.get("/api/calls").json["calls"] == []

    _, bare = app_factory(make_config(tmp_path / "bare", None, sqlite_url))  # no sources.aircall at all
    r = post(bare, payload())
    assert r.status_code == 401 and "sources.aircall.token" in r.json["error"]
    assert bare.get("/api/calls").json["calls"] == []


def test_what_is_not_a_finished_recording_is_200_counted_and_not_stored(aircall):
    svc, client = aircall
    hungup, no_rec = ignored("event:call.hungup"), ignored("no_recording")
    r = post(client, payload("call.hungup"))
    assert r.status_code == 200 and r.json["status"] == "ignored" and r.json["ignored"] == ["event:call.hungup"]
    r = post(client, payload(recording=None, voicemail="https://aircall.example.com/vm/1.mp3"))
    assert r.status_code == 200 and r.json["ignored"] == ["no_recording"]
    assert (ignored("event:call.hungup"), ignored("no_recording")) == (hungup + 1, no_rec + 1)
    assert client.get("/api/calls").json["calls"] == []


def test_call_ended_twice_is_one_call_stored_without_the_token(aircall):
    svc, client = aircall
    first = post(client, payload())
    assert first.status_code == 200 and first.json["status"] == "accepted"
    again = post(client, payload())  # Aircall delivers at least once
    assert again.status_code == 200 and again.json == {**first.json, "status": "duplicate"}
    with svc.sessions() as s:
        [call] = s.execute(select(Call)).scalars().all()
        assert (call.source, call.external_id, call.agent_id, call.customer_phone, call.queue) == (
            "aircall", "812345", "456", "+33612345678", "Support-Line")
        assert call.customer_id is None and call.channel_roles is None
        assert "token" not in call.event and TOKEN not in json.dumps(call.event)
        assert len(s.execute(select(Job).where(Job.call_id == call.id)).scalars().all()) == 1
    shown = client.get(f"/api/calls/{first.json['call_id']}").json
    assert shown["agent_id"] == "456" and shown["queue"] == "Support-Line"


def test_a_malformed_call_is_400_naming_the_field(aircall):
    svc, client = aircall
    r = post(client, payload(id="12/../3"))
    assert r.status_code == 400 and r.json["field"] == "data.id"
    r = post(client, payload(recording="file:///etc/passwd"))
    assert r.status_code == 400 and r.json["field"] == "data.recording"
    assert client.get("/api/calls").json["calls"] == []


# --- downloads: a fresh recording URL from the Aircall API --------------------------------

def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def aircall_api(server, recording_path: str):
    """GET /v1/calls/{id} as Aircall answers it, for Basic api_id:api_token only."""
    def answer(rec: Recorded) -> Reply:
        if rec.headers.get("Authorization") != basic(API_ID, API_TOKEN):
            return Reply(401, {"error": "Unauthorized", "troubleshoot": "Check your API key"})
        return Reply(200, {"call": {"id": 812345, "direction": "inbound", "status": "done",
                                    "recording": f"{server.url}{recording_path}?X-Amz-Expires=600&X-Amz-Signature=f00d",
                                    "asset": "https://assets.aircall.io/calls/812345/recording"}})
    return answer


def stored_event(cfg: AircallConfig, recording: str):
    req = Inbound("POST", "https://callmood.example.com/webhooks/aircall", {}, {},
                  json.dumps(payload(recording=recording)).encode())
    return SRC.receive(req, cfg).events[0]


def test_the_recording_url_is_asked_afresh_and_the_recording_downloaded(tmp_path, fake):
    server = fake()
    mp3 = make_audio(tmp_path / "rec", "mp3", seconds=2.0)
    server.serve_file("/rec/812345.mp3", mp3)
    server.routes["/v1/calls/812345"] = aircall_api(server, "/rec/812345.mp3")
    server.routes["/rec/expired.mp3"] = Reply(403, "<Error><Code>AccessDenied</Code>"
                                                   "<Message>Request has expired</Message></Error>")
    cfg = AircallConfig(token=TOKEN, api_id=API_ID, api_token=API_TOKEN, api_base=server.url)
    fetch_cfg = make_config(tmp_path, None, "sqlite://").fetch

    with requests.Session() as http:
        [d] = SRC.downloads(stored_event(cfg, server.url + "/rec/expired.mp3"), cfg, http)
    assert d.url.startswith(server.url + "/rec/812345.mp3?") and d.credential is None and d.role is None
    got = fetch(d.url, tmp_path / "out.mp3", fetch_cfg, credential=d.credential)
    assert got.path.read_bytes() == mp3.read_bytes()

    api, rec = server.requests[0], server.requests[-1]
    assert api.path == "/v1/calls/812345" and api.headers["Authorization"] == basic(API_ID, API_TOKEN)
    assert "Authorization" not in rec.headers  # the signed URL needs no credentials: none are sent


def test_without_api_credentials_the_pushed_url_is_used(tmp_path, fake):
    server = fake()
    mp3 = make_audio(tmp_path / "rec", "mp3", seconds=1.0)
    url = server.serve_file("/rec/812345.mp3", mp3)
    cfg = AircallConfig(token=TOKEN)
    [d] = SRC.downloads(stored_event(cfg, url), cfg, requests.Session())
    assert d.url == url and server.requests == []  # no API call


@pytest.mark.parametrize("reply,retryable,match", [
    (Reply(401, {"error": "Unauthorized"}), False, "refused the credentials"),
    (Reply(404, {"error": "Not found"}), False, "no call 812345"),
    (Reply(429, {"error": "Too many requests"}), True, "HTTP 429"),
    (Reply(503, "busy"), True, "HTTP 503"),
    (Reply(200, {"call": {"id": 812345, "recording": None}}), False, "no recording"),
    (Reply(200, {"call": {"id": 812345, "recording": "ftp://x.example.com/r.mp3"}}), False, "unusable"),
    (Reply(200, b"<html>"), True, "not JSON"),
])
def test_api_errors_say_whether_trying_later_helps(fake, reply, retryable, match):
    server = fake()
    server.routes["/v1/calls/812345"] = reply
    cfg = AircallConfig(token=TOKEN, api_id=API_ID, api_token=API_TOKEN, api_base=server.url)
    with pytest.raises(AircallApiError, match=match) as err:
        SRC.downloads(stored_event(cfg, server.url + "/r.mp3"), cfg, requests.Session())
    assert err.value.retryable is retryable
    assert API_TOKEN not in str(err.value)


def test_an_unreachable_api_is_retried_later():
    cfg = AircallConfig(token=TOKEN, api_id=API_ID, api_token=API_TOKEN, api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(AircallApiError, match="unreachable") as err:
        SRC.downloads(stored_event(cfg, "https://x.example.com/r.mp3"), cfg, requests.Session())
    assert err.value.retryable


def test_a_call_end_to_end_through_the_worker(tmp_path, sqlite_url, clock, app_factory, fake):
    """Pushed with a URL that has expired by the time the worker runs: the worker asks the API."""
    server = fake()
    server.serve_file("/rec/812345.mp3", make_audio(tmp_path / "rec", "mp3", seconds=4.0))
    server.routes["/v1/calls/812345"] = aircall_api(server, "/rec/812345.mp3")
    server.routes["/rec/expired.mp3"] = Reply(403, "expired")
    cfg = make_config(tmp_path, None, sqlite_url, sources={"aircall": {
        "token": TOKEN, "api_id": API_ID, "api_token": API_TOKEN, "api_base": server.url}})
    svc, client = app_factory(cfg, model=True, clock=clock)

    r = post(client, payload(recording=server.url + "/rec/expired.mp3"))
    assert r.status_code == 200, r.text
    job_id = svc.jobs.claim("worker")
    svc.pipeline().run_job(job_id, "worker")
    call = client.get(f"/api/calls/{r.json['call_id']}").json
    assert call["status"] == "analyzed", call.get("error")
    assert {s["role"] for s in call["segments"]} == {"mixed"}  # one mixed recording
    assert [q.path for q in server.requests] == ["/v1/calls/812345",
                                                 "/rec/812345.mp3?X-Amz-Expires=600&X-Amz-Signature=f00d"]
