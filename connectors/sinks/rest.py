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
secrets belong there. Any 2xx answer is success; a 429 is retried when its
Retry-After says (a minute without one), and is not counted as an attempt.

Values inserted into ``url`` are percent-encoded, so each stays inside its path segment
or query value (a customer id ``../../admin?x=1#`` is one segment, ``..%2F..%2Fadmin%3Fx%3D1%23``);
the scheme, host and port must be written out in the template and are checked again
after rendering. A rendered header that HTTP cannot carry (CR, LF, NUL...) makes the
delivery fail at once, with the reason.

As a routing receiver's sink (routing.yaml) the templates also see ``alerts`` (every
alert of the notification: ``{"alert", "call", "link", "time"}`` each), ``count`` and
``digest`` (true for a quiet-hours digest); ``alert`` and ``call`` are its worst alert's,
e.g. ``note: "{{ count }} alert(s): {% for i in alerts %}{{ i.alert.summary }}; {% endfor %}"``.

What was said in the segments that fired is ``alert.quotes`` in the templates (a list of
``{"start", "end", "role", "text"}``, empty without transcripts), e.g.
``note: "{% for q in alert.quotes %}{{ q.role }}: {{ q.text }}\n{% endfor %}"``. The default
body carries them twice: as lines under the note ("02:13 customer: ..."), and as ``quotes``,
a list of ``{"start", "end", "time", "role", "text"}``, each quote on one line.

About calls a trial model analysed (``trial`` in the templates: random weights) every
request says so whatever the templates: the header ``X-CallMood-Model: trial model, random
weights``, and a JSON object body gets ``"trial": true`` and its ``note`` starts with
"试用模型（随机权重）trial model, random weights: ".
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import requests
from pydantic import Field, field_validator

from connectors.sinks.base import SendResult, Sink, SinkConfig, header_problem, post_json, retry_after_s
from connectors.sinks.quotes import ROLES_EN, quote_lines, quotes_json
from plugin.core import trial
from plugin.core.sandbox import render, render_escaped

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


def trial_marked(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` saying "trial model, random weights": in a header whatever the body is,
    and as ``"trial": true`` and the note's first words in a JSON object body."""
    headers = {**payload["headers"], "X-CallMood-Model": trial.TEXT}
    body = payload["body"]
    if isinstance(body, dict):
        body = {"trial": True, **{k: v for k, v in body.items() if k != "trial"}}
        if isinstance(body.get("note"), str):
            body["note"] = f"{trial.LABEL}: {body['note']}"
    return {**payload, "headers": headers, "body": body}


def with_quotes(body: dict[str, Any], alert: dict[str, Any]) -> dict[str, Any]:
    """The default body with what was said: one line a quote under the note, and the quotes
    as data (``quotes``, [] without transcripts)."""
    lines = quote_lines(alert, ROLES_EN, 200)
    note = body.get("note") or ""
    if lines:
        note = "\n".join([note, *lines]) if note else "\n".join(lines)
    return {**body, "note": note, "quotes": quotes_json(alert)}


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

    @field_validator("url")
    @classmethod
    def _fixed_origin(cls, v: str) -> str:
        origin(v)  # raises ValueError when the template does not write out where it goes
        return v

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            problem = header_problem(name, "")
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("auth_header")
    @classmethod
    def _auth(cls, v: str | None) -> str | None:
        problem = header_problem("Authorization", v) if v is not None else None
        if problem:
            raise ValueError(problem.replace("header Authorization: value", "the value"))
        return v


def origin(template: str) -> tuple[str, str]:
    """The (scheme, host[:port]) a URL template writes out before its first template tag."""
    literal = re.split(r"\{[{%#]", template, maxsplit=1)
    head = literal[0]
    parts = urlsplit(head)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must start with http:// or https:// and a host written out, not templated")
    rest = head[len(parts.scheme) + 3 + len(parts.netloc):]
    if len(literal) > 1 and rest[:1] not in ("/", "?"):
        raise ValueError("the host must be written out in full before the first {{ }} "
                         "(a template may fill in the path and the query only)")
    if "@" in parts.netloc:
        raise ValueError("credentials in the URL are not supported; use auth_header")
    return parts.scheme, parts.netloc.lower()


def url_value(value: str) -> str:
    """One value put into a URL template: percent-encoded so that it stays inside its path
    segment or query value (``/``, ``?``, ``#``, ``&``, ``=`` and ``%`` included)."""
    if value in (".", ".."):  # a whole segment of dots would climb the path, encoded or not
        raise ValueError(f"{value!r} cannot be a URL path segment")
    return quote(value, safe="")


def render_url(template: str, ctx: dict[str, Any]) -> str:
    """``template`` rendered with every value encoded, checked to go where it says."""
    url = render_escaped(url_value, template, **ctx)
    scheme, netloc = origin(template)
    parts = urlsplit(url)
    if (parts.scheme, parts.netloc.lower()) != (scheme, netloc):
        raise ValueError(f"rendered URL goes to {parts.scheme}://{parts.netloc}, not {scheme}://{netloc}")
    if any(unquote(seg) in (".", "..") for seg in parts.path.split("/")):
        raise ValueError(f"rendered URL path {parts.path[:200]!r} has a . or .. segment")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ValueError("rendered URL contains whitespace or control characters")
    return url


def render_headers(headers: dict[str, str], ctx: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, template in headers.items():
        value = render(template, **ctx)
        problem = header_problem(name, value)
        if problem:
            raise ValueError(problem)
        out[name] = value
    return out


class RestSink(Sink):
    kind = "rest"
    Config = RestConfig
    cfg: RestConfig

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        body = render_tree(self.cfg.body if self.cfg.body is not None else DEFAULT_BODY, ctx)
        if self.cfg.body is None:
            body = with_quotes(body, ctx["alert"])
        payload = {"method": self.cfg.method, "url": render_url(self.cfg.url, ctx),
                   "headers": render_headers(self.cfg.headers, ctx), "body": body}
        return trial_marked(payload) if ctx.get("trial") else payload

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
        if resp.status_code == 429:  # busy: when it says (Retry-After), and not counted as an attempt
            return SendResult(False, 429, f"HTTP 429: {resp.text[:200]}", throttled=True,
                              retry_after=retry_after_s(resp.headers.get("Retry-After")))
        # A request the CRM calls malformed or aimed at nothing will not succeed later;
        # auth errors may (an admin fixes the token), so they are retried.
        final = resp.status_code in (400, 404, 405, 410, 422)
        return SendResult(False, resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}",
                          retryable=not final)
