"""The generic source: a JSON body signed with HMAC-SHA256 over the raw bytes.

    POST /webhooks/generic
    X-CallMood-Signature: sha256=<hex hmac of the body with the shared secret>

    {"call_id": "c-123", "recording_url": "https://pbx.example.com/rec/c-123.wav",
     "customer_id": "cust-9", "customer_phone": "+8613800000000", "agent_id": "a-7",
     "queue": "finance-complaints", "ticket_id": "T-55",
     "channels": {"0": "agent", "1": "customer"}}

With ``replay_tolerance_s`` set, the header carries a timestamp, as Stripe's does, and an
event signed longer ago (or further ahead) than that is refused, so a captured request
cannot be replayed later:

    X-CallMood-Signature: t=1767225600,v1=<hex hmac of "1767225600." + body>

Ids (call, customer, agent, ticket, queue) are letters, digits and ``. _ - : @ + #``, at
most 128 characters (plugin/core/ids.py); anything else is a 400 naming the field.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.sources.base import EventError, SignatureError, Source, SourceConfig, refuse_stale
from connectors.sources.fields import json_object, url_problem
from plugin.core import ids
from plugin.core.data import CallEvent
from plugin.core.validation import checked, first_problem

ROLES = {"agent", "customer"}


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The header value a sender puts on ``body`` (also used by tests and examples):
    ``sha256=<hex>``, or with ``timestamp`` (unix seconds) ``t=<timestamp>,v1=<hex>``, the
    form a source with ``replay_tolerance_s`` requires."""
    if timestamp is None:
        return "sha256=" + _hmac(secret, body)
    return f"t={int(timestamp)},v1={_hmac(secret, f'{int(timestamp)}.'.encode() + body)}"


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


class GenericConfig(SourceConfig):
    secret: str | None = None  # HMAC-SHA256 key shared with the helpdesk; until set, every event is refused
    signature_header: str = "X-CallMood-Signature"
    # Refuse events signed more than this many seconds ago or ahead (replayed requests); the
    # header is then "t=<unix seconds>,v1=<hmac of '<t>.<body>'>". 0 = off (plain "sha256=").
    replay_tolerance_s: float = Field(0, ge=0)


class GenericEvent(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    call_id: str
    recording_url: str = Field(min_length=1, max_length=4096)
    customer_id: str
    customer_phone: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    scenario: str | None = None  # another name of queue; wins when both are given
    ticket_id: str | None = None
    channels: dict[str, str] | None = None

    @field_validator("agent_id", "queue", "scenario", "ticket_id", "customer_phone", mode="before")
    @classmethod
    def _blank_is_none(cls, v):
        # Helpdesks send "" for a field they do not have.
        return None if isinstance(v, str) and not v.strip() else v

    _ids = field_validator("call_id", "customer_id", "agent_id", "queue", "scenario", "ticket_id")(
        checked(ids.id_problem))
    _phone = field_validator("customer_phone")(checked(ids.phone_problem))
    _url = field_validator("recording_url")(checked(url_problem))

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        for k, role in v.items():
            if not k.isdigit() or int(k) > 7:
                raise ValueError(f"channel key {k!r} must be a channel index 0-7")
            if role not in ROLES:
                raise ValueError(f"role {role!r} must be one of {sorted(ROLES)}")
        return v


class GenericSource(Source):
    name = "generic"
    Config = GenericConfig

    def verify(self, headers: Mapping[str, str], body: bytes, cfg: GenericConfig,
               now: float | None = None) -> None:
        if not cfg.secret:
            raise SignatureError(f"source {self.name!r} has no secret configured (sources.{self.name}.secret)")
        given = headers.get(cfg.signature_header, "")
        if not given:
            raise SignatureError(f"missing {cfg.signature_header} header")
        if cfg.replay_tolerance_s:
            self._verify_timestamped(given, body, cfg, time.time() if now is None else now)
            return
        expected = sign(body, cfg.secret).encode()
        if not given.startswith("sha256="):
            given = "sha256=" + given
        if not _same(given, expected):
            raise SignatureError(f"{cfg.signature_header} does not match the body")

    def _verify_timestamped(self, given: str, body: bytes, cfg: GenericConfig, now: float) -> None:
        header = cfg.signature_header
        parts = [p.strip().partition("=") for p in given.split(",")]
        stamps = [v for k, _, v in parts if k == "t"]
        macs = [v for k, _, v in parts if k == "v1"]
        if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit() or len(stamps[0]) > 12 or not macs:
            raise SignatureError(f"{header} must be t=<unix seconds>,v1=<hex hmac of '<t>.<body>'> "
                                 f"(sources.{self.name}.replay_tolerance_s is set)")
        # The signature is checked before the time: an unsigned time says nothing.
        expected = _hmac(cfg.secret, stamps[0].encode() + b"." + body).encode()
        if not any(_same(m, expected) for m in macs):
            raise SignatureError(f"{header} does not match the body and timestamp")
        refuse_stale(now - int(stamps[0]), cfg.replay_tolerance_s, header, self.name)

    def parse(self, body: bytes) -> CallEvent:
        data = json_object(body)
        try:
            ev = GenericEvent.model_validate(data)
        except ValidationError as err:
            field, what = first_problem(err)
            raise EventError(field or "body", what) from None
        known = set(GenericEvent.model_fields)
        return CallEvent(
            source=self.name, call_id=ev.call_id, recording_url=ev.recording_url,
            customer_id=ev.customer_id, customer_phone=ev.customer_phone, agent_id=ev.agent_id,
            queue=ev.scenario or ev.queue, ticket_id=ev.ticket_id,
            channel_roles={int(k): v for k, v in ev.channels.items()} if ev.channels else None,
            metadata={k: v for k, v in data.items() if k not in known},
            raw=data,
        )


def _same(given: str, expected: bytes) -> bool:
    # Compare bytes: compare_digest refuses non-ASCII str, and a header is attacker-chosen.
    return hmac.compare_digest(given.strip().lower().encode("utf-8", "replace"), expected)
