"""The generic source: a JSON body signed with HMAC-SHA256 over the raw bytes.

    POST /webhooks/generic
    X-CallMood-Signature: sha256=<hex hmac of the body with the shared secret>

    {"call_id": "c-123", "recording_url": "https://pbx.example.com/rec/c-123.wav",
     "customer_id": "cust-9", "customer_phone": "+8613800000000", "agent_id": "a-7",
     "queue": "finance-complaints", "ticket_id": "T-55",
     "channels": {"0": "agent", "1": "customer"}}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.sources.base import EventError, SignatureError, SourceConfig
from plugin.core.data import CallEvent
from plugin.core.validation import first_problem

ROLES = {"agent", "customer"}


def sign(body: bytes, secret: str) -> str:
    """The header value a sender puts on ``body`` (also used by tests and examples)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class GenericConfig(SourceConfig):
    secret: str | None = None  # HMAC-SHA256 key shared with the helpdesk; until set, every event is refused
    signature_header: str = "X-CallMood-Signature"


class GenericEvent(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    call_id: str = Field(min_length=1, max_length=255)
    recording_url: str = Field(min_length=1, max_length=4096)
    customer_id: str = Field(min_length=1, max_length=255)
    customer_phone: str | None = Field(None, max_length=64)
    agent_id: str | None = Field(None, max_length=255)
    queue: str | None = Field(None, max_length=255)
    scenario: str | None = Field(None, max_length=255)  # another name of queue; wins when both are given
    ticket_id: str | None = Field(None, max_length=255)
    channels: dict[str, str] | None = None

    @field_validator("recording_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("must be an http(s) URL")
        return v

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


class GenericSource:
    name = "generic"
    Config = GenericConfig

    def verify(self, headers: Mapping[str, str], body: bytes, cfg: GenericConfig) -> None:
        if not cfg.secret:
            raise SignatureError(f"source {self.name!r} has no secret configured (sources.{self.name}.secret)")
        given = headers.get(cfg.signature_header, "")
        if not given:
            raise SignatureError(f"missing {cfg.signature_header} header")
        expected = sign(body, cfg.secret).encode()
        if not given.startswith("sha256="):
            given = "sha256=" + given
        # Compare bytes: compare_digest refuses non-ASCII str, and a header is attacker-chosen.
        if not hmac.compare_digest(given.lower().encode("utf-8", "replace"), expected):
            raise SignatureError(f"{cfg.signature_header} does not match the body")

    def parse(self, body: bytes) -> CallEvent:
        try:
            data = json.loads(body, parse_constant=_no_nan)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError("body", f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise EventError("body", "expected a JSON object")
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


def _no_nan(name: str):
    # Python's json accepts NaN and Infinity; JSON (and PostgreSQL's json type) do not.
    raise ValueError(f"{name} is not valid JSON")
