"""The review report (情绪复盘报告) as pages: /reports/day/<date>, /reports/week/<date> (the
ISO week holding that date, or YYYY-Www), each with its chart (…/chart.png) and CSV
(….csv); /reports opens yesterday's. A viewer or above (the gate's default); below
supervisor, phone numbers in alert summaries are masked, as everywhere."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response, abort, redirect, render_template, url_for
from sqlalchemy import select

from plugin.flow.report import measures, render
from plugin.flow.report.period import (
    FIRST_YEAR,
    URL_WORD,
    Period,
    PeriodError,
    containing,
    last_complete,
    period_of,
    zone,
    zone_name,
)
from plugin.store.tables import Delivery
from plugin.web.auth import redact
from plugin.web.auth.identity import may
from plugin.web.services import get_services

bp = Blueprint("reports", __name__)

ENDPOINTS = {"daily": "reports.day", "weekly": "reports.week"}


@bp.get("/reports")
def latest():
    svc = get_services()
    with svc.sessions() as s:
        period = last_complete("daily", svc.clock.now(s), zone(svc.config.reports.timezone))
    return redirect(url_for("reports.day", day=period.first.isoformat()))


@bp.get("/reports/day/<day>")
def day(day: str):
    return _page(_period("daily", day))


@bp.get("/reports/week/<week>")
def week(week: str):
    return _page(_period("weekly", week))


@bp.get("/reports/day/<day>.csv")
def day_csv(day: str):
    return _csv(_period("daily", day))


@bp.get("/reports/week/<week>.csv")
def week_csv(week: str):
    return _csv(_period("weekly", week))


@bp.get("/reports/day/<day>/chart.png")
def day_chart(day: str):
    return _chart(_period("daily", day))


@bp.get("/reports/week/<week>/chart.png")
def week_chart(week: str):
    return _chart(_period("weekly", week))


def _period(kind: str, text: str) -> Period:
    try:
        return period_of(kind, text, zone(get_services().config.reports.timezone))
    except PeriodError as exc:
        abort(404, str(exc))


def _report(period: Period) -> measures.Review:
    svc = get_services()
    report = measures.build(svc.sessions, period, svc.config.reports, zone_name(period.tz))
    if not may("supervisor"):  # a rule's summary may print the customer's phone
        report = replace(report, customers=[
            replace(c, last_summary=redact.mask_words(c.last_summary),
                    last_quote={**c.last_quote, "text": redact.mask_words(c.last_quote.get("text"))}
                    if c.last_quote else None)
            for c in report.customers])
    return report


def _link(period: Period, suffix: str = "", kind: str | None = None) -> str:
    """The page of ``period`` (``kind``: the other kind's page holding its first day)."""
    kind = kind or period.kind
    return url_for(ENDPOINTS[kind] + suffix, **{URL_WORD[kind]: period.first.isoformat()})


def _page(period: Period):
    svc = get_services()
    report = _report(period)
    with svc.sessions() as s:
        today = containing(period.kind, svc.clock.now(s), period.tz)
        # This report's deliveries to WeCom (plugin/flow/report/send.py), as the call page shows an alert's.
        sent = s.execute(select(Delivery).where(
            Delivery.dedupe_key.like(f"report:{period.kind}:{period.key}:%")).order_by(Delivery.id)).scalars().all()
        deliveries = [{"sink": d.sink, "part": d.dedupe_key.rsplit(":", 1)[-1], "status": d.status,
                       "attempts": d.attempts,
                       "last_error": d.last_error if may("supervisor") else redact.mask_text(d.last_error)}
                      for d in sent]
    return render_template(
        "report.html", report=report, r=render, deliveries=deliveries,
        min_calls=svc.config.reports.min_calls, word=URL_WORD[period.kind],
        incomplete=today.first <= period.first,  # this period (or one ahead): the figures so far
        links={"previous": _link(period.previous()) if period.previous().first.year >= FIRST_YEAR else None,
               "next": _link(period.next()) if period.next().first <= today.first else None,
               "csv": _link(period, "_csv"), "chart": _link(period, "_chart"),
               "other": _link(period, kind="weekly" if period.kind == "daily" else "daily")})


def _csv(period: Period) -> Response:
    name = f"callmood-report-{period.kind}-{period.key}.csv"
    return Response(render.csv_bytes(_report(period)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _chart(period: Period) -> Response:
    return Response(render.chart_png(_report(period)), mimetype="image/png")
