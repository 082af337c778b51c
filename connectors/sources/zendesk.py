"""Zendesk Talk: a webhook sent by a ticket trigger, signed by Zendesk; the recording comes
from the ticket's voice comment through the Zendesk API.

What Zendesk documents (read for this module):

- Every webhook request carries ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(signing
  secret, ``X-Zendesk-Webhook-Signature-Timestamp`` + raw body)), no separator; the
  timestamp is ISO 8601 ("2021-03-25T05:09:27Z"). Requests also carry
  ``X-Zendesk-Webhook-Id`` and ``X-Zendesk-Webhook-Invocation-Id``.
  https://developer.zendesk.com/documentation/webhooks/verifying/ and
  https://developer.zendesk.com/documentation/webhooks/anatomy-of-a-webhook-request/
  The timestamp is what makes a captured request useless later: events signed longer ago
  (or further ahead) than ``replay_tolerance_s`` are refused. Whether Zendesk re-signs a
  retried attempt with a new timestamp is not documented.
- A webhook connected to a trigger sends the JSON body the trigger's action defines, written
  with placeholders ({{ticket.id}}, {{ticket.requester.phone}}, {{ticket.requester.external_id}},
  {{ticket.assignee.id}}, {{ticket.group.name}}, {{ticket.via}}). No placeholder gives a
  voice comment's recording: https://support.zendesk.com/hc/en-us/articles/4408886858138
  (placeholders reference). So the event names the ticket, and at analysis time
  ``downloads`` reads the ticket's comments (GET /api/v2/tickets/{id}/comments.json, API
  token auth "{email}/token:{api_token}") and takes the latest ``VoiceComment``'s
  ``data.recording_url``, fetched with the same credentials, sent to the Zendesk host only.
  https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/
- The recording is one file of the whole call; Zendesk documents no per-party channels, so
  it is analysed as mixed mono unless ``channel_roles`` says otherwise.

The trigger body CallMood reads (the README has the whole set-up)::

    {"ticket_id": "{{ticket.id}}", "via": "{{ticket.via}}",
     "customer_phone": "{{ticket.requester.phone}}",
     "customer_id": "{{ticket.requester.external_id}}",
     "agent_id": "{{ticket.assignee.id}}", "queue": "{{ticket.group.name}}"}

One ticket is one call (its id is the call's id): the write-back goes to the ticket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

import phonenumbers
import requests
from pydantic import Field, field_validator

from connectors.sources.base import (EventError, Inbound, Received, SignatureError, Source, SourceConfig,
                                     VendorApiError, basic_auth, refuse_stale, same_secret)
from connectors.sources.fields import http_url, json_object, queue_name
from plugin.core import ids, safe_json
from plugin.core.data import CallEvent, Credential, Download
from plugin.core.phones import e164

SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"
KNOWN_FIELDS = ("ticket_id", "via", "customer_phone", "customer_id", "agent_id", "queue")
MAX_COMMENT_PAGES = 20  # 100 comments a page by default: 2000 comments is a very long ticket


def zendesk_subdomain(v: str | None) -> str | None:
    """A Zendesk account's subdomain as config gives it ("acme" for acme.zendesk.com), checked."""
    if v is not None and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", v):
        raise ValueError('must be the account\'s subdomain, e.g. "acme" for acme.zendesk.com')
    return v


class ZendeskConfig(SourceConfig):
    # The webhook's signing secret (Admin Center > Apps and integrations > Webhooks > the
    # webhook > Signing secret). Until set, every request is refused.
    signing_secret: str | None = None
    # Refuse requests signed more than this many seconds ago or ahead (replays). 0 = off.
    replay_tolerance_s: float = Field(300, ge=0)
    # The Zendesk account: subdomain ("acme" for acme.zendesk.com), or api_base written out
    # (a host mapped to Zendesk, or a local stand-in in tests); api_base wins.
    subdomain: str | None = None
    api_base: str | None = None
    # An agent's email and an API token (Admin Center > Apps and integrations > Zendesk API):
    # they read the ticket's comments and download the recording.
    email: str | None = None
    api_token: str | None = None
    api_timeout_s: float = Field(10.0, gt=0, le=60)
    # The country of numbers written without one.
    phone_region: str = "CN"
    # The recording is one mixed file; set e.g. {0: agent, 1: customer} only if yours is not.
    channel_roles: dict[int, Literal["agent", "customer"]] | None = None

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, v: str | None) -> str | None:
        return zendesk_subdomain(v)

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^/@\s]+/?", v):
            raise ValueError("must be scheme://host[:port] (no path, no credentials)")
        return v.rstrip("/") if v else v

    @field_validator("phone_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region phonenumbers knows (an ISO 3166 code such as CN, US, GB)")
        return v.upper()

    def base_url(self) -> str | None:
        """The Zendesk API's scheme://host[:port], or None when neither key is set."""
        if self.api_base:
            return self.api_base
        return f"https://{self.subdomain}.zendesk.com" if self.subdomain else None


def sign(body: bytes, secret: str, timestamp: str) -> str:
    """The X-Zendesk-Webhook-Signature Zendesk puts on ``body`` sent at ``timestamp``."""
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


class ZendeskApiError(VendorApiError):
    """The Zendesk API did not give the ticket's recording."""


class ZendeskSource(Source):
    name = "zendesk"
    Config = ZendeskConfig

    def authenticate(self, req: Inbound, cfg: ZendeskConfig, now: float | None = None) -> None:
        if not cfg.signing_secret:
            raise SignatureError(f"source {self.name!r} has no signing secret configured "
                                 f"(sources.{self.name}.signing_secret)")
        given, stamp = req.headers.get(SIGNATURE, ""), req.headers.get(TIMESTAMP, "")
        if not given:
            raise SignatureError(f"missing {SIGNATURE} header")
        if not stamp or len(stamp) > 64:
            raise SignatureError(f"missing {TIMESTAMP} header")
        # The signature is checked before the time: an unsigned time says nothing.
        if not same_secret(given.strip(), sign(req.body, cfg.signing_secret, stamp)):
            raise SignatureError(f"{SIGNATURE} does not match the body and timestamp")
        if cfg.replay_tolerance_s:
            try:
                sent = datetime.fromisoformat(stamp.strip())
            except ValueError:
                raise SignatureError(f"{TIMESTAMP} is not an ISO 8601 time") from None
            if sent.tzinfo is None:  # Zendesk writes UTC ("...Z"); a time without a zone is read so
                sent = sent.replace(tzinfo=timezone.utc)
            age = (time.time() if now is None else now) - sent.timestamp()
            refuse_stale(age, cfg.replay_tolerance_s, "the request", self.name)

    def receive(self, req: Inbound, cfg: ZendeskConfig) -> Received:
        data = json_object(req.body, "expected a JSON object (the body of the trigger's webhook action)")
        push_id = _push_id(req.headers.get(INVOCATION))
        ticket_id = _ticket_id(data.get("ticket_id"))
        reason = _via_reason(data.get("via"))
        if reason:
            return Received(ignored=[reason], push_id=push_id)
        phone = _text_or_none("customer_phone", data.get("customer_phone"))
        base = cfg.base_url()
        event = CallEvent(
            source=self.name, call_id=ticket_id, ticket_id=ticket_id,
            # No placeholder gives the recording: this is where downloads() finds it.
            recording_url=f"{base}/api/v2/tickets/{ticket_id}/comments.json" if base else f"zendesk:ticket:{ticket_id}",
            customer_id=_id_or_none("customer_id", data.get("customer_id")),
            customer_phone=e164(phone, cfg.phone_region),
            agent_id=_id_or_none("agent_id", data.get("agent_id")),
            queue=queue_name(data.get("queue")),
            channel_roles=dict(cfg.channel_roles) if cfg.channel_roles else None,
            metadata={k: v for k, v in data.items() if k not in KNOWN_FIELDS},
            raw=data)
        return Received(events=[event], push_id=push_id)

    def downloads(self, call: CallEvent, cfg: ZendeskConfig, http: requests.Session) -> list[Download]:
        """The ticket's latest voice comment's recording, with the Zendesk API credentials
        (sent to the Zendesk host only, never across a redirect to the storage host)."""
        base = cfg.base_url()
        if not (base and cfg.email and cfg.api_token):
            raise ZendeskApiError(f"set sources.{self.name}.subdomain (or api_base), email and api_token to "
                                  f"download Zendesk Talk recordings", retryable=False)
        ticket_id = call.ticket_id or call.call_id
        if not ticket_id.isascii() or not ticket_id.isdigit():  # checked at the door; it goes into a path
            raise ZendeskApiError(f"ticket id {ticket_id!r} is not a Zendesk ticket id", retryable=False)
        auth = {"Authorization": basic_auth(f"{cfg.email}/token", cfg.api_token)}
        recording = self._latest_recording(f"{base}/api/v2/tickets/{ticket_id}/comments.json", base, auth, cfg, http)
        if recording is None:
            # The trigger may fire before Talk adds the voice comment (the call still going on).
            raise ZendeskApiError(f"ticket {ticket_id} has no voice comment with a recording (yet)")
        api = urlsplit(base)
        # The port written out: the token must not go over plain http to the same host name.
        zendesk = Credential((api.hostname or "").lower(), api.port or (443 if api.scheme == "https" else 80), auth)
        target = urlsplit(recording)
        try:
            port = target.port or (443 if target.scheme == "https" else 80)
        except ValueError:
            raise ZendeskApiError("the voice comment's recording URL has a bad port", retryable=False) from None
        if target.hostname and zendesk.applies_to(target.hostname, port):
            return [Download(recording, zendesk)]
        return [Download(recording, cfg.credential_for(recording))]  # stored elsewhere: the operator's setting

    def _latest_recording(self, url: str, base: str, auth: dict[str, str], cfg: ZendeskConfig,
                          http: requests.Session) -> str | None:
        """The recording URL of the ticket's newest voice comment, through every page."""
        found: list[tuple[str, int, str]] = []  # (created_at, position, url)
        for _page in range(MAX_COMMENT_PAGES):
            page = self._get(url, auth, cfg, http)
            comments = page.get("comments")
            for comment in comments if isinstance(comments, list) else []:
                rec = _voice_recording(comment)
                if rec is not None:
                    created = comment.get("created_at")
                    found.append((created if isinstance(created, str) else "", len(found), rec))
            url = _next_page(page)
            if not url or not _same_origin(url, base):  # credentials go to the Zendesk API only
                break
        if not found:
            return None
        try:
            return http_url("comments.data.recording_url", max(found)[2])
        except EventError as exc:
            raise ZendeskApiError(f"the voice comment's recording URL is unusable: {exc.message}",
                                  retryable=False) from None

    def _get(self, url: str, auth: dict[str, str], cfg: ZendeskConfig, http: requests.Session) -> dict:
        try:
            resp = http.get(url, headers={**auth, "Accept": "application/json"}, timeout=cfg.api_timeout_s,
                            allow_redirects=False)
        except requests.RequestException as exc:
            raise ZendeskApiError(f"Zendesk API unreachable ({exc.__class__.__name__})") from None
        if resp.status_code in (401, 403):
            raise ZendeskApiError(f"Zendesk API refused the credentials (HTTP {resp.status_code}); check "
                                  f"sources.{self.name}.email and api_token", retryable=False)
        if resp.status_code == 404:
            raise ZendeskApiError("Zendesk knows no such ticket (HTTP 404)", retryable=False)
        if resp.status_code != 200:
            raise ZendeskApiError(f"Zendesk API answered HTTP {resp.status_code}",
                                  retryable=resp.status_code == 429 or resp.status_code >= 500)
        try:
            page = safe_json.loads(resp.content)
        except safe_json.UnsafeJson:
            raise ZendeskApiError("Zendesk API answered something that is not JSON") from None
        if not isinstance(page, dict):
            raise ZendeskApiError("Zendesk API answered something that is not a comment list")
        return page


def _voice_recording(comment: Any) -> str | None:
    if not isinstance(comment, dict) or comment.get("type") != "VoiceComment":
        return None
    data = comment.get("data")
    rec = data.get("recording_url") if isinstance(data, dict) else None
    return rec if isinstance(rec, str) and rec else None


def _next_page(page: dict) -> str | None:
    """Offset pagination's next_page, or cursor pagination's links.next while meta.has_more."""
    nxt = page.get("next_page")
    if isinstance(nxt, str) and nxt:
        return nxt
    meta, links = page.get("meta"), page.get("links")
    if isinstance(meta, dict) and meta.get("has_more") and isinstance(links, dict):
        nxt = links.get("next")
        return nxt if isinstance(nxt, str) and nxt else None
    return None


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    try:
        return (a.scheme, (a.hostname or "").lower(), a.port) == (b.scheme, (b.hostname or "").lower(), b.port)
    except ValueError:
        return False


def _ticket_id(value: Any) -> str:
    # Zendesk ticket ids are integers; the placeholder renders "12345". It goes into an API path.
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise EventError("ticket_id", 'must be the ticket\'s id: "{{ticket.id}}" in the trigger\'s body')
    return text


def _via_reason(via: Any) -> str | None:
    """Why a ticket is not a conversation to analyse, from {{ticket.via}}; None: analyse it.
    The trigger's conditions pick the phone-call tickets; this only skips a voicemail (the
    caller alone). Any other value is taken: Zendesk renders the placeholder in the
    account's language, so an unknown word must not drop real calls."""
    if isinstance(via, str) and "voicemail" in via.lower():
        return "via:voicemail"
    return None


def _push_id(value: str | None) -> str | None:
    # Not covered by the signature; used only to answer a repeated invocation at once.
    if value and ids.id_problem(value) is None:
        return value
    return None


def _text_or_none(field: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # a placeholder for a field the ticket does not have renders ""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise EventError(field, "must be a string")
    return str(value).strip()


def _id_or_none(field: str, value: Any) -> str | None:
    text = _text_or_none(field, value)
    if text is None:
        return None
    problem = ids.id_problem(text)
    if problem:
        raise EventError(field, problem)  # names the field and what is wrong, never the value
    return text



