"""What every sink provides: its config, rendering a planned action into a stored
payload, and sending that payload.

Sinks never touch the database: the outbox hands them a payload and stores what they
answer. Secrets (tokens, robot keys) stay in the sink's config and are added at send time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

from plugin.core import scrub
from plugin.core.validation import StrictModel


class SinkConfig(StrictModel):
    """What every sink's section under ``sinks:`` has; each sink type adds its own keys
    and a ``type: Literal[...]`` that names it."""

    type: str
    timeout_s: float | None = None  # per request; default deliveries.timeout_s


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = True  # False: the same request can never succeed (the delivery dies at once)


class Sink:
    kind: ClassVar[str] = "base"
    Config: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, name: str, cfg: SinkConfig):
        self.name = name
        self.cfg = cfg

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        """The payload to store for one action. ``ctx`` has call, alert, action and link."""
        raise NotImplementedError

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        raise NotImplementedError

    def headers(self, idempotency_key: str) -> dict[str, str]:
        return {"User-Agent": "CallMood", "Idempotency-Key": idempotency_key}


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names


def header_problem(name: str, value: object) -> str | None:
    """Why ``name: value`` cannot be sent as an HTTP header, or None. CR and LF would end
    the header (and start another, or the body); other controls and characters beyond
    Latin-1 cannot be sent at all."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return f"header name {str(name)[:80]!r} is not a valid HTTP header name"
    if not isinstance(value, str):
        return f"header {name}: value must be text, not {type(value).__name__}"
    for ch in value:
        o = ord(ch)
        if (o < 0x20 and ch != "\t") or 0x7F <= o <= 0x9F or o > 0xFF:
            what = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL"}.get(
                ch, f"the character U+{o:04X}")
            return f"header {name}: value contains {what}, which an HTTP header cannot carry"
    return None


def post_json(http: requests.Session, method: str, url: str, body: Any, headers: dict,
              timeout: float) -> requests.Response | SendResult:
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem:  # the same request can never be sent: no retries
            return SendResult(False, None, problem, retryable=False)
    try:
        return http.request(method, url, json=body, headers=headers, timeout=timeout,
                            allow_redirects=False)
    except requests.Timeout:
        return SendResult(False, None, f"timed out after {timeout:.0f}s")
    except requests.RequestException as exc:
        return SendResult(False, None, scrub.text(f"{exc.__class__.__name__}: {exc}")[:300])
