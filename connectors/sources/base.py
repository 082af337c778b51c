"""What every webhook source provides, and the plain data between a source and the plugin.

A request reaches a source as an ``Inbound`` (the body as bytes, the headers, the query and
the URL as the vendor saw it). The source

1. ``authenticate``s it the vendor's way (raise ``SignatureError``: 401, nothing stored);
2. ``receive``s it: a ``Received`` with the call events it carries (none for a push that is
   not a finished recording: those are ``ignored`` with a reason, answered 2xx and counted);
   a malformed body raises ``EventError`` (400 naming the field);
3. ``answer``s the way the vendor expects, so it neither retries forever nor disables the
   webhook;

and later, in a worker, says what to ``download`` for a stored call (with which credentials,
bound to which host). Sources that can list the vendor's recent recordings implement
``sync`` (``callmood sync SOURCE``).

Sources import nothing of the plugin but plugin.core: they get plain data and return it.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

import requests
from pydantic import Field, field_validator, model_validator

from plugin.core import cron
from plugin.core.data import CallEvent, Credential, Download
from plugin.core.validation import StrictModel, checked

MAX_FORM_FIELDS = 200


class SignatureError(Exception):
    """The request is not authenticated as the vendor (HTTP 401)."""


class VendorApiError(Exception):
    """A vendor's API (asked for a recording, or for a listing) did not give what we asked.
    ``retryable``: whether trying later may help (network trouble, throttling, the vendor's
    5xx, a recording not there yet) or not (bad credentials, no such call). The pipeline
    retries the job or fails it by this; the message names what to check, never a secret."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class EventError(Exception):
    """The body is not a valid event; ``field`` names the offending field (HTTP 400)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Inbound:
    """A webhook request as a source sees it.

    ``url`` is the URL as the vendor called it: ``sources.<name>.public_url`` joined with
    the path and query when set (a proxy in front that rewrites the host or scheme), else
    the URL the request arrived at (with server.trusted_proxies, as the proxy forwarded it).
    Twilio signs it.
    """

    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive (werkzeug's Headers)
    query: Mapping[str, list[str]]
    body: bytes
    remote_addr: str | None = None

    def form(self) -> dict[str, str]:
        """The body as application/x-www-form-urlencoded, one value per field (the last one).
        Refuses a body that is not UTF-8 or has too many fields."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("body", "form body is not UTF-8") from None
        try:
            pairs = parse_qs(text, keep_blank_values=True, strict_parsing=False,
                             max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            raise EventError("body", f"more than {MAX_FORM_FIELDS} form fields") from None
        return {k: v[-1] for k, v in pairs.items()}

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Answer:
    """The HTTP answer a vendor expects."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Answer:
        return cls(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")


@dataclass(frozen=True)
class Accepted:
    """What became of one event at the door."""

    call_id: int
    job_id: int | None
    duplicate: bool


@dataclass
class Received:
    """What one request carried.

    ``events``: the calls (an Alibaba push may carry several). ``ignored``: for each item
    that is not a finished recording, why (``"status:in-progress"``), counted in
    callmood_webhook_ignored_total. ``push_id``: the vendor's id of this push, where it
    sends one (TCCC's X-TCCC-PUSH-UUID): a push seen before is answered and not looked at
    again. ``assemble_s``: the events are single participants' files of one call each
    (TCCC): their ``recordings`` are gathered by call id, and the call is analysed when
    agent and customer are both there, or this many seconds after the first arrived."""

    events: list[CallEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    push_id: str | None = None
    assemble_s: float | None = None


class DownloadCredential(StrictModel):
    """Credentials for one recording server, sent to ``host`` only (never across a redirect
    to another host). Exactly one of basic (username + password), bearer, or header."""

    host: str = Field(min_length=1, max_length=253)  # host name or address, optionally host:port
    username: str | None = None
    password: str | None = None
    bearer: str | None = None
    header: str | None = None  # a header name, e.g. X-Api-Key ...
    value: str | None = None  # ... and its value

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if "/" in v or "@" in v or any(c.isspace() for c in v):
            raise ValueError("must be a host name or address, optionally with :port (no scheme or path)")
        split_host(v)  # a bad port is refused when the config loads, not in a worker at download time
        return v.lower()

    @model_validator(mode="after")
    def _one_kind(self) -> DownloadCredential:
        kinds = [k for k, on in (("basic", self.username is not None), ("bearer", self.bearer is not None),
                                 ("header", self.header is not None)) if on]
        if len(kinds) != 1:
            raise ValueError("set exactly one of username + password, bearer, or header + value")
        if kinds == ["basic"] and self.password is None:
            raise ValueError("username needs a password")
        if kinds == ["header"] and (self.value is None or not _token(self.header)):
            raise ValueError("header needs a valid header name and a value")
        return self

    def credential(self) -> Credential:
        host, port = split_host(self.host)
        if self.username is not None:
            return Credential(host, port, {"Authorization": basic_auth(self.username, self.password or "")})
        if self.bearer is not None:
            return Credential(host, port, {"Authorization": f"Bearer {self.bearer}"})
        return Credential(host, port, {self.header or "": self.value or ""})


def split_host(value: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (a bare v6 address has no port) as
    (host, port or None). ValueError for anything else: "[::1]:abc" or "[::1]x" must not
    become a credential for every port of the host."""
    host, port = value, ""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address is written [address] or [address]:port")
        port = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        port = None
    if not host:
        raise ValueError("names no host")
    if port is None:
        return host, None
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("the port must be a number from 1 to 65535")
    return host, int(port)


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _token(name: str | None) -> bool:
    return bool(name) and all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)


class SourceConfig(StrictModel):
    """What every source's section under ``sources:`` has; a source adds its own keys."""

    enabled: bool = True
    # The public URL the vendor calls this service at (scheme://host[:port]), when a proxy
    # stands between them; Twilio signs the URL it called. Default: the URL as the request
    # arrived (as a trusted proxy forwarded it, with server.trusted_proxies).
    public_url: str | None = None
    # Credentials for recording servers that need them (on-premises recording servers behind
    # basic auth, ...): each sent to its host only.
    download: list[DownloadCredential] = Field(default_factory=list)
    # Reconcile missed pushes on a schedule (sources that can list recordings): how often,
    # in seconds, and how far back each run looks. 0 = only by hand (`callmood sync`).
    sync_interval_s: float = Field(0, ge=0)
    sync_lookback_s: float = Field(86400, gt=0)
    # Or at set times, in crontab's syntax (plugin/core/cron.py), e.g. "30 1 * * *" (01:30
    # every day, the machine's time zone; "CRON_TZ=Asia/Shanghai 30 1 * * *" names one).
    sync_schedule: str | None = None

    _cron = field_validator("sync_schedule")(checked(cron.cron_problem))

    @model_validator(mode="after")
    def _one_schedule(self) -> SourceConfig:
        if self.sync_interval_s and self.sync_schedule:
            raise ValueError("set sync_interval_s or sync_schedule, not both")
        return self

    def credential_for(self, url: str) -> Credential | None:
        """The configured credential for ``url``'s host, if any."""
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        for d in self.download:
            cred = d.credential()
            if parts.hostname and cred.applies_to(parts.hostname, port):
                return cred
        return None


class Source:
    """A webhook source. Subclasses set ``name`` and ``Config`` and implement what differs;
    the defaults fit a JSON body signed over its bytes (``verify`` + ``parse``)."""

    name: ClassVar[str]
    Config: ClassVar[type[SourceConfig]] = SourceConfig

    def authenticate(self, req: Inbound, cfg: SourceConfig, now: float | None = None) -> None:
        """Raise SignatureError unless ``req`` comes from the vendor. ``now``: unix seconds."""
        self.verify(req.headers, req.body, cfg, time.time() if now is None else now)

    def verify(self, headers: Mapping[str, str], body: bytes, cfg: SourceConfig,
               now: float | None = None) -> None:
        raise NotImplementedError

    def receive(self, req: Inbound, cfg: SourceConfig) -> Received:
        return Received(events=[self.parse(req.body)])

    def parse(self, body: bytes) -> CallEvent:
        raise NotImplementedError

    def answer(self, received: Received, accepted: list[Accepted]) -> Answer:
        """The answer to a request whose events were stored (or were duplicates)."""
        if len(accepted) == 1:
            a = accepted[0]
            return Answer.json({"status": "duplicate" if a.duplicate else "accepted",
                                "call_id": a.call_id, "job_id": a.job_id}, 202)
        return Answer.json({"status": "accepted" if accepted else "ignored",
                            "calls": [{"call_id": a.call_id, "job_id": a.job_id,
                                       "status": "duplicate" if a.duplicate else "accepted"}
                                      for a in accepted],
                            "ignored": received.ignored}, 202)

    def downloads(self, call: CallEvent, cfg: SourceConfig, http: requests.Session) -> list[Download]:
        """What to download for a stored call (in a worker, at analysis time). By default the
        recording URL, or each participant's file, with the configured credential for its host."""
        if call.recordings:
            return [Download(r.url, cfg.credential_for(r.url), r.role) for r in call.recordings]
        return [Download(call.recording_url, cfg.credential_for(call.recording_url))]

    # Sources that can list the vendor's recent recordings set this to True and implement sync.
    can_sync: ClassVar[bool] = False

    def sync(self, cfg: SourceConfig, http: requests.Session, since: datetime,
             until: datetime) -> Iterator[Received]:
        """The vendor's recordings finished in [since, until), as if each had been pushed;
        the caller stores what is missing (the same event twice is one call)."""
        raise NotImplementedError(f"source {self.name!r} cannot list its recordings")


def refuse_stale(age_s: float, tolerance_s: float, signed: str, source: str) -> None:
    """SignatureError when a request signed ``age_s`` seconds ago (negative: ahead) is outside
    ``sources.<source>.replay_tolerance_s``: a captured request is not taken again later.
    Call it after the signature check: an unsigned time says nothing."""
    if abs(age_s) > tolerance_s:
        when = f"{age_s:.0f}s ago" if age_s > 0 else f"{-age_s:.0f}s in the future"
        raise SignatureError(f"{signed} was signed {when}, outside the {tolerance_s:g}s tolerance "
                             f"(sources.{source}.replay_tolerance_s)")


def same_secret(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time comparison of attacker-given text with a secret (bytes: compare_digest
    refuses non-ASCII str)."""
    g = given.encode("utf-8", "replace") if isinstance(given, str) else given
    e = expected.encode("utf-8") if isinstance(expected, str) else expected
    return hmac.compare_digest(g, e)
