"""Zendesk Talk through the app (Flask's test client, SQLite and PostgreSQL): the webhook
signature and its replay window at the door, tickets that are not a call, the same
invocation and the same ticket twice; then the download: the ticket's comments from a local
stand-in of the Zendesk API that demands API-token auth ("{email}/token:{api_token}"), its
newest voice comment's recording (a real MP3 made with ffmpeg) fetched with the Zendesk
credentials, which never follow a redirect to the storage host; and one call end to end
through the worker."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import select

from connectors.sources.base import Inbound
from connectors.sources.zendesk import ZendeskApiError, ZendeskConfig, ZendeskSource
from plugin.audio.fetch import fetch
from plugin.store.tables import Call, Job
from tests.conftest import make_config
from tests.helpers import Recorded, Reply, free_port, make_audio
from tests.unit.test_src_zendesk import BODY, SECRET, zendesk_signature

SRC = ZendeskSource()
EMAIL, API_TOKEN = "callmood@acme.example.com", "6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"


def stamp(shift_s: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=shift_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def post(client, body=BODY, secret=SECRET, when=None, invocation="8350205582", signature=None):
    raw = json.dumps(body).encode()
    ts = when or stamp()
    return client.post("/webhooks/zendesk", data=raw, headers={
        "Content-Type": "application/json", "X-Zendesk-Account-Id": "123456",
        "X-Zendesk-Webhook-Id": "01F1KRFQ6BG29CNWFR60NK5FNY", "X-Zendesk-Webhook-Invocation-Id": invocation,
        "X-Zendesk-Webhook-Signature": zendesk_signature(raw, secret, ts) if signature is None else signature,
        "X-Zendesk-Webhook-Signature-Timestamp": ts})


def ignored(reason: str) -> float:
    return REGISTRY.get_sample_value("callmood_webhook_ignored_total", {"source": "zendesk", "reason": reason}) or 0.0


@pytest.fixture
def zendesk(tmp_path, db_url, clock, app_factory):
    """(services, client) of an app whose Zendesk source has its signing secret."""
    return app_factory(make_config(tmp_path, None, db_url, sources={"zendesk": {
        "signing_secret": SECRET, "subdomain": "acme"}}), clock=clock)


def test_bad_missing_stale_or_unconfigured_signatures_are_401_and_store_nothing(zendesk, tmp_path, sqlite_url,
                                                                               app_factory):
    svc, client = zendesk
    r = post(client, secret="another-secret")
    assert r.status_code == 401 and "does not match" in r.json["error"]
    r = post(client, signature="")
    assert r.status_code == 401 and "missing X-Zendesk-Webhook-Signature" in r.json["error"]
    r = post(client, when=stamp(-600))  # a captured request, replayed ten minutes later
    assert r.status_code == 401 and "outside the 300s tolerance" in r.json["error"]
    assert client.get("/api/calls").json["calls"] == []

    _, bare = app_factory(make_config(tmp_path / "bare", None, sqlite_url))  # no sources.zendesk at all
    r = post(bare)
    assert r.status_code == 401 and "sources.zendesk.signing_secret" in r.json["error"]
    assert bare.get("/api/calls").json["calls"] == []


def test_a_voicemail_ticket_is_2xx_counted_and_not_stored(zendesk):
    svc, client = zendesk
    before = ignored("via:voicemail")
    r = post(client, dict(BODY, via="Voicemail"), invocation="1")
    assert r.status_code == 202 and r.json["status"] == "ignored" and r.json["ignored"] == ["via:voicemail"]
    assert ignored("via:voicemail") == before + 1
    assert client.get("/api/calls").json["calls"] == []


def test_the_same_invocation_or_ticket_twice_is_one_call_on_its_ticket(zendesk):
    svc, client = zendesk
    first = post(client)
    assert first.status_code == 202 and first.json["status"] == "accepted"
    repeat = post(client)  # Zendesk retrying the same invocation: answered at once
    assert repeat.status_code == 202 and repeat.json["calls"] == []
    again = post(client, invocation="8350205999")  # the trigger fired again for the same ticket
    assert again.status_code == 202 and again.json == {**first.json, "status": "duplicate"}
    with svc.sessions() as s:
        [call] = s.execute(select(Call)).scalars().all()
        assert (call.source, call.external_id, call.ticket_id) == ("zendesk", "35436", "35436")
        assert (call.customer_id, call.agent_id, call.customer_phone, call.queue) == (
            "crm-000123", "1900000123", "+14155550132", "Tier-1-Support")
        assert call.recording_url == "https://acme.zendesk.com/api/v2/tickets/35436/comments.json"
        assert len(s.execute(select(Job).where(Job.call_id == call.id)).scalars().all()) == 1
    assert client.get(f"/api/calls/{first.json['call_id']}").json["ticket_id"] == "35436"


def test_a_malformed_body_is_400_naming_the_field(zendesk):
    svc, client = zendesk
    r = post(client, dict(BODY, ticket_id="{{ticket.id}}"))
    assert r.status_code == 400 and r.json["field"] == "ticket_id"
    assert client.get("/api/calls").json["calls"] == []


# --- downloads: the ticket's voice comment through the Zendesk API ---------------------------

AUTH = "Basic " + base64.b64encode(f"{EMAIL}/token:{API_TOKEN}".encode()).decode()
REC_PATH = "/api/v2/channels/voice/calls/CA9f3c/twilio/call/recording"


def comment(cid, kind, created, recording=None):
    c = {"id": cid, "type": kind, "author_id": 1900000123, "public": False, "created_at": created,
         "body": "Inbound call from +1 (415) 555-0132", "attachments": [], "via": {"channel": "voice"}}
    if kind == "VoiceComment":
        c["data"] = {"from": "+14155550132", "to": "+14155550100", "recording_url": recording,
                     "call_duration": 105, "answered_by_id": 1900000123, "location": "San Francisco, CA",
                     "started_at": created, "transcription_text": None}
    return c


def zendesk_api(server, recording_url: str, pages=2):
    """GET /api/v2/tickets/35436/comments.json as Zendesk answers it (offset pages), for the
    agent's API token only: an older voice comment, a text comment, then the newest call."""
    def answer(rec: Recorded) -> Reply:
        if rec.headers.get("Authorization") != AUTH:
            return Reply(401, {"error": "Couldn't authenticate you"})
        first = [comment(3, "VoiceComment", "2026-11-24T02:00:00Z", server.url + "/old-call.mp3"),
                 comment(2, "Comment", "2026-11-24T02:01:00Z")]
        last = [comment(4, "VoiceComment", "2026-11-24T02:05:00Z", recording_url)]
        if pages == 1:
            return Reply(200, {"comments": first + last, "next_page": None, "previous_page": None, "count": 3})
        page2 = rec.path.endswith("?page=2")
        nxt = None if page2 else f"{server.url}/api/v2/tickets/35436/comments.json?page=2"
        return Reply(200, {"comments": last if page2 else first, "next_page": nxt, "previous_page": None,
                           "count": 3})
    return answer


def needs_auth(body: bytes):
    def answer(rec: Recorded) -> Reply:
        if rec.headers.get("Authorization") != AUTH:
            return Reply(401, {"error": "Couldn't authenticate you"})
        return Reply(200, body, {"Content-Type": "audio/mpeg"})
    return answer


def api_cfg(server, **extra) -> ZendeskConfig:
    return ZendeskConfig(signing_secret=SECRET, api_base=server.url, email=EMAIL, api_token=API_TOKEN, **extra)


def stored_event(cfg: ZendeskConfig):
    req = Inbound("POST", "https://callmood.example.com/webhooks/zendesk", {}, {}, json.dumps(BODY).encode())
    return SRC.receive(req, cfg).events[0]


def test_the_newest_voice_comment_is_downloaded_with_the_zendesk_credentials(tmp_path, fake):
    server = fake()
    mp3 = make_audio(tmp_path / "rec", "mp3", seconds=2.0)
    server.routes["/api/v2/tickets/35436/comments.json"] = zendesk_api(server, server.url + REC_PATH)
    server.routes[REC_PATH] = needs_auth(mp3.read_bytes())
    cfg = api_cfg(server)

    with requests.Session() as http:
        [d] = SRC.downloads(stored_event(cfg), cfg, http)
    assert d.url == server.url + REC_PATH and d.role is None
    assert (d.credential.host, d.credential.port) == ("127.0.0.1", server.port)  # bound to the Zendesk host
    got = fetch(d.url, tmp_path / "out.mp3", make_config(tmp_path, None, "sqlite://").fetch, credential=d.credential)
    assert got.path.read_bytes() == mp3.read_bytes()
    assert [r.path for r in server.requests] == ["/api/v2/tickets/35436/comments.json",
                                                 "/api/v2/tickets/35436/comments.json?page=2", REC_PATH]
    assert all(r.headers["Authorization"] == AUTH for r in server.requests)


def test_the_credentials_never_follow_a_redirect_to_the_storage_host(tmp_path, fake):
    server, storage = fake(), fake()
    mp3 = make_audio(tmp_path / "rec", "mp3", seconds=1.0)
    stored = storage.serve_file("/voice/CA9f3c.mp3", mp3)
    server.routes["/api/v2/tickets/35436/comments.json"] = zendesk_api(server, server.url + REC_PATH, pages=1)
    server.routes[REC_PATH] = Reply(302, b"", {"Location": stored})
    cfg = api_cfg(server)
    [d] = SRC.downloads(stored_event(cfg), cfg, requests.Session())
    got = fetch(d.url, tmp_path / "out.mp3", make_config(tmp_path, None, "sqlite://").fetch, credential=d.credential)
    assert got.path.read_bytes() == mp3.read_bytes()
    assert server.requests[-1].headers["Authorization"] == AUTH
    assert "Authorization" not in storage.requests[0].headers


def test_a_next_page_on_another_host_is_not_followed(fake):
    server, elsewhere = fake(), fake()
    elsewhere.default = Reply(200, {"comments": [comment(9, "VoiceComment", "2030-01-01T00:00:00Z",
                                                         "https://evil.example.com/r.mp3")]})

    def answer(rec: Recorded) -> Reply:
        return Reply(200, {"comments": [comment(4, "VoiceComment", "2026-11-24T02:05:00Z", server.url + REC_PATH)],
                           "next_page": elsewhere.url + "/api/v2/tickets/35436/comments.json?page=2"})
    server.routes["/api/v2/tickets/35436/comments.json"] = answer
    cfg = api_cfg(server)
    [d] = SRC.downloads(stored_event(cfg), cfg, requests.Session())
    assert d.url == server.url + REC_PATH and elsewhere.requests == []  # the API credentials stayed home


@pytest.mark.parametrize("reply,retryable,match", [
    (Reply(401, {"error": "Couldn't authenticate you"}), False, "refused the credentials"),
    (Reply(404, {"error": "RecordNotFound"}), False, "no such ticket"),
    (Reply(429, {"error": "TooManyRequests"}), True, "HTTP 429"),
    (Reply(500, "oops"), True, "HTTP 500"),
    (Reply(200, {"comments": [comment(2, "Comment", "2026-11-24T02:01:00Z")], "next_page": None}), True,
     "no voice comment"),  # the trigger came before Talk added the call: later it is there
    (Reply(200, {"comments": [comment(4, "VoiceComment", "2026-11-24T02:05:00Z", "ftp://x/r.mp3")]}), False,
     "unusable"),
    (Reply(200, b"<html>"), True, "not JSON"),
])
def test_api_errors_say_whether_trying_later_helps(fake, reply, retryable, match):
    server = fake()
    server.routes["/api/v2/tickets/35436/comments.json"] = reply
    cfg = api_cfg(server)
    with pytest.raises(ZendeskApiError, match=match) as err:
        SRC.downloads(stored_event(cfg), cfg, requests.Session())
    assert err.value.retryable is retryable
    assert API_TOKEN not in str(err.value)


def test_missing_api_settings_or_an_unreachable_api_are_named():
    cfg = ZendeskConfig(signing_secret=SECRET, subdomain="acme")
    named = r"sources\.zendesk\.subdomain \(or api_base\), email and api_token"
    with pytest.raises(ZendeskApiError, match=named) as err:
        SRC.downloads(stored_event(cfg), cfg, requests.Session())
    assert not err.value.retryable
    cfg = ZendeskConfig(api_base=f"http://127.0.0.1:{free_port()}", email=EMAIL, api_token=API_TOKEN)
    with pytest.raises(ZendeskApiError, match="unreachable") as err:
        SRC.downloads(stored_event(cfg), cfg, requests.Session())
    assert err.value.retryable


def test_a_call_end_to_end_through_the_worker(tmp_path, sqlite_url, clock, app_factory, fake):
    server = fake()
    server.routes["/api/v2/tickets/35436/comments.json"] = zendesk_api(server, server.url + REC_PATH)
    server.routes[REC_PATH] = needs_auth(make_audio(tmp_path / "rec", "mp3", seconds=4.0).read_bytes())
    cfg = make_config(tmp_path, None, sqlite_url, sources={"zendesk": {
        "signing_secret": SECRET, "api_base": server.url, "email": EMAIL, "api_token": API_TOKEN}})
    svc, client = app_factory(cfg, model=True, clock=clock)

    r = post(client)
    assert r.status_code == 202, r.text
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    call = client.get(f"/api/calls/{r.json['call_id']}").json
    assert call["status"] == "analyzed", call.get("error")
    assert call["ticket_id"] == "35436"  # what the write-back to the ticket uses
    assert {s["role"] for s in call["segments"]} == {"mixed"}
    assert server.requests[-1].path == REC_PATH and server.requests[-1].headers["Authorization"] == AUTH
