"""The review report's edges, from an attacker-minded review: a period not over is never
sent (its one send would take the whole period's place); a dead report is sent again when
asked; a run missed while the service was down is caught up at start; a chart that fails
leaves the image for the next run; a re-run keeps calls on their day; long names never
push a section out of the WeCom message; the command's outputs stay clean (a CSV on stdout
is only CSV, an unwritable file is one line). SQLite and PostgreSQL where the database matters."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from plugin.core.clock import ManualClock
from plugin.flow.report import measures, render
from plugin.flow.report.measures import AlertGroup, FlaggedCustomer, Review, ShareRow, Speech, Tally, Volume
from plugin.flow.report.period import Period, period_of, zone
from plugin.flow.report.send import ReportError, catch_up, deliver, report_trigger, scheduled_report
from plugin.store.tables import Call, Delivery
from tests.conftest import T0, in_language
from tests.helpers import Reply, run_cli, wait_until
from tests.integration.test_report import DAY, TZ, Robot, report_cfg, seed, seeded, write_config


def keys(svc) -> list[str]:
    with svc.sessions() as s:
        return s.execute(select(Delivery.dedupe_key).order_by(Delivery.id)).scalars().all()


# --- a period that is not over -------------------------------------------------------------

def test_a_period_not_over_is_never_stored_for_sending(tmp_path, sqlite_url, fake, app_factory):
    """At 10:02 on the 24th (Shanghai) its report holds the morning only: stored now, it
    would take the whole day's one send. Refused; the page says the figures are so far."""
    robot = Robot(fake)
    svc, client = app_factory(report_cfg(tmp_path, sqlite_url, wecom=robot.server), clock=ManualClock(T0),
                              role="viewer")
    seed(svc.sessions)
    with pytest.raises(ReportError, match=r"^the report of 2026-11-24 can be sent once the period is over "
                                          r"\(2026-11-25 00:00 Asia/Shanghai\)"):
        deliver(svc.config, svc.outputs, period_of("daily", DAY, zone(TZ)))
    assert keys(svc) == []
    client = in_language(client, "en")
    assert "This period is not over" in client.get(f"/reports/day/{DAY}").text
    assert "This period is not over" not in client.get("/reports/day/2026-11-23").text
    assert "本期尚未结束" in client.get(f"/reports/day/{DAY}", headers={"Accept-Language": "zh-CN"}).text


def test_the_command_refuses_to_send_a_day_to_come(tmp_path, sqlite_url, fake):
    robot = Robot(fake)
    cfg = write_config(tmp_path, sqlite_url, robot)
    r = run_cli("report", "-c", cfg, "--day", "2099-01-01", "--send")
    assert r.returncode == 1 and r.stderr.splitlines()[-1].startswith(
        "Error: the report of 2099-01-01 can be sent once the period is over (2099-01-02 00:00 Asia/Shanghai)")
    assert "2099-01-01 is not over yet: the figures are those so far" in r.stderr
    assert robot.got == []


# --- dead, then sent again -------------------------------------------------------------------

def test_a_dead_report_is_sent_again_by_hand(tmp_path, db_url, fake):
    robot = Robot(fake)
    refuse = {"on": True}

    def answer(rec):
        if refuse["on"]:
            return Reply(200, {"errcode": 40058, "errmsg": "content too long"})  # final: dead at once
        return Robot.answer(robot, rec)
    robot.server.routes["/cgi-bin/webhook/send"] = answer
    cfg = write_config(tmp_path, db_url, robot)
    seeded(db_url)
    first = run_cli("report", "-c", cfg, "--day", DAY, "--send")
    assert first.returncode == 1 and first.stdout.count(": dead: errcode 40058") == 2
    refuse["on"] = False  # the robot fixed
    again = run_cli("report", "-c", cfg, "--day", DAY, "--send")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already stored, delivered") == 2
    assert robot.kinds() == ["image", "markdown"]
    third = run_cli("report", "-c", cfg, "--day", DAY, "--send")  # delivered: never twice
    assert third.returncode == 0 and robot.kinds() == ["image", "markdown"]


def test_a_chart_that_fails_leaves_the_image_to_the_next_run(tmp_path, sqlite_url, fake, app_factory, monkeypatch):
    robot = Robot(fake)
    svc, _ = app_factory(report_cfg(tmp_path, sqlite_url, wecom=robot.server),
                         clock=ManualClock(T0 + timedelta(days=1)))
    seed(svc.sessions)

    def broken(report):
        raise RuntimeError("no font today")
    monkeypatch.setattr(render, "chart_png", broken)
    stored = deliver(svc.config, svc.outputs, period_of("daily", DAY, zone(TZ)))
    assert [(x.part, x.status) for x in stored] == [("markdown", "pending")]
    monkeypatch.undo()
    stored = deliver(svc.config, svc.outputs, period_of("daily", DAY, zone(TZ)))
    assert [(x.part, x.new, x.status) for x in stored] == [("markdown", False, "pending"), ("image", True, "pending")]


# --- a run missed while the service was down -----------------------------------------------

@pytest.mark.parametrize("local_now,caught", [
    ("2026-11-25T01:30:00", True),   # 09:30 on the 25th: 08:00 passed while down -> the 24th now
    ("2026-11-24T23:00:00", False),  # 07:00 on the 25th: the schedule is still to come
])
def test_a_run_missed_while_down_is_caught_up_at_start(tmp_path, sqlite_url, fake, app_factory, local_now, caught):
    robot = Robot(fake)
    svc, _ = app_factory(report_cfg(tmp_path, sqlite_url, wecom=robot.server),
                         clock=ManualClock(datetime.fromisoformat(local_now)))
    seed(svc.sessions)
    trigger = report_trigger(svc.config.reports, "daily")
    catch_up(svc.config, svc.outputs, "daily", trigger)
    catch_up(svc.config, svc.outputs, "daily", trigger)  # a second process starting: nothing more
    expected = [f"report:daily:{DAY}:wecom:markdown", f"report:daily:{DAY}:wecom:image"] if caught else []
    assert keys(svc) == expected


def test_a_starting_service_catches_up_once(tmp_path, sqlite_url, fake, app_factory):
    """Started at 10:02 on the 24th (the test clock), after the 08:00 run it never saw: the
    23rd's report is stored at once, by the start's one-off job."""
    robot = Robot(fake)
    svc, _ = app_factory(report_cfg(tmp_path, sqlite_url, wecom=robot.server), clock=ManualClock(T0))
    runtime = svc.runtime(worker=False)
    try:
        runtime.start()
        wait_until(lambda: len(keys(svc)) == 2, timeout=30)
        assert keys(svc) == ["report:daily:2026-11-23:wecom:markdown", "report:daily:2026-11-23:wecom:image"]
        assert "report_daily" in {j.id for j in runtime.scheduler.get_jobs()}  # and the daily run stays
    finally:
        runtime.stop(grace_s=0)


# --- the day a call belongs to --------------------------------------------------------------

def test_a_reanalysed_call_stays_on_the_day_it_was_received(tmp_path, db_url, app_factory):
    svc, _ = app_factory(report_cfg(tmp_path, db_url))
    seed(svc.sessions)
    day = period_of("daily", DAY, zone(TZ))
    before = measures.build(svc.sessions, day, svc.config.reports, TZ)
    assert (before.now.calls, before.alerts.now.alerts) == (5, 6)
    with svc.sessions.begin() as s:  # what a re-run (or a late backlog) does: analysed again days later
        for c in s.execute(select(Call).where(Call.status == "analyzed")).scalars():
            c.analyzed_at = datetime(2026, 11, 26, 3, 0)
    after = measures.build(svc.sessions, day, svc.config.reports, TZ)
    assert (after.now.calls, after.alerts.now.alerts, after.now.speech) == (5, 6, before.now.speech)
    later = measures.build(svc.sessions, period_of("daily", "2026-11-26", zone(TZ)), svc.config.reports, TZ)
    assert (later.now.calls, later.alerts.now.alerts) == (0, 0)


# --- the WeCom message's room ----------------------------------------------------------------

def _review(name_len: int) -> Review:
    p = Period("daily", date(2026, 11, 24), ZoneInfo(TZ))
    rows = [ShareRow(f"{i}" + "客" * name_len, 10, Speech(5, 10), 10, Speech(1, 10)) for i in range(5)]
    customers = [FlaggedCustomer(f"cust-{i}", 3, 0, "critical", "客户投诉" * 40, i, datetime(2026, 11, 24))
                 for i in range(3)]
    rules = [AlertGroup(f"general/rule{i}" + "规" * name_len, Tally(3, 1, 1)) for i in range(3)]
    return Review(p, ("angry",), Volume(10, 0, 100, Speech(5, 10)), Volume(), rows, rows, rows, customers, [],
                  rules, AlertGroup("all", Tally(9, 3, 3)), zone=TZ)


def test_long_names_never_push_a_section_out_of_the_message():
    link = "https://x.example/reports/day/2026-11-24"
    content = render.markdown(_review(250), link, lambda i: f"https://x.example/calls/{i}", 1)
    assert len(content.encode()) <= 4096 and content.endswith(f"[完整报告 / Full report]({link})")
    assert "告警规则" in content and "general/rule0" in content  # every section has its room
    assert all(f"cust-{i}" in content for i in range(3))
    assert "客" * 40 not in content  # names are cut in the message (the page has them whole)


# --- the command's outputs -------------------------------------------------------------------

def test_a_csv_on_stdout_stays_a_csv_when_sending(tmp_path, sqlite_url, fake):
    robot = Robot(fake)
    cfg = write_config(tmp_path, sqlite_url, robot)
    seeded(sqlite_url)
    r = run_cli("report", "-c", cfg, "--day", DAY, "--csv", "-", "--send")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("\ufeffperiod,section,") and "delivered" not in r.stdout
    assert f"report {DAY}: wecom markdown: delivered" in r.stderr


@pytest.mark.parametrize("option", ["--png", "--csv"])
def test_an_unwritable_output_file_is_one_line(tmp_path, sqlite_url, option):
    cfg = write_config(tmp_path, sqlite_url, None)
    target = tmp_path / "no" / "such" / "dir" / "x"
    r = run_cli("report", "-c", cfg, "--day", DAY, option, target)
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == f"Error: {target}: No such file or directory"


# --- once, however many store it ---------------------------------------------------------------

def test_four_runs_at_once_store_each_part_once(tmp_path, db_url, fake, app_factory):
    robot = Robot(fake)
    svc, _ = app_factory(report_cfg(tmp_path, db_url, wecom=robot.server), clock=ManualClock(T0 + timedelta(days=1)))
    seed(svc.sessions)
    runs = [threading.Thread(target=scheduled_report, args=(svc.config, svc.outputs, "daily")) for _ in range(4)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert sorted(keys(svc)) == sorted([f"report:daily:{DAY}:wecom:markdown", f"report:daily:{DAY}:wecom:image"])


def test_three_processes_sending_at_once_send_each_part_once(tmp_path, db_url, fake):
    robot = Robot(fake)
    cfg = write_config(tmp_path, db_url, robot)
    seeded(db_url)
    cmd = [sys.executable, "-m", "plugin.cli", "report", "-c", cfg, "--day", DAY, "--send"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert robot.kinds() == ["image", "markdown"]


def test_a_hostile_date_in_the_url_is_escaped_in_the_error(tmp_path, sqlite_url, app_factory):
    svc, client = app_factory(report_cfg(tmp_path, sqlite_url), role="viewer")
    r = client.get("/reports/day/%3Cimg%20src=x%20onerror=alert(1)%3E")
    assert r.status_code == 404 and "<img src=x" not in r.text
    r = client.get("/reports/week/%3Cimg%20src=x%3E.csv")
    assert r.status_code == 404 and "<img src=x" not in r.text
    assert "previous 上一期" not in client.get("/reports/day/2000-01-01").text  # no link to a 404
