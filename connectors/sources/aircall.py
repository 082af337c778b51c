"""Aircall: the ``call.ended`` webhook, authenticated by the token in its body.

What Aircall documents (read for this module):

- Every webhook body is ``{"resource", "event", "timestamp", "token", "data"}``; ``token``
  is the webhook's own token ("use it to identify from which Aircall account a webhook event
  is sent"). There is no signature header, no HMAC and no replay window: the token is the
  only proof, so it is compared in constant time and never stored (it is cut out of the
  stored payload). https://developer.aircall.io/api-references (Webhooks), and
  https://github.com/hookdeck/webhook-skills (skills/aircall-webhooks/references/verification.md).
- ``call.hungup`` fires as the call ends; ``call.ended`` about 30 seconds later, once the
  call's data (duration, recording) is ready: only ``call.ended`` makes a call.
  https://developer.aircall.io/docs/webhooks-overview
- Answer 200 at once: a webhook whose requests fail (non-2xx or slower than 5 s) is retried
  and then disabled. https://developer.aircall.io/tutorials/webhooks-guide
- The call object: ``id`` (an integer), ``direction``, ``status``, ``raw_digits`` (the
  external party's number, "anonymous" when hidden), ``user`` (the agent), ``contact``
  (Aircall's own contact, not the CRM's), ``number`` (the Aircall line), ``recording`` (a
  direct, short-lived MP3 URL; null for a missed call or a voicemail, whose audio is in
  ``voicemail``), ``asset`` (a page behind an Aircall login). The recording URL's lifetime
  is documented differently in different places (10 minutes, one hour; third parties have
  seen ~30 minutes): with ``api_id``/``api_token`` set, ``downloads`` asks
  ``GET /v1/calls/{id}`` for a fresh one right before fetching.
- The recording is one file of the whole call; Aircall documents no per-party channels, so
  it is analysed as mixed mono unless ``channel_roles`` says otherwise.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import phonenumbers
import requests
from pydantic import Field, field_validator, model_validator

from connectors.sources.base import (Accepted, Answer, EventError, Inbound, Received, SignatureError, Source,
                                     SourceConfig, VendorApiError, same_secret)
from connectors.sources.fields import http_url, json_object, queue_name
from plugin.core import ids, safe_json
from plugin.core.data import CallEvent, Download
from plugin.core.phones import e164

# Aircall's call events (its API reference), so an ignored one is counted by its name; any
# other event is "event:other" (the metric's reason label stays a small fixed set).
CALL_EVENTS = frozenset({
    "call.created", "call.ringing_on_agent", "call.agent_declined", "call.answered", "call.transferred",
    "call.external_transferred", "call.unsuccessful_transfer", "call.hungup", "call.ended", "call.hold",
    "call.unhold", "call.ivr_option_selected", "call.comm_assets_generated", "call.voicemail_left",
    "call.assigned", "call.archived", "call.tagged", "call.untagged", "call.commented",
})
# What may make a call: call.ended (the default), or also call.comm_assets_generated (sent
# when the recording is ready) for accounts whose call.ended comes before the recording.
CALL_MAKING = ("call.ended", "call.comm_assets_generated")


class AircallConfig(SourceConfig):
    # The webhook's token (Aircall shows it once at creation; GET /v1/webhooks/{id} shows it
    # again). Until set, every request is refused.
    token: str | None = None
    # Aircall API credentials (Dashboard > Integrations & API > API keys): with them, the
    # recording's short-lived URL is asked afresh right before it is downloaded.
    api_id: str | None = None
    api_token: str | None = None
    api_base: str = "https://api.aircall.io"  # tests point it at a local stand-in
    api_timeout_s: float = Field(10.0, gt=0, le=60)
    # Which events make a call (see CALL_MAKING); the others are acknowledged and counted.
    events: list[Literal["call.ended", "call.comm_assets_generated"]] = Field(
        default_factory=lambda: ["call.ended"], min_length=1)
    # The agent's id in CallMood: Aircall's user id, or the user's email (what a CRM knows).
    agent_id_from: Literal["id", "email"] = "id"
    # Aircall's contact id is Aircall's, not the CRM's: it is kept in the metadata and the
    # phone lookup (identity:) finds the customer, unless this says the contact id IS the
    # CRM's customer id (contacts synced from the CRM with the same ids).
    contact_id_is_customer_id: bool = False
    # The country of numbers written without one (Aircall's raw_digits are international).
    phone_region: str = "CN"
    # The recording is one mixed file; set e.g. {0: agent, 1: customer} only if yours is not.
    channel_roles: dict[int, Literal["agent", "customer"]] | None = None

    @field_validator("phone_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region phonenumbers knows (an ISO 3166 code such as CN, US, GB)")
        return v.upper()

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[^/@\s]+/?", v):
            raise ValueError("must be scheme://host[:port] (no path, no credentials)")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _api_pair(self) -> AircallConfig:
        if (self.api_id is None) != (self.api_token is None):
            raise ValueError("set both api_id and api_token, or neither")
        return self


class AircallApiError(VendorApiError):
    """The Aircall API did not give the call's recording."""


class AircallSource(Source):
    name = "aircall"
    Config = AircallConfig

    def authenticate(self, req: Inbound, cfg: AircallConfig, now: float | None = None) -> None:
        if not cfg.token:
            raise SignatureError(f"source {self.name!r} has no token configured (sources.{self.name}.token)")
        try:
            payload = safe_json.loads(req.body)
        except safe_json.UnsafeJson:
            raise SignatureError("the body is not the JSON Aircall sends (no token to check)") from None
        given = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(given, str) or not given:
            raise SignatureError("the body carries no token")
        if not same_secret(given, cfg.token):
            raise SignatureError("the token does not match sources.aircall.token")

    def receive(self, req: Inbound, cfg: AircallConfig) -> Received:
        payload = json_object(req.body)
        event = payload.get("event")
        if not isinstance(event, str) or not event:
            raise EventError("event", "must be the event's name, e.g. call.ended")
        if event not in cfg.events:
            return Received(ignored=[f"event:{event}" if event in CALL_EVENTS else "event:other"])
        data = payload.get("data")
        if not isinstance(data, dict):
            raise EventError("data", "must be the call object")
        call_id = _call_id(data.get("id"))
        recording = data.get("recording")
        if recording is None or recording == "":
            # A missed call, a voicemail, or a call not recorded: nothing to listen to.
            return Received(ignored=["no_recording"])
        recording = http_url("data.recording", recording)

        user = _object_or_none(data, "user")
        contact = _object_or_none(data, "contact")
        number = _object_or_none(data, "number")
        agent_id = _id_or_none("data.user." + cfg.agent_id_from, user.get(cfg.agent_id_from) if user else None)
        contact_id = _id_or_none("data.contact.id", contact.get("id") if contact else None)
        raw_digits = data.get("raw_digits")
        metadata: dict[str, Any] = {k: data[k] for k in ("direction", "status", "duration", "started_at",
                                                         "ended_at", "missed_call_reason") if k in data}
        if contact_id is not None:
            metadata["aircall_contact_id"] = contact_id
        if user and user.get("id") is not None:
            metadata["aircall_user_id"] = str(user["id"])
        if number and number.get("id") is not None:
            metadata["aircall_number_id"] = str(number["id"])
        raw = {k: v for k, v in payload.items() if k != "token"}  # the token is a secret: never stored
        return Received(events=[CallEvent(
            source=self.name, call_id=call_id, recording_url=recording,
            customer_id=contact_id if cfg.contact_id_is_customer_id else None,
            customer_phone=e164(raw_digits, cfg.phone_region) if isinstance(raw_digits, str) else None,
            agent_id=agent_id, queue=queue_name(number.get("name") if number else None),
            channel_roles=dict(cfg.channel_roles) if cfg.channel_roles else None,
            metadata=metadata, raw=raw)])

    def answer(self, received: Received, accepted: list[Accepted]) -> Answer:
        # Aircall asks for a 200 (its webhooks guide); the body is ours, for people reading logs.
        base = super().answer(received, accepted)
        return Answer(200, base.body, base.content_type)

    def downloads(self, call: CallEvent, cfg: AircallConfig, http: requests.Session) -> list[Download]:
        """The recording, its URL asked afresh from the Aircall API when credentials are
        configured (the URL in the webhook expires within minutes); else the URL as pushed."""
        url = call.recording_url
        if cfg.api_id and cfg.api_token:
            url = self._fresh_recording_url(call.call_id, cfg, http)
        return [Download(url, cfg.credential_for(url))]

    def _fresh_recording_url(self, call_id: str, cfg: AircallConfig, http: requests.Session) -> str:
        if not call_id.isdigit():  # checked at the door; the id goes into a URL path
            raise AircallApiError(f"call id {call_id!r} is not an Aircall call id", retryable=False)
        try:
            resp = http.get(f"{cfg.api_base}/v1/calls/{call_id}", auth=(cfg.api_id or "", cfg.api_token or ""),
                            timeout=cfg.api_timeout_s, allow_redirects=False,
                            headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise AircallApiError(f"Aircall API unreachable ({exc.__class__.__name__})") from None
        if resp.status_code in (401, 403):
            raise AircallApiError(f"Aircall API refused the credentials (HTTP {resp.status_code}); check "
                                  f"sources.{self.name}.api_id and api_token", retryable=False)
        if resp.status_code == 404:
            raise AircallApiError(f"Aircall knows no call {call_id} (HTTP 404)", retryable=False)
        if resp.status_code != 200:
            raise AircallApiError(f"Aircall API answered HTTP {resp.status_code}",
                                  retryable=resp.status_code == 429 or resp.status_code >= 500)
        try:
            found = safe_json.loads(resp.content)
        except safe_json.UnsafeJson:
            raise AircallApiError("Aircall API answered something that is not JSON") from None
        call = found.get("call") if isinstance(found, dict) else None
        recording = call.get("recording") if isinstance(call, dict) else None
        if not recording:
            raise AircallApiError(f"Aircall has no recording for call {call_id} (any more)", retryable=False)
        try:
            return http_url("call.recording", recording)
        except EventError as exc:
            raise AircallApiError(f"Aircall API gave an unusable recording URL: {exc.message}",
                                  retryable=False) from None




def _call_id(value: Any) -> str:
    # Aircall's call ids are integers; a digit string is taken too. Anything else is not
    # Aircall's, and it would go into the API path at download time.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise EventError("data.id", "must be the call's id (an integer)")
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise EventError("data.id", "must be the call's id (an integer)")
    return text


def _object_or_none(data: dict, key: str) -> dict | None:
    value = data.get(key)
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise EventError(f"data.{key}", "must be an object")
    return value


def _id_or_none(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise EventError(field, "must be an id (a string or an integer)")
    problem = ids.id_problem(str(value))
    if problem:
        raise EventError(field, problem)  # names the field and what is wrong, never the value
    return str(value)



