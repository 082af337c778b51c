"""The review report (情绪复盘报告) on SQLite and PostgreSQL: its numbers from seeded calls,
alerts and feedback across two periods and the time zone's edges; the HTML page, its CSV
and chart behind a login; `callmood report` (text, errors, --send) and the scheduled run
to a stand-in WeCom robot on 127.0.0.1, once however often it runs."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import threading
import time
from datetime import datetime, timedelta

import pytest
import requests
import yaml
from sqlalchemy import func, select, text

from plugin.core import trial
from plugin.core.clock import ManualClock
from plugin.flow.report import measures
from plugin.flow.report.period import period_of, zone
from plugin.flow.report.send import deliver, scheduled_report
from plugin.store import engine as db
from plugin.store.tables import AlertRow, Call, Delivery, Feedback, Job
from plugin.web.app import create_app
from tests.conftest import HERE, T0, authed, in_language, make_config
from tests.helpers import Recorded, Reply, run_cli

TZ = "Asia/Shanghai"
HOSTILE_QUEUE = "<script>alert(1)</script>"
FORMULA_AGENT = '=HYPERLINK("http://evil","x")'
PHONE = "+8613812345678"
DAY = "2026-11-24"  # Shanghai: 2026-11-23 16:00 to 2026-11-24 16:00 UTC
RULES = HERE / "rules"


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_)


def summary(customer: dict | None = None, mixed: dict | None = None, is_trial: bool = False) -> dict:
    roles = {}
    if customer is not None:
        roles["customer"] = {"role": "customer", "segments": sum(customer.values()), "label_counts": customer}
    if mixed is not None:
        roles["mixed"] = {"role": "mixed", "segments": sum(mixed.values()), "label_counts": mixed}
    return {"roles": roles, "model": {"trial": is_trial}}


def seed(sessions, is_trial: bool = False) -> dict[str, int]:
    """Calls of 2026-11-24 (Shanghai), of the day before, and just past either edge;
    alerts with and without feedback; two failed calls. Returns call ids by name."""
    calls = {
        # this day
        "c1": dict(at="2026-11-23T16:00:00", queue="support", agent="a1", scenario="general", dur=60,
                   summary=summary({"angry": 3, "neutral": 1})),
        "c2": dict(at="2026-11-24T01:00:00", queue="support", agent="a1", scenario="general", dur=120,
                   summary=summary({"neutral": 4}, mixed={"angry": 10})),  # the customer track wins
        "c3": dict(at="2026-11-24T02:00:00", queue="support", agent="a2", scenario="general", dur=30,
                   summary=summary(mixed={"sad": 1, "neutral": 1})),  # no customer track: the mixed one
        "c4": dict(at="2026-11-24T15:59:59", queue=None, agent=None, scenario=None, dur=30,
                   summary=summary({"happy": 2})),
        "c5": dict(at="2026-11-24T05:00:00", queue=HOSTILE_QUEUE, agent=FORMULA_AGENT, scenario="vip", dur=60,
                   summary=summary({"disgusted": 1, "fearful": 1, "neutral": 2}, is_trial=is_trial)),
        # the next day (not counted)
        "c6": dict(at="2026-11-24T16:00:00", queue="support", agent="a1", scenario="general", dur=600,
                   summary=summary({"angry": 50})),
        # the day before
        "c7": dict(at="2026-11-23T15:59:59", queue="support", agent="a1", scenario="general", dur=60,
                   summary=summary({"angry": 1, "neutral": 3})),
        "c8": dict(at="2026-11-23T01:00:00", queue="support", agent="a1", scenario="general", dur=60,
                   summary=summary({"neutral": 4})),
    }
    ids: dict[str, int] = {}
    with sessions.begin() as s:
        for name, c in calls.items():
            row = Call(source="generic", external_id=name, recording_url="http://x/r.wav", customer_id=None,
                       agent_id=c["agent"], queue=c["queue"], scenario=c["scenario"], event={}, status="analyzed",
                       received_at=at(c["at"]), analyzed_at=at(c["at"]), duration_s=c["dur"], summary=c["summary"])
            s.add(row)
            s.flush()
            ids[name] = row.id
        for name, finished in (("f1", "2026-11-24T03:00:00"), ("f2", "2026-11-23T03:00:00")):
            row = Call(source="generic", external_id=name, recording_url="http://x/r.wav", event={}, status="failed",
                       received_at=at(finished))
            s.add(row)
            s.flush()
            s.add(Job(call_id=row.id, status="failed", attempts=5, run_after=at(finished), created_at=at(finished),
                      finished_at=at(finished)))
        alerts = [  # call, rule, severity, customer, created, verdict
            ("c1", "angry", "warning", "cust-1", "2026-11-23T17:00:00", "correct"),
            ("c2", "angry", "critical", "cust-1", "2026-11-24T02:00:00", None),
            ("c5", "vip_upset", "critical", "cust-2", "2026-11-24T03:00:00", "false_alarm"),
            ("c3", "angry", "info", "cust-3", "2026-11-24T04:00:00", "false_alarm"),
            ("c3", "long_negative", "warning", "cust-3", "2026-11-24T04:30:00", "correct"),
            ("c4", "angry", "warning", None, "2026-11-24T05:00:00", None),
            ("c6", "angry", "critical", "cust-1", "2026-11-24T16:00:00", None),  # the next day
            ("c7", "angry", "warning", "cust-1", "2026-11-23T15:00:00", "correct"),  # the day before
            ("c8", "angry", "warning", "cust-9", "2026-11-23T02:00:00", "false_alarm"),
        ]
        for call, rule, severity, customer, created, verdict in alerts:
            scenario = "vip" if rule == "vip_upset" else "general"
            a = AlertRow(call_id=ids[call], rule=rule, scenario=scenario, severity=severity, role="customer",
                         emotions=["angry"], share=0.5, confidence=0.9, matched=[],
                         summary=f"{customer} ({PHONE}) {rule} on {call}", customer_id=customer,
                         created_at=at(created))
            s.add(a)
            s.flush()
            if verdict:
                s.add(Feedback(alert_id=a.id, verdict=verdict, created_at=at(created), updated_at=at(created)))
    return ids


def report_cfg(tmp_path, db_url, wecom=None, **reports):
    reports = {"timezone": TZ, "min_calls": 1, **reports}
    if wecom is not None:
        reports.setdefault("daily", {"sinks": ["wecom"]})
    return make_config(tmp_path, None, db_url, crm=wecom, wecom=wecom, reports=reports)  # the test rules use both


# --- the numbers ---------------------------------------------------------------------------

def test_measures_of_a_day_against_the_day_before(tmp_path, db_url, app_factory):
    svc, _ = app_factory(report_cfg(tmp_path, db_url))
    ids = seed(svc.sessions)
    r = measures.build(svc.sessions, period_of("daily", DAY, zone(TZ)), svc.config.reports, TZ)

    assert (r.now.calls, r.now.failed, r.now.audio_s) == (5, 1, 300.0)
    assert (r.prev.calls, r.prev.failed) == (2, 1)
    assert (r.now.speech.negative, r.now.speech.windows) == (6, 16) and r.now.speech.share == 0.375
    assert r.prev.speech.share == 0.125 and not r.trial

    queues = {row.name: row for row in r.queues}
    assert [row.name for row in r.queues] == ["support", HOSTILE_QUEUE, None]  # by calls, "(none)" last
    support = queues["support"]
    assert (support.calls, support.speech, support.prev_calls, support.prev_speech) == (
        3, measures.Speech(4, 10), 2, measures.Speech(1, 8))
    assert support.change_pp == pytest.approx(27.5)
    assert queues[None].calls == 1 and queues[None].share == 0.0 and queues[None].prev_share is None
    assert {row.name: row.share for row in r.scenarios} == {"general": 0.4, "vip": 0.5, None: 0.0}

    now = r.alerts.now
    assert (now.alerts, now.correct, now.false_alarms, now.unlabelled) == (6, 2, 2, 2)
    assert r.alerts.now.precision == 0.5 and r.alerts.prev.precision == 0.5 and r.alerts.prev.alerts == 2
    sev = {g.name: g.now for g in r.severities}
    assert [g.name for g in r.severities] == ["critical", "warning", "info"]
    assert (sev["critical"].alerts, sev["critical"].precision) == (2, 0.0)
    assert (sev["warning"].alerts, sev["warning"].precision) == (3, 1.0)
    rules = {g.name: g for g in r.rules}
    assert [g.name for g in r.rules] == ["general/angry", "general/long_negative", "vip/vip_upset"]
    assert (rules["general/angry"].now.alerts, rules["general/angry"].prev.alerts) == (4, 2)
    assert rules["vip/vip_upset"].now.precision == 0.0 and rules["general/long_negative"].now.precision == 1.0

    # Red-flagged: false alarms left out of the count (cust-2 had only one: not listed), the
    # next day's alert not counted; cust-1's last alert is c2's.
    assert [(c.customer_id, c.alerts, c.false_alarms, c.worst, c.last_call_id) for c in r.customers] == [
        ("cust-1", 2, 0, "critical", ids["c2"]), ("cust-3", 1, 1, "warning", ids["c3"])]


def test_rows_past_max_rows_are_summed_as_others_and_weeks_have_days(tmp_path, db_url, app_factory):
    svc, _ = app_factory(report_cfg(tmp_path, db_url, max_rows=2, top_customers=1))
    seed(svc.sessions)
    r = measures.build(svc.sessions, period_of("daily", DAY, zone(TZ)), svc.config.reports, TZ)
    assert [(row.name, row.calls, row.others) for row in r.agents] == [
        ("a1", 2, False), (FORMULA_AGENT, 1, False), (None, 2, True)]  # a2 and "(none)" summed
    assert r.agents[-1].speech == measures.Speech(1, 4) and [c.customer_id for c in r.customers] == ["cust-1"]
    w = measures.build(svc.sessions, period_of("weekly", DAY, zone(TZ)), svc.config.reports, TZ)
    per_day = {d.day.isoformat(): d.calls for d in w.days}
    # Each call on its Shanghai day: c7 (15:59:59 UTC) is the 23rd, c6 (16:00 UTC on the 24th) the 25th.
    assert (per_day["2026-11-23"], per_day["2026-11-24"], per_day["2026-11-25"], per_day["2026-11-29"]) == (2, 5, 1, 0)
    assert w.now.calls == 8 and w.prev.calls == 0


# --- the page, its CSV and chart ---------------------------------------------------------------

def test_the_page_needs_a_login_and_escapes_what_came_from_outside(tmp_path, db_url, app_factory):
    svc, anon = app_factory(report_cfg(tmp_path, db_url), clock=ManualClock(T0), role=None)
    seed(svc.sessions)
    page = f"/reports/day/{DAY}"
    for path in (page, f"{page}.csv", f"{page}/chart.png", "/reports", "/reports/week/2026-W48"):
        r = anon.get(path)
        assert r.status_code == 302 and r.location.startswith("/login?next="), path

    viewer = in_language(authed(anon.application, "viewer"), "en")
    r = viewer.get(page)
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.text
    assert "37.5%" in html and "+25.0 pp" in html and "+27.5 pp" in html and "2026-11-24 (Tue)" in html
    assert HOSTILE_QUEUE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<i>(none)</i>" in html and "cust-1" in html and "cust-2" not in html
    assert PHONE not in html and "+86138****5678" in html  # a viewer: phone numbers masked
    assert f'src="/reports/day/{DAY}/chart.png"' in html and f'href="/reports/day/{DAY}.csv"' in html
    assert 'href="/reports/day/2026-11-23"' in html and 'href="/reports/day/2026-11-25"' not in html  # the future
    assert "Trial model" not in html
    zh = viewer.get(page, headers={"Accept-Language": "zh-CN"}).text
    assert "<i>（未指定）</i>" in zh and "负面占比" in zh and "试用模型" not in zh and "+86138****5678" in zh
    assert authed(anon.application, "supervisor").get(page).text.count(PHONE) >= 1

    assert viewer.get("/reports").location == "/reports/day/2026-11-23"  # yesterday in Shanghai (10:02 on the 24th)
    week = viewer.get("/reports/week/2026-11-25")
    assert week.status_code == 200 and "2026-W48" in week.text and "By day" in week.text
    bad = viewer.get("/reports/day/2026-13-01")
    assert bad.status_code == 404 and "is not a date: month must be in 1..12" in bad.text
    assert viewer.get("/reports/week/2026-W60").status_code == 404
    assert viewer.get("/reports/month/2026-11").status_code == 404

    png = viewer.get(f"{page}/chart.png")
    assert png.mimetype == "image/png" and png.data.startswith(b"\x89PNG\r\n\x1a\n") and len(png.data) < 2 * 1024 * 1024

    data = viewer.get(f"{page}.csv")
    assert data.mimetype == "text/csv" and "attachment" in data.headers["Content-Disposition"]
    assert data.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.data.decode("utf-8-sig"))))
    assert {r["section"] for r in rows} == {"total", "queue", "agent", "scenario", "customer", "severity", "rule"}
    agents = [r["name"] for r in rows if r["section"] == "agent"]
    assert "'" + FORMULA_AGENT in agents and FORMULA_AGENT not in agents
    assert all(PHONE not in r["last_summary"] for r in rows)


def test_a_trial_model_is_said_first_on_the_page(tmp_path, db_url, app_factory):
    svc, client = app_factory(report_cfg(tmp_path, db_url), clock=ManualClock(T0), role="viewer")
    seed(svc.sessions, is_trial=True)
    for lang, label in (("en", "Trial model, random weights"), ("zh-CN", "试用模型（随机权重）")):
        html = client.get(f"/reports/day/{DAY}", headers={"Accept-Language": lang}).text
        body = html[html.index("<body>"):]
        assert label in body and body.index(label) < body.index("<h1>")


# --- the stand-in WeCom robot ------------------------------------------------------------------

class Robot:
    """Answers as the WeCom group robot does, checking markdown (≤ 4096 bytes) and image
    (base64 of a PNG ≤ 2 MB whose md5 matches) messages; keeps what it accepted."""

    def __init__(self, fake):
        self.server = fake()
        self.server.routes["/cgi-bin/webhook/send"] = self.answer
        self.url = self.server.url
        self.got: list[dict] = []
        self.refuse = False
        self._lock = threading.Lock()

    def answer(self, rec: Recorded) -> Reply:
        if self.refuse:
            return Reply(502, b"bad gateway")
        body = json.loads(rec.body)
        if body.get("msgtype") == "markdown":
            ok = len(body["markdown"]["content"].encode("utf-8")) <= 4096
        elif body.get("msgtype") == "image":
            raw = base64.b64decode(body["image"]["base64"], validate=True)
            ok = (raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) <= 2 * 1024 * 1024
                  and hashlib.md5(raw).hexdigest() == body["image"]["md5"])
        else:
            ok = False
        if not ok:
            return Reply(200, {"errcode": 40008, "errmsg": "invalid message"})
        with self._lock:
            self.got.append(body)
        return Reply(200, {"errcode": 0, "errmsg": "ok"})

    def kinds(self) -> list[str]:
        return sorted(b["msgtype"] for b in self.got)


def write_config(tmp_path, db_url, robot: Robot | None, **reports) -> str:
    data = {"data_dir": str(tmp_path / "var"), "database": {"url": db_url},
            "server": {"public_url": "https://callmood.example.com"},
            "deliveries": {"backoff_base_s": 0.01, "backoff_max_s": 0.02},
            "reports": {"timezone": TZ, "min_calls": 1, **reports}}
    if robot is not None:  # the test rules (tests/rules) act through crm and wecom
        data["rules"] = {"path": str(RULES)}
        data["sinks"] = {"wecom": {"type": "wecom_robot", "url": robot.url + "/cgi-bin/webhook/send?key=robot-key"},
                         "crm": {"type": "rest", "url": robot.url + "/crm"}}
        data["reports"].setdefault("daily", {"sinks": ["wecom"]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def seeded(db_url, is_trial: bool = False) -> None:
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    try:
        seed(db.make_sessionmaker(engine), is_trial)
    finally:
        engine.dispose()


def deliveries(db_url) -> list[tuple[str, str]]:
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(select(Delivery.dedupe_key, Delivery.status).order_by(Delivery.id))]
    finally:
        engine.dispose()


def test_send_posts_markdown_and_chart_once_however_often_it_runs(tmp_path, db_url, fake):
    robot = Robot(fake)
    cfg = write_config(tmp_path, db_url, robot)
    seeded(db_url)
    first = run_cli("report", "-c", cfg, "--day", DAY, "--send")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"report {DAY}: wecom markdown: delivered (delivery 1)", f"report {DAY}: wecom image: delivered (delivery 2)"]
    assert first.stderr.startswith(f"config: {cfg}")
    again = run_cli("report", "-c", cfg, "--day", DAY, "--send")
    assert again.returncode == 0 and again.stdout.count("already stored, delivered") == 2
    assert robot.kinds() == ["image", "markdown"]  # once, whatever the re-runs
    assert deliveries(db_url) == [(f"report:daily:{DAY}:wecom:markdown", "delivered"),
                                  (f"report:daily:{DAY}:wecom:image", "delivered")]

    content = next(b for b in robot.got if b["msgtype"] == "markdown")["markdown"]["content"]
    assert content.startswith("### 情绪复盘报告 / Emotion review") and len(content.encode()) <= 4096
    assert "37.5%" in content and "＜script＞alert(1)＜/script＞" in content and HOSTILE_QUEUE not in content
    assert PHONE not in content and f"(https://callmood.example.com/reports/day/{DAY})" in content
    assert "https://callmood.example.com/calls/" in content and "?k=" in content  # signed call links, as alerts


def test_send_leaves_what_fails_pending_and_a_later_run_sends_it(tmp_path, db_url, fake):
    robot = Robot(fake)
    robot.refuse = True
    cfg = write_config(tmp_path, db_url, robot)
    seeded(db_url, is_trial=True)
    r = run_cli("report", "-c", cfg, "--day", DAY, "--send")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("pending (the service sends it): HTTP 502") == 2 and "robot-key" not in r.stdout
    robot.refuse = False
    time.sleep(0.1)  # past the retry's backoff (deliveries.backoff_base_s)
    r = run_cli("report", "-c", cfg, "--day", DAY, "--send")
    assert r.stdout.count("already stored, delivered") == 2, r.stdout
    content = next(b for b in robot.got if b["msgtype"] == "markdown")["markdown"]["content"]
    assert content.splitlines()[0] == trial.LABEL


def test_the_scheduled_run_stores_the_day_before_once_and_the_outbox_sends_it(tmp_path, db_url, fake, app_factory):
    robot = Robot(fake)
    svc, _ = app_factory(report_cfg(tmp_path, db_url, wecom=robot.server), clock=ManualClock(T0 + timedelta(days=1)))
    seed(svc.sessions)
    # Two processes (or a re-run) at 08:00 on the 25th: the 24th is stored once.
    runs = [threading.Thread(target=scheduled_report, args=(svc.config, svc.outputs, "daily")) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    scheduled_report(svc.config, svc.outputs, "daily")
    with svc.sessions() as s:
        keys = s.execute(select(Delivery.dedupe_key).order_by(Delivery.id)).scalars().all()
    assert keys == [f"report:daily:{DAY}:wecom:markdown", f"report:daily:{DAY}:wecom:image"]
    with requests.Session() as http:
        assert svc.outbox().drain(http, "test") == 2
    assert robot.kinds() == ["image", "markdown"]
    # Stored again by hand: already there, nothing new.
    again = deliver(svc.config, svc.outputs, period_of("daily", DAY, zone(TZ)))
    assert [(x.part, x.new, x.status) for x in again] == [
        ("markdown", False, "delivered"), ("image", False, "delivered")]
    # The page shows where its deliveries stand.
    html = in_language(authed(create_app(services=svc), "viewer"), "en").get(f"/reports/day/{DAY}").text
    assert "wecom markdown: <span class=\"delivered\">delivered</span>" in html


def test_the_runtime_schedules_each_kind_with_sinks_in_the_report_zone(tmp_path, db_url, fake, app_factory):
    robot = Robot(fake)
    cfg = make_config(tmp_path, tmp_path / "no-model", db_url, crm=robot.server, wecom=robot.server,
                      reports={"timezone": TZ, "daily": {"sinks": ["wecom"]}})
    svc, _ = app_factory(cfg)
    runtime = svc.runtime(worker=False).start()
    try:
        daily, weekly = runtime.scheduler.get_job("report_daily"), runtime.scheduler.get_job("report_weekly")
        assert weekly is None  # no sinks for the weekly report: nothing scheduled
        nxt = daily.next_run_time
        assert (str(nxt.tzinfo), nxt.hour, nxt.minute) == (TZ, 8, 0) and daily.misfire_grace_time == 3600
    finally:
        runtime.stop(0)


# --- the command -------------------------------------------------------------------------------

def test_the_command_prints_the_report_as_text_csv_and_markdown(tmp_path, db_url):
    cfg = write_config(tmp_path, db_url, None)
    seeded(db_url)
    r = run_cli("report", "-c", cfg, "--day", DAY)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"情绪复盘报告 / Emotion review — 日报 Daily {DAY} (Tue), {TZ}"
    assert "37.5%" in r.stdout and "+25.0 pp" in r.stdout and "(none) 未指定" in r.stdout
    assert any(line.startswith("Calls analysed 分析通话") and line.split()[-3:] == ["5", "2", "+3"] for line in lines)

    out = run_cli("report", "-c", cfg, "--week", "2026-W48", "--csv", "-", "--png", tmp_path / "w.png")
    assert out.returncode == 0 and out.stdout.startswith("\ufeffperiod,section,name,")
    assert "2026-W48,day,2026-11-24,5," in out.stdout and (tmp_path / "w.png").read_bytes().startswith(b"\x89PNG")
    assert "chart written to" in out.stderr

    md = run_cli("report", "-c", cfg, "--day", DAY, "--markdown")
    assert md.stdout.startswith("### 情绪复盘报告") and "＜script＞" in md.stdout and len(md.stdout.encode()) <= 4097

    yesterday = run_cli("report", "-c", cfg)  # the default: yesterday, by the real clock, in Shanghai
    assert yesterday.returncode == 0 and "日报 Daily" in yesterday.stdout.splitlines()[0]


@pytest.mark.parametrize("args,said", [
    (["--day", "2026-13-01"], "Invalid value for --day: '2026-13-01' is not a date: month must be in 1..12"),
    (["--week", "2026-W60"], "Invalid value for --week: '2026-W60' is not a week: 2026 has no week 60"),
    (["--day", DAY, "--week", "2026-W48"], "give --day or --week, not both"),
    (["--csv", "-", "--markdown"], "--csv - and --markdown both write to stdout: pick one"),
    (["--day", DAY, "--send"], "reports.daily.sinks names no WeCom robot: nothing to send to"),
])
def test_the_command_says_what_is_wrong_in_one_line(tmp_path, sqlite_url, args, said):
    r = run_cli("report", "-c", write_config(tmp_path, sqlite_url, None), *args)
    assert r.returncode in (1, 2) and said in r.stderr and r.stdout == ""


def test_migration_0007_adds_and_removes_the_dedupe_key(tmp_path, db_url):
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    with engine.begin() as c:
        for _ in range(2):  # NULL keys: as many as there are alerts' deliveries
            c.execute(text("INSERT INTO deliveries (sink, payload, status, attempts, next_attempt_at, created_at) "
                           "VALUES ('crm', '{}', 'pending', 0, '2026-11-24 10:00:00', '2026-11-24 10:00:00')"))
    with pytest.raises(Exception):
        with engine.begin() as c:
            for _ in range(2):
                c.execute(text("INSERT INTO deliveries (sink, payload, status, attempts, next_attempt_at, created_at, "
                               "dedupe_key) VALUES ('w', '{}', 'pending', 0, '2026-11-24 10:00:00', "
                               "'2026-11-24 10:00:00', 'report:daily:x:w:markdown')"))
    db.downgrade(engine, "0006")
    db.upgrade(engine)
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(Delivery.__table__)).scalar() == 2
    engine.dispose()


def test_forget_redacts_the_customer_from_stored_report_messages(tmp_path, db_url, fake, app_factory):
    """The stored WeCom markdown names the top customers: `callmood forget` redacts it there
    too, also where WeCom markdown's look-alikes changed the id (# -> ＃)."""
    robot = Robot(fake)
    svc, _ = app_factory(report_cfg(tmp_path, db_url, wecom=robot.server))
    seed(svc.sessions)
    with svc.sessions.begin() as s:  # a customer id holding a character markdown escapes
        s.execute(AlertRow.__table__.update().where(AlertRow.customer_id == "cust-3").values(customer_id="vip#3"))
    deliver(svc.config, svc.outputs, period_of("daily", DAY, zone(TZ)))

    def markdown() -> str:
        with svc.sessions() as s:
            return s.execute(select(Delivery.payload).where(Delivery.dedupe_key.like("%:markdown"))).scalar_one()[
                "body"]["markdown"]["content"]

    assert "cust-1" in markdown() and "vip＃3" in markdown()
    assert svc.forget("cust-1")["reports redacted"] == 1
    assert svc.forget("vip#3")["reports redacted"] == 1
    assert "cust-1" not in markdown() and "vip＃3" not in markdown() and markdown().count("[removed]") >= 2
    assert svc.forget("cust-2")["reports redacted"] == 0  # a false alarm only: never named



def test_the_csvs_customer_rows_quote_what_was_said_masked_for_viewers(tmp_path, db_url, app_factory):
    """The review report's CSV: each red-flagged customer's latest alert's first quote, as
    the red-flag CSV has it; a viewer sees the numbers in it masked."""
    from plugin.store.tables import AlertRow

    svc, anon = app_factory(report_cfg(tmp_path, db_url), clock=ManualClock(T0), role=None)
    ids = seed(svc.sessions)
    said = "我要退款，不然我打12315，卡号6222021234567890123"
    with svc.sessions.begin() as s:
        last = s.execute(select(AlertRow).where(AlertRow.call_id == ids["c2"])).scalars().first()
        last.details = {**(last.details or {}), "quotes": [{"start": 133.2, "end": 136.2, "role": "customer",
                                                            "text": said}]}
    def quotes(role):
        data = authed(anon.application, role).get(f"/reports/day/{DAY}.csv").data.decode("utf-8-sig")
        return {r["name"]: r["last_quote"] for r in csv.DictReader(io.StringIO(data)) if r["section"] == "customer"}
    assert quotes("supervisor") == {"cust-1": f"02:13 customer: {said}", "cust-3": ""}
    assert quotes("viewer")["cust-1"] == "02:13 customer: 我要退款，不然我打12315，卡号***************0123"
