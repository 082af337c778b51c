"""The Twilio source: the recording status callback of Programmable Voice.

    recordingStatusCallback="https://<your host>/webhooks/twilio"   (POST, the default)

What Twilio documents, and what this module does with it:

- The callback is form-encoded: AccountSid, CallSid (always the parent leg of a two-leg
  call), RecordingSid, RecordingUrl, RecordingStatus, RecordingDuration, RecordingChannels,
  RecordingSource, RecordingStartTime, RecordingTrack, ErrorCode
  (https://www.twilio.com/docs/voice/twiml/recording, "recordingStatusCallback" table;
  https://support.twilio.com/hc/en-us/articles/360014251313). It carries no From/To: the
  customer's number is not in it (see "Query parameters" below).
- Statuses: in-progress, completed, absent, failed (same support article). Only
  ``completed`` has a file; the others are answered 2xx and counted as ignored.
- X-Twilio-Signature: HMAC-SHA1 with the auth token over the URL Twilio called plus the
  sorted POST parameters; a JSON body is covered by a ``bodySHA256`` query parameter
  instead (https://www.twilio.com/docs/usage/webhooks/webhooks-security,
  https://www.twilio.com/docs/api/errors/57012). A Webhooks Rule can make Twilio sign with
  a SharedKey and say so in X-Twilio-Webhooks-Signature-Settings (key=...,algorithm=...)
  (twilio-node examples/WebhookSignatureValidation.md). All of it is checked by the
  official library's ``RequestValidator``, not by our code. Twilio's signature has no
  timestamp: a replayed callback is caught by the dedupe (one call per RecordingSid).
- Dual-channel: "The first channel of a dual-channel recording contains the parent call
  and the second channel contains the child call" (twilio-python, Call create,
  ``recording_channels``); Flex's dual-channel guide: customer (caller) left, agent right
  (https://www.twilio.com/docs/flex/developer/insights/enable-dual-channel-recordings).
  So an inbound call <Dial>ed to an agent is {0: customer, 1: agent}, the default here;
  an agent's outbound call is the other way round: ``channels`` in config, or
  ``?channels=agent,customer`` on that flow's callback URL.
- The media file: RecordingUrl + ".wav" or ".mp3", HTTP Basic auth with the Account SID
  and auth token or an API key (https://www.twilio.com/docs/voice/api/recording, "Fetch a
  Recording media file"); ``RequestedChannels=2`` asks for both channels of a dual
  recording (changelog "Call recordings are now dual-channel by default"; asking it of a
  mono one is warning 16113, so only for RecordingChannels=2).
- The answer: Twilio only looks at the status of a status callback's answer and ignores
  its body; the docs do not name one. We answer 200 with an empty TwiML <Response/>
  (text/xml): what a TwiML endpoint answers, so no Twilio component flags it.
- Reconcile: the Recordings list, GET /2010-04-01/Accounts/{Sid}/Recordings.json with
  DateCreated>= and paging by next_page_uri, through the official client.

Query parameters: the whole callback URL is signed, so what the operator's TwiML puts in
its query is as trustworthy as the body. ``customer_phone``, ``customer_id``,
``agent_id``, ``queue``, ``ticket_id`` and ``channels`` there fill what the callback
lacks (e.g. ``recordingStatusCallback=".../webhooks/twilio?customer_phone=%2B14155550100"``).

Credentials: Twilio's are bound to the configured ``api_url`` host (and port). A
RecordingUrl on another host is still accepted (the callback is signed, so the URL is
Twilio's: a regional API host, or storage of its own) but gets no Twilio credentials; it
gets the operator's ``download`` credential for its host, if any.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Literal, Mapping
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests
from pydantic import Field, field_validator, model_validator
from twilio.base.exceptions import TwilioException
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import (HMAC_SHA1, HMAC_SHA256, SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)
from twilio.rest import Client

from connectors.sources.base import (Accepted, Answer, EventError, Inbound, Received, SignatureError, Source,
                                     SourceConfig, VendorApiError, basic_auth)
from connectors.sources.fields import json_object
from plugin.core import ids
from plugin.core.data import CallEvent, Credential, Download
from plugin.core.phones import e164

log = logging.getLogger(__name__)

ROLES = ("agent", "customer")
# RecordingStatus values Twilio documents besides "completed"; anything else is "status:other"
# (metric labels stay a small fixed set).
NOT_FINISHED = ("in-progress", "absent", "failed")
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
SDK_API_HOST = "api.twilio.com"  # where the official client sends; we point it at api_url
# Twilio ends a call after 4 hours (<Dial timeLimit> at most 14400 s): a recording that
# finished after `since` was created at most this long before it.
MAX_CALL = timedelta(hours=4)
# Callback fields kept in the call's metadata (small, and useful to find the call in Twilio).
KEPT = ("CallSid", "ConferenceSid", "RecordingDuration", "RecordingChannels", "RecordingSource",
        "RecordingTrack", "RecordingStartTime")
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


class TwilioConfig(SourceConfig):
    # The account whose callbacks are ours (AC...); a callback naming another is refused.
    account_sid: str | None = None
    # Signs every callback (X-Twilio-Signature); until set, every callback is refused. Also
    # downloads recordings and lists them (sync), unless an API key is set below.
    auth_token: str | None = None
    # The secret of a Webhooks Rule's SharedKey, for callbacks Twilio signs with it (they
    # carry X-Twilio-Webhooks-Signature-Settings); None: such callbacks are refused.
    shared_key_secret: str | None = None
    # An API key (SK...) and its secret for downloads and sync instead of the auth token.
    api_key_sid: str | None = None
    api_key_secret: str | None = None
    # Twilio's REST API, where recordings are downloaded from and listed: the only host
    # that gets Twilio credentials. A regional one, e.g. https://api.dublin.ie1.twilio.com,
    # where the account's recordings live there.
    api_url: str = "https://api.twilio.com"
    media_format: Literal["wav", "mp3"] = "wav"
    # Which party each channel of a dual-channel recording holds. Twilio puts the parent
    # call (the caller, for an inbound call <Dial>ed to an agent) on channel 0.
    channels: dict[int, Literal["agent", "customer"]] = Field(
        default_factory=lambda: {0: "customer", 1: "agent"})
    # Reconcile: at most this many pages (100 recordings each) per `callmood sync twilio`.
    sync_max_pages: int = Field(100, ge=1, le=10000)
    api_timeout_s: float = Field(30.0, gt=0, le=300)

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, v: str | None) -> str | None:
        if v is not None and not ACCOUNT_SID.fullmatch(v):
            raise ValueError("must be an Account SID: AC and 32 hex digits")
        return v

    @field_validator("api_key_sid")
    @classmethod
    def _api_key_sid(cls, v: str | None) -> str | None:
        if v is not None and not API_KEY_SID.fullmatch(v):
            raise ValueError("must be an API key SID: SK and 32 hex digits")
        return v

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password
                or parts.path.strip("/") or parts.query or parts.fragment):
            raise ValueError("must be scheme://host[:port], e.g. https://api.twilio.com (no path)")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port must be a number") from None
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[int, str]) -> dict[int, str]:
        if set(v) != {0, 1} or sorted(v.values()) != sorted(ROLES):
            raise ValueError("must name channel 0 and channel 1, one agent and one customer, "
                             "e.g. {0: customer, 1: agent}")
        return v

    @model_validator(mode="after")
    def _api_key_pair(self) -> TwilioConfig:
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("api_key_sid and api_key_secret go together")
        return self

    def credential(self) -> Credential | None:
        """Twilio's Basic auth, bound to the API host and port: an API key if set, else the
        Account SID and auth token; None when neither is configured."""
        if self.api_key_sid and self.api_key_secret:
            header = basic_auth(self.api_key_sid, self.api_key_secret)
        elif self.account_sid and self.auth_token:
            header = basic_auth(self.account_sid, self.auth_token)
        else:
            return None
        parts = urlsplit(self.api_url)
        # The port spelled out: the credential must not go to the same host over plain http.
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Credential(parts.hostname or "", port, {"Authorization": header})


class TwilioSource(Source):
    name = "twilio"
    Config = TwilioConfig
    can_sync = True

    # --- the door ---------------------------------------------------------------------

    def authenticate(self, req: Inbound, cfg: TwilioConfig, now: float | None = None) -> None:
        key = f"sources.{self.name}"
        if not cfg.auth_token:
            raise SignatureError(f"source {self.name!r} has no auth_token configured ({key}.auth_token)")
        if not cfg.account_sid:
            raise SignatureError(f"source {self.name!r} has no account_sid configured ({key}.account_sid)")
        signature = req.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        secret, algorithm = cfg.auth_token, HMAC_SHA1
        settings = req.headers.get(SIGNATURE_SETTINGS_HEADER, "")
        if settings:  # a Webhooks Rule's SharedKey signed it (twilio-node does the same)
            if not cfg.shared_key_secret:
                raise SignatureError(f"signed with a webhook SharedKey ({SIGNATURE_SETTINGS_HEADER}) but "
                                     f"{key}.shared_key_secret is not set")
            secret, algorithm = cfg.shared_key_secret, get_signature_algorithm(settings).upper()
            if algorithm not in (HMAC_SHA1, HMAC_SHA256):
                raise SignatureError(f"{SIGNATURE_SETTINGS_HEADER} names an unsupported algorithm")
        try:
            valid = RequestValidator(secret).validate(req.url, _signed_params(req), signature, algorithm)
        except ValueError:  # a URL the validator cannot take apart (a Host header with a bad port)
            valid = False
        if not valid:
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the URL and parameters (the URL must be "
                                 f"the one Twilio called: behind a proxy, set {key}.public_url)")
        # A validly signed callback of another account is not ours (the URL was pasted there
        # too, or a SharedKey is shared between accounts).
        try:
            account = _payload(req).get("AccountSid")
        except EventError:
            return  # signed, yet not a callback we can read: receive answers 400 naming the field
        if account != cfg.account_sid:
            raise SignatureError(f"AccountSid is not {key}.account_sid")

    def receive(self, req: Inbound, cfg: TwilioConfig) -> Received:
        data = _payload(req)
        status = data.get("RecordingStatus")
        if not status:
            raise EventError("RecordingStatus", "is missing: set this URL as the recordingStatusCallback "
                                                "(not the call's statusCallback)")
        if status != "completed":
            return Received(ignored=[_ignored(status)])
        extra = {k: v[-1] for k, v in req.query.items() if v}
        return Received(events=[self._event(data, extra, cfg)])

    def answer(self, received: Received, accepted: list[Accepted]) -> Answer:
        return Answer(200, EMPTY_TWIML, "text/xml")

    def _event(self, data: dict[str, str], extra: Mapping[str, str], cfg: TwilioConfig) -> CallEvent:
        """The call of a completed recording, from the callback's fields (or a listed
        recording's, in the same names) and the callback URL's query."""
        sid = data.get("RecordingSid") or ""
        if not RECORDING_SID.fullmatch(sid):
            raise EventError("RecordingSid", "must be RE and 32 hex digits")
        for name in ("CallSid", "ConferenceSid"):
            if data.get(name) and ids.id_problem(data[name]):
                raise EventError(name, ids.id_problem(data[name]) or "")
        channels = data.get("RecordingChannels") or "1"
        if channels not in ("1", "2"):
            raise EventError("RecordingChannels", "must be 1 or 2")
        dual = channels == "2"
        return CallEvent(
            source=self.name, call_id=sid,
            recording_url=_media_url(data.get("RecordingUrl"), cfg.media_format, dual),
            customer_phone=e164(extra.get("customer_phone")),
            customer_id=_query_id(extra, "customer_id"), agent_id=_query_id(extra, "agent_id"),
            queue=_query_id(extra, "queue"), ticket_id=_query_id(extra, "ticket_id"),
            channel_roles=_roles(extra.get("channels"), cfg) if dual else None,
            metadata={k: data[k][:64] for k in KEPT if data.get(k)},
            raw=data,
        )

    # --- at analysis time -------------------------------------------------------------

    def downloads(self, call: CallEvent, cfg: TwilioConfig, http: requests.Session) -> list[Download]:
        url = call.recording_url
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = -1
        twilio = cfg.credential()
        if twilio is not None and parts.hostname and twilio.applies_to(parts.hostname, port):
            return [Download(url, twilio)]
        return [Download(url, cfg.credential_for(url))]

    # --- reconcile --------------------------------------------------------------------

    def sync(self, cfg: TwilioConfig, http: requests.Session, since: datetime,
             until: datetime) -> Iterator[Received]:
        """Completed recordings that finished in [since, until), from the Recordings list,
        each as its callback would have brought it (the same call id: RecordingSid)."""
        key = f"sources.{self.name}"
        if not cfg.account_sid:
            raise TwilioApiError(f"set {key}.account_sid to list recordings")
        if cfg.api_key_sid and cfg.api_key_secret:
            username, password = cfg.api_key_sid, cfg.api_key_secret
        elif cfg.auth_token:
            username, password = cfg.account_sid, cfg.auth_token
        else:
            raise TwilioApiError(f"set {key}.auth_token (or api_key_sid and api_key_secret) to list recordings")
        since, until = _utc(since), _utc(until)
        # environment: not the process's TWILIO_EDGE / TWILIO_REGION (an empty mapping would
        # make the client read os.environ): the host is api_url, nothing else.
        client = Client(username, password, account_sid=cfg.account_sid,
                        environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""},
                        http_client=_ApiHttp(http, cfg.api_url, cfg.api_timeout_s))
        try:
            page = client.api.v2010.account.recordings.page(
                date_created_after=since - MAX_CALL, date_created_before=until, page_size=100)
            for _ in range(cfg.sync_max_pages):
                for rec in page:
                    if not since <= _finished(rec) < until:
                        continue
                    data = _listed(rec, cfg)
                    if data is None:  # not finished: counted as the callback would have been
                        yield Received(ignored=[_ignored(rec.status)])
                        continue
                    try:
                        event = self._event(data, {}, cfg)
                    except EventError as exc:  # one odd recording does not stop the others
                        log.warning("twilio sync: skipped a recording: %s %s", exc.field, exc.message)
                        continue
                    yield Received(events=[event])
                page = page.next_page()
                if page is None:
                    return
        except TwilioException as exc:
            # "Unable to fetch page", response: the status only (the body may echo the request).
            status = getattr(exc.args[-1] if exc.args else None, "status_code", None) or getattr(exc, "status", "?")
            raise TwilioApiError(f"Twilio's Recordings list answered HTTP {status}: check {key}.account_sid, "
                            f"the credentials and {key}.api_url") from None
        except requests.RequestException as exc:
            raise TwilioApiError(f"Twilio's Recordings list at {cfg.api_url} could not be read: "
                            f"{type(exc).__name__}") from None
        except ValueError:  # a page that is not JSON
            raise TwilioApiError(f"Twilio's Recordings list at {cfg.api_url} answered something that is not "
                            f"a page of recordings") from None
        log.warning("twilio sync stopped after %d pages (%s.sync_max_pages); run it again with a later "
                    "--since for the rest", cfg.sync_max_pages, key)


class TwilioApiError(VendorApiError):
    """Listing the recordings failed; the message names what to check (never a secret)."""


# --- the callback's parts ------------------------------------------------------------------

class _Params(dict):
    """Form fields with every value of a repeated field: Twilio signs them all, and the
    validator reads them through getall (as it does Flask's MultiDict)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def _is_json(req: Inbound) -> bool:
    # As the validator decides: by the bodySHA256 in the URL it checks.
    return "bodySHA256" in parse_qs(urlsplit(req.url).query)


def _signed_params(req: Inbound) -> _Params | str:
    """What Twilio signed besides the URL: the form fields, or (JSON) the body itself, whose
    hash the validator compares with bodySHA256 (it does so only when given a str)."""
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("the body is not UTF-8") from None
    if _is_json(req):
        return text
    try:
        return _Params(parse_qs(text, keep_blank_values=True, max_num_fields=200))
    except ValueError:
        raise SignatureError("too many form fields") from None


def _payload(req: Inbound) -> dict[str, str]:
    """The callback's fields, one value each: form-encoded, or a JSON object (bodySHA256)."""
    if _is_json(req):
        data = json_object(req.body)
        data = {k: v if isinstance(v, str) else str(v) for k, v in data.items()
                if isinstance(v, (str, int)) and not isinstance(v, bool)}
    else:
        data = req.form()
    if any("\x00" in k or "\x00" in v for k, v in data.items()):  # PostgreSQL refuses NUL in text and JSON
        raise EventError("body", "contains a NUL character")
    return data


def _ignored(status: str | None) -> str:
    """The reason an unfinished recording is ignored: one of a fixed few (a metric label)."""
    return f"status:{status}" if status in NOT_FINISHED else "status:other"


def _media_url(url: str | None, fmt: str, dual: bool) -> str:
    """The recording's file: RecordingUrl + ".wav"/".mp3", both channels of a dual one."""
    if not url:
        raise EventError("RecordingUrl", "is missing")
    if len(url) > 4096:
        raise EventError("RecordingUrl", "is longer than 4096 characters")
    if not url.startswith(("https://", "http://")):
        raise EventError("RecordingUrl", "must be an http(s) URL")
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        # Two URL parsers may read such a URL as two different hosts (plugin/audio/fetch.py).
        raise EventError("RecordingUrl", "must not contain whitespace, control characters or a backslash")
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        raise EventError("RecordingUrl", "must name a host and no credentials")
    path = parts.path
    if not path.lower().endswith((".wav", ".mp3")):
        path += "." + fmt
    query = parse_qs(parts.query, keep_blank_values=True)
    if dual:
        query["RequestedChannels"] = ["2"]
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query, doseq=True), ""))


def _query_id(extra: Mapping[str, str], name: str) -> str | None:
    value = (extra.get(name) or "").strip()
    if not value:
        return None
    problem = ids.id_problem(value)
    if problem:
        raise EventError(name, problem)
    return value


def _roles(override: str | None, cfg: TwilioConfig) -> dict[int, str]:
    """Channel -> role: ``?channels=agent,customer`` on the callback URL, else the config."""
    if not override:
        return dict(cfg.channels)
    roles = [r.strip() for r in override.split(",")]
    if sorted(roles) != sorted(ROLES):
        raise EventError("channels", "must be agent,customer or customer,agent (channel 0's party first)")
    return dict(enumerate(roles))


# --- the Recordings list --------------------------------------------------------------------

class _ApiHttp(HttpClient):
    """The official client's HTTP, through our session, to the configured API only: the
    SDK's https://api.twilio.com becomes ``api_url``, and any other host (a next page URL
    the API named) is refused rather than sent the credentials."""

    def __init__(self, session: requests.Session, api_url: str, timeout: float):
        super().__init__(logger=log, is_async=False, timeout=timeout)
        self.session = session
        self.base = urlsplit(api_url)

    def request(self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False) -> TwilioResponse:
        parts = urlsplit(uri)
        if (parts.hostname or "").lower() == SDK_API_HOST and parts.port is None and parts.scheme == "https":
            parts = parts._replace(scheme=self.base.scheme, netloc=self.base.netloc)
        elif (parts.scheme, parts.netloc.lower()) != (self.base.scheme, self.base.netloc):
            raise TwilioApiError("the Twilio API named a page on another host; not sending it the credentials")
        resp = self.session.request(method, urlunsplit(parts), params=params, data=data, headers=headers,
                                    auth=auth, timeout=self.timeout, allow_redirects=False)
        return TwilioResponse(resp.status_code, resp.text, resp.headers)


def _listed(rec: Any, cfg: TwilioConfig) -> dict[str, str] | None:
    """A listed recording in the callback's field names (None unless it is completed)."""
    if rec.status != "completed" or not rec.sid:
        return None
    data = {
        "AccountSid": cfg.account_sid or "", "RecordingSid": rec.sid, "RecordingStatus": "completed",
        # The callback's RecordingUrl, on the API the recording was listed from.
        "RecordingUrl": f"{cfg.api_url}/2010-04-01/Accounts/{cfg.account_sid}/Recordings/{rec.sid}",
        "CallSid": rec.call_sid, "ConferenceSid": rec.conference_sid, "RecordingDuration": rec.duration,
        "RecordingChannels": str(rec.channels) if rec.channels is not None else None,
        "RecordingSource": rec.source,
        "RecordingStartTime": rec.start_time.strftime("%a, %d %b %Y %H:%M:%S +0000") if rec.start_time else None,
    }
    return {k: str(v) for k, v in data.items() if v}


def _finished(rec: Any) -> datetime:
    """When a listed recording ended: its start plus its duration (else when it was made)."""
    start = rec.start_time or rec.date_created or datetime.min.replace(tzinfo=timezone.utc)
    try:
        return start + timedelta(seconds=max(0, int(rec.duration or 0)))
    except (TypeError, ValueError):
        return start


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
