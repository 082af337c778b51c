"""The red-flag list: customers with alerts, filtered, sorted and paged in the database.

One statement ranks each customer's alerts, folds them into one row per customer (count,
latest, worst severity, verdicts), joins who is handling the customer, filters, sorts and
cuts the page, and counts every row that matched (a window over the grouped rows); a
second reads the page's latest alerts with their calls (summary, phone, agent, queue).
Nothing is filtered or sorted in Python, so a late page or the CSV of every page costs
one pass over the alerts, whatever the page (bench/dashboard.py: 10,000 alerts, 100,000
calls).

Two kinds of filter:

- on alerts (``since``/``until``, ``scenario``, ``queue``, ``agent``, ``feedback``): only
  the alerts that match count; a customer is listed while one of theirs is left, and the
  row (count, severity, latest alert) is made of those;
- on customers (``search``, ``phones``, ``severity``, ``handled``): which rows are listed.

Severity is the worst of a customer's 20 latest (matching) alerts that no supervisor
marked a false alarm; a customer whose recent alerts were all false alarms is
"false_alarm": shown as such, not as critical.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session, sessionmaker

from plugin.core.quote_text import first_quote
from plugin.store.tables import AlertRow, Call, CustomerHandling, Feedback

Sessions = sessionmaker[Session]

SEVERITIES = ("critical", "warning", "info", "false_alarm")
FEEDBACK_STATES = ("none", "correct", "false_alarm")
HANDLED_STATES = ("no", "yes", "mine")
SORTS = ("newest", "most", "severity", "customer")  # the first is the default
RECENT = 20  # alerts per customer that make its severity
_RANK = {"critical": 2, "warning": 1, "info": 0}  # plugin.core.data.SEVERITIES, worst last


@dataclass(frozen=True)
class FlaggedQuery:
    """What the list shows; every field already validated (plugin/web/flagged_args.py)."""

    search: str | None = None  # part of a customer id (any case)
    phones: tuple[str, ...] = ()  # customers who called from one of these numbers (exactly)
    scenario: str | None = None
    queue: str | None = None
    agent: str | None = None
    severity: str | None = None  # one of SEVERITIES
    feedback: str | None = None  # one of FEEDBACK_STATES
    handled: str | None = None  # one of HANDLED_STATES
    me: str | None = None  # whose "mine" is
    since: datetime | None = None  # alerts at or after (naive UTC)
    until: datetime | None = None  # alerts before (naive UTC)
    sort: str = SORTS[0]


def _alerts(q: FlaggedQuery):
    """Each matching alert with its severity's rank, its verdict and its place among its
    customer's matching alerts (1 = latest)."""
    rank = case(*((AlertRow.severity == name, n) for name, n in _RANK.items()), else_=-1)
    stmt = (select(AlertRow.id, AlertRow.customer_id, AlertRow.created_at, AlertRow.severity,
                   rank.label("sev"), Feedback.verdict.label("verdict"),
                   func.row_number().over(partition_by=AlertRow.customer_id,
                                          order_by=AlertRow.id.desc()).label("rn"))
            .outerjoin(Feedback, Feedback.alert_id == AlertRow.id)
            .where(AlertRow.customer_id.is_not(None)))
    if q.since is not None:
        stmt = stmt.where(AlertRow.created_at >= q.since)
    if q.until is not None:
        stmt = stmt.where(AlertRow.created_at < q.until)
    if q.scenario:
        stmt = stmt.where(AlertRow.scenario == q.scenario)
    if q.feedback == "none":
        stmt = stmt.where(Feedback.id.is_(None))
    elif q.feedback:
        stmt = stmt.where(Feedback.verdict == q.feedback)
    if q.queue or q.agent:
        stmt = stmt.join(Call, Call.id == AlertRow.call_id)
        if q.queue:
            stmt = stmt.where(Call.queue == q.queue)
        if q.agent:
            stmt = stmt.where(Call.agent_id == q.agent)
    found = []
    if q.search:
        found.append(AlertRow.customer_id.icontains(q.search, autoescape=True))
    if q.phones:
        found.append(AlertRow.customer_id.in_(select(Call.customer_id).where(Call.customer_phone.in_(q.phones),
                                                                           Call.customer_id.is_not(None))))
    if found:
        stmt = stmt.where(or_(*found))
    return stmt.subquery("a")


def _customers(q: FlaggedQuery):
    """One row per customer with a matching alert."""
    a = _alerts(q)
    recent = a.c.rn <= RECENT
    real = and_(recent, or_(a.c.verdict.is_(None), a.c.verdict != "false_alarm"))
    return (select(a.c.customer_id, func.count().label("alerts"), func.max(a.c.created_at).label("last_alert_at"),
                   func.max(case((real, a.c.sev))).label("worst"),
                   func.max(case((real, a.c.severity))).label("other_severity"),  # one the ranks do not know
                   func.sum(case((and_(recent, a.c.verdict == "false_alarm"), 1), else_=0)).label("false_alarms"),
                   func.sum(case((and_(recent, a.c.verdict == "correct"), 1), else_=0)).label("confirmed"),
                   func.max(case((a.c.rn == 1, a.c.id))).label("last_alert_id"))
            .group_by(a.c.customer_id).subquery("g"))


def _order(c, sort: str) -> list:
    """ORDER BY for ``sort`` over columns ``c`` (the grouped rows, or the page made of them)."""
    by_customer = c.customer_id.asc()
    if sort == "most":
        return [c.alerts.desc(), c.last_alert_at.desc(), by_customer]
    if sort == "severity":  # all false alarms last
        return [func.coalesce(c.worst, literal(-2)).desc(), c.last_alert_at.desc(), by_customer]
    if sort == "customer":
        return [by_customer]
    return [c.last_alert_at.desc(), by_customer]


def _listed(q: FlaggedQuery, g) -> list:
    """The filters on customers, over the grouped rows and their handling."""
    h = CustomerHandling
    where = []
    if q.severity == "false_alarm":
        where.append(g.c.worst.is_(None))
    elif q.severity in _RANK:
        where.append(g.c.worst == _RANK[q.severity])
    handled = or_(h.acknowledged_at.is_not(None), h.assigned_to.is_not(None))
    if q.handled == "yes":
        where.append(handled)
    elif q.handled == "no":
        where.append(or_(h.id.is_(None), ~handled))
    elif q.handled == "mine":
        where.append(h.assigned_to == (q.me or ""))
    return where


def page(sessions: Sessions, q: FlaggedQuery, limit: int, offset: int = 0,
         emotions: bool = True, quotes: bool = False) -> tuple[list[dict], int]:
    """The rows ``offset`` to ``offset + limit`` of the list, and how many rows it has.

    One statement: the page is cut from the grouped rows first, and only its latest alerts
    and their calls are joined (by primary key) after. ``emotions=False``: the latest
    alert's emotions are not read (None; the CSV has no column for them). ``quotes=True``:
    the latest alert's details are read for its first quote (``last_quote``, the CSV's)."""
    g = _customers(q)
    h = CustomerHandling
    where = _listed(q, g)
    listed = g.outerjoin(h, h.customer_id == g.c.customer_id)
    cut = (select(g, h.acknowledged_by, h.acknowledged_at, h.assigned_to, h.assigned_by, h.assigned_at,
                  h.note.label("handling_note"), func.count().over().label("total"))
           .select_from(listed).where(*where).order_by(*_order(g.c, q.sort)).limit(limit).offset(offset)
           .subquery("p"))
    stmt = (select(*cut.c, AlertRow.call_id, AlertRow.summary,
                   AlertRow.emotions if emotions else literal(None).label("emotions"), AlertRow.scenario, AlertRow.rule,
                   Call.customer_phone, Call.agent_id, Call.queue,
                   AlertRow.details if quotes else literal(None).label("details"))
            .select_from(cut.outerjoin(AlertRow, AlertRow.id == cut.c.last_alert_id)
                         .outerjoin(Call, Call.id == AlertRow.call_id))
            .order_by(*_order(cut.c, q.sort)))
    with sessions() as s:
        rows = s.execute(stmt).tuples().all()
        if rows:
            total = rows[0][_TOTAL]
        else:  # past the last page (or nothing at all): count without a page
            total = s.execute(select(func.count()).select_from(listed).where(*where)).scalar_one()
    return [_row(r) for r in rows], int(total)


_NAMES = {n: name for name, n in _RANK.items()}
_TOTAL = 14  # the place of "total" in page()'s rows


def severity_of(worst: int | None, other: str | None) -> str:
    if worst is None:
        return "false_alarm"
    return _NAMES.get(worst) or other or "info"


def _row(r: tuple) -> dict:
    """One row as the API and the pages take it (the latest alert's fields are None when it
    went, by forget or purge, while the list was read). Unpacked by place: the CSV of every
    page makes thousands of these."""
    (customer_id, alerts, last_alert_at, worst, other, false_alarms, confirmed, last_alert_id, ack_by, ack_at,
     assigned_to, assigned_by, assigned_at, note, _total, call_id, summary, emotions, scenario, rule, phone,
     agent_id, queue, details) = r
    handling = None
    if ack_at is not None or assigned_to is not None:
        handling = {"acknowledged_by": ack_by, "acknowledged_at": ack_at, "assigned_to": assigned_to,
                    "assigned_by": assigned_by, "assigned_at": assigned_at, "note": note}
    return {"customer_id": customer_id, "alerts": alerts, "last_alert_at": last_alert_at,
            "severity": severity_of(worst, other), "last_alert_id": last_alert_id, "last_call_id": call_id,
            "last_summary": summary, "emotions": emotions, "scenario": scenario, "rule": rule, "phone": phone,
            "agent_id": agent_id, "queue": queue, "false_alarms": false_alarms or 0, "confirmed": confirmed or 0,
            "handling": handling, "last_quote": first_quote(details)}


def choices(sessions: Sessions, limit: int = 200) -> dict[str, list[str]]:
    """The scenarios of the alerts and the queues of alerted calls, for the filters' suggestions."""
    with sessions() as s:
        scenarios = s.execute(select(AlertRow.scenario).distinct().order_by(AlertRow.scenario).limit(limit)).scalars()
        calls = select(AlertRow.call_id).distinct().scalar_subquery()
        queues = s.execute(select(Call.queue).where(Call.id.in_(calls), Call.queue.is_not(None)).distinct()
                           .order_by(Call.queue).limit(limit)).scalars()
        return {"scenarios": list(scenarios), "queues": list(queues)}
