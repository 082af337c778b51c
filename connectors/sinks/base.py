"""What every sink provides: its config, rendering a planned action into a stored
payload, and sending that payload.

Sinks never touch the database: the outbox hands them a payload and stores what they
answer. Secrets (tokens, robot keys) stay in the sink's config and are added at send time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import requests

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


def post_json(http: requests.Session, method: str, url: str, body: Any, headers: dict,
              timeout: float) -> requests.Response | SendResult:
    try:
        return http.request(method, url, json=body, headers=headers, timeout=timeout,
                            allow_redirects=False)
    except requests.Timeout:
        return SendResult(False, None, f"timed out after {timeout:.0f}s")
    except requests.RequestException as exc:
        return SendResult(False, None, f"{exc.__class__.__name__}: {str(exc)[:200]}")
