"""The red-flag list (issue 14): who is handling a customer (acknowledge, assign, release:
roles, CSRF, names checked against the users), every filter and sort, pages that keep the
filters, the CSV that is the screen, phone numbers masked for viewers, hostile customer
ids; on SQLite and PostgreSQL through Flask's test client, with a ManualClock."""

from __future__ import annotations

import csv
import io
import itertools
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit

import pytest
from sqlalchemy import func, select

from plugin.core import passwords
from plugin.core.clock import ManualClock
from plugin.store.tables import AlertRow, Call, CustomerHandling, Feedback, HandlingEvent
from tests.conftest import authed, make_config

NOW = datetime(2026, 11, 24, 4, 0)  # 12:00 in Asia/Shanghai, the team's zone here
PASSWORD = "correct horse battery"
PHONE = "+8613812345678"
_ids = itertools.count(1)


@pytest.fixture
def site(tmp_path, db_url, app_factory):
    svc, admin = app_factory(make_config(tmp_path, None, db_url, reports={"timezone": "Asia/Shanghai"}),
                             clock=ManualClock(NOW))
    english(admin)
    return svc, admin


def english(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"  # the pages' words in English
    return client


def as_role(admin, role: str):
    return english(authed(admin.application, role))


def add_call(svc, customer: str | None, at: datetime = NOW, alerts=(("warning", "general", None),), *,
             queue: str = "support", agent: str = "agent-7", phone: str | None = None,
             summary: str | None = None) -> int:
    """A stored call with its alerts: (severity, scenario, verdict or None) each."""
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=f"x-{next(_ids)}", recording_url="http://r/a.wav",
                    customer_id=customer, customer_phone=phone, agent_id=agent, queue=queue, event={},
                    status="analyzed", received_at=at)
        s.add(call)
        s.flush()
        for i, (severity, scenario, verdict) in enumerate(alerts):
            a = AlertRow(call_id=call.id, rule=f"rule-{i}", scenario=scenario, severity=severity, role="customer",
                         emotions=["angry"], share=0.5, confidence=0.9, matched=[[0, 3]],
                         summary=summary or f"{customer} angry", customer_id=customer, created_at=at, routing=[])
            s.add(a)
            s.flush()
            if verdict:
                s.add(Feedback(alert_id=a.id, verdict=verdict, by="sup", created_at=at, updated_at=at))
        return call.id


def listed(client, query: str = "") -> list[str]:
    """The customer ids the page lists, in its order."""
    page = client.get("/dashboard" + query)
    assert page.status_code == 200, page.text[:500]
    return [unquote_plus(m) for m in re.findall(r'<td><a href="/customers\?id=([^"]+)">', page.text)]


def api_listed(client, query: str = "") -> list[str]:
    r = client.get("/api/flagged" + query)
    assert r.status_code == 200, r.json
    return [c["customer_id"] for c in r.json["customers"]]


def csrf_of(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def logged_in(app, name: str, role: str):
    """A browser-like client: a user with a password, logged in with the login form (a session cookie)."""
    svc = app.extensions["callmood"]
    if svc.accounts.user(name) is None:
        svc.accounts.add_user(name, role, passwords.hash_password(PASSWORD))
    client = english(app.test_client())
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf_of(client, "/login")})
    assert r.status_code == 302, r.text[:300]
    return client


# --- handling: acknowledge, assign, release --------------------------------------------------

def test_a_supervisor_acknowledges_assigns_and_releases_from_the_list(site):
    svc, admin = site
    add_call(svc, "cust-1", alerts=[("critical", "general", None)])
    add_call(svc, "cust-2", NOW - timedelta(hours=1))
    svc.accounts.add_user("ann", "supervisor", passwords.hash_password(PASSWORD))
    boss = logged_in(admin.application, "boss", "supervisor")
    token = csrf_of(boss, "/dashboard")
    back = "/dashboard?severity=critical&sort=customer"

    r = boss.post("/dashboard/handling?severity=critical&sort=customer&page=1",
                  data={"csrf_token": token, "customer_id": "cust-1", "action": "acknowledge", "note": "calling back"})
    assert r.status_code == 302 and r.location == back  # back to the list as it was
    page = boss.get(back).text
    assert "Customer cust-1 acknowledged." in page  # the flash
    # Who and when, in the team's zone: 04:00 UTC is 12:00 in Shanghai.
    assert "Acknowledged by boss" in page and ">2026-11-24 12:00 <small>" in page and "calling back" in page

    svc.clock.advance(minutes=5)
    r = boss.post("/dashboard/handling", data={"csrf_token": token, "customer_id": "cust-1", "action": "assign",
                                               "assignee": "ann"})
    assert r.status_code == 302 and r.location == "/dashboard"
    page = boss.get("/dashboard").text
    assert "Assigned to ann by boss" in page and "2026-11-24 12:05" in page and "Acknowledged by boss" in page
    assert listed(boss, "?handled=yes") == ["cust-1"] and listed(boss, "?handled=no") == ["cust-2"]

    api = boss.get("/api/customers/cust-1/handling").json
    assert api["handling"]["assigned_to"] == "ann" and api["handling"]["assigned_by"] == "boss"
    assert api["handling"]["acknowledged_at"] == "2026-11-24T04:00:00.000Z"
    assert [e["action"] for e in api["history"]] == ["assign", "acknowledge"]

    # A new alert after the acknowledgement is pointed out.
    svc.clock.advance(minutes=5)
    add_call(svc, "cust-1", NOW + timedelta(minutes=10))
    assert "New alerts since" in boss.get("/dashboard?q=cust-1").text

    r = boss.post("/dashboard/handling", data={"csrf_token": token, "customer_id": "cust-1", "action": "release"})
    assert r.status_code == 302
    page = boss.get("/dashboard?q=cust-1").text
    assert "Assigned to" not in page and "Nobody yet" in page
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(CustomerHandling)).scalar() == 0
        assert [e.action for e in s.execute(select(HandlingEvent).order_by(HandlingEvent.id)).scalars()] == [
            "acknowledge", "assign", "release"]


def test_a_form_without_its_csrf_token_changes_nothing(site):
    svc, admin = site
    add_call(svc, "cust-1")
    boss = logged_in(admin.application, "boss", "supervisor")
    for token in (None, "forged"):
        data = {"customer_id": "cust-1", "action": "acknowledge"} | ({"csrf_token": token} if token else {})
        assert boss.post("/dashboard/handling", data=data).status_code == 400
        # The JSON API with the session cookie needs the token too.
        r = boss.post("/api/customers/cust-1/handling", json={"action": "acknowledge"},
                      headers={"X-CSRFToken": token} if token else {})
        assert r.status_code == 400 and "CSRF" in r.json["error"]
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(HandlingEvent)).scalar() == 0


def test_only_supervisors_and_admins_handle_customers(site):
    svc, admin = site
    add_call(svc, "cust-1")
    viewer = as_role(admin, "viewer")
    assert viewer.post("/api/customers/cust-1/handling", json={"action": "acknowledge"}).status_code == 403
    page = viewer.get("/dashboard").text
    assert "cust-1" in page and "/dashboard/handling" not in page and "Acknowledge" not in page
    assert viewer.get("/api/customers/cust-1/handling").json == {"customer_id": "cust-1", "handling": None,
                                                                 "history": []}
    seen = logged_in(admin.application, "vic", "viewer")
    token = csrf_of(seen, "/dashboard")  # the log-out form's
    assert seen.post("/dashboard/handling", data={"csrf_token": token, "customer_id": "cust-1",
                                                  "action": "acknowledge"}).status_code == 403
    stranger = admin.application.test_client()
    assert stranger.post("/api/customers/cust-1/handling", json={"action": "acknowledge"}).status_code == 401
    assert stranger.get("/dashboard").status_code in (302, 401)

    for role in ("supervisor", "admin"):
        r = as_role(admin, role).post("/api/customers/cust-1/handling", json={"action": "acknowledge"})
        assert r.status_code == 200 and r.json["handling"]["acknowledged_by"] == f"test-{role}"


def test_an_assignee_must_be_a_user_who_may_log_in(site):
    svc, admin = site
    add_call(svc, "cust-1")
    svc.accounts.add_user("gone", "supervisor", passwords.hash_password(PASSWORD))
    svc.accounts.disable("gone")
    sup = as_role(admin, "supervisor")
    url = "/api/customers/cust-1/handling"
    for body, field in (({"action": "assign", "assignee": "nobody"}, "assignee"),
                        ({"action": "assign", "assignee": "gone"}, "assignee"),
                        ({"action": "assign", "assignee": "ann\nadmin"}, "assignee"),
                        ({"action": "assign", "assignee": "x" * 129}, "assignee"),
                        ({"action": "assign"}, None),
                        ({"action": "acknowledge", "assignee": "ann"}, None),
                        ({"action": "delete"}, "action"),
                        ({"action": "acknowledge", "note": "n" * 1001}, "note"),
                        ({"action": "acknowledge", "extra": 1}, "extra"),
                        ([], None)):
        r = sup.post(url, json=body)
        assert r.status_code == 400 and r.json["field"] == field, (body, r.json)
    assert sup.post("/api/customers/nobody-at-all/handling", json={"action": "acknowledge"}).status_code == 404
    assert sup.get("/api/customers/nobody-at-all/handling").status_code == 404
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(HandlingEvent)).scalar() == 0

    boss = logged_in(admin.application, "boss", "supervisor")
    token = csrf_of(boss, "/dashboard")
    for data in ({"customer_id": "cust-1", "action": "assign", "assignee": "nobody"},
                 {"customer_id": "cust-1", "action": "assign", "assignee": "gone"},
                 {"customer_id": "cust-1", "action": "nuke"},
                 {"customer_id": "", "action": "acknowledge"},
                 {"customer_id": "c" * 256, "action": "acknowledge"}):
        assert boss.post("/dashboard/handling", data={**data, "csrf_token": token}).status_code == 400, data
    assert boss.post("/dashboard/handling", data={"customer_id": "unknown", "action": "acknowledge",
                                                  "csrf_token": token}).status_code == 404
    r = sup.post(url, json={"action": "assign", "assignee": "boss", "note": "  VIP  "})
    assert r.status_code == 200 and r.json["handling"]["assigned_to"] == "boss" and r.json["handling"]["note"] == "VIP"


HOSTILE_IDS = ["a/b", "客户 1?&#x", "<script>alert(1)</script>", "../../etc/passwd", "100%", "=HYPERLINK(\"x\")",
               "a%2Fb", " spaced "]


def test_hostile_customer_ids_in_the_url_are_only_ids(site):
    svc, admin = site
    for cid in HOSTILE_IDS:
        add_call(svc, cid)
    sup = as_role(admin, "supervisor")
    for cid in HOSTILE_IDS:
        url = f"/api/customers/{quote(cid, safe='')}/handling"
        r = sup.post(url, json={"action": "acknowledge", "note": cid})
        assert r.status_code == 200, (cid, r.json)
        assert sup.get(url).json["customer_id"] == cid and sup.get(url).json["handling"]["note"] == cid.strip()
    with svc.sessions() as s:
        assert sorted(s.execute(select(CustomerHandling.customer_id)).scalars()) == sorted(HOSTILE_IDS)
    page = sup.get("/dashboard").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for bad in ("%07bell", "x" * 256, "%00"):
        r = sup.post(f"/api/customers/{bad}/handling", json={"action": "acknowledge"})
        assert r.status_code in (400, 404) and r.status_code != 500, bad
    assert sup.post("/api/customers/%07bell/handling", json={"action": "acknowledge"}).json["field"] == "customer_id"


def test_forgetting_a_customer_removes_who_handled_them(site):
    svc, admin = site
    add_call(svc, "cust-1")
    add_call(svc, "cust-2")
    sup = as_role(admin, "supervisor")
    for cid in ("cust-1", "cust-2"):
        r = sup.post(f"/api/customers/{cid}/handling", json={"action": "acknowledge", "note": "n"})
        assert r.status_code == 200
    removed = svc.forget("cust-1")
    assert removed["handling"] == 2  # the row and its one event
    with svc.sessions() as s:
        assert list(s.execute(select(CustomerHandling.customer_id)).scalars()) == ["cust-2"]
        assert list(s.execute(select(HandlingEvent.customer_id)).scalars()) == ["cust-2"]


# --- phones: masked for viewers, searchable by supervisors -----------------------------------

def test_viewers_see_phone_numbers_masked_everywhere_on_the_list(site):
    svc, admin = site
    add_call(svc, "cust-p", phone=PHONE, summary=f"客户来电 {PHONE} 很生气")
    sup = as_role(admin, "supervisor")
    assert sup.post("/api/customers/cust-p/handling",
                    json={"action": "acknowledge", "note": f"call back on {PHONE}"}).status_code == 200
    viewer = as_role(admin, "viewer")
    digits = PHONE[1:]
    page = viewer.get("/dashboard").text
    assert digits not in page and "+86138****5678" in page
    data = viewer.get("/dashboard.csv").data.decode("utf-8-sig")
    assert digits not in data and "+86138****5678" in data
    assert digits not in viewer.get("/api/flagged").text
    assert digits not in viewer.get("/api/customers/cust-p/handling").text

    # A viewer's search by the full number finds nothing by it (that would confirm the
    # number), says why, and shows the number only where they typed it.
    for q in (PHONE, "138 1234 5678"):
        page = viewer.get("/dashboard", query_string={"q": q}).text
        assert "Searching by phone number needs the supervisor role" in page
        assert listed(viewer, "?q=" + quote(q)) == []
        assert page.replace(f'value="{q}"', "").count(q.replace(" ", "")) == 0

    assert PHONE in sup.get("/dashboard").text and PHONE in sup.get("/dashboard.csv").data.decode("utf-8-sig")
    for q in (PHONE, "138 1234 5678", "13812345678"):  # as stored, and written the way people do
        assert listed(sup, "?q=" + quote(q)) == ["cust-p"], q
        assert api_listed(sup, "?q=" + quote(q)) == ["cust-p"]
    assert "customers who called from this number" in sup.get("/dashboard?q=13812345678").text


def test_a_number_stored_as_the_source_wrote_it_is_found_however_it_is_typed(site):
    svc, admin = site  # the generic source keeps numbers as they came: digits, national, with the trunk 0
    add_call(svc, "cust-m", phone="13812345678")
    add_call(svc, "cust-l", phone="01012345678")
    sup = as_role(admin, "supervisor")
    for q in ("+86 138 1234 5678", "+8613812345678", "13812345678", "008613812345678"):
        assert listed(sup, "?q=" + quote(q)) == ["cust-m"], q
    for q in ("+86 10 1234 5678", "010-1234-5678"):
        assert listed(sup, "?q=" + quote(q)) == ["cust-l"], q


# --- filters, sort, pages ------------------------------------------------------------------------

def five_customers(svc) -> None:
    add_call(svc, "cust-a", NOW - timedelta(hours=1), [("critical", "general", None), ("warning", "general", None)],
             queue="billing", agent="agent-1", phone=PHONE)
    add_call(svc, "cust-b", NOW - timedelta(days=2), [("warning", "finance", "correct")], agent="agent-2")
    add_call(svc, "cust-c", NOW - timedelta(hours=3), [("critical", "general", "false_alarm")], agent="agent-1")
    for days in (10, 11, 12):
        add_call(svc, "cust-d", NOW - timedelta(days=days), [("info", "general", None)], queue="vip", agent="agent-3")
    # 17:00 UTC on the 23rd is 01:00 on the 24th in Shanghai: a day filter in UTC would get it wrong.
    add_call(svc, "cust-e", datetime(2026, 11, 23, 17, 0), agent="agent-2")


FILTERS = {
    "": ["cust-a", "cust-c", "cust-e", "cust-b", "cust-d"],
    "?sort=newest": ["cust-a", "cust-c", "cust-e", "cust-b", "cust-d"],
    "?sort=most": ["cust-d", "cust-a", "cust-c", "cust-e", "cust-b"],
    "?sort=severity": ["cust-a", "cust-e", "cust-b", "cust-d", "cust-c"],  # false alarms last
    "?sort=customer": ["cust-a", "cust-b", "cust-c", "cust-d", "cust-e"],
    "?q=cust-a": ["cust-a"],
    "?q=UST-": ["cust-a", "cust-c", "cust-e", "cust-b", "cust-d"],  # part of the id, in any case
    "?q=ust-&sort=customer": ["cust-a", "cust-b", "cust-c", "cust-d", "cust-e"],
    "?scenario=finance": ["cust-b"],
    "?queue=support": ["cust-c", "cust-e", "cust-b"],
    "?queue=vip": ["cust-d"],
    "?agent=agent-1": ["cust-a", "cust-c"],
    "?severity=critical": ["cust-a"],
    "?severity=warning": ["cust-e", "cust-b"],
    "?severity=info": ["cust-d"],
    "?severity=false_alarm": ["cust-c"],
    "?feedback=none": ["cust-a", "cust-e", "cust-d"],
    "?feedback=correct": ["cust-b"],
    "?feedback=false_alarm": ["cust-c"],
    "?from=2026-11-24": ["cust-a", "cust-c", "cust-e"],
    "?to=2026-11-23": ["cust-b", "cust-d"],
    "?from=2026-11-22&to=2026-11-23": ["cust-b"],
    "?days=5": ["cust-a", "cust-c", "cust-e", "cust-b"],
    "?queue=support&severity=warning&sort=customer": ["cust-b", "cust-e"],
    "?agent=agent-2&from=2026-11-24": ["cust-e"],
}


def test_every_filter_and_sort_on_the_page_and_the_api_alike(site):
    svc, admin = site
    five_customers(svc)
    sup = as_role(admin, "supervisor")
    for query, want in FILTERS.items():
        assert listed(sup, query) == want, query
        assert api_listed(sup, query) == want, query

    svc.accounts.add_user("test-supervisor", "supervisor")  # the token's name: "mine" is theirs
    assert sup.post("/api/customers/cust-b/handling", json={"action": "acknowledge"}).status_code == 200
    assert sup.post("/api/customers/cust-d/handling",
                    json={"action": "assign", "assignee": "test-supervisor"}).status_code == 200
    for query, want in {"?handled=yes": ["cust-b", "cust-d"], "?handled=no": ["cust-a", "cust-c", "cust-e"],
                        "?handled=mine": ["cust-d"], "?handled=no&severity=critical": ["cust-a"]}.items():
        assert listed(sup, query) == want and api_listed(sup, query) == want, query

    rows = {c["customer_id"]: c for c in sup.get("/api/flagged").json["customers"]}
    assert rows["cust-a"]["alerts"] == 2 and rows["cust-a"]["severity"] == "critical"
    assert rows["cust-c"]["severity"] == "false_alarm" and rows["cust-c"]["false_alarms"] == 1
    assert rows["cust-b"]["confirmed"] == 1 and rows["cust-b"]["handling"]["acknowledged_by"] == "test-supervisor"
    assert (rows["cust-a"]["phone"], rows["cust-a"]["queue"], rows["cust-a"]["agent_id"]) == (PHONE, "billing",
                                                                                              "agent-1")
    old = {"customer_id", "alerts", "last_alert_at", "severity", "last_call_id", "last_summary", "emotions",
           "scenario", "false_alarms", "confirmed"}  # what /api/flagged answered before: all kept
    assert old <= set(rows["cust-a"]) and sup.get("/api/flagged").json["total"] == 5


def test_values_not_accepted_are_named_on_the_page_and_refused_by_the_api(site):
    svc, admin = site
    five_customers(svc)
    sup = as_role(admin, "supervisor")
    for query, field in (("?severity=bogus", "severity"), ("?sort=drop%20table", "sort"),
                         ("?feedback=maybe", "feedback"), ("?handled=later", "handled"),
                         ("?from=2026-13-01", "from"), ("?to=24/11/2026", "to"), ("?from=1900-01-01", "from"),
                         ("?from=2026-11-24&to=2026-11-01", "to"), ("?days=0", "days"), ("?days=x", "days"),
                         ("?q=" + "x" * 256, "q"), ("?agent=%07", "agent")):
        r = sup.get("/api/flagged" + query)
        assert r.status_code == 400 and r.json["field"] == field, query
        page = sup.get("/dashboard" + query)
        assert page.status_code == 200 and "Ignored:" in page.text, query
        assert len(listed(sup, query)) >= 1, query  # the rest of the view still shows
    assert sup.get("/dashboard.csv?severity=bogus").status_code == 400
    assert sup.get("/api/flagged?q=%00").status_code == 400  # a NUL never reaches the database


def test_pages_keep_every_filter_and_the_sort(site):
    svc, admin = site
    for i in range(120):
        add_call(svc, f"c-{i:03d}", NOW - timedelta(minutes=i), [("warning", "general", None)] * 1,
                 queue="support" if i % 2 else "billing")
    add_call(svc, "other", NOW, queue="vip")
    sup = as_role(admin, "supervisor")
    query = "?queue=support&severity=warning&sort=customer&from=2026-11-20"
    first = sup.get("/dashboard" + query).text
    assert "Customers: 60 · page 1 of 2" in first
    [nxt] = re.findall(r'<a href="([^"]+)" rel="next">', first)
    args = parse_qs(urlsplit(nxt.replace("&amp;", "&")).query)
    assert args == {"queue": ["support"], "severity": ["warning"], "sort": ["customer"], "from": ["2026-11-20"],
                    "page": ["2"]}
    second = sup.get(nxt.replace("&amp;", "&")).text
    assert 'rel="prev"' in second and 'rel="next"' not in second and "page 2 of 2" in second
    assert listed(sup, query) + listed(sup, query + "&page=2") == [f"c-{i:03d}" for i in range(1, 120, 2)]
    # The handle forms post back to the same view and page.
    [action] = set(re.findall(r'<form method="post" action="([^"]+)">', second))
    assert parse_qs(urlsplit(action.replace("&amp;", "&")).query)["page"] == ["2"]
    past = sup.get("/dashboard" + query + "&page=9")  # past the last page: to the last, filters kept
    assert past.status_code == 302 and parse_qs(urlsplit(past.headers["Location"]).query)["page"] == ["2"]
    assert sup.get("/api/flagged" + query + "&limit=50&page=2").json["total"] == 60


def test_the_csv_is_the_screen_every_page_in_its_order(site):
    svc, admin = site
    for i in range(70):
        alerts = [("warning", "general", None)] * 1 + [("critical", "general", None)] * (i % 3)
        add_call(svc, f"c-{i:03d}", NOW - timedelta(minutes=i), alerts, phone=f"+86139{i:08d}")
    add_call(svc, '=HYPERLINK("http://evil")', NOW - timedelta(days=1))
    svc.accounts.add_user("ann", "supervisor")
    sup = as_role(admin, "supervisor")
    assert sup.post("/api/customers/c-005/handling", json={"action": "assign", "assignee": "ann",
                                                           "note": "-1 call"}).status_code == 200
    query = "?sort=most&from=2026-11-23"
    screen = listed(sup, query) + listed(sup, query + "&page=2")
    r = sup.get("/dashboard.csv" + query)
    assert r.status_code == 200 and r.mimetype == "text/csv" and r.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"))))
    # The same rows in the same order; a cell a spreadsheet would run starts with a quote.
    assert [row["customer_id"] for row in rows] == [("'" + c if c[0] == "=" else c) for c in screen]
    assert len(screen) == 71 and "'=HYPERLINK(\"http://evil\")" in [row["customer_id"] for row in rows]
    c5 = next(row for row in rows if row["customer_id"] == "c-005")
    assert (c5["assigned_to"], c5["assigned_by"], c5["handling_note"]) == ("ann", "test-supervisor", "'-1 call")
    assert c5["acknowledged_by"] == "test-supervisor" and c5["assigned_at"] == "2026-11-24T04:00:00.000Z"
    assert c5["phone"] == "'+8613900000005" and c5["queue"] == "support" and c5["alerts"] == "3"
    assert c5["severity"] == "critical" and c5["last_alert_local"] == "2026-11-24 11:55"
    # The link on the page carries the view.
    page = sup.get("/dashboard" + query).text
    assert 'href="/dashboard.csv?from=2026-11-23&amp;sort=most"' in page


def test_a_late_page_and_the_count_come_from_the_database(site):
    svc, admin = site
    for i in range(130):
        add_call(svc, f"c-{i:03d}", NOW - timedelta(minutes=i),
                 [("critical", "general", "false_alarm" if i % 10 == 0 else None)])
    sup = as_role(admin, "supervisor")
    assert listed(sup, "?severity=false_alarm") == [f"c-{i:03d}" for i in range(0, 130, 10)]
    page3 = sup.get("/dashboard?severity=critical&page=3").text
    assert "Customers: 117 · page 3 of 3" in page3 and page3.count("<tr>") == 1 + 17


def test_a_page_past_the_last_goes_to_the_last(site):
    svc, admin = site
    add_call(svc, "cust-only")
    sup = as_role(admin, "supervisor")
    r = sup.get("/dashboard?page=7&severity=critical")
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard?severity=critical"


def test_the_csv_quotes_the_latest_alerts_first_words(site):
    """``last_quote``: what was said first in the segments the latest alert fired on, as data
    (formula-like words quoted), its phone numbers masked for viewers."""
    svc, admin = site
    add_call(svc, "cust-q", NOW - timedelta(hours=2))
    latest = add_call(svc, "cust-q", NOW)
    add_call(svc, "cust-none", NOW)  # an alert without transcripts: an empty cell
    with svc.sessions.begin() as s:
        a = s.execute(select(AlertRow).where(AlertRow.call_id == latest)).scalar()
        a.details = {"share": 0.5, "quotes": [
            {"start": 133.2, "end": 136.2, "role": "customer", "text": f"=1+1 我要退款\n打 {PHONE[3:]}"},
            {"start": 140.0, "end": 143.0, "role": "customer", "text": "second"}]}
    sup = as_role(admin, "supervisor")
    rows = {r["customer_id"]: r for r in csv.DictReader(io.StringIO(sup.get("/dashboard.csv").data
                                                                    .decode("utf-8-sig")))}
    assert rows["cust-q"]["last_quote"] == f"02:13 customer: =1+1 我要退款 打 {PHONE[3:]}"
    assert rows["cust-none"]["last_quote"] == ""
    viewer = as_role(admin, "viewer")
    data = viewer.get("/dashboard.csv").data.decode("utf-8-sig")
    assert PHONE[3:] not in data and "02:13 customer: =1+1 我要退款 打 " in data
    assert PHONE[3:] not in viewer.get("/api/flagged").text
