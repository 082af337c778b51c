"""The Twilio source at the door, on its own: requests built as Twilio sends its recording
status callback (the documented fields), signed with the twilio library's own
RequestValidator.compute_signature, never with our code."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import Headers

from connectors.sources.base import EventError, Inbound, Received, SignatureError
from connectors.sources.twilio import TwilioConfig, TwilioSource

SRC = TwilioSource()
TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC" + "a1" * 16
OTHER_ACCOUNT = "AC" + "ff" * 16
REC = "RE" + "b2" * 16
CALL = "CA" + "c3" * 16
URL = "https://callmood.example.com/webhooks/twilio"
API = "https://api.twilio.com"
CFG = TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN)


def fields(**over) -> dict[str, str]:
    """A completed dual-channel <Dial> recording's callback, in Twilio's field names."""
    f = {"AccountSid": ACCOUNT, "CallSid": CALL, "RecordingSid": REC,
         "RecordingUrl": f"{API}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{REC}",
         "RecordingStatus": "completed", "RecordingDuration": "42", "RecordingChannels": "2",
         "RecordingSource": "DialVerb", "RecordingStartTime": "Tue, 24 Nov 2026 02:02:00 +0000",
         "RecordingTrack": "both", "ErrorCode": "0"}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


def signed(f: dict, url: str = URL, token: str = TOKEN, signature: str | None = None,
           headers: dict | None = None, body: bytes | None = None) -> Inbound:
    """The request Twilio sends: the form body, X-Twilio-Signature over the URL and fields."""
    sig = RequestValidator(token).compute_signature(url, f) if signature is None else signature
    h = Headers({"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig,
                 **(headers or {})})
    return Inbound("POST", url, h, parse_qs(urlsplit(url).query), urlencode(f).encode() if body is None else body)


def signed_json(data: dict, url: str = URL, token: str = TOKEN, body: bytes | None = None) -> Inbound:
    """A JSON callback: Twilio puts the body's SHA-256 in the URL and signs the URL alone."""
    raw = json.dumps(data).encode()
    full = f"{url}?bodySHA256={hashlib.sha256(raw).hexdigest()}"
    sig = RequestValidator(token).compute_signature(full, {})
    return Inbound("POST", full, Headers({"Content-Type": "application/json", "X-Twilio-Signature": sig}),
                   parse_qs(urlsplit(full).query), raw if body is None else body)


def accepted(req: Inbound, cfg: TwilioConfig = CFG) -> Received:
    SRC.authenticate(req, cfg, 0)
    return SRC.receive(req, cfg)


def test_a_completed_dual_channel_recording_is_one_call_with_the_caller_on_channel_0():
    got = accepted(signed(fields()))
    assert got.ignored == [] and len(got.events) == 1
    ev = got.events[0]
    assert (ev.source, ev.call_id) == ("twilio", REC)  # one call per recording
    assert ev.recording_url == f"{API}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{REC}.wav?RequestedChannels=2"
    assert ev.channel_roles == {0: "customer", 1: "agent"}
    assert ev.customer_phone is None and ev.customer_id is None  # the callback carries no From/To
    assert ev.metadata["CallSid"] == CALL and ev.metadata["RecordingSource"] == "DialVerb"
    assert ev.raw == fields()


def test_mono_recordings_mp3_and_the_configured_channel_order():
    ev = accepted(signed(fields(RecordingChannels="1"))).events[0]
    assert ev.channel_roles is None and ev.recording_url.endswith(f"/Recordings/{REC}.wav")
    ev = accepted(signed(fields(RecordingChannels=None))).events[0]
    assert ev.channel_roles is None
    cfg = TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, media_format="mp3", channels={0: "agent", 1: "customer"})
    ev = accepted(signed(fields()), cfg).events[0]
    assert ev.channel_roles == {0: "agent", 1: "customer"}
    assert ev.recording_url.endswith(f"/Recordings/{REC}.mp3?RequestedChannels=2")


def test_the_signed_callback_url_query_fills_what_the_callback_lacks():
    url = URL + "?customer_phone=%2B14155550100&agent_id=agent-7&queue=billing&ticket_id=T-9&channels=agent,customer"
    ev = accepted(signed(fields(), url=url)).events[0]
    assert (ev.customer_phone, ev.agent_id, ev.queue, ev.ticket_id) == ("+14155550100", "agent-7", "billing", "T-9")
    assert ev.channel_roles == {0: "agent", 1: "customer"}
    ev = accepted(signed(fields(), url=URL + "?customer_phone=anonymous")).events[0]
    assert ev.customer_phone is None  # not a phone: no number, not an error
    with pytest.raises(EventError) as err:
        accepted(signed(fields(), url=URL + "?queue=%3Cscript%3E"))
    assert err.value.field == "queue" and "<script>" not in err.value.message.replace("'<'", "")
    with pytest.raises(EventError) as err:
        accepted(signed(fields(), url=URL + "?channels=agent,agent"))
    assert err.value.field == "channels"


@pytest.mark.parametrize("status,reason", [("in-progress", "status:in-progress"), ("absent", "status:absent"),
                                           ("failed", "status:failed"), ("deleted", "status:other"),
                                           ("<b>x</b>", "status:other")])
def test_unfinished_recordings_are_ignored_with_a_known_reason(status, reason):
    got = accepted(signed(fields(RecordingStatus=status, RecordingUrl=None)))
    assert got.events == [] and got.ignored == [reason]
    answer = SRC.answer(got, [])
    assert (answer.status, answer.content_type) == (200, "text/xml")
    assert answer.body.endswith(b"<Response/>")


def test_the_answer_is_an_empty_twiml_response():
    answer = SRC.answer(accepted(signed(fields())), [])
    assert answer.status == 200 and answer.content_type == "text/xml"
    assert answer.body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


@pytest.mark.parametrize("over,field", [
    ({"RecordingStatus": None}, "RecordingStatus"),
    ({"RecordingSid": "RE123"}, "RecordingSid"),
    ({"RecordingSid": None}, "RecordingSid"),
    ({"RecordingUrl": None}, "RecordingUrl"),
    ({"RecordingUrl": "ftp://api.twilio.com/x"}, "RecordingUrl"),
    ({"RecordingUrl": "https://api.twilio.com\\@evil.example/x"}, "RecordingUrl"),
    ({"RecordingUrl": "https://user:pw@api.twilio.com/x"}, "RecordingUrl"),
    ({"RecordingChannels": "3"}, "RecordingChannels"),
    ({"CallSid": "CA/../../etc"}, "CallSid"),
    ({"CallSid": "CA\x00"}, "body"),
])
def test_malformed_callbacks_name_the_field(over, field):
    with pytest.raises(EventError) as err:
        accepted(signed(fields(**over)))
    assert err.value.field == field


@pytest.mark.parametrize("make,match", [
    (lambda: signed(fields(), signature=""), "missing X-Twilio-Signature"),
    (lambda: signed(fields(), token="wrong-token"), "does not match"),
    # Twilio signed the public URL; the request arrived at another one (a proxy in between)
    (lambda: signed(fields(), url="http://localhost/webhooks/twilio",
                    signature=RequestValidator(TOKEN).compute_signature(URL, fields())), "public_url"),
    (lambda: signed(fields(), body=urlencode(fields(RecordingSid="RE" + "00" * 16)).encode()), "does not match"),
    (lambda: signed(fields(), body=urlencode(fields()).encode() + b"&Extra=1"), "does not match"),
    (lambda: signed(fields(AccountSid=OTHER_ACCOUNT)), "AccountSid is not sources.twilio.account_sid"),
    (lambda: signed(fields(AccountSid=None)), "AccountSid"),
    (lambda: signed(fields(), body=b"\xff\xfe"), "UTF-8"),
])
def test_bad_or_missing_signatures_and_other_accounts_are_refused(make, match):
    with pytest.raises(SignatureError, match=match):
        SRC.authenticate(make(), CFG, 0)


def test_repeated_fields_are_all_signed():
    body = urlencode(list(fields().items()) + [("Tag", "a"), ("Tag", "b")]).encode()
    params = {**fields(), "Tag": ["a", "b"]}

    class Multi(dict):  # the validator reads repeated fields with getall, as from Flask's MultiDict
        def getall(self, k):
            v = self[k]
            return v if isinstance(v, list) else [v]
    sig = RequestValidator(TOKEN).compute_signature(URL, Multi(params))
    SRC.authenticate(signed(fields(), signature=sig, body=body), CFG, 0)
    only_last = RequestValidator(TOKEN).compute_signature(URL, {**fields(), "Tag": "b"})
    with pytest.raises(SignatureError):
        SRC.authenticate(signed(fields(), signature=only_last, body=body), CFG, 0)


def test_unconfigured_source_refuses_everything_naming_the_key():
    with pytest.raises(SignatureError, match=r"sources\.twilio\.auth_token"):
        SRC.authenticate(signed(fields()), TwilioConfig(), 0)
    with pytest.raises(SignatureError, match=r"sources\.twilio\.account_sid"):
        SRC.authenticate(signed(fields()), TwilioConfig(auth_token=TOKEN), 0)


def test_json_callbacks_are_checked_by_their_body_hash():
    ev = accepted(signed_json(fields())).events[0]
    assert ev.call_id == REC
    tampered = json.dumps(fields(RecordingSid="RE" + "00" * 16)).encode()
    with pytest.raises(SignatureError):
        SRC.authenticate(signed_json(fields(), body=tampered), CFG, 0)
    # The same JSON sent as if it were a form, signed over the URL alone: not accepted either.
    bare = Inbound("POST", URL, Headers({"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(URL, {})}),
                   {}, json.dumps(fields()).encode())
    with pytest.raises(SignatureError):
        SRC.authenticate(bare, CFG, 0)


def test_a_shared_key_signature_needs_its_secret_and_a_known_algorithm():
    shared = "webhooks-shared-key-secret"
    settings = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}
    sig = RequestValidator(shared).compute_signature(URL, fields(), "HMAC_SHA256")
    req = signed(fields(), signature=sig, headers=settings)
    with pytest.raises(SignatureError, match=r"sources\.twilio\.shared_key_secret"):
        SRC.authenticate(req, CFG, 0)
    cfg = TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, shared_key_secret=shared)
    SRC.authenticate(req, cfg, 0)
    with pytest.raises(SignatureError, match="does not match"):  # the auth token's own signature is not the key's
        SRC.authenticate(signed(fields(), headers=settings), cfg, 0)
    odd = signed(fields(), signature=sig, headers={"X-Twilio-Webhooks-Signature-Settings": "algorithm=MD5"})
    with pytest.raises(SignatureError, match="unsupported algorithm"):
        SRC.authenticate(odd, cfg, 0)


def test_downloads_get_twilio_basic_auth_bound_to_the_api_host():
    ev = accepted(signed(fields())).events[0]
    [d] = SRC.downloads(ev, CFG, None)
    assert d.url == ev.recording_url and (d.credential.host, d.credential.port) == ("api.twilio.com", 443)
    assert d.credential.headers["Authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert TOKEN not in repr(d.credential)
    key = "SK" + "d4" * 16
    cfg = TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, api_key_sid=key, api_key_secret="key-secret")
    [d] = SRC.downloads(ev, cfg, None)
    assert d.credential.headers["Authorization"] == "Basic " + base64.b64encode(f"{key}:key-secret".encode()).decode()
    local = TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, api_url="http://127.0.0.1:8123")
    assert (local.credential().host, local.credential().port) == ("127.0.0.1", 8123)


def test_a_recording_on_another_host_gets_no_twilio_credentials():
    url = f"https://storage.example.com/{REC}"
    ev = accepted(signed(fields(RecordingUrl=url))).events[0]
    [d] = SRC.downloads(ev, CFG, None)
    assert d.url == f"{url}.wav?RequestedChannels=2" and d.credential is None
    plain = accepted(signed(fields(RecordingUrl=f"http://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}"
                                                f"/Recordings/{REC}")))
    assert SRC.downloads(plain.events[0], CFG, None)[0].credential is None  # never over plain http
    cfg = TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN,
                       download=[{"host": "storage.example.com", "bearer": "store-token"}])
    [d] = SRC.downloads(ev, cfg, None)
    assert d.credential.headers == {"Authorization": "Bearer store-token"}


@pytest.mark.parametrize("cfg", [
    {"channels": {0: "agent", 1: "boss"}}, {"channels": {0: "agent", 1: "agent"}}, {"channels": {0: "agent"}},
    {"api_url": "https://api.twilio.com/2010-04-01"}, {"api_url": "https://u:p@api.twilio.com"},
    {"api_url": "ftp://api.twilio.com"}, {"account_sid": "AC123"}, {"api_key_sid": "SK" + "0" * 32},
    {"media_format": "ogg"},
])
def test_config_mistakes_are_refused(cfg):
    with pytest.raises(ValidationError):
        TwilioConfig(**cfg)
