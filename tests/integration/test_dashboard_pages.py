"""The pages support teams and supervisors use (issue 14, first part), on SQLite and
PostgreSQL through Flask's test client: the red-flag list (false alarms shown as such,
filters, pages, CSV export Excel opens), every call with its status, the outbox for
admins with its requeue buttons, and the status banner on every page."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from plugin.core.clock import ManualClock
from plugin.store.tables import AlertRow, Call, Delivery, Feedback, Job
from tests.conftest import authed, in_language, make_config

NOW = datetime(2026, 11, 24, 4, 0)
_ids = itertools.count(1)
HOSTILE = '=HYPERLINK("http://evil")<script>alert(1)</script>'


@pytest.fixture
def site(tmp_path, db_url, app_factory):
    svc, admin = app_factory(make_config(tmp_path, None, db_url), clock=ManualClock(NOW))
    return svc, admin


def add_call(svc, customer: str | None, status: str = "analyzed", *, error: str | None = None,
             at: datetime = NOW, alerts: list[tuple[str, str, str | None]] = (), job: dict | None = None) -> int:
    """A stored call; ``alerts``: (severity, scenario, verdict or None) each."""
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=f"x-{next(_ids)}", recording_url="http://r/a.wav",
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
    page = in_language(admin, "en").get("/dashboard").text
    row = lambda c: page.split(f">{c}</a></td>", 1)[1].split("</tr>", 1)[0]  # noqa: E731
    assert 'class="false_alarm">false alarm' in row("cust-fa") and "critical" not in row("cust-fa")
    assert 'class="warning"' in row("cust-mixed") and "1 false alarm(s)" in row("cust-mixed")
    assert 'class="critical"' in row("cust-real") and "1 confirmed" in row("cust-real")
    api = {c["customer_id"]: c["severity"] for c in admin.get("/api/flagged").json["customers"]}
    assert api == {"cust-fa": "false_alarm", "cust-mixed": "warning", "cust-real": "critical"}


def test_the_list_filters_pages_and_exports_what_it_shows(site):
    svc, admin = site
    for i in range(55):
        add_call(svc, f"cust-{i:02d}", at=NOW - timedelta(minutes=i), alerts=[("warning", "general", None)])
    add_call(svc, "客户-甲", at=NOW - timedelta(days=3), alerts=[("critical", "finance_complaint", None)])
    add_call(svc, HOSTILE, at=NOW - timedelta(days=9), alerts=[("info", "general", None)])

    first = in_language(admin, "en").get("/dashboard").text
    assert first.count("<tr>") == 51 and "cust-00" in first and "Next →" in first  # 50 a page
    second = admin.get("/dashboard?page=2").text
    assert "客户-甲" in second and "cust-00" not in second and "← Previous" in second
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
        page = in_language(admin, "en").get(path).text
        assert "Model not loaded" in page, path  # this app has no model
        assert '<a href="/calls?status=failed">1 call(s) failed in the last 24 h</a>' in page, path
        assert "1 delivery(ies) died in the last 24 h" in page, path
        page = in_language(admin, "zh-CN").get(path).text
        assert "模型未加载" in page, path
        assert '<a href="/calls?status=failed">最近 24 小时有 1 通通话分析失败</a>' in page, path
        assert "最近 24 小时有 1 条推送发送失败" in page, path
    stranger = in_language(admin.application.test_client(), "en")
    assert "failed in the last" not in stranger.get("/login").text  # nothing for strangers
    svc.clock.t += timedelta(hours=25)
    assert "failed in the last" not in in_language(admin, "en").get("/dashboard").text


def test_admins_requeue_dead_deliveries_from_the_page(site):
    svc, admin = site
    with svc.sessions.begin() as s:
        for i in range(2):
            s.add(Delivery(sink="crm", payload={"body": i}, status="dead", attempts=12, next_attempt_at=NOW,
                           created_at=NOW, last_error="HTTP 503 <b>down</b>"))
    page = in_language(admin, "en").get("/admin/deliveries?status=dead").text
    assert page.count(">Requeue</button>") == 2 and "&lt;b&gt;down&lt;/b&gt;" in page
    with svc.sessions() as s:
        first, second = s.execute(select(Delivery.id).order_by(Delivery.id)).scalars().all()
    r = admin.post(f"/admin/deliveries/{first}/retry?status=dead")
    assert r.status_code == 302
    assert f"Delivery {first} requeued." in admin.get(r.location).text
    r = admin.post("/admin/deliveries/retry-dead")
    assert r.status_code == 302
    with svc.sessions() as s:
        assert [d.status for d in s.execute(select(Delivery).order_by(Delivery.id)).scalars()] == ["pending"] * 2
    viewer = in_language(authed(admin.application, "viewer"), "en")
    assert viewer.get("/admin/deliveries").status_code == 403
    assert viewer.post(f"/admin/deliveries/{second}/retry").status_code == 403
    assert ">Deliveries</a>" not in viewer.get("/dashboard").text and ">Deliveries</a>" in admin.get("/dashboard").text


def test_times_are_in_the_teams_zone_with_how_long_ago(tmp_path, db_url, app_factory):
    svc, admin = app_factory(make_config(tmp_path, None, db_url, reports={"timezone": "Asia/Shanghai"}),
                             clock=ManualClock(NOW))
    add_call(svc, "cust-t", at=NOW - timedelta(minutes=3), alerts=[("warning", "general", None)])
    page = in_language(admin, "zh-CN").get("/dashboard").text
    # 04:00 UTC less 3 minutes is 11:57 in Shanghai; how long ago in the page's language.
    assert ('<time datetime="2026-11-24T03:57:00Z" title="2026-11-24 03:57:00 UTC">2026-11-24 11:57 '
            '<small>(3 分钟前)</small></time>') in page
    assert ('<time datetime="2026-11-24T03:57:00Z" title="2026-11-24 03:57:00 UTC">2026-11-24 11:57 '
            '<small>(3 min ago)</small></time>') in in_language(admin, "en").get("/dashboard").text
    assert "2026-11-24 11:57" in admin.get("/calls").text


def test_a_customers_page_has_every_call_and_the_negative_share_over_time(site):
    svc, admin = site
    from plugin.store.tables import Segment

    ids = []
    for day, labels in enumerate((["neutral", "neutral", "angry", "neutral"], ["angry", "angry", "sad", "neutral"])):
        call_id = add_call(svc, "客户/甲 ?&", at=NOW - timedelta(days=2 - day), alerts=[("warning", "general", None)])
        with svc.sessions.begin() as s:
            for i, label in enumerate(labels):
                s.add(Segment(call_id=call_id, channel=1, role="customer", start=3.0 * i, end=3.0 * i + 3,
                              label=label, confidence=0.9, scores={label: 0.9}))
                s.add(Segment(call_id=call_id, channel=0, role="agent", start=3.0 * i, end=3.0 * i + 3,
                              label="angry", confidence=0.9, scores={"angry": 0.9}))  # not the customer's
        ids.append(call_id)
    add_call(svc, "someone-else", alerts=[("critical", "general", None)])
    flagged = admin.get("/dashboard").text
    assert 'href="/customers?id=%E5%AE%A2%E6%88%B7/%E7%94%B2+?%26"' in flagged  # the id is a query value
    page = in_language(admin, "en").get("/customers", query_string={"id": "客户/甲 ?&"}).text
    assert page.count("<circle ") == 2 and "25%</td>" not in page
    # The customer's windows only.
    assert "25% <small>of 4 windows</small>" in page and "75% <small>of 4 windows</small>" in page
    assert all(f'href="/calls/{i}"' in page for i in ids) and "someone-else" not in page
    first, second = (float(c.split('cy="')[1].split('"')[0]) for c in page.split("<circle ")[1:])
    assert first > second  # angrier later: higher on the chart (smaller y)
    assert admin.get("/customers", query_string={"id": "nobody"}).status_code == 404
    assert admin.get("/customers").status_code == 400
    assert "<html" in admin.get("/customers").text  # a page's error is a page, not JSON
    anonymous = admin.application.test_client().get("/customers?id=cust-1")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")


def test_a_hostile_customer_id_is_text_on_the_customers_page(site):
    svc, admin = site
    add_call(svc, HOSTILE, alerts=[("warning", "general", None)])
    page = admin.get("/customers", query_string={"id": HOSTILE}).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
