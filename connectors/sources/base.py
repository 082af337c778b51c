"""What every webhook source provides: verify the sender, normalize the event."""

from __future__ import annotations

from typing import Mapping, Protocol

from plugin.config import SourceConfig
from plugin.data import CallEvent


class SignatureError(Exception):
    """The request is not signed by the configured secret (HTTP 401)."""


class EventError(Exception):
    """The body is not a valid event; ``field`` names the offending field (HTTP 400)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Source(Protocol):
    name: str

    def verify(self, headers: Mapping[str, str], body: bytes, cfg: SourceConfig) -> None: ...

    def parse(self, body: bytes) -> CallEvent: ...
