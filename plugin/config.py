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

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from connectors.sinks import SINK_TYPES
from connectors.sources import SOURCES, SourceConfig
from plugin.core.retry import RetryPolicy
from plugin.core.validation import StrictModel, dotted, problems

ENV_CONFIG = "CALLMOOD_CONFIG"


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
    batch_size: int = Field(0, ge=0, le=1024)  # windows per forward; 0 = 64 on CUDA, 16 on CPU
    threads: int = Field(0, ge=0, le=256)  # torch CPU threads; 0 = the CPUs this process may use
    # How often to try again when the model could not be loaded (offline, missing files).
    retry_interval_s: float = 60.0


class AudioConfig(Section):
    window_s: float = Field(3.0, gt=0.2, le=30)
    # A trailing piece shorter than this is dropped: too short to judge.
    min_segment_s: float = Field(1.0, gt=0, le=30)
    max_duration_s: float = Field(4 * 3600, gt=0)
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
    keep_recordings: bool = False
    # Calls one worker process handles at once: while one call is on the model, the
    # next ones download, decode and find speech. Their windows share model batches.
    concurrency: int = Field(2, ge=1, le=64)

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


class RulesConfig(Section):
    # Directory of scenario YAML files (and routing.yaml); default: the shipped rules/scenarios.
    path: str | None = None
    # How often the running service looks for edited rule files (0 = never: restart to apply).
    # An invalid edit is refused and the last good rules stay in force.
    reload_interval_s: float = Field(2.0, ge=0)


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
    audio: AudioConfig = Field(default_factory=AudioConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    deliveries: DeliveryConfig = Field(default_factory=DeliveryConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    sinks: dict[str, AnySink] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        # Limits that only make sense together; caught here rather than as odd behaviour later.
        if self.audio.min_segment_s > self.audio.window_s:
            raise ValueError(f"audio.min_segment_s ({self.audio.min_segment_s}) must not exceed "
                             f"audio.window_s ({self.audio.window_s})")
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


def _expand_env(value: Any, where: str) -> Any:
    """Replace ${NAME} with the environment variable, so secrets stay out of the file."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _describe(err: ValidationError, origin: str) -> str:
    loc, msg = problems(err)[0]
    if len(loc) > 2 and loc[0] == "sinks" and loc[2] in SINK_TYPES:
        loc = loc[:2] + loc[3:]  # pydantic names the sink type it tried; the file does not
    kind = err.errors()[0]["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        types = ", ".join(SINK_TYPES)
        got = err.errors()[0].get("ctx", {}).get("tag")
        loc, msg = loc + ("type",), (f"unknown sink type {got!r} (known: {types})" if got is not None
                                     else f"is required (one of {types})")
    if msg == "unknown key":
        msg += " (check the spelling against config.example.yaml)"
    where = dotted(loc)
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{origin}: {where + ': ' if where else ''}{msg}{more}"


def from_dict(data: dict | None, origin: str = "config") -> Config:
    data = _expand_env(data or {}, origin)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, origin)) from None


def load(path: str | os.PathLike | None = None, overrides: dict | None = None) -> Config:
    """Load the config from ``path`` (or $CALLMOOD_CONFIG); defaults when neither is given."""
    path = path or os.environ.get(ENV_CONFIG)
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
    if overrides:
        data = _deep_merge(data, overrides)
    return from_dict(data, origin)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
