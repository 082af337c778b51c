"""Vendors end to end over real sockets: the running service (web, worker, outbox) gets a
Twilio recording callback and TCCC's per-participant pushes, downloads from stand-ins that
demand each vendor's auth, finds the customer by phone number, and tags the CRM record."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import requests
from twilio.request_validator import RequestValidator

from tests.conftest import make_config
from tests.helpers import Reply, make_audio, wait_until
from tests.integration import test_src_twilio as tw

ACCOUNT = "AC" + "b2" * 16
TOKEN = "fedcba9876543210fedcba9876543210"
SID = "RE" + "d4" * 16


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_twilio_dual_channel_call_reaches_the_crm_under_the_customer_found_by_phone(
        tmp_path, model_dir, db_url, service_factory, fake, crm, wecom):
    twilio = fake()
    wav = make_audio(tmp_path / "dual", "wav_pcm", 8000, 2, 7.0).read_bytes()
    media = f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{SID}"
    twilio.routes[media + ".wav"] = lambda rec: (Reply(200, wav) if rec.headers.get("Authorization")
                                                 == basic(ACCOUNT, TOKEN) else Reply(401, b"{}"))
    book = tmp_path / "customers.csv"
    book.write_text("phone,customer_id\n138 1111 2222,cust-by-phone\n", encoding="utf-8")
    cfg = make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom,
                      sources={"twilio": {"account_sid": ACCOUNT, "auth_token": TOKEN, "api_url": twilio.url}},
                      identity={"lookup": {"type": "csv", "path": str(book)}})
    svc = service_factory(cfg)

    url = f"{svc.url}/webhooks/twilio?customer_phone=%2B8613811112222&agent_id=agent-7"
    form = {"AccountSid": ACCOUNT, "CallSid": "CA" + "e5" * 16, "RecordingSid": SID,
            "RecordingUrl": twilio.url + media, "RecordingStatus": "completed", "RecordingDuration": "7",
            "RecordingChannels": "2", "RecordingSource": "DialVerb"}
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    r = requests.post(url, data=urlencode(form), timeout=10, headers={
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/xml"), r.text
    forged = requests.post(url, data=urlencode(form), timeout=10, headers={
        "X-Twilio-Signature": RequestValidator("another-token").compute_signature(url, form),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status_code == 401

    [listed] = svc.http.get(f"{svc.url}/api/calls").json()["calls"]
    call = svc.wait_call(listed["id"])
    assert call["status"] == "analyzed", call
    assert (call["source"], call["call_id"], call["identity"]) == ("twilio", SID, "matched")
    assert call["customer_id"] == "cust-by-phone"
    assert {(s["channel"], s["role"]) for s in call["segments"]} == {(0, "customer"), (1, "agent")}

    svc.wait_deliveries(call["id"])
    [tag] = crm.requests
    assert tag.path == "/api/customers/cust-by-phone/tags"
    assert TOKEN not in json.dumps(call)


def test_tccc_participants_pushed_apart_are_analysed_as_one_call(tmp_path, model_dir, db_url, service_factory,
                                                                fake):
    cos = fake()
    for who, seconds in (("agent", 5.0), ("customer", 7.0)):
        cos.serve_file(f"/rec/{who}.mp3", make_audio(tmp_path / who, "mp3", 8000, 1, seconds))
    cfg = make_config(tmp_path, model_dir, db_url, sources={"tccc": {
        "sdk_app_id": 1400000001, "username": "tccc-push", "password": "push-password-1",
        "assemble_wait_s": 3600}})
    svc = service_factory(cfg)

    def push(endpoint: str, record_id: str, who: str, uuid: str):
        body = {"SdkAppId": 1400000001, "RecordId": record_id, "SessionId": "sess-42", "Timestamp": 1764000000,
                "EndpointUser": endpoint, "RecordURL": f"{cos.url}/rec/{who}.mp3"}
        return requests.post(f"{svc.url}/webhooks/tccc?action=record", json=body, timeout=10, headers={
            "Authorization": basic("tccc-push", "push-password-1"), "X-TCCC-PUSH-UUID": uuid})

    r = push("agent01@example.com", "r-1", "agent", "u-1")
    assert r.status_code == 200 and r.json() == {"ErrCode": 0, "ErrMsg": "ok"}
    [listed] = svc.http.get(f"{svc.url}/api/calls").json()["calls"]
    assert svc.call(listed["id"])["status"] == "received"  # waits for the customer's file
    assert push("agent01@example.com", "r-1", "agent", "u-1").json()["ErrCode"] == 0  # TCCC's retry
    assert push("13800138000", "r-2", "customer", "u-2").json()["ErrCode"] == 0

    call = svc.wait_call(listed["id"])
    assert call["status"] == "analyzed", call
    assert [(p["role"], p["id"]) for p in call["recordings"]] == [("agent", "r-1"), ("customer", "r-2")]
    assert (call["agent_id"], call["customer_phone"]) == ("agent01@example.com", "+8613800138000")
    assert {(s["channel"], s["role"]) for s in call["segments"]} == {(0, "agent"), (1, "customer")}
    assert call["summary"]["files"] == 2
    assert len([q for q in cos.requests if q.path == "/rec/agent.mp3"]) == 1  # the retried push added nothing


def test_a_scheduled_sync_finds_a_recording_that_was_never_pushed(tmp_path, model_dir, db_url, service_factory, fake):
    api = tw.TwilioApi(fake())
    sid = tw.rec_sid(77)
    api.serve(sid, make_audio(tmp_path / "missed", "wav_pcm", 8000, 2, 4.0).read_bytes())
    ended = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)  # a call of 30 s, over
    api.list_recordings([tw.listed(sid, created=ended)])
    cfg = make_config(tmp_path, model_dir, db_url, sources={"twilio": {
        "account_sid": tw.ACCOUNT, "auth_token": tw.TOKEN, "api_url": api.url, "sync_interval_s": 0.5}})
    svc = service_factory(cfg)
    listed_calls = wait_until(lambda: svc.http.get(f"{svc.url}/api/calls").json()["calls"], timeout=30)
    call = svc.wait_call(listed_calls[0]["id"])
    assert (call["source"], call["call_id"], call["status"]) == ("twilio", sid, "analyzed"), call
