"""What every webhook source provides: its config, verifying the sender, normalizing the event."""

from __future__ import annotations

from typing import ClassVar, Mapping, Protocol

from plugin.core.data import CallEvent
from plugin.core.validation import StrictModel


class SignatureError(Exception):
    """The request is not signed by the configured secret (HTTP 401)."""


class EventError(Exception):
    """The body is not a valid event; ``field`` names the offending field (HTTP 400)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SourceConfig(StrictModel):
    """What every source's section under ``sources:`` has; a source adds its own keys."""

    enabled: bool = True


class Source(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[SourceConfig]]  # its section under `sources:` in the config

    def verify(self, headers: Mapping[str, str], body: bytes, cfg: SourceConfig,
               now: float | None = None) -> None: ...  # now: unix seconds (default: time.time())

    def parse(self, body: bytes) -> CallEvent: ...
