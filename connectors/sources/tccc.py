"""Tencent Cloud Contact Center (TCCC, 腾讯云联络中心): the recording data push, and the
call records API for pushes that never arrived.

What TCCC documents (the vendor's words; the pages were read for this module):

- Data push, preliminaries (数据推送前置说明)
  https://cloud.tencent.com/document/product/679/67256 (en: https://www.tencentcloud.com/document/product/1229/59640):
  one HTTP(S) POST URL for every kind of push, told apart by the query parameter ``action``.
  Auth is one of: none, basicAuth (a username and password set in the console), or
  "OAuth2.0 client credentials" (the console takes a token URL, a ClientID and a
  ClientSecret). The answer must be JSON with ``ErrCode`` 0 on success; otherwise TCCC
  pushes again, at most 3 times. ``X-TCCC-PUSH-UUID`` identifies one push: a retry carries
  the same value and the receiver is to drop the repeat.
- Recording push (电话录音数据推送) https://cloud.tencent.com/document/product/679/67258
  (en: https://www.tencentcloud.com/document/product/1229/59642): ``?action=record&version=1``,
  JSON ``SdkAppId`` (number), ``RecordId``, ``SessionId``, ``Timestamp`` (number, when the
  recording was made), ``EndpointUser``, ``RecordURL`` (kept free for 3 months),
  ``CustomRecordURL`` (only with "recording transfer" to the customer's own COS bucket).
  One recording per participant: a normal call has two (caller and callee) with the same
  SessionId, told apart by EndpointUser -- "the user side is a phone number, an agent is an
  e-mail address" (用户侧为手机号,座席为邮箱); a transfer adds a third, the other agent's.
  The answer: ``ErrCode`` (number) and ``ErrMsg`` (string).
- Other pushes on the same URL: ``action=cdr`` (the call record, 电话 CDR 数据推送,
  https://cloud.tencent.com/document/product/679/67257) and ``action=voicemail``
  (https://cloud.tencent.com/document/product/679/86651; its sample sends EndpointUser as a
  number). Both are acknowledged and counted, not analysed.
- Call records API DescribeTelCdr, API 2020-02-10
  (https://cloud.tencent.com/document/product/1270/47714, en:
  https://www.tencentcloud.com/document/api/1229/59764): StartTimeStamp/EndTimeStamp (unix
  seconds; at most 180 days back, a window shorter than 90 days), SdkAppId, PageSize (<= 100),
  PageNumber (from 0). Each TelCdrInfo has ``RecordURL``/``RecordId`` -- "the user side's
  recording" (录音 ID,用户侧录音, CDR push doc) -- and ``ServeParticipants[]`` each with its
  own ``RecordURL``/``RecordId`` ("indexes the agent side's recording", SDK model docs).
  So the call record lists the same per-participant files the pushes carry (same RecordIds),
  not one mixed file: a listed call and a pushed one are the same call and the same parts.

Where the docs are silent: how TCCC's OAuth client asks for the token (we accept the
RFC 6749 forms: client_id/client_secret in a form or JSON body, or an HTTP Basic header;
grant_type client_credentials or absent); whether ErrMsg must be set (we send "ok");
whether a participant's file holds only that party's voice (the issue assumes so); whether
the call record's RecordURL is byte for byte the pushed one (parts are matched by RecordId).
A push is not signed, only authenticated (a static password or a bearer token, over TLS):
there is no replay window; a retried push is dropped by its X-TCCC-PUSH-UUID, and the same
file pushed again is one part by its RecordId.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from datetime import datetime
from typing import Any, Iterator, Literal
from urllib.parse import unquote_plus

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.sources.tccc_records import call_records
from connectors.sources.tccc_tokens import make_token, token_problem
from connectors.sources.base import (Accepted, Answer, EventError, Inbound, Received, SignatureError, Source,
                                     SourceConfig, VendorApiError, same_secret)
from connectors.sources.fields import json_object, url_problem
from plugin.core import ids
from plugin.core.data import CallEvent, Recording
from plugin.core.phones import e164
from plugin.core.validation import checked, first_problem

log = logging.getLogger(__name__)

# Pushes TCCC documents besides the recording: acknowledged, counted as "action:<name>".
# Anything else is "action:other" (the metric's label never carries a raw vendor value).
KNOWN_ACTIONS = ("cdr", "voicemail")
PUSH_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class TcccConfig(SourceConfig):
    # The TCCC application (SdkAppId in the console). Set: pushes for another application are
    # acknowledged and ignored ("sdkappid:other"). Needed by `callmood sync tccc`.
    sdk_app_id: int | None = Field(None, gt=0)

    # Push auth, as set in TCCC's console (数据推送 > 认证方式). Set one pair, or both while
    # switching; until one is set every push is refused (401).
    # basicAuth: the username and password you type into TCCC's console.
    username: str | None = Field(None, min_length=1, max_length=256)
    password: str | None = Field(None, min_length=1, max_length=256)
    # OAuth2.0 client credentials: CallMood issues the tokens. In the console: token URL
    # https://<host>/webhooks/tccc/token, and this ClientID and ClientSecret (make the secret
    # with `openssl rand -hex 32`). Tokens are signed with a key derived from the secret:
    # changing the secret revokes every token issued with the old one.
    client_id: str | None = Field(None, min_length=1, max_length=128)
    client_secret: str | None = Field(None, min_length=16, max_length=256)
    token_ttl_s: int = Field(7200, ge=60, le=86400)

    # One push per participant: a call is analysed once an agent's and the customer's
    # recordings are both in, or this many seconds after the first arrived.
    assemble_wait_s: float = Field(120, ge=0, le=86400)
    # EndpointUser is an agent's e-mail or the customer's phone number (TCCC's docs). An
    # EndpointUser this regular expression matches in full is an agent; anything else
    # (a phone number, a protected-number id) is the customer.
    agent_endpoint_pattern: str = Field(r"[^@\s]+@[^@\s]+", min_length=1, max_length=256)
    # Download CustomRecordURL (your own COS bucket, with "recording transfer" on) rather
    # than RecordURL (TCCC's storage, kept 3 months) when a push has both. Your bucket may
    # need credentials: see `download`.
    prefer_custom_record_url: bool = False
    # A push without EndpointUser holds the whole call: which channel is whom (None: mixed).
    channel_roles: dict[int, Literal["agent", "customer"]] | None = None
    # The country of phone numbers written without one (ISO 3166), for E.164.
    phone_region: str = Field("CN", pattern=r"^[A-Z]{2}$")

    # `callmood sync tccc`: TCCC's call records API (DescribeTelCdr) with a Tencent Cloud API
    # key (CAM: a sub-account allowed ccc:DescribeTelCdr only).
    secret_id: str | None = Field(None, min_length=1, max_length=128)
    secret_key: str | None = Field(None, min_length=1, max_length=256)
    region: str = Field("", max_length=64)  # the CCC API needs none
    # The API host: ccc.tencentcloudapi.com (China), ccc.intl.tencentcloudapi.com
    # (international), or http(s)://host:port of a stand-in.
    api_endpoint: str = Field("ccc.tencentcloudapi.com", min_length=1, max_length=256)
    api_timeout_s: int = Field(30, ge=1, le=300)

    @model_validator(mode="after")
    def _pairs(self) -> TcccConfig:
        for a, b in (("username", "password"), ("client_id", "client_secret"), ("secret_id", "secret_key")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ValueError(f"set both {a} and {b}, or neither")
        return self

    @field_validator("agent_endpoint_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @field_validator("channel_roles")
    @classmethod
    def _channels(cls, v: dict[int, str] | None) -> dict[int, str] | None:
        if v is not None and any(not 0 <= k <= 7 for k in v):
            raise ValueError("channel keys are channel indexes 0-7")
        return v

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        scheme, sep, host = v.rpartition("://")
        if (sep and scheme not in ("http", "https")) or not re.fullmatch(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?", host):
            raise ValueError("must be a host[:port], or http(s)://host[:port] (no path)")
        return v

    def basic_set(self) -> bool:
        return self.username is not None and self.password is not None

    def oauth_set(self) -> bool:
        return self.client_id is not None and self.client_secret is not None


class RecordPush(BaseModel):
    """``?action=record``: one participant's recording (fields as TCCC names them)."""

    model_config = ConfigDict(extra="allow")

    SdkAppId: int | None = None
    RecordId: str | None = None
    SessionId: str
    Timestamp: int | None = None
    EndpointUser: str | None = None
    RecordURL: str | None = None
    CustomRecordURL: str | None = None

    @field_validator("RecordId", "EndpointUser", mode="before")
    @classmethod
    def _number_or_text(cls, v: Any) -> Any:
        # The voicemail sample sends EndpointUser as a number; RecordId looks like one.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("RecordURL", "CustomRecordURL", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    _id = field_validator("SessionId", "RecordId")(checked(ids.id_problem))

    @field_validator("EndpointUser")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        # An agent's e-mail (an id) or the customer's phone number, as a person may write it.
        if v is None:
            return v
        v = v.strip()
        problem = ids.id_problem(v)
        if problem and ids.phone_problem(v) is not None:
            raise ValueError(problem)
        return v

    _url = field_validator("RecordURL", "CustomRecordURL")(checked(url_problem))




class TcccSource(Source):
    name = "tccc"
    Config = TcccConfig
    can_sync = True

    # --- the door -------------------------------------------------------------------------

    def authenticate(self, req: Inbound, cfg: TcccConfig, now: float | None = None) -> None:
        if not (cfg.basic_set() or cfg.oauth_set()):
            raise SignatureError(f"source {self.name!r} has no push credentials configured: set "
                                 f"sources.{self.name}.username + password (basicAuth) or "
                                 f"sources.{self.name}.client_id + client_secret (OAuth2.0)")
        scheme, _, value = req.headers.get("Authorization", "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic" and cfg.basic_set():
            user, password = _basic_pair(value)
            # Both compared, always: which one was wrong takes no different time.
            ok_user = same_secret(user or "", cfg.username or "")
            ok_password = same_secret(password or "", cfg.password or "")
            if user is None or not (ok_user and ok_password):
                raise SignatureError("the user name or password (basic auth) is not the configured one")
            return
        if scheme == "bearer" and cfg.oauth_set():
            problem = token_problem(value, cfg.client_id or "", cfg.client_secret or "", _now(now))
            if problem:
                raise SignatureError(f"the Bearer token {problem}")
            return
        wanted = " or ".join(w for w, on in (("Basic", cfg.basic_set()), ("Bearer", cfg.oauth_set())) if on)
        raise SignatureError(f"missing Authorization header ({wanted} expected)" if not scheme
                             else f"Authorization must be {wanted}")

    def receive(self, req: Inbound, cfg: TcccConfig) -> Received:
        action = (req.arg("action") or "").strip().lower()
        if action != "record":
            return Received(ignored=[f"action:{action}" if action in KNOWN_ACTIONS else "action:other"])
        push_id = _push_id(req)
        data = json_object(req.body)
        try:
            push = RecordPush.model_validate(data)
        except ValidationError as err:
            field, what = first_problem(err)
            raise EventError(field or "body", what) from None
        if cfg.sdk_app_id is not None and push.SdkAppId != cfg.sdk_app_id:
            return Received(ignored=["sdkappid:other"], push_id=push_id)
        url = _pick_url(push.RecordURL, push.CustomRecordURL, cfg)
        if url is None:
            raise EventError("RecordURL", "is required")
        metadata = {k: v for k, v in (("SdkAppId", push.SdkAppId), ("Timestamp", push.Timestamp))
                    if v is not None}
        if push.EndpointUser is None:
            # No participant named: the file is the whole call, laid out as configured.
            event = CallEvent(source=self.name, call_id=push.SessionId, recording_url=url,
                              channel_roles=dict(cfg.channel_roles) if cfg.channel_roles else None,
                              metadata=metadata, raw=data)
            return Received(events=[event], push_id=push_id)
        role = role_of(push.EndpointUser, cfg)
        if role == "agent" and (problem := ids.id_problem(push.EndpointUser)):
            raise EventError("EndpointUser", problem)
        event = CallEvent(
            source=self.name, call_id=push.SessionId, recording_url=url,
            agent_id=push.EndpointUser if role == "agent" else None,
            customer_phone=e164(push.EndpointUser, cfg.phone_region) if role == "customer" else None,
            recordings=(Recording(url, role, push.RecordId),), metadata=metadata, raw=data)
        return Received(events=[event], push_id=push_id, assemble_s=cfg.assemble_wait_s)

    def answer(self, received: Received, accepted: list[Accepted]) -> Answer:
        # TCCC reads ErrCode only: 0 is done; anything else (or a non-JSON answer) is pushed
        # again. A repeat, an ignored push and a stored one are all done.
        return Answer.json({"ErrCode": 0, "ErrMsg": "ok"})

    # --- OAuth2 client credentials: the token TCCC asks for before pushing ------------------

    def issue_token(self, req: Inbound, cfg: TcccConfig, now: float | None = None) -> Answer:
        """POST /webhooks/tccc/token (RFC 6749 4.4): the client's id and secret, in an HTTP
        Basic header or in the body, for a signed token good for token_ttl_s."""
        if not cfg.oauth_set():
            return _oauth_error(401, "invalid_client", f"source {self.name!r} issues no tokens: set "
                                f"sources.{self.name}.client_id and client_secret")
        try:
            fields = _token_request(req)
        except EventError as exc:
            return _oauth_error(400, "invalid_request", exc.message)
        grant = fields.get("grant_type")
        if grant is not None and grant != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        auth = req.headers.get("Authorization", "").strip()
        if auth.lower().startswith("basic "):
            client_id, client_secret = _basic_pair(auth[6:].strip(), form_encoded=True)
        else:
            client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
        if client_id is None or client_secret is None:
            return _oauth_error(401, "invalid_client", "client_id and client_secret are required")
        ok_id = same_secret(client_id, cfg.client_id or "")
        ok_secret = same_secret(client_secret, cfg.client_secret or "")
        if not (ok_id and ok_secret):
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        token = make_token(cfg.client_id or "", cfg.client_secret or "", cfg.token_ttl_s, _now(now))
        return Answer.json({"access_token": token, "token_type": "Bearer", "expires_in": cfg.token_ttl_s})

    # --- reconcile: the call records API ------------------------------------------------------

    def sync(self, cfg: TcccConfig, http: requests.Session, since: datetime,
             until: datetime) -> Iterator[Received]:
        """Calls TCCC recorded in [since, until), listed by DescribeTelCdr
        (connectors/sources/tccc_records.py), each as if its recordings had been pushed."""
        if cfg.secret_id is None or cfg.secret_key is None or cfg.sdk_app_id is None:
            raise VendorApiError(f"listing TCCC's call records needs sources.{self.name}.secret_id, "
                                 f"secret_key and sdk_app_id", retryable=False)
        for cdr in call_records(cfg.api_endpoint, cfg.secret_id, cfg.secret_key, cfg.region,
                                cfg.api_timeout_s, cfg.sdk_app_id, since, until, http):
            yield self.from_cdr(cdr, cfg)

    def from_cdr(self, cdr: dict[str, Any], cfg: TcccConfig) -> Received:
        """One call record (TelCdrInfo, as a dict) as if its recordings had been pushed: the
        user side's file (the record's own RecordURL) is the customer's, each service
        participant's the agent's; the same SessionId and RecordIds as the pushes."""
        session = cdr.get("SessionId")
        if not isinstance(session, str) or ids.id_problem(session):
            log.warning("tccc: a call record without a valid SessionId was skipped")
            return Received(ignored=["invalid"])
        parts: list[Recording] = []
        own = _pick_url(_text(cdr.get("RecordURL")), _text(cdr.get("CustomRecordURL")), cfg)
        if own and not url_problem(own):
            parts.append(Recording(own, "customer", _safe_id(cdr.get("RecordId"))))
        for p in cdr.get("ServeParticipants") or []:
            if not isinstance(p, dict):
                continue
            url = _pick_url(_text(p.get("RecordURL")), _text(p.get("CustomRecordURL")), cfg)
            if url and not url_problem(url):
                parts.append(Recording(url, "agent", _safe_id(p.get("RecordId"))))
        if not parts:
            return Received(ignored=["no-recording"])
        seat = cdr.get("SeatUser") if isinstance(cdr.get("SeatUser"), dict) else {}
        # The customer is the caller of an inbound call (Direction 0), the callee of an
        # outbound one; with number protection on, both are empty (ProtectedCaller/-Callee).
        number = cdr.get("Caller") if cdr.get("Direction") == 0 else cdr.get("Callee")
        event = CallEvent(
            source=self.name, call_id=session, recording_url=parts[0].url,
            customer_phone=e164(number, cfg.phone_region) if isinstance(number, str) else None,
            agent_id=_safe_id(seat.get("Mail")), queue=_safe_id(cdr.get("SkillGroup")),
            recordings=tuple(parts),
            metadata={k: cdr[k] for k in ("SdkAppId", "Direction", "CallType", "EndStatusString", "Duration")
                      if cdr.get(k) is not None},
            raw=_cdr_raw(cdr))
        return Received(events=[event], assemble_s=cfg.assemble_wait_s)


# --- helpers: the push ---------------------------------------------------------------------

def role_of(endpoint_user: str, cfg: TcccConfig) -> str:
    """"agent" for an EndpointUser the configured pattern matches (an e-mail, by default),
    else "customer"."""
    return "agent" if re.fullmatch(cfg.agent_endpoint_pattern, endpoint_user) else "customer"


def _pick_url(record_url: str | None, custom_url: str | None, cfg: TcccConfig) -> str | None:
    if cfg.prefer_custom_record_url and custom_url:
        return custom_url
    return record_url or custom_url


def _push_id(req: Inbound) -> str | None:
    value = req.headers.get("X-TCCC-PUSH-UUID")
    if value is None:
        return None
    if not PUSH_UUID.fullmatch(value.strip()):
        raise EventError("X-TCCC-PUSH-UUID", "must be 1-128 letters, digits and . _ : -")
    return value.strip()




def _basic_pair(value: str, form_encoded: bool = False) -> tuple[str | None, str | None]:
    """(user, password) from a Basic credential, or (None, None) when it is not one.
    ``form_encoded``: RFC 6749 2.3.1 form-encodes the client id and secret before base64."""
    try:
        text = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError, binascii.Error):
        return None, None
    user, sep, password = text.partition(":")
    if not sep:
        return None, None
    if form_encoded:
        user, password = unquote_plus(user), unquote_plus(password)
    return user, password


# --- helpers: tokens -------------------------------------------------------------------------

def _token_request(req: Inbound) -> dict[str, str]:
    """The token request's fields: a form (RFC 6749), or a JSON object (lenient: TCCC does
    not document which it sends)."""
    if req.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json":
        data = json_object(req.body) if req.body.strip() else {}
        return {k: v for k, v in data.items() if isinstance(v, str)}
    return req.form()


def _oauth_error(status: int, error: str, description: str) -> Answer:
    return Answer.json({"error": error, "error_description": description}, status)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


# --- helpers: call records ---------------------------------------------------------------------

def _cdr_raw(cdr: dict[str, Any]) -> dict[str, Any]:
    # What the call record says of the recordings, and that it was listed, not pushed (the
    # whole record holds every number of the call: kept small).
    participants = [p for p in cdr.get("ServeParticipants") or [] if isinstance(p, dict)]
    return ({"ListedBy": "DescribeTelCdr"}
            | {k: cdr.get(k) for k in ("SessionId", "RecordId", "RecordURL", "CustomRecordURL", "Direction",
                                       "CallType", "Time", "EndedTimestamp")}
            | {"ServeParticipants": [{k: p.get(k) for k in ("Mail", "RecordId", "RecordURL", "CustomRecordURL")}
                                     for p in participants]})


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v.strip() else None


def _safe_id(v: Any) -> str | None:
    """A vendor id from a listing, or None when it is not a safe id (a listing is not
    refused for one odd field)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    return v if isinstance(v, str) and v and ids.id_problem(v) is None else None
