"""What every sink provides: render a planned action into a stored payload, send it.

Sinks never touch the database: the delivery loop hands them a payload and
stores what they answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from plugin.config import SinkConfig


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = True  # False: the same request can never succeed (the delivery dies at once)


class Sink:
    kind = "base"

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
        # Secrets are added here, at send time, so they are never stored with the payload.
        h = {"User-Agent": "CallMood", "Idempotency-Key": idempotency_key}
        if self.cfg.auth_header:
            h["Authorization"] = self.cfg.auth_header
        return h


def post_json(http: requests.Session, method: str, url: str, body: Any, headers: dict,
              timeout: float) -> requests.Response | SendResult:
    try:
        return http.request(method, url, json=body, headers=headers, timeout=timeout,
                            allow_redirects=False)
    except requests.Timeout:
        return SendResult(False, None, f"timed out after {timeout:.0f}s")
    except requests.RequestException as exc:
        return SendResult(False, None, f"{exc.__class__.__name__}: {str(exc)[:200]}")
