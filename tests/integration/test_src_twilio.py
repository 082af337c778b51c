"""The Twilio source against real things: recording status callbacks through the app
(signed with the twilio library's RequestValidator, not our code), the recording fetched
from a local stand-in of Twilio's API that demands HTTP Basic auth and serves a real WAV
made with ffmpeg, a whole call analysed by the worker, and `sync` through the official
client against a stand-in of the Recordings list."""

from __future__ import annotations

import base64
import email.utils
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from connectors.sources import SOURCES
from connectors.sources.twilio import TwilioApiError
from plugin.audio.fetch import FetchError, fetch
from plugin.core import metrics
from plugin.flow.pipeline import stored_event
from plugin.flow.sync import sync_source
from plugin.store.tables import Call, Job
from tests.conftest import T0, make_config
from tests.helpers import Recorded, Reply, make_audio

SRC = SOURCES["twilio"]
TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC" + "a1" * 16
CALL = "CA" + "c3" * 16
LOCAL = "http://localhost/webhooks/twilio"  # the URL Flask's test client calls


def rec_sid(n: int) -> str:
    return f"RE{n:032x}"


def media_path(sid: str) -> str:
    return f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}"


def basic(user: str = ACCOUNT, password: str = TOKEN) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TwilioApi:
    """A stand-in of api.twilio.com on 127.0.0.1: recordings' media and the Recordings
    list, each answered only with the account's Basic auth (else 401, as Twilio does)."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.media: dict[str, bytes] = {}
        self.pages: dict[str, dict] = {}  # PageToken ("" = the first page) -> the page's JSON

    def authorized(self, rec: Recorded) -> bool:
        return {k.lower(): v for k, v in rec.headers.items()}.get("authorization") == basic()

    def serve(self, sid: str, audio: bytes) -> None:
        self.media[sid] = audio
        self.server.routes[media_path(sid) + ".wav"] = self.media_reply

    def media_reply(self, rec: Recorded) -> Reply:
        if not self.authorized(rec):
            return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        sid = urlsplit(rec.path).path.rsplit("/", 1)[1].removesuffix(".wav")
        return Reply(200, self.media[sid], {"Content-Type": "audio/x-wav"})

    def list_recordings(self, *pages: list[dict]) -> None:
        base = f"/2010-04-01/Accounts/{ACCOUNT}/Recordings.json"
        for i, records in enumerate(pages):
            token = f"PA{i}" if i else ""
            nxt = f"{base}?PageSize=100&PageToken=PA{i + 1}" if i + 1 < len(pages) else None
            self.pages[token] = {"recordings": records, "next_page_uri": nxt, "page": i, "page_size": 100,
                                 "start": 0, "end": len(records), "uri": base, "first_page_uri": base,
                                 "previous_page_uri": None}
        self.server.routes[base] = self.list_reply

    def list_reply(self, rec: Recorded) -> Reply:
        if not self.authorized(rec):
            return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        token = parse_qs(urlsplit(rec.path).query).get("PageToken", [""])[0]
        return Reply(200, self.pages[token], {"Content-Type": "application/json"})


@pytest.fixture
def api(fake) -> TwilioApi:
    return TwilioApi(fake())


def twilio_config(tmp_path, db_url, api: TwilioApi, model_dir=None, **twilio):
    section = {"account_sid": ACCOUNT, "auth_token": TOKEN, "api_url": api.url, **twilio}
    return make_config(tmp_path, model_dir, db_url, sources={"twilio": section})


def fields(api: TwilioApi, sid: str, **over) -> dict[str, str]:
    """Twilio's recording status callback, in its documented field names."""
    f = {"AccountSid": ACCOUNT, "CallSid": CALL, "RecordingSid": sid, "RecordingUrl": api.url + media_path(sid),
         "RecordingStatus": "completed", "RecordingDuration": "4", "RecordingChannels": "2",
         "RecordingSource": "DialVerb",
         "RecordingStartTime": email.utils.format_datetime(T0.replace(tzinfo=timezone.utc)),
         "RecordingTrack": "both", "ErrorCode": "0"}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


def post(client, f: dict, url: str = LOCAL, token: str = TOKEN, signature: str | None = None):
    """POST the callback as Twilio does: form-encoded, X-Twilio-Signature over ``url`` + fields."""
    sig = RequestValidator(token).compute_signature(url, f) if signature is None else signature
    path = "/webhooks/twilio" + (f"?{urlsplit(url).query}" if urlsplit(url).query else "")
    return client.post(path, data=urlencode(f), content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": sig})


def calls(svc) -> list[Call]:
    with svc.sessions() as s:
        return s.execute(select(Call)).scalars().all()


def is_twiml(r) -> bool:
    return (r.status_code == 200 and r.content_type.startswith("text/xml")
            and r.data == b'<?xml version="1.0" encoding="UTF-8"?><Response/>')


def test_bad_or_missing_signatures_are_refused_and_store_nothing(tmp_path, db_url, app_factory, api):
    svc, client = app_factory(twilio_config(tmp_path, db_url, api))
    good = fields(api, rec_sid(1))
    r = post(client, good, token="not-the-token")
    assert r.status_code == 401 and "X-Twilio-Signature does not match" in r.json["error"]
    r = post(client, good, signature="")
    assert r.status_code == 401 and "missing X-Twilio-Signature" in r.json["error"]
    # Signed for another URL than the one called: Twilio signs the URL it called.
    elsewhere = RequestValidator(TOKEN).compute_signature("https://elsewhere/webhooks/twilio", good)
    r = post(client, good, signature=elsewhere)
    assert r.status_code == 401
    r = post(client, fields(api, rec_sid(1), AccountSid="AC" + "ff" * 16))
    assert r.status_code == 401 and "sources.twilio.account_sid" in r.json["error"]
    assert calls(svc) == [] and client.get("/api/calls").json["calls"] == []


def test_an_unconfigured_twilio_source_refuses_naming_the_key(tmp_path, db_url, app_factory):
    svc, client = app_factory(make_config(tmp_path, None, db_url))
    r = post(client, {"AccountSid": ACCOUNT, "RecordingStatus": "completed"})
    assert r.status_code == 401 and "sources.twilio.auth_token" in r.json["error"]
    assert calls(svc) == []


def test_unfinished_recordings_are_answered_counted_and_not_stored(tmp_path, db_url, app_factory, api):
    svc, client = app_factory(twilio_config(tmp_path, db_url, api))
    counter = metrics.WEBHOOK_IGNORED.labels(source="twilio", reason="status:in-progress")
    before = counter._value.get()
    r = post(client, fields(api, rec_sid(2), RecordingStatus="in-progress", RecordingUrl=None, RecordingDuration="-1"))
    assert is_twiml(r)
    assert counter._value.get() == before + 1
    for status in ("absent", "failed"):
        assert is_twiml(post(client, fields(api, rec_sid(2), RecordingStatus=status)))
    assert calls(svc) == []


def test_a_completed_recording_is_one_call_however_often_it_comes(tmp_path, db_url, app_factory, api):
    svc, client = app_factory(twilio_config(tmp_path, db_url, api))
    sid = rec_sid(3)
    assert is_twiml(post(client, fields(api, sid)))
    assert is_twiml(post(client, fields(api, sid)))  # Twilio retried: the same call
    [call] = calls(svc)
    assert (call.source, call.external_id) == ("twilio", sid)
    assert call.recording_url == api.url + media_path(sid) + ".wav?RequestedChannels=2"
    assert call.channel_roles == {"0": "customer", "1": "agent"}
    with svc.sessions() as s:
        assert len(s.execute(select(Job).where(Job.call_id == call.id)).scalars().all()) == 1
    listed = client.get("/api/calls").json["calls"]
    assert [(c["source"], c["call_id"]) for c in listed] == [("twilio", sid)]


def test_behind_a_proxy_the_public_url_is_what_twilio_signed(tmp_path, db_url, app_factory, api):
    svc, client = app_factory(twilio_config(tmp_path, db_url, api, public_url="https://callmood.example.com"))
    sid = rec_sid(4)
    url = "https://callmood.example.com/webhooks/twilio?customer_phone=%2B14155550100&agent_id=agent-7"
    assert post(client, fields(api, sid), url=LOCAL).status_code == 401  # not the URL Twilio called
    assert is_twiml(post(client, fields(api, sid), url=url))
    [call] = calls(svc)
    assert (call.customer_phone, call.agent_id) == ("+14155550100", "agent-7")


def test_the_recording_downloads_with_basic_auth_only_from_the_api_host(tmp_path, db_url, app_factory, api, fake):
    wav = make_audio(tmp_path / "dual", "wav_pcm", 8000, 2, 3.0).read_bytes()
    sid = rec_sid(5)
    api.serve(sid, wav)
    cfg = twilio_config(tmp_path, db_url, api)
    svc, client = app_factory(cfg)
    assert is_twiml(post(client, fields(api, sid)))
    [call] = calls(svc)
    [d] = SRC.downloads(stored_event(call), cfg.sources.twilio, requests.Session())
    assert d.credential is not None and d.role is None
    fetch(d.url, tmp_path / "got.wav", cfg.fetch, credential=d.credential)
    assert (tmp_path / "got.wav").read_bytes() == wav
    assert api.server.requests[-1].headers.get("Authorization") == basic()
    with pytest.raises(FetchError):  # without Twilio's auth the stand-in refuses, as Twilio does
        fetch(d.url, tmp_path / "none.wav", cfg.fetch)

    # Twilio answers a media request with a redirect to its storage: the storage host never
    # gets the account's credentials.
    storage = fake()
    storage.routes["/bucket/r.wav"] = Reply(200, wav, {"Content-Type": "audio/x-wav"})
    api.server.routes[media_path(sid) + ".wav"] = Reply(302, b"", {"Location": storage.url + "/bucket/r.wav"})
    fetch(d.url, tmp_path / "redirected.wav", cfg.fetch, credential=d.credential)
    assert (tmp_path / "redirected.wav").read_bytes() == wav
    assert "Authorization" not in storage.requests[-1].headers


def test_a_dual_channel_call_is_analysed_with_customer_and_agent_tracks(tmp_path, model_dir, sqlite_url,
                                                                        app_factory, api, clock):
    sid = rec_sid(6)
    api.serve(sid, make_audio(tmp_path / "call", "wav_pcm", 16000, 2, 4.0).read_bytes())
    svc, client = app_factory(twilio_config(tmp_path, sqlite_url, api, model_dir), model=True, clock=clock)
    assert is_twiml(post(client, fields(api, sid)))
    [call] = calls(svc)
    job_id = svc.jobs.claim("worker")
    svc.pipeline().run_job(job_id, "worker")
    got = client.get(f"/api/calls/{call.id}").json
    assert got["status"] == "analyzed", got
    assert {s["role"] for s in got["segments"]} == {"customer", "agent"}
    assert api.server.requests[-1].headers.get("Authorization") == basic()


def listed(sid: str, status: str = "completed", created: datetime = T0, duration: str = "30",
           channels: int = 2) -> dict:
    """A recording as the Recordings list shows it (Twilio's JSON field names)."""
    stamp = email.utils.format_datetime(created.replace(tzinfo=timezone.utc))
    return {"account_sid": ACCOUNT, "api_version": "2010-04-01", "call_sid": CALL, "conference_sid": None,
            "date_created": stamp, "date_updated": stamp, "start_time": stamp, "duration": duration,
            "sid": sid, "price": "-0.0025", "price_unit": "USD", "status": status, "channels": channels,
            "source": "DialVerb", "error_code": None,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}.json", "media_url": None}


def test_sync_stores_missed_recordings_once_through_the_official_client(tmp_path, db_url, app_factory, api):
    cfg = twilio_config(tmp_path, db_url, api)
    svc, client = app_factory(cfg)
    pushed, missed, late = rec_sid(7), rec_sid(8), rec_sid(9)
    assert is_twiml(post(client, fields(api, pushed)))  # this one reached us
    api.list_recordings(
        [listed(pushed), listed(rec_sid(10), status="processing"), listed(missed, channels=1)],
        [listed(late, created=T0 + timedelta(hours=2)), listed(rec_sid(11), created=T0 - timedelta(days=3))])
    now = T0 + timedelta(hours=3)

    report = sync_source(cfg, svc.intake(), "twilio", 86400, now=now)
    assert (report.new, report.already, report.ignored) == (2, 1, {"status:other": 1})  # "processing"
    by_id = {c.external_id: c for c in calls(svc)}
    assert set(by_id) == {pushed, missed, late}
    assert by_id[missed].recording_url == api.url + media_path(missed) + ".wav"  # mono: as pushed
    assert by_id[missed].channel_roles is None
    assert by_id[late].channel_roles == {"0": "customer", "1": "agent"}
    first = [r for r in api.server.requests if r.path.startswith(f"/2010-04-01/Accounts/{ACCOUNT}/Recordings.json")][0]
    query = parse_qs(urlsplit(first.path).query)
    assert query["DateCreated>"] == [(now - timedelta(days=1, hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert first.headers.get("Authorization") == basic()

    again = sync_source(cfg, svc.intake(), "twilio", 86400, now=now)
    assert (again.new, again.already) == (0, 3)


def test_sync_says_what_failed_without_secrets_and_keeps_credentials_on_the_api_host(tmp_path, db_url,
                                                                                      app_factory, api, fake):
    cfg = twilio_config(tmp_path, db_url, api, auth_token="a-wrong-token-0000")
    svc, _ = app_factory(cfg)
    api.list_recordings([listed(rec_sid(12))])
    with pytest.raises(TwilioApiError, match="HTTP 401") as err:
        sync_source(cfg, svc.intake(), "twilio", 86400, now=T0)
    assert "a-wrong-token" not in str(err.value)

    # A page naming a next page on another host: that host is not sent the credentials.
    other = fake()
    cfg = twilio_config(tmp_path, db_url, api)
    svc, _ = app_factory(cfg)
    api.list_recordings([listed(rec_sid(13))])
    api.pages[""]["meta"] = {"key": "recordings", "next_page_url": other.url + "/steal"}
    with pytest.raises(TwilioApiError, match="another host"):
        sync_source(cfg, svc.intake(), "twilio", 86400, now=T0 + timedelta(hours=1))
    assert other.requests == []
