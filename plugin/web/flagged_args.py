"""The red-flag list's query string, read the same way by the page, its CSV and /api/flagged.

Every value is checked against a whitelist or a shape; a value that fails is left out and
named in ``problems`` (the page shows them, the API answers 400). Dates are days in the
team's time zone (``reports.timezone``): ``from=2026-11-01&to=2026-11-30`` is every alert
from that zone's midnight of the 1st to the end of the 30th.

A search that looks like a phone number also finds the customers who called from it, for
supervisors only: a viewer sees phone numbers masked, and a search that answered for a
full number would tell them the number they guessed was right."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from flask import request
from flask_babel import gettext as _

from plugin.core import ids
from plugin.core.phones import written_forms
from plugin.flow.report.period import zone
from plugin.store.flagged import FEEDBACK_STATES, HANDLED_STATES, SEVERITIES, SORTS, FlaggedQuery
from plugin.web.auth.identity import current, may
from plugin.web.services import get_services

PAGE = 50
MAX_PAGE = 10_000
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What the page's links and forms carry, in this order (nothing else is kept).
KEYS = ("q", "scenario", "queue", "agent", "severity", "feedback", "handled", "from", "to", "days", "sort")


@dataclass
class FlaggedArgs:
    query: FlaggedQuery
    shown: dict[str, str | int] = field(default_factory=dict)  # the accepted values, for links and the form
    problems: list[tuple[str, str]] = field(default_factory=list)  # (key, what is wrong)
    phone_search: str | None = None  # "matched": phones searched; "refused": a viewer's phone-like search
    page: int = 1


def _text(key: str, most: int, out: FlaggedArgs) -> str | None:
    value = (request.args.get(key) or "").strip()
    if not value:
        return None
    if len(value) > most or any(not c.isprintable() for c in value):
        out.problems.append((key, _("%(key)s: at most %(n)d printable characters", key=key, n=most)))
        return None
    out.shown[key] = value
    return value


def _choice(key: str, allowed: tuple[str, ...], out: FlaggedArgs) -> str | None:
    value = request.args.get(key) or None
    if value is None:
        return None
    if value not in allowed:
        out.problems.append((key, _("%(key)s: one of %(allowed)s", key=key, allowed=", ".join(allowed))))
        return None
    out.shown[key] = value
    return value


def _day(key: str, out: FlaggedArgs) -> date | None:
    value = (request.args.get(key) or "").strip()
    if not value:
        return None
    try:
        if not DATE.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
        if not 2000 <= day.year <= 2100:
            raise ValueError
    except ValueError:
        out.problems.append((key, _("%(key)s: a day as YYYY-MM-DD", key=key)))
        return None
    out.shown[key] = value
    return day


def _utc(day: date, tz) -> datetime:
    """The start of ``day`` in the zone ``tz``, as naive UTC (how the database keeps times)."""
    return datetime.combine(day, time(0), tz).astimezone(timezone.utc).replace(tzinfo=None)


def parse() -> FlaggedArgs:
    """The request's filters, sort and page."""
    svc = get_services()
    out = FlaggedArgs(FlaggedQuery())
    search = _text("q", 255, out)
    scenario, queue, agent = _text("scenario", 64, out), _text("queue", 255, out), _text("agent", 255, out)
    severity = _choice("severity", SEVERITIES, out)
    feedback = _choice("feedback", FEEDBACK_STATES, out)
    handled = _choice("handled", HANDLED_STATES, out)
    sort = _choice("sort", SORTS, out) or SORTS[0]
    tz = zone(svc.config.reports.timezone)
    first, last = _day("from", out), _day("to", out)
    if first and last and first > last:
        out.problems.append(("to", _("to: on or after from")))
        out.shown.pop("to")
        last = None
    since = _utc(first, tz) if first else None
    until = _utc(last + timedelta(days=1), tz) if last else None
    days = request.args.get("days", type=int)
    if request.args.get("days") and not (days and 0 < days <= 3660):
        out.problems.append(("days", _("days: a number from 1 to 3660")))
    elif days:
        out.shown["days"] = days
        with svc.sessions() as s:
            recent = svc.clock.now(s) - timedelta(days=days)
        since = max(since, recent) if since else recent
    phones: tuple[str, ...] = ()
    if search and ids.phone_problem(search) is None and sum(c.isdigit() for c in search) >= 7:
        if may("supervisor"):
            phones = tuple(sorted(written_forms(search, svc.config.identity.default_region)))
            out.phone_search = "matched"
        else:
            out.phone_search = "refused"
    page = request.args.get("page", 1, type=int) or 1
    out.page = min(max(page, 1), MAX_PAGE)
    ident = current()
    out.query = FlaggedQuery(search=search, phones=phones, scenario=scenario, queue=queue, agent=agent,
                             severity=severity, feedback=feedback, handled=handled,
                             me=ident.name if ident else None, since=since, until=until, sort=sort)
    return out


def link_args(shown: dict, **more) -> dict:
    """``shown`` (the accepted filters) with ``more``, for url_for: the default sort and
    the first page left out."""
    args = {k: shown[k] for k in KEYS if k in shown and not (k == "sort" and shown[k] == SORTS[0])}
    args.update({k: v for k, v in more.items() if v is not None and not (k == "page" and v == 1)})
    return args
