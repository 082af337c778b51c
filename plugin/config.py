"""Typed configuration: one YAML file, validated with pydantic.

Every key has a default, so ``callmood serve`` runs with no file at all (the
embedded defaults: SQLite, worker and scheduler in one process). A mistyped key
or a bad value is reported as one line naming where it is.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from pydantic import Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from connectors.sinks import SINK_TYPES
from connectors.sinks.base import header_problem
from connectors.sources import SOURCES, SourceConfig
from plugin.core.cron import cron_problem
from plugin.core.data import EMOTIONS
from plugin.core.retry import RetryPolicy
from plugin.core.roles import ROLES
from plugin.core.validation import StrictModel, checked, dotted, problems

ENV_CONFIG = "CALLMOOD_CONFIG"
LOCAL_CONFIG = "config.yaml"  # looked for in the working directory, as `make run` does


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


# Unknown keys are errors: a typo must not silently fall back to a default.
Section = StrictModel


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8080
    # Base URL used in links sent to supervisors (WeCom alerts, CRM notes).
    public_url: str = "http://127.0.0.1:8080"
    max_upload_bytes: int = 50 * 1024 * 1024  # /predict uploads
    threads: int = 8
    # Open connections waitress keeps (idle ones included), and how long one may sit idle:
    # its defaults (100, 120 s) let a hundred silent connections shut the receiver out.
    connection_limit: int = Field(500, ge=10)
    idle_timeout_s: float = Field(30.0, gt=0)
    # /predict analyses this many uploads at once, and lets this many more wait (at most
    # predict_wait_s) for a turn; beyond that it answers 429 with Retry-After at once, so
    # uploads can never hold the threads the webhook receiver needs.
    predict_concurrency: int = Field(1, ge=1, le=32)
    predict_queue: int = Field(2, ge=0, le=256)
    predict_wait_s: float = Field(30.0, gt=0, le=600)
    # Off: the path answers 404. On: it needs an API token or a login (viewer or above).
    metrics_enabled: bool = True
    predict_enabled: bool = True
    # Networks of the reverse proxies in front, e.g. ["127.0.0.1/32"]: from them (only) the
    # X-Forwarded-For and X-Forwarded-Proto headers are believed, so login throttling counts
    # the client's address, not the proxy's. From anyone else those headers are dropped.
    trusted_proxies: list[str] = Field(default_factory=list)
    # /health says "degraded" while calls failed or deliveries died within this many
    # seconds (and while an edit of the rules stands refused).
    health_window_s: float = Field(3600.0, gt=0, le=7 * 86400)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        return _networks(v)


class DatabaseConfig(Section):
    # Default: an SQLite file under data_dir. PostgreSQL: postgresql+psycopg2://user@host/db
    url: str | None = None
    echo: bool = False


class ModelConfig(Section):
    name: str = "iic/emotion2vec_plus_large"
    path: str | None = None  # a local model directory; wins over name
    hub: Literal["ms", "hf"] = "ms"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # batched: our batched forward of FunASR's module (fast; same scores in fp32).
    # funasr: FunASR's own AutoModel.generate, one window at a time (the reference).
    engine: Literal["batched", "funasr"] = "batched"
    # auto = bf16 on CUDA, fp32 on CPU. int8 (CPU only) is faster with slightly different
    # scores; docs/benchmarks.md states its label agreement with fp32.
    precision: Literal["auto", "fp32", "int8", "bf16", "fp16"] = "auto"
    batch_size: int = Field(0, ge=0, le=1024)  # windows per forward; 0 = 16 on CPU; on CUDA 256 (64 under 32 GiB)
    threads: int = Field(0, ge=0, le=256)  # torch CPU threads; 0 = the CPUs this process may use
    # How often to try again when the model could not be loaded (offline, missing files).
    retry_interval_s: float = 60.0
    # The hub revision of `name` (a ModelScope tag, a Hugging Face commit), so every install
    # loads the same weights. Unset: the pin in MODEL_PINS for the default model, else the
    # hub's newest; "master" (ms) or "main" (hf) follows the newest on purpose.
    revision: str | None = None

    @model_validator(mode="after")
    def _pin(self) -> ModelConfig:
        if self.revision is None:
            self.revision = MODEL_PINS.get((self.hub, self.name))
        return self


NUMBER_KINDS = ("phone", "id_card", "bank_card")


class AsrConfig(Section):
    """What was said: SenseVoiceSmall through FunASR transcribes the windows emotion2vec
    scores (the same windows, batched alongside them)."""

    # auto: on when the model loads, and analysis goes on without words while it does not;
    # true: the same, but /health calls a missing recognizer a problem; false: never loaded.
    enabled: Literal["auto", True, False] = "auto"
    name: str = "iic/SenseVoiceSmall"
    path: str | None = None  # a local model directory; wins over name
    hub: Literal["ms", "hf"] = "ms"
    revision: str | None = None  # the hub revision of `name` (pin it: the same weights every start); unset: newest
    # A hint for SenseVoice's language query: auto, zh, en, yue, ja, ko.
    language: Literal["auto", "zh", "en", "yue", "ja", "ko"] = "auto"
    use_itn: bool = True  # punctuation and numbers as digits ("12315", not "幺二三幺五")
    batch_size: int = Field(0, ge=0, le=1024)  # windows per forward; 0 = 16 on CPU, 64 on CUDA
    # auto: int8 on a CPU with AVX2 (as model.precision), else fp32; int8 runs on the CPU only.
    precision: Literal["auto", "fp32", "int8"] = "auto"
    # all: every window; emotion: only windows whose emotion label a rule's emotion clause
    # names (saves compute on large fleets; keyword-only rules then hear less).
    windows: Literal["all", "emotion"] = "all"
    # Digit runs that look like these are masked before a transcript is stored or sent.
    mask_numbers: list[Literal["phone", "id_card", "bank_card"]] = Field(default_factory=lambda: list(NUMBER_KINDS))
    # Words a Paraformer-zh model (name: paraformer-zh) is biased towards hearing, e.g. the
    # company's product names or 12315; SenseVoice has no hotwords and ignores them. At most
    # 49: above that FunASR keeps 50 for a whole batch, picked by its first window.
    hotwords: list[str] = Field(default_factory=list, max_length=49)
    retry_interval_s: float = 60.0

    @field_validator("hotwords")
    @classmethod
    def _hotwords(cls, v: list[str]) -> list[str]:
        for w in v:
            # FunASR reads a hotword string that starts with http as a URL to download, and one
            # naming a .txt file as that file: a word must be neither.
            if not w or len(w) > 32 or any(c.isspace() for c in w) or w.lower().startswith("http") \
                    or w.lower().endswith(".txt"):
                raise ValueError(f"hotword {w!r}: use 1-32 characters, no spaces, not a URL or a .txt name")
        return v

    @property
    def wanted(self) -> bool:
        return self.enabled is not False


# Revisions checked for the default model: the ModelScope tag, and the Hugging Face commit
# (the mirror's head since June 2024, with the nine-label tokens.txt).
MODEL_PINS = {
    ("ms", "iic/emotion2vec_plus_large"): "v2.0.5",
    ("hf", "iic/emotion2vec_plus_large"): "6c303ba987b86b93193de93e34bb2b077a6bedc4",
    ("hf", "emotion2vec/emotion2vec_plus_large"): "6c303ba987b86b93193de93e34bb2b077a6bedc4",
}


class AudioConfig(Section):
    window_s: float = Field(3.0, gt=0.2, le=30)
    # A trailing piece shorter than this is dropped: too short to judge.
    min_segment_s: float = Field(1.0, gt=0, le=30)
    max_duration_s: float = Field(4 * 3600, gt=0)
    # Recordings with more channels are refused before decoding (8 channels x 4 h decode to
    # 3.7 GB); raise it for multi-track recordings (channel keys 0-7 in the event).
    max_channels: int = Field(2, ge=1, le=8)
    decode_timeout_s: float = Field(300.0, gt=0)  # ffmpeg is killed after this long
    # Which audio is classified: silero = only speech found by the silero-vad model
    # (its weights ship in the pip package); energy = every window louder than
    # silence_dbfs; off = every window.
    vad: Literal["silero", "energy", "off"] = "silero"
    vad_threshold: float = Field(0.5, gt=0, lt=1)  # silero speech probability
    min_speech_s: float = Field(0.25, ge=0)  # shorter bursts are not speech
    min_silence_s: float = Field(0.3, ge=0)  # shorter pauses do not split speech
    speech_pad_s: float = Field(0.1, ge=0)  # kept around each stretch of speech
    # Windows quieter than this (RMS, dBFS) are not classified.
    silence_dbfs: float = -60.0


class FetchConfig(Section):
    timeout_s: float = Field(30.0, gt=0)  # to connect, and between two reads
    max_seconds: float = Field(300.0, gt=0)  # for the whole download
    max_bytes: int = Field(500 * 1024 * 1024, gt=0)
    max_redirects: int = Field(3, ge=0)
    ca_bundle: str | None = None  # PEM file of CAs for https recording servers (default: certifi's)
    # Recording hosts on these networks are allowed even though they are private,
    # e.g. ["10.0.0.0/8"] for an on-premises recording server. Loopback, private and
    # link-local addresses are refused otherwise (no fetching cloud metadata or
    # internal admin pages on behalf of whoever can send a webhook).
    allow_networks: list[str] = Field(default_factory=list)
    allowed_schemes: list[str] = Field(default_factory=lambda: ["https", "http"])

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return _networks(v)


def _networks(v: list[str]) -> list[str]:
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not a network (e.g. 10.0.0.0/8)") from None
    return v


class WorkerConfig(Section):
    enabled: bool = True  # run a worker inside `callmood serve`
    poll_interval_s: float = 1.0
    lease_s: float = 600.0
    max_attempts: int = 5
    retry_backoff_s: float = 30.0  # the wait after a failed attempt, doubling each time
    retry_max_s: float = 3600.0  # ... up to this
    # Keep a copy of each downloaded recording in <data_dir>/recordings/call-<id> (0600, in
    # a 0700 folder) for audits and re-runs; removed after retention.recordings_days.
    keep_recordings: bool = False
    # Calls one worker process handles at once: while one call is on the model, the
    # next ones download, decode and find speech. Their windows share model batches.
    concurrency: int = Field(2, ge=1, le=64)
    # On SIGTERM, the calls and deliveries in flight get this long to finish; the rest are
    # handed back (queued again at once, the attempt not counted) and the process exits.
    # Keep it below what the supervisor waits before SIGKILL (docker stop: 10 s).
    stop_grace_s: float = Field(5.0, ge=0, le=3600)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retry_backoff_s, self.retry_max_s, self.max_attempts)


class DeliveryConfig(Section):
    poll_interval_s: float = 1.0
    max_attempts: int = 12
    backoff_base_s: float = 5.0
    backoff_max_s: float = 3600.0
    timeout_s: float = 10.0
    lease_s: float = 60.0

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.backoff_base_s, self.backoff_max_s, self.max_attempts)


class RetentionConfig(Section):
    """How long personal data is kept, in days; 0 or null keeps it forever. Purged every
    ``interval_s`` by the processes that run deliveries, and by `callmood purge`."""

    # Call.event (the webhook payload as received), the customer's phone number and the
    # recording URL's query string; the call row, its verdict and its alerts stay.
    raw_events_days: int | None = Field(30, ge=0)
    # Per-window results (what `rules backtest` replays); the call's verdict stays.
    segments_days: int | None = Field(180, ge=0)
    recordings_days: int | None = Field(7, ge=0)  # copies kept by worker.keep_recordings
    # The rendered bodies of delivered and dead deliveries (their status and error stay).
    delivery_bodies_days: int | None = Field(30, ge=0)
    login_failures_days: int | None = Field(7, ge=0)  # failed logins kept for throttling and review
    interval_s: float = Field(3600.0, ge=0)  # how often the service purges; 0 = only `callmood purge`


class RulesConfig(Section):
    # Directory of scenario YAML files (and routing.yaml); default: the shipped rules/scenarios.
    path: str | None = None
    # How often the running service looks for edited rule files (0 = never: restart to apply).
    # An invalid edit is refused and the last good rules stay in force.
    reload_interval_s: float = Field(2.0, ge=0)


Role = Literal[ROLES]  # viewer < supervisor < admin (plugin/core/roles.py)


class OidcConfig(Section):
    """Single sign-on with OpenID Connect (Keycloak, Azure AD/Entra ID, Okta...). Register
    CallMood at the identity provider with the redirect URI
    <server.public_url>/login/oidc/callback."""

    # The provider: its issuer URL (the discovery document is read from
    # <issuer>/.well-known/openid-configuration), or that document's URL itself.
    issuer: str | None = None
    server_metadata_url: str | None = None
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)  # e.g. ${CALLMOOD_OIDC_SECRET}
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    name_claim: str = "preferred_username"  # the claim that names the user here
    # The claim that holds the user's groups (a list or one string), and the role each
    # group gives; the highest wins. No group mapped: default_role, or (null) no entry.
    role_claim: str | None = "groups"
    roles: dict[str, Role] = Field(default_factory=dict)
    default_role: Role | None = None
    label: str = "single sign-on"  # the login page's button: "Sign in with <label>"
    timeout_s: float = Field(10.0, gt=0, le=120)  # each request to the provider

    @model_validator(mode="after")
    def _where(self) -> OidcConfig:
        if not (self.issuer or self.server_metadata_url):
            raise ValueError("give issuer or server_metadata_url")
        if "openid" not in self.scopes:
            raise ValueError("scopes must include 'openid'")
        return self

    @property
    def metadata_url(self) -> str:
        return self.server_metadata_url or f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"


class ProxyHeaderConfig(Section):
    """A reverse proxy that logs people in itself (oauth2-proxy, an ingress with SSO) and
    names them in headers. Off by default: the headers are believed only from
    trusted_networks, and only when enabled."""

    enabled: bool = False
    user_header: str = "X-Forwarded-User"
    groups_header: str | None = "X-Forwarded-Groups"  # comma-separated groups
    trusted_networks: list[str] = Field(default_factory=list)  # the proxy's own address(es)
    roles: dict[str, Role] = Field(default_factory=dict)  # group -> role; the highest wins
    default_role: Role | None = None  # no group mapped: this role, or (null) refused

    @field_validator("trusted_networks")
    @classmethod
    def _trusted(cls, v: list[str]) -> list[str]:
        return _networks(v)

    @model_validator(mode="after")
    def _needs_networks(self) -> ProxyHeaderConfig:
        if self.enabled and not self.trusted_networks:
            raise ValueError("enabled needs trusted_networks (the proxy's addresses)")
        return self


class AuthConfig(Section):
    # Signs session cookies, CSRF tokens and (without link_key) call links; at least 32
    # characters, e.g. ${CALLMOOD_SECRET_KEY}. Unset: made once and kept in
    # <data_dir>/secret_key (mode 0600). Every web and worker process must share one.
    secret_key: str | None = Field(None, min_length=32)
    # Signs the call links in alerts (default: the secret key); change it to revoke every link.
    link_key: str | None = Field(None, min_length=32)
    link_days: float = Field(7.0, gt=0, le=366)  # how long a call link opens its call
    session_hours: float = Field(12.0, gt=0, le=24 * 90)  # a login lasts this long
    # Login throttling: after this many failures for one account, or from one address,
    # within login_window_s, logins there answer 429 until the oldest failure is that old.
    login_max_failures: int = Field(5, ge=1, le=1000)
    login_window_s: float = Field(900.0, gt=0, le=7 * 86400)
    oidc: OidcConfig | None = None  # single sign-on (OpenID Connect); none by default
    proxy_header: ProxyHeaderConfig = Field(default_factory=ProxyHeaderConfig)


class RestLookupConfig(Section):
    """The CRM's customer search by phone: GET url, the JSON answer's id_field is the id;
    404 or an empty result: no such customer (plugin/flow/lookups.py)."""

    type: Literal["rest"]
    # {phone} is replaced by the E.164 number, percent-encoded ("+86..." -> "%2B86..."); the
    # scheme, host and port must be written out before it, e.g.
    # "https://crm.example.com/api/customers?phone={phone}".
    url: str
    # e.g. Authorization: "Bearer ${CRM_TOKEN}"; sent to the url's host only, never printed.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    id_field: str = "id"  # a dotted path into the answer: "id", "data.0.id", "result.customer.id"
    timeout_s: float = Field(5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _fixed_origin(cls, v: str) -> str:
        head, phone, _ = v.partition("{phone}")
        parts = urlsplit(head)
        if not phone:
            raise ValueError("must contain {phone}, where the number goes")
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError("must start with http:// or https:// and a host (no credentials: use headers)")
        if head[len(parts.scheme) + 3 + len(parts.netloc):][:1] not in ("/", "?"):
            raise ValueError("the host and port must be written out before {phone} (it may fill "
                             "in the path or the query only)")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            problem = header_problem(name, value)
            if problem:  # names what is wrong, never the value (usually a token)
                raise ValueError(problem)
        return v

    @field_validator("id_field")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v or any(not part for part in v.split(".")):
            raise ValueError('must be a dotted path such as "id" or "data.0.id"')
        return v


class CsvLookupConfig(Section):
    """A file with the columns phone,customer_id (a header row first); re-read when it changes."""

    type: Literal["csv"]
    path: str


LOOKUP_TYPES = ("rest", "csv")


class IdentityConfig(Section):
    """Finding the CRM's customer id of calls whose event carries only a phone number."""

    # The country of numbers written without one (ISO 3166 code, e.g. CN, US, GB).
    default_region: str = "CN"
    # How: none (calls without a customer id are "unmatched"), type: rest or type: csv.
    lookup: Annotated[Union[RestLookupConfig, CsvLookupConfig], Field(discriminator="type")] | None = None
    # How long the CRM's answer is kept (phone_lookups table): an id, and "no such customer".
    cache_s: float = Field(86400.0, ge=0)
    miss_cache_s: float = Field(3600.0, ge=0)

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region phonenumbers knows (an ISO 3166 code such as CN, US, GB)")
        return v.upper()


class ImportsConfig(Section):
    """`callmood import` of a drop folder on a schedule (plugin/flow/batch_import.py), run
    by the worker (`serve` with its worker, or `worker`) on the machine that sees the folder."""

    folder: str | None = None  # the drop folder, read with its subfolders
    # When, in crontab's syntax (plugin/core/cron.py), e.g. "0 2 * * *": 02:00 every day in
    # the machine's time zone; "CRON_TZ=Asia/Shanghai 0 2 * * *" names the zone. None: only by hand.
    schedule: str | None = None
    # The sidecar looked for in each folder of recordings (also by `callmood import`): CSV
    # or JSON by its extension, one row per file (customer_id, customer_phone, agent_id, ...).
    sidecar: str = "calls.csv"
    # What becomes of a file once it is a call (new or already imported): left where it is,
    # or moved to done_folder (default <folder>/done, never itself imported). Refused files stay.
    after: Literal["leave", "move"] = "move"
    done_folder: str | None = None
    # Files changed less than this long ago are still being written: the next run takes them.
    min_age_s: float = Field(60.0, ge=0)

    _cron = field_validator("schedule")(checked(cron_problem))

    @field_validator("sidecar")
    @classmethod
    def _sidecar(cls, v: str) -> str:
        if Path(v).name != v or v.startswith(".") or Path(v).suffix.lower() not in (".csv", ".json"):
            raise ValueError("must be a file name ending in .csv or .json (e.g. calls.csv), not a path")
        return v

    @model_validator(mode="after")
    def _folder(self) -> ImportsConfig:
        if self.schedule and not self.folder:
            raise ValueError("schedule needs folder (the drop folder to import)")
        return self

    @property
    def done_path(self) -> Path | None:
        if self.after != "move" or not self.folder:
            return None
        return Path(self.done_folder) if self.done_folder else Path(self.folder) / "done"


class ReportScheduleConfig(Section):
    """When one kind of review report goes out, and to which WeCom robots."""

    # crontab's syntax (plugin/core/cron.py), in reports.timezone unless it starts with CRON_TZ=.
    schedule: str | None = None
    sinks: list[str] = Field(default_factory=list)  # names under `sinks:` of type wecom_robot; none: not sent

    _cron = field_validator("schedule")(checked(cron_problem))


class DailyReportConfig(ReportScheduleConfig):
    schedule: str | None = "0 8 * * *"  # the day before, at 08:00


class WeeklyReportConfig(ReportScheduleConfig):
    schedule: str | None = "0 8 * * 1"  # the ISO week before (Monday to Sunday), on Monday at 08:00


class ReportsConfig(Section):
    """The daily and weekly emotion review report (情绪复盘报告, plugin/flow/report/): sent
    by the processes that run deliveries, shown at /reports, built by `callmood report`."""

    # The zone whose calendar days and ISO weeks the reports cover (an IANA name); None:
    # the machine's zone, as crontab reads the schedules.
    timezone: str | None = None
    negative_emotions: list[str] = Field(default_factory=lambda: ["angry", "disgusted", "fearful", "sad"],
                                         min_length=1)
    top_customers: int = Field(10, ge=0, le=100)
    max_rows: int = Field(20, ge=1, le=500)  # rows per breakdown; the rest are summed as "others"
    # A queue, agent or scenario needs this many calls in the period to be named among the
    # worst in the WeCom message (a share of two calls means little).
    min_calls: int = Field(5, ge=1)
    daily: DailyReportConfig = Field(default_factory=DailyReportConfig)
    weekly: WeeklyReportConfig = Field(default_factory=WeeklyReportConfig)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (an IANA name, e.g. Asia/Shanghai, UTC)") from None
        return v

    @field_validator("negative_emotions")
    @classmethod
    def _emotions(cls, v: list[str]) -> list[str]:
        for e in v:
            if e not in EMOTIONS:
                raise ValueError(f"unknown emotion {e!r} (known: {', '.join(EMOTIONS)})")
        return v


# Each source and each sink type owns its config model, next to its code (connectors/):
# `sources:` has one section per source, `sinks:` one per named sink, picked by its `type`.
SourcesConfig = create_model(
    "SourcesConfig", __base__=Section,
    **{name: (src.Config, Field(default_factory=src.Config)) for name, src in SOURCES.items()})
AnySink = Annotated[Union[tuple(cls.Config for cls in SINK_TYPES.values())], Field(discriminator="type")]


class Config(Section):
    data_dir: str = "./var"
    log_level: str = "INFO"
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    deliveries: DeliveryConfig = Field(default_factory=DeliveryConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    sinks: dict[str, AnySink] = Field(default_factory=dict)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)  # customer ids from phone numbers
    # Set by load()/from_dict(): which file this came from and how it was found, for the
    # line every command prints; and the ${NAME}s left unset in DEFERRED sections.
    _file: str | None = PrivateAttr(None)
    _found_by: str = PrivateAttr("")
    _origin: str = PrivateAttr("config")
    _unset: dict[str, str] = PrivateAttr(default_factory=dict)  # "sinks.crm.auth_header" -> "CRM_TOKEN"
    imports: ImportsConfig = Field(default_factory=ImportsConfig)  # a drop folder imported on a schedule
    reports: ReportsConfig = Field(default_factory=ReportsConfig)  # the daily and weekly review report

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        # Limits that only make sense together; caught here rather than as odd behaviour later.
        for name, src in SOURCES.items():
            scfg = getattr(self.sources, name)
            if not src.can_sync and (scfg.sync_interval_s or scfg.sync_schedule):
                able = ", ".join(sorted(n for n, s in SOURCES.items() if s.can_sync))
                raise ValueError(f"sources.{name}: {name} cannot list its recordings, so it has no sync "
                                 f"(sync_interval_s, sync_schedule); these can: {able}")
        for kind in ("daily", "weekly"):  # the review report goes to WeCom robots only
            for name in getattr(self.reports, kind).sinks:
                sink = self.sinks.get(name)
                if sink is None:
                    raise ValueError(f"reports.{kind}.sinks: {name!r} is not under sinks: "
                                     f"(configured: {', '.join(sorted(self.sinks)) or 'none'})")
                if sink.type != "wecom_robot":
                    raise ValueError(f"reports.{kind}.sinks: {name!r} is a {sink.type} sink; the report goes "
                                     f"to WeCom robots (type wecom_robot)")
        if self.audio.min_segment_s > self.audio.window_s:
            raise ValueError(f"audio.min_segment_s ({self.audio.min_segment_s}) must not exceed "
                             f"audio.window_s ({self.audio.window_s})")
        busy = self.server.predict_concurrency + self.server.predict_queue
        if busy >= self.server.threads:
            raise ValueError(f"server.predict_concurrency + server.predict_queue ({busy}) must be below "
                             f"server.threads ({self.server.threads}), or uploads can hold every server "
                             f"thread and webhooks wait")
        if self.fetch.max_seconds >= self.worker.lease_s:
            raise ValueError(f"fetch.max_seconds ({self.fetch.max_seconds}) must be below worker.lease_s "
                             f"({self.worker.lease_s}), or another worker takes the job mid-download")
        for name, sink in {"deliveries": self.deliveries, **self.sinks}.items():
            timeout = sink.timeout_s
            if timeout is not None and timeout >= self.deliveries.lease_s:
                where = "deliveries" if name == "deliveries" else f"sinks.{name}"
                raise ValueError(f"{where}.timeout_s ({timeout}) must be below deliveries.lease_s "
                                 f"({self.deliveries.lease_s}), or a slow send is sent twice")
        return self

    @property
    def origin_line(self) -> str:
        """What every `callmood` command prints on stderr: the file it read, and how it found it."""
        if self._file is None:
            return (f"config: none (built-in defaults: no --config, no ${ENV_CONFIG}, "
                    f"no ./{LOCAL_CONFIG})")
        return f"config: {self._file}{f' ({self._found_by})' if self._found_by else ''}"

    def require_env(self, *sections: str) -> None:
        """Raise ConfigError, one line naming the file, the key and the variable, when a
        ${NAME} in one of ``sections`` ("sinks", "identity.lookup") is unset. The parts
        that send or look up call this when they are built (Services.runtime, `serve`,
        `worker`); commands that never use them run without those secrets."""
        missing = self.unset_env(*sections)
        if missing:
            key, name = missing
            raise ConfigError(f"{self._origin}: {key}: environment variable {name} is not set "
                              f"(needed {DEFERRED[_deferred_section(key)]})")

    def unset_env(self, *sections: str) -> tuple[str, str] | None:
        """The first (key, variable) left unset in ``sections``: a DEFERRED section
        ("sinks") or a part of one ("sources.twilio"); None when all are set."""
        for key, name in self._unset.items():
            if any(key == s or key.startswith(s + ".") for s in sections):
                return key, name
        return None

    def enabled_sources(self) -> list[str]:
        """"sources.<name>" of every enabled source: whose webhooks `serve` takes and whose
        recordings a worker fetches (for require_env: a disabled source's secrets are never needed)."""
        return [f"sources.{name}" for name in SOURCES if getattr(self.sources, name).enabled]

    def source(self, name: str) -> SourceConfig | None:
        """The config of source ``name`` (from a URL: anything), or None when there is no such source."""
        return getattr(self.sources, name) if name in SOURCES else None

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'callmood.db'}"

    @property
    def rules_path(self) -> Path:
        if self.rules.path:
            return Path(self.rules.path)
        return Path(__file__).resolve().parent.parent / "rules" / "scenarios"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Sections used only to send alerts, to look customers up, or to receive a vendor's calls,
# by the processes that do (serve, worker, sync): an unset ${NAME} in them is left as
# written and is an error only when that part is built (Config.require_env), so
# `analyze -c`, `rules check -c` and `report` run without the CRM's token or Twilio's.
# Everything else is resolved, or refused, when the file loads.
DEFERRED = {"sinks": "to send alerts through this sink", "identity.lookup": "to look up customer ids",
            "sources": "to receive this source's calls and fetch its recordings"}


def _deferred_section(key: str) -> str | None:
    """"sinks" for "sinks.crm.auth_header", "identity.lookup" for "identity.lookup.headers.X"."""
    return next((s for s in DEFERRED if key.startswith(s + ".")), None)


def _expand_env(value: Any, origin: str, path: str = "", unset: dict[str, str] | None = None) -> Any:
    """Replace ${NAME} with the environment variable, so secrets stay out of the file. In a
    DEFERRED section an unset one is recorded in ``unset`` and left as written."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name in os.environ:
                return os.environ[name]
            if unset is not None and _deferred_section(path):
                unset.setdefault(path, name)
                return m.group(0)
            raise ConfigError(f"{origin}: {path + ': ' if path else ''}environment variable {name} is not set")
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, origin, f"{path}.{k}" if path else str(k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, origin, f"{path}[{i}]", unset) for i, v in enumerate(value)]
    return value


def _describe(err: ValidationError, origin: str) -> str:
    loc, msg = problems(err)[0]
    # Sections picked by their `type` (sinks.<name>, identity.lookup): what they are called.
    noun, tags = ("lookup", LOOKUP_TYPES) if loc[:2] == ("identity", "lookup") else ("sink", SINK_TYPES)
    if len(loc) > 2 and loc[0] in ("sinks", "identity") and loc[2] in tags:
        loc = loc[:2] + loc[3:]  # pydantic names the type it tried; the file does not
    kind = err.errors()[0]["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        types = ", ".join(tags)
        got = err.errors()[0].get("ctx", {}).get("tag")
        loc, msg = loc + ("type",), (f"unknown {noun} type {got!r} (known: {types})" if got is not None
                                     else f"is required (one of {types})")
    if msg == "unknown key":
        msg += " (check the spelling against config.example.yaml)"
    where = dotted(loc)
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{origin}: {where + ': ' if where else ''}{msg}{more}"


def from_dict(data: dict | None, origin: str = "config") -> Config:
    unset: dict[str, str] = {}
    data = _expand_env(data or {}, origin, unset=unset)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        # A value refused with a ${NAME} still unset in it (e.g. a URL whose host is one):
        # the missing variable is what is wrong, not the text as written.
        loc = problems(err)[0][0]
        where = {dotted(loc), dotted(loc[:2] + loc[3:])}  # as written, and without the type pydantic tried
        for key, name in unset.items():
            if key in where:
                raise ConfigError(f"{origin}: {key}: environment variable {name} is not set") from None
        raise ConfigError(_describe(err, origin)) from None
    cfg._origin, cfg._unset = origin, unset
    return cfg


def locate(path: str | os.PathLike | None = None) -> tuple[str | None, str]:
    """The file a command reads, and how it was found: ``path`` (-c/--config), else
    $CALLMOOD_CONFIG, else ./config.yaml when there is one, else None (the defaults).
    Every `callmood` command and `make run` find it this way."""
    if path:
        return str(path), ""
    if os.environ.get(ENV_CONFIG):
        return os.environ[ENV_CONFIG], f"from ${ENV_CONFIG}"
    if Path(LOCAL_CONFIG).exists():
        return f"./{LOCAL_CONFIG}", "found in the working directory"
    return None, ""


def load(path: str | os.PathLike | None = None, overrides: dict | None = None) -> Config:
    """Load the config from the file locate() finds; the defaults when there is none."""
    path, found_by = locate(path)
    data: dict = {}
    origin = "defaults"
    if path:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        if _size(data, MAX_VALUES) > MAX_VALUES:
            raise ConfigError(f"{path}: more than {MAX_VALUES} values once YAML aliases are expanded")
    if overrides:
        data = _deep_merge(data, overrides)
    cfg = from_dict(data, origin)
    cfg._file, cfg._found_by = path, found_by
    return cfg


# A few YAML aliases can stand for a huge tree ("billion laughs"); everything after the
# parse walks the expanded tree, so its size is capped first.
MAX_VALUES = 100_000


def _size(value: Any, budget: int) -> int:
    """How many values ``value`` holds once expanded, counting no further than ``budget + 1``."""
    seen, stack = 0, [value]
    while stack and seen <= budget:
        v = stack.pop()
        seen += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return seen


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
