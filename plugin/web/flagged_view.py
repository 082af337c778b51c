"""The red-flag list (/dashboard), its CSV (/dashboard.csv) and who is handling each
customer (acknowledge / assign / release), for the page's forms and the JSON API.

The views in dashboard.py and api.py are thin: they call these. The list itself is one
query (plugin/store/flagged.py); filters come from plugin/web/flagged_args.py; what a role
may see is plugin/web/auth/redact.py's (viewers: phone numbers masked, also in text)."""

from __future__ import annotations

import csv
import io
import logging
import time
import weakref
from datetime import datetime
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from pydantic import Field, field_validator, model_validator

from connectors.sinks.quotes import quote_line
from plugin.core.validation import StrictModel
from plugin.flow.report.period import zone
from plugin.flow.report.render import csv_cell
from plugin.store import flagged as store
from plugin.store import handling
from plugin.web import flagged_args
from plugin.web.auth import redact
from plugin.web.auth.identity import current, may
from plugin.web.forms import BadRequest, parse
from plugin.web.serializers import flagged_json, iso
from plugin.web.services import get_services

log = logging.getLogger(__name__)
CSV_MAX = 100_000  # rows in one export: every flagged customer of a large contact center
CSV_COLUMNS = ["customer_id", "severity", "alerts", "false_alarms", "confirmed", "last_alert_at", "scenario",
               "last_call_id", "last_summary", "last_alert_local", "phone", "queue", "agent_id", "rule",
               "acknowledged_by", "acknowledged_at", "assigned_to", "assigned_by", "assigned_at", "handling_note",
               "last_quote"]
CUSTOMER_MAX = 255
QUOTE_CHARS = 500  # of the latest alert's first quote in the CSV


def rows(parsed: flagged_args.FlaggedArgs, limit: int, offset: int, emotions: bool = True,
         quotes: bool = False) -> tuple[list[dict], int]:
    """The list's rows as the asker's role may see them, and how many there are in all."""
    found, total = store.page(get_services().sessions, parsed.query, limit, offset, emotions, quotes)
    phones = may("supervisor")
    return [redact.flagged(flagged_json(r), phones) for r in found], total


def page():
    parsed = flagged_args.parse()
    offset = (parsed.page - 1) * flagged_args.PAGE
    customers, total = rows(parsed, flagged_args.PAGE, offset)
    pages = max(1, -(-total // flagged_args.PAGE))
    if parsed.page > pages:  # a stale link, or the last row of the last page was just handled
        return redirect(url_for("dashboard.flagged", **flagged_args.link_args(parsed.shown, page=pages)))
    svc = get_services()
    supervisor = may("supervisor")
    return render_template(
        "flagged.html", customers=customers, total=total, page=parsed.page, pages=pages, parsed=parsed,
        shown=parsed.shown, link=flagged_args.link_args, severities=store.SEVERITIES,
        feedback_states=store.FEEDBACK_STATES, handled_states=store.HANDLED_STATES, sorts=store.SORTS,
        choices=_choices(svc.sessions), assignees=handling.assignable(svc.sessions) if supervisor else [],
        supervisor=supervisor)


_CHOICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per database: (when read, what)
CHOICES_S = 60.0


def _choices(sessions) -> dict[str, list[str]]:
    """The filters' suggestions (scenarios, queues): read at most once a minute per
    process, they are hints, and reading them costs a pass over the alerted calls."""
    now = time.monotonic()
    got = _CHOICES.get(sessions)
    if got is None or now - got[0] > CHOICES_S:
        got = _CHOICES[sessions] = (now, store.choices(sessions))
    return got[1]


def csv_export() -> Response:
    """Every row of the list with these filters and this sort, in the page's order (page 1
    is the first 50 rows): UTF-8 with a BOM, so Excel opens the Chinese in it correctly;
    cells a spreadsheet would run as a formula (= + - @ ...) start with a quote."""
    parsed = flagged_args.parse()
    if parsed.problems:
        abort(400, "; ".join(p for _k, p in parsed.problems))
    found, _total = rows(parsed, CSV_MAX, 0, emotions=False, quotes=True)
    tz = zone(get_services().config.reports.timezone)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for r in found:
        h = r.get("handling") or {}
        local = datetime.fromisoformat(r["last_alert_at"].replace("Z", "+00:00")).astimezone(tz)
        w.writerow([csv_cell(r["customer_id"]), r["severity"], r["alerts"], r["false_alarms"], r["confirmed"],
                    r["last_alert_at"], csv_cell(r["scenario"]), r["last_call_id"], csv_cell(r["last_summary"]),
                    local.isoformat(" ", "minutes")[:16], csv_cell(r["phone"]), csv_cell(r["queue"]),
                    csv_cell(r["agent_id"]), csv_cell(r["rule"]), csv_cell(h.get("acknowledged_by")),
                    h.get("acknowledged_at"), csv_cell(h.get("assigned_to")), csv_cell(h.get("assigned_by")),
                    h.get("assigned_at"), csv_cell(h.get("note")), csv_cell(_quote(r.get("last_quote")))])
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="callmood-flagged.csv"'})


def _quote(q: dict | None) -> str | None:
    """The latest alert's first quote as one line, "02:13 customer: 我要退款" (role as its code)."""
    return quote_line(q, {}, QUOTE_CHARS) if q else None


# --- who is handling a customer ---------------------------------------------------------

def customer_problem(customer_id: Any) -> str | None:
    """Why ``customer_id`` (from a URL or a form) cannot be a customer id, or None."""
    if not isinstance(customer_id, str) or not customer_id or len(customer_id) > CUSTOMER_MAX:
        return _("The customer id must be 1 to %(n)d characters.", n=CUSTOMER_MAX)
    if any(not c.isprintable() for c in customer_id):
        return _("The customer id must be printable characters.")
    return None


class HandlingBody(StrictModel):
    """POST /api/customers/<id>/handling, and the list's forms: what to do."""

    action: str = Field(..., max_length=16)
    assignee: str | None = Field(None, max_length=128)
    note: str | None = Field(None, max_length=handling.NOTE_MAX)

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in handling.ACTIONS:
            raise ValueError(f"must be one of {', '.join(handling.ACTIONS)}")
        return v

    @field_validator("assignee", "note")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        v = (v.strip() or None) if v is not None else None
        if v is not None and any(not c.isprintable() for c in v):
            raise ValueError("must be one line of printable characters")
        return v

    @model_validator(mode="after")
    def _assignee_with_assign(self) -> HandlingBody:
        if (self.action == "assign") != (self.assignee is not None):
            raise ValueError("assignee: give one with action assign, and only then")
        return self


def apply(customer_id: str, body: dict) -> dict | None:
    """Do what ``body`` (validated by HandlingBody) says for the customer, as the asker.
    Raises handling.HandlingRefused."""
    svc = get_services()
    who = current().name
    state = handling.change(svc.sessions, svc.clock, customer_id,
                            handling.HandlingChange(body["action"], who, body.get("assignee"), body.get("note")))
    log.info("customer %r: %s by %s%s", customer_id[:80], body["action"], who,
             f" to {body['assignee']}" if body.get("assignee") else "")
    return state


def handling_json(customer_id: str) -> dict | None:
    """GET /api/customers/<id>/handling: now and the latest events; None: no such customer."""
    known, state, events = handling.read(get_services().sessions, customer_id)
    if not known and state is None and not events:
        return None
    out = {"customer_id": customer_id, "handling": _times(state), "history": [_times(e) for e in events]}
    return redact.handling(out, may("supervisor"))


def _times(d: dict | None) -> dict | None:
    return None if d is None else {k: iso(v) if k.endswith("_at") or k == "at" else v for k, v in d.items()}


def handle_form():
    """The list's buttons (a form with its CSRF token): then back to the list as it was."""
    parsed = flagged_args.parse()
    back = url_for("dashboard.flagged", **flagged_args.link_args(parsed.shown, page=parsed.page))
    customer_id = request.form.get("customer_id", "")
    problem = customer_problem(customer_id)
    if problem:
        abort(400, problem)
    form = {k: request.form[k] for k in ("action", "note") if k in request.form}
    if form.get("action") == "assign":
        form["assignee"] = request.form.get("assignee", "")
    try:
        body = parse(HandlingBody, form)
    except BadRequest as exc:
        abort(400, exc.message)
    try:
        apply(customer_id, body)
    except handling.HandlingRefused as exc:  # the store's English is the API's; the page says it in its language
        abort(exc.status, _("No user %(name)s who may log in.", name=body["assignee"] or "") if exc.field == "assignee"
              else _("Customer %(customer)s has no alerts.", customer=customer_id))
    flash(_said(body["action"], customer_id, body["assignee"]))
    return redirect(back)


def _said(action: str, customer_id: str, assignee: str | None) -> str:
    if action == "acknowledge":
        return _("Customer %(customer)s acknowledged.", customer=customer_id)
    if action == "assign":
        return _("Customer %(customer)s assigned to %(user)s.", customer=customer_id, user=assignee)
    return _("Customer %(customer)s released.", customer=customer_id)
