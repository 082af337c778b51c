"""What /admin/routing shows: routing.yaml in force (routes in order, their receivers and
each receiver's sink), read from the rules holder, with every secret left out.

A sink's config holds its secrets (a robot's ?key=, corp secrets, API tokens, an
Authorization header): only names listed in SHOWN are ever read from it, URLs go through
scrub.url (no credentials, no query string) and every other value through scrub.text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from plugin.core import scrub
from rules.routing import ReceiverSpec, Routing, RouteSpec

# The only keys of a sink's config this page reads: where it sends and to whom, never how it
# authenticates. A new sink type's secret cannot leak here by being forgotten.
URL_KEYS = ("url", "api_base")
SHOWN = ("method", "subdomain", "agentid", "mentioned_list", "touser", "toparty", "totag", "group_name", "cards")


def overview(routing: Routing | None, sink_configs: dict[str, Any], sinks: dict[str, Any]) -> dict[str, Any]:
    described = {name: sink(name, cfg, sinks.get(name)) for name, cfg in sorted(sink_configs.items())}
    if routing is None:
        return {"routing": None, "sinks": list(described.values())}
    receivers = {name: receiver(r, described) for name, r in routing.receivers.items()}
    used = {r.receiver for r in routing.routes}
    d = routing.defaults
    q = routing.quiet_hours
    return {
        "routing": True,
        "defaults": {"group_by": list(d.group_by or []), "group_wait": duration(d.group_wait),
                     "cooldown": duration(d.cooldown)},
        "routes": [route(r, receivers) for r in routing.routes],
        "receivers": list(receivers.values()),
        "unused_receivers": sorted(set(receivers) - used),
        "quiet_hours": None if q is None else {"timezone": q.timezone, "start": q.start, "end": q.end,
                                                "min_severity": q.min_severity},
        "sinks": list(described.values()),
    }


def route(r: RouteSpec, receivers: dict[str, dict]) -> dict[str, Any]:
    m = r.match
    match = [(k, v) for k, v in (("scenario", m.scenario), ("severity", m.severity), ("rule", m.rule),
                                 ("role", m.role)) if v]
    if m.min_severity:
        match.append(("min_severity", [m.min_severity]))
    match += [(f"labels.{k}", v) for k, v in sorted(m.labels.items())]
    return {"index": r.index + 1, "match": match, "receiver": r.receiver, "to": receivers.get(r.receiver),
            "continue": r.continue_, "group_by": list(r.group_by or []), "group_wait": duration(r.group_wait),
            "cooldown": duration(r.cooldown)}


def receiver(r: ReceiverSpec, described: dict[str, dict]) -> dict[str, Any]:
    return {"name": r.name, "sink": r.sink, "sink_info": described.get(r.sink),
            "mentions": None if r.mentions is None else list(r.mentions),
            "recipients": [(k, list(getattr(r, k))) for k in ("touser", "toparty", "totag")
                           if getattr(r, k) is not None],
            "template": r.template}


def _origin(url: str) -> str:
    """scheme://host[:port]/… only: webhook URLs carry their key in the query (WeCom's
    ?key=) or in the path (Slack, Feishu and Teams hooks), and a template may hold either."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a templated port, say
        return "…"
    if not parts.scheme or not host:
        return "…"
    return f"{parts.scheme}://{host}/…" if parts.path.strip("/") or parts.query else f"{parts.scheme}://{host}"


def sink(name: str, cfg: Any, built: Any) -> dict[str, Any]:
    """A sink's name and type, where it sends (scheme and host only), and whom it
    messages; nothing else of its config."""
    urls = [(k, _origin(scrub.text(getattr(cfg, k)))) for k in URL_KEYS if getattr(cfg, k, None)]
    shown = []
    for k in SHOWN:
        value = getattr(cfg, k, None)
        if value is None or value == []:
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(scrub.text(v) for v in value)
        shown.append((k, scrub.text(value)))
    return {"name": name, "type": getattr(cfg, "type", "?"), "urls": urls, "shown": shown,
            "messaging": bool(getattr(built, "messaging", False))}


def duration(seconds: float | None) -> str:
    """4h, 1h30m, 90s, 0s: as routing.yaml writes durations."""
    if not seconds:
        return "0s"
    s = float(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n = int(s // size)
        if n:
            out += f"{n}{unit}"
            s -= n * size
    if s or not out:
        out += f"{s:g}s"
    return out
