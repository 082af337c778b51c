"""Times on the pages as the team reads them: in the team's time zone (``reports.timezone``;
unset, the machine's), with how long ago in the page's language ("3 分钟前" or "3 min ago"),
the exact UTC time in the tooltip and in ``<time datetime>`` for machines. The API keeps ISO UTC."""

from __future__ import annotations

from datetime import datetime, timezone

from flask_babel import gettext as _
from markupsafe import Markup, escape

from plugin.flow.report.period import zone
from plugin.web.services import get_services


def _parse(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def ago(seconds: float) -> str:
    """A span in words, in the page's language (outside a request: English): "just now",
    "3 min ago", "in 2 h"; the units are abbreviations, so no plural forms are needed."""
    future, s = seconds < 0, abs(seconds)
    if s < 45:
        return _("just now")
    for limit, size, unit in ((3600, 60, "min"), (86400, 3600, "h"), (86400 * 45, 86400, "d"),
                              (float("inf"), 86400 * 30, "mo")):
        if s < limit:
            n = max(1, round(s / size))
            return _AHEAD[unit](n) if future else _AGO[unit](n)
    raise AssertionError("unreachable")


# One whole phrase per unit and direction, so each language orders number and unit its own way.
_AGO = {"min": lambda n: _("%(n)d min ago", n=n), "h": lambda n: _("%(n)d h ago", n=n),
        "d": lambda n: _("%(n)d d ago", n=n), "mo": lambda n: _("%(n)d mo ago", n=n)}
_AHEAD = {"min": lambda n: _("in %(n)d min", n=n), "h": lambda n: _("in %(n)d h", n=n),
          "d": lambda n: _("in %(n)d d", n=n), "mo": lambda n: _("in %(n)d mo", n=n)}


def when(value: object) -> Markup:
    """``<time>`` with the local time and how long ago; "-" for no time."""
    t = _parse(value)
    if t is None:
        return Markup("-")
    svc = get_services()
    tz = zone(svc.config.reports.timezone)
    now = svc.clock.now().replace(tzinfo=timezone.utc)
    local = t.astimezone(tz)
    utc = t.astimezone(timezone.utc)
    return Markup('<time datetime="{iso}" title="{utc} UTC">{local} <small>({ago})</small></time>').format(
        iso=utc.isoformat(timespec="seconds").replace("+00:00", "Z"), utc=utc.strftime("%Y-%m-%d %H:%M:%S"),
        local=local.strftime("%Y-%m-%d %H:%M"), ago=escape(ago((now - utc).total_seconds())))
