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

from typing import Any

import requests

from connectors.sinks.base import SendResult, Sink, post_json
from rules.engine import render

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


class RestSink(Sink):
    kind = "rest"

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        body = self.cfg.body if self.cfg.body is not None else DEFAULT_BODY
        return {"method": self.cfg.method, "url": render(self.cfg.url, **ctx),
                "headers": render_tree(self.cfg.headers, ctx), "body": render_tree(body, ctx)}

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
