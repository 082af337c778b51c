"""Reading vendors' fields at the door, the same way for every source: a JSON object, ids,
recording URLs and queue names, each refused with an EventError that names the field and
what is wrong, never the value (it may be an attack, and it is logged and echoed)."""

from __future__ import annotations

import re
from typing import Any

from connectors.sources.base import EventError
from plugin.core import ids, safe_json

URL_MAX = 4096


def json_value(body: bytes) -> Any:
    """The body as JSON, with plugin/core/safe_json.py's limits."""
    try:
        return safe_json.loads(body)
    except safe_json.UnsafeJson as exc:
        raise EventError(exc.where, exc.message) from None


def json_object(body: bytes, expected: str = "expected a JSON object") -> dict[str, Any]:
    """The body as a JSON object; ``expected`` says what it should have been."""
    data = json_value(body)
    if not isinstance(data, dict):
        raise EventError("body", expected)
    return data


def url_problem(value: str) -> str | None:
    """Why ``value`` is not a recording URL we fetch, or None."""
    if len(value) > URL_MAX:
        return f"is {len(value)} characters long; at most {URL_MAX}"
    if not value.startswith(("http://", "https://")):
        return "must be an http(s) URL"
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in value):
        # Two URL parsers may read such a URL as two different hosts (plugin/audio/fetch.py).
        return "must not contain whitespace, control characters or a backslash"
    return None


def http_url(field: str, value: Any) -> str:
    """``value`` as a recording URL, or EventError naming ``field``."""
    problem = url_problem(value) if isinstance(value, str) else "must be an http(s) URL"
    if problem:
        raise EventError(field, problem)
    return value


def queue_name(name: Any) -> str | None:
    """A line's or group's name as a queue ("Support Line" -> "Support-Line"): rules pick the
    scenario by queue, and queues are ids (no spaces). A name that still is not one is left
    out rather than refused (a vendor that gets a 400 over a line's name may disable the webhook)."""
    if not isinstance(name, str) or not name.strip():
        return None
    text = re.sub(r"\s+", "-", name.strip())
    return text if ids.id_problem(text) is None else None
