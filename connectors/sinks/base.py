"""What every sink provides: its config, rendering a planned action into a stored
payload, and sending that payload.

Sinks never touch the database: the outbox hands them a payload and stores what they
answer. Secrets (tokens, robot keys) stay in the sink's config and are added at send time.
"""

from __future__ import annotations

import math
import re
import time
from email.utils import parsedate_to_datetime
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
    # The API said when to come back (Retry-After, a rate-limit header, WeCom's 45009): the
    # next attempt waits at least this long.
    retry_after: float | None = None
    # The API refused for load, not for the request (HTTP 429, 45009): this attempt does not
    # count towards deliveries.max_attempts, so an alert is not lost to a busy API.
    throttled: bool = False
    # On success, what was done other than asked (e.g. "ticket 42 is closed: only the user
    # was tagged"); stored with the delivery and shown beside it.
    note: str | None = None


@dataclass(frozen=True)
class Limit:
    """A rate limit a sink's API keeps: at most ``max`` messages per ``per_s`` seconds for
    ``key`` (e.g. "robot", "user:zhangsan"). The outbox counts sends in the database, so
    the limit holds across every worker, and merges what would overflow (``Sink.merge``)."""

    key: str
    per_s: float
    max: int


class Sink:
    kind: ClassVar[str] = "base"
    Config: ClassVar[type[SinkConfig]] = SinkConfig
    # True for sinks that message people (WeCom robot, WeCom app): only routing.yaml's
    # receivers may use them (cooldown, grouping, quiet hours); a rule's action may not.
    messaging: ClassVar[bool] = False

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

    def limits(self, payload: dict[str, Any]) -> list[Limit]:
        """The rate limits sending ``payload`` counts against; none by default."""
        return []

    def merge(self, payloads: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One payload that says what the first of ``payloads`` (oldest first) say, sent
        instead of them when a rate limit would otherwise hold them back. Its ``"merged"``
        is how many it carries in full (the first n); the rest stay queued for a later
        message. None: this sink cannot merge them."""
        return None


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


def whole_payloads(payloads: list[dict[str, Any]], budget: int) -> int:
    """How many of ``payloads`` (oldest first) have every one of their ``lines`` within
    ``budget`` bytes, a line each; at least the first."""
    used = n = 0
    for p in payloads:
        size = sum(len(str(line).encode("utf-8")) + 1 for line in p["lines"])
        if n and used + size > budget:
            break
        used += size
        n += 1
    return n


MAX_RETRY_AFTER_S = 86400.0  # an API asking for longer than a day is asked again after a day


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header as seconds (a number, or an HTTP date), within 0 and a day;
    None when absent or not a finite time."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


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
