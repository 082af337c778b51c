"""The pages support teams and supervisors use (issue 14, first part), on SQLite and
PostgreSQL through Flask's test client: the red-flag list (false alarms shown as such,
filters, pages, CSV export Excel opens), every call with its status, the outbox for
admins with its requeue buttons, and the status banner on every page."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from plugin.core.clock import ManualClock
from plugin.store.tables import AlertRow, Call, Delivery, Feedback, Job
from tests.conftest import authed, make_config

NOW = datetime(2026, 11, 24, 4, 0)
HOSTILE = '=HYPERLINK("http://evil")<script>alert(1)</script>'


@pytest.fixture
def site(tmp_path, db_url, app_factory):
    svc, admin = app_factory(make_config(tmp_path, None, db_url), clock=ManualClock(NOW))
    return svc, admin


def add_call(svc, customer: str | None, status: str = "analyzed", *, error: str | None = None,
             at: datetime = NOW, alerts: list[tuple[str, str, str | None]] = (), job: dict | None = None) -> int:
    """A stored call; ``alerts``: (severity, scenario, verdict or None) each."""
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=f"x-{customer}-{at:%H%M%S}-{status}", recording_url="http://r/a.wav",
                    customer_id=customer, agent_id="agent-7", queue="support", event={}, status=status, error=error,
                    received_at=at)
        s.add(call)
        s.flush()
        for i, (severity, scenario, verdict) in enumerate(alerts):
            a = AlertRow(call_id=call.id, rule=f"rule-{i}", scenario=scenario, severity=severity, role="customer",
                         emotions=["angry"], share=0.5, confidence=0.9, matched=[[0, 3]],
                         summary=f"{customer} 很生气 angry", customer_id=customer, created_at=at, routing=[])
            s.add(a)
            s.flush()
            if verdict:
                s.add(Feedback(alert_id=a.id, verdict=verdict, by="sup", created_at=at, updated_at=at))
        if job:
            s.add(Job(call_id=call.id, created_at=at, run_after=at, **job))
        return call.id


def test_a_false_alarm_is_shown_as_one_and_no_longer_critical(site):
    svc, admin = site
    add_call(svc, "cust-fa", alerts=[("critical", "general", "false_alarm")])
    add_call(svc, "cust-mixed", alerts=[("critical", "general", "false_alarm"), ("warning", "general", None)])
    add_call(svc, "cust-real", alerts=[("critical", "general", "correct")])
    page = admin.get("/dashboard").text
    row = lambda c: page.split(f"<td>{c}</td>", 1)[1].split("</tr>", 1)[0]  # noqa: E731
    assert "误报 false alarm" in row("cust-fa") and "critical" not in row("cust-fa")
    assert 'class="warning"' in row("cust-mixed") and "1 误报 false alarm(s)" in row("cust-mixed")
    assert 'class="critical"' in row("cust-real") and "1 确认 confirmed" in row("cust-real")
    api = {c["customer_id"]: c["severity"] for c in admin.get("/api/flagged").json["customers"]}
    assert api == {"cust-fa": "false_alarm", "cust-mixed": "warning", "cust-real": "critical"}


def test_the_list_filters_pages_and_exports_what_it_shows(site):
    svc, admin = site
    for i in range(55):
        add_call(svc, f"cust-{i:02d}", at=NOW - timedelta(minutes=i), alerts=[("warning", "general", None)])
    add_call(svc, "客户-甲", at=NOW - timedelta(days=3), alerts=[("critical", "finance_complaint", None)])
    add_call(svc, HOSTILE, at=NOW - timedelta(days=9), alerts=[("info", "general", None)])

    first = admin.get("/dashboard").text
    assert first.count("<tr>") == 51 and "cust-00" in first and "下一页 Next" in first  # 50 a page
    second = admin.get("/dashboard?page=2").text
    assert "客户-甲" in second and "cust-00" not in second and "上一页 Previous" in second
    assert "<script>alert(1)</script>" not in second and "&lt;script&gt;" in second  # data stays text

    only = admin.get("/dashboard?severity=critical").text
    assert "客户-甲" in only and "cust-01" not in only
    assert "客户-甲" in admin.get("/dashboard?scenario=finance_complaint").text
    assert "cust-3" in admin.get("/dashboard?q=cust-3").text and "cust-4" not in admin.get("/dashboard?q=cust-3").text
    recent = admin.get("/dashboard?days=2").text
    assert "cust-10" in recent and "客户-甲" not in recent

    r = admin.get("/dashboard.csv?days=30")
    assert r.status_code == 200 and r.mimetype == "text/csv" and r.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["customer_id", "severity", "alerts"] and len(rows) == 1 + 57  # every page
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id["客户-甲"][1] == "critical"
    assert "'" + HOSTILE in by_id  # a spreadsheet would run it as a formula: quoted
    assert len(list(csv.reader(io.StringIO(admin.get("/dashboard.csv?severity=critical").data
                                           .decode("utf-8-sig"))))) == 2


def test_every_call_with_its_status_so_failures_are_never_invisible(site):
    svc, admin = site
    ok = add_call(svc, "cust-ok")
    failed = add_call(svc, "cust-bad", "failed", error="fetch: HTTP 404 from rec.example.com")
    retrying = add_call(svc, "cust-retry", "received",
                        job={"status": "queued", "attempts": 1, "last_error": "decode: timed out after 300s"})
    page = admin.get("/calls").text
    for call_id in (ok, failed, retrying):
        assert f"#{call_id}" in page
    assert "fetch: HTTP 404 from rec.example.com" in page and "decode: timed out after 300s" in page
    only_failed = admin.get("/calls?status=failed").text
    assert f"#{failed}</a>" in only_failed and f"#{ok}</a>" not in only_failed
    only_retrying = admin.get("/calls?status=retrying").text
    assert f"#{retrying}</a>" in only_retrying and f"#{failed}</a>" not in only_retrying


def test_the_banner_says_what_is_wrong_on_every_page(site):
    svc, admin = site
    add_call(svc, "cust-bad", "failed", error="boom",
             job={"status": "failed", "attempts": 5, "last_error": "boom", "finished_at": NOW})
    with svc.sessions.begin() as s:
        s.add(Delivery(sink="crm", payload={"x": 1}, status="dead", attempts=12, next_attempt_at=NOW,
                       created_at=NOW, last_error="HTTP 401"))
    for path in ("/dashboard", "/calls", "/reports/day/2026-11-23", "/admin/deliveries"):
        page = admin.get(path).text
        assert "Model not loaded" in page, path  # this app has no model
        assert '<a href="/calls?status=failed">1 通通话分析失败 call(s) failed in the last 24 h</a>' in page, path
        assert "1 条推送失败 delivery(ies) died in the last 24 h" in page, path
    stranger = admin.application.test_client()
    assert "failed in the last" not in stranger.get("/login").text  # nothing for strangers
    svc.clock.t += timedelta(hours=25)
    assert "failed in the last" not in admin.get("/dashboard").text


def test_admins_requeue_dead_deliveries_from_the_page(site):
    svc, admin = site
    with svc.sessions.begin() as s:
        for i in range(2):
            s.add(Delivery(sink="crm", payload={"body": i}, status="dead", attempts=12, next_attempt_at=NOW,
                           created_at=NOW, last_error="HTTP 503 <b>down</b>"))
    page = admin.get("/admin/deliveries?status=dead").text
    assert page.count("重发 Requeue</button>") == 2 and "&lt;b&gt;down&lt;/b&gt;" in page
    with svc.sessions() as s:
        first, second = s.execute(select(Delivery.id).order_by(Delivery.id)).scalars().all()
    r = admin.post(f"/admin/deliveries/{first}/retry?status=dead")
    assert r.status_code == 302
    assert f"delivery {first}: requeued" in admin.get(r.location).text
    r = admin.post("/admin/deliveries/retry-dead")
    assert r.status_code == 302
    with svc.sessions() as s:
        assert [d.status for d in s.execute(select(Delivery).order_by(Delivery.id)).scalars()] == ["pending"] * 2
    viewer = authed(admin.application, "viewer")
    assert viewer.get("/admin/deliveries").status_code == 403
    assert viewer.post(f"/admin/deliveries/{second}/retry").status_code == 403
    assert "推送 Deliveries" not in viewer.get("/dashboard").text and "推送 Deliveries" in admin.get("/dashboard").text
