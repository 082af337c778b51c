"""A generic CRM REST endpoint: URL, method, headers and JSON body from config.

    sinks:
      crm:
        type: rest
        url: "https://crm.example.com/api/customers/{{ call.customer_id }}/tags"
        auth_header: "Bearer ${CRM_TOKEN}"
        body: {"tag": "{{ action.tag }}", "note": "{{ alert.summary }}"}

String values in ``url``, ``headers`` and ``body`` are Jinja2 templates over
call, alert, action and link, rendered when the action is planned and stored
with the delivery; ``auth_header`` is added at send time and never stored, so
secrets belong there. Any 2xx answer is success.

As a routing receiver's sink (routing.yaml) the templates also see ``alerts`` (every
alert of the notification: ``{"alert", "call", "link", "time"}`` each), ``count`` and
``digest`` (true for a quiet-hours digest); ``alert`` and ``call`` are its worst alert's,
e.g. ``note: "{{ count }} alert(s): {% for i in alerts %}{{ i.alert.summary }}; {% endfor %}"``.
"""

from __future__ import annotations

from typing import Any, Literal

import requests
from pydantic import Field, field_validator

from connectors.sinks.base import SendResult, Sink, SinkConfig, post_json
from plugin.core.sandbox import render

DEFAULT_BODY = {
    "customer_id": "{{ call.customer_id }}",
    "customer_phone": "{{ call.customer_phone }}",
    "ticket_id": "{{ call.ticket_id }}",
    "call_id": "{{ call.external_id }}",
    "tags": ["{{ action.get('tag') or 'callmood-' ~ alert.rule }}"],
    "note": "{{ alert.summary }}",
    "severity": "{{ alert.severity }}",
    "emotion": "{{ alert.emotions | join(',') }}",
    "confidence": "{{ alert.confidence }}",
    "link": "{{ link }}",
}


def render_tree(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, **ctx)
    if isinstance(value, dict):
        return {k: render_tree(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, ctx) for v in value]
    return value


class RestConfig(SinkConfig):
    type: Literal["rest"]
    url: str  # a Jinja2 template
    method: str = "POST"
    # Extra request headers (Jinja2 templates, stored with each delivery: no secrets here).
    headers: dict[str, str] = Field(default_factory=dict)
    # Full value of the Authorization header, e.g. "Bearer ${CRM_TOKEN}"; added at send time, never stored.
    auth_header: str | None = None
    # Jinja2 template of the JSON body, rendered with call, alert, action and link; default DEFAULT_BODY.
    body: Any = None

    @field_validator("method")
    @classmethod
    def _upper(cls, v: str) -> str:
        v = v.upper()
        if v not in {"POST", "PUT", "PATCH"}:
            raise ValueError("must be POST, PUT or PATCH")
        return v


class RestSink(Sink):
    kind = "rest"
    Config = RestConfig
    cfg: RestConfig

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        body = self.cfg.body if self.cfg.body is not None else DEFAULT_BODY
        return {"method": self.cfg.method, "url": render(self.cfg.url, **ctx),
                "headers": render_tree(self.cfg.headers, ctx), "body": render_tree(body, ctx)}

    def headers(self, idempotency_key: str) -> dict[str, str]:
        h = super().headers(idempotency_key)
        if self.cfg.auth_header:  # added here, at send time, so it is never stored
            h["Authorization"] = self.cfg.auth_header
        return h

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        headers = {**payload.get("headers", {}), **self.headers(idempotency_key)}
        resp = post_json(http, payload["method"], payload["url"], payload["body"], headers, timeout)
        if isinstance(resp, SendResult):
            return resp
        if 200 <= resp.status_code < 300:
            return SendResult(True, resp.status_code)
        # A request the CRM calls malformed or aimed at nothing will not succeed later;
        # auth errors may (an admin fixes the token), so they are retried.
        final = resp.status_code in (400, 404, 405, 410, 422)
        return SendResult(False, resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}",
                          retryable=not final)
