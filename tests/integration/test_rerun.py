"""Re-runs: a failed call queued again once its cause is fixed (the issue: the same webhook
answers `duplicate`, and nothing could queue it), from the command line and by a
supervisor through the API; never queued twice; an analysed call re-run sends no second
alert. And a call that is retrying says why, and when it is tried next."""

import logging

import pytest
import requests
import yaml
from sqlalchemy import func, select

from plugin.flow.rerun import rerun_calls
from plugin.store.retention import mark_purged
from plugin.store.tables import AlertRow, Call, Delivery, Job, Notification, Segment
from tests.conftest import event, make_config, signed
from tests.helpers import ROUTING, Reply, at_once, make_audio, run_cli

EN = {"Accept-Language": "en"}  # the pages' words asserted on below are the English ones

PHONE = "+8613812345678"


@pytest.fixture
def served(app_factory, clock):
    """The app for a config, with the shared model and a ManualClock (a supervisor's token)."""
    return lambda cfg, role="supervisor": app_factory(cfg, model=True, clock=clock, role=role)


def accept(client, body) -> int:
    r = client.post("/webhooks/generic", **signed(body))
    assert r.status_code == 202, r.text
    return r.json["call_id"]


def work(svc) -> None:
    """One worker claims the job due and runs it."""
    job_id = svc.jobs.claim("worker")
    assert job_id is not None
    svc.pipeline().run_job(job_id, "worker")


def deliver(svc) -> None:
    with requests.Session() as http:
        http.trust_env = False
        svc.outbox().drain(http, "sender")


def fail_for_good(svc, error: str = "recording server answered HTTP 404 Not Found") -> None:
    """The job due fails with an error retrying cannot help (as the pipeline records one)."""
    job_id = svc.jobs.claim("worker")
    with svc.sessions.begin() as s:
        assert svc.jobs.fail(s, job_id, "worker", error, retry_in_s=None) == "failed"


def counts(svc) -> dict[str, int]:
    with svc.sessions() as s:
        return {name: s.execute(select(func.count(table.id))).scalar()
                for name, table in (("alerts", AlertRow), ("deliveries", Delivery), ("segments", Segment),
                                    ("notifications", Notification), ("jobs", Job))}


# --- a failed call, fixed, re-run --------------------------------------------------------

def test_a_failed_call_is_rerun_once_its_cause_is_fixed(tmp_path, model_dir, db_url, served, recordings, caplog):
    svc, sup = served(make_config(tmp_path, model_dir, db_url))
    recordings.routes["/r.wav"] = Reply(404, "no such recording yet")
    body = event("rerun-1", recordings.url + "/r.wav")
    call_id = accept(sup, body)
    work(svc)
    call = sup.get(f"/api/calls/{call_id}").json
    assert call["status"] == "failed" and "404" in call["error"] and call["retry"] is None
    # The helpdesk sending the event again does not help: the same call, a duplicate.
    again = sup.post("/webhooks/generic", **signed(body))
    assert again.json["status"] == "duplicate" and svc.jobs.claim("worker") is None

    recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 4.0))  # fixed
    with caplog.at_level(logging.INFO, logger="plugin.flow.rerun"):
        r = sup.post(f"/api/calls/{call_id}/rerun", json={})
    assert r.status_code == 202, r.text
    assert r.json["outcome"] == "queued" and r.json["was"] == "failed"
    job_id = r.json["job_id"]
    assert f"call {call_id} re-run asked by test-supervisor (supervisor, token): queued (job {job_id})" \
        in caplog.text  # who re-ran what
    call = sup.get(f"/api/calls/{call_id}").json
    assert (call["status"], call["error"]) == ("received", None)  # being worked on again
    assert [j["status"] for j in call["jobs"]] == ["failed", "queued"]

    # Asked again (a double click, the command at the same time): not queued twice.
    twice = sup.post(f"/api/calls/{call_id}/rerun", json={})
    assert twice.status_code == 200
    assert (twice.json["outcome"], twice.json["job_id"]) == ("already_queued", job_id)
    assert twice.json["message"] == f"already queued (job {job_id}); not queued twice"

    work(svc)
    call = sup.get(f"/api/calls/{call_id}").json
    assert call["status"] == "analyzed" and call["segments"]
    assert [j["status"] for j in call["jobs"]] == ["failed", "done"]


def test_rerun_needs_a_supervisor_and_json(tmp_path, db_url, app_factory):
    _, viewer = app_factory(make_config(tmp_path, None, db_url), role="viewer")
    call_id = accept(viewer, event("roles-1", "http://127.0.0.1:9/r.wav"))
    r = viewer.post(f"/api/calls/{call_id}/rerun", json={})
    assert r.status_code == 403 and "supervisor" in r.json["error"]
    assert viewer.post("/api/calls/rerun", json={"ids": [call_id]}).status_code == 403

    from tests.conftest import authed
    sup = authed(viewer.application, "supervisor")
    assert sup.post(f"/api/calls/{call_id}/rerun", data="x", content_type="text/plain").status_code == 415
    assert sup.post(f"/api/calls/{call_id}/rerun", data="[1]", content_type="application/json").status_code == 400
    assert sup.post("/api/calls/999999/rerun", json={}).status_code == 404
    # An empty body is fine too; the call's first job is still queued: not queued twice.
    r = sup.post(f"/api/calls/{call_id}/rerun", data=b"", content_type="application/json")
    assert r.status_code == 200 and r.json["outcome"] == "already_queued"

    bad = {
        "[]": "body must be a JSON object",
        "{}": "give ids, or failed: true",
        '{"ids": []}': "ids",
        '{"ids": [1], "failed": true}': "one or the other",
        '{"ids": [1], "since": "1d"}': "since goes with failed",
        '{"failed": true, "since": "soon"}': "is not a duration",
        '{"failed": true, "since": "0s"}': "longer than zero",
        '{"ids": ["1"]}': "ids.0",
        '{"ids": [0]}': "ids.0",
        '{"failed": "yes"}': "failed",
        '{"ids": [1], "who": "x"}': "unknown key",
    }
    for body, expected in bad.items():
        r = sup.post("/api/calls/rerun", data=body, content_type="application/json")
        assert r.status_code == 400 and expected in r.json["error"], (body, r.json)


# --- many at once: by ids, or the failed ones of a window ---------------------------------

def test_rerun_the_calls_that_failed_within_a_window(tmp_path, db_url, app_factory, clock):
    svc, sup = app_factory(make_config(tmp_path, None, db_url), clock=clock, role="supervisor")
    old = accept(sup, event("old-1", "http://127.0.0.1:9/a.wav"))
    fail_for_good(svc)
    clock.advance(days=2)
    recent = accept(sup, event("recent-1", "http://127.0.0.1:9/b.wav"))
    fail_for_good(svc)
    clock.advance(hours=1)
    waiting = accept(sup, event("waiting-1", "http://127.0.0.1:9/c.wav"))  # never failed: not touched

    r = sup.post("/api/calls/rerun", json={"failed": True, "since": "1d"})
    assert r.status_code == 200, r.text
    assert [(x["call_id"], x["outcome"]) for x in r.json["results"]] == [(recent, "queued")]
    assert (r.json["queued"], r.json["left"], r.json["summary"]) == (1, 0, "1 queued, 0 already queued or running")

    r = sup.post("/api/calls/rerun", json={"failed": True, "since": "3d", "limit": 1})
    assert [(x["call_id"], x["outcome"]) for x in r.json["results"]] == [(old, "queued")]
    assert r.json["left"] == 0  # the recent one is no longer failed: it was queued above

    r = sup.post("/api/calls/rerun", json={"ids": [old, waiting, recent, old, 999999]})
    assert [(x["call_id"], x["outcome"]) for x in r.json["results"]] == \
        [(old, "already_queued"), (waiting, "already_queued"), (recent, "already_queued"), (999999, "not_found")]
    assert r.json["queued"] == 0


def test_rerun_is_never_queued_twice_when_asked_at_once(tmp_path, db_url, app_factory):
    svc, sup = app_factory(make_config(tmp_path, None, db_url), role="supervisor")
    call_id = accept(sup, event("race-1", "http://127.0.0.1:9/a.wav"))
    fail_for_good(svc)
    done, _ = at_once(4, lambda n: [r.outcome for r in rerun_calls(svc.sessions, svc.jobs, [call_id], f"racer {n}")])
    outcomes = [outcome for one in done for outcome in one]
    assert sorted(outcomes) == ["already_queued"] * 3 + ["queued"]
    with svc.sessions() as s:
        assert s.execute(select(func.count(Job.id)).where(Job.call_id == call_id, Job.status == "queued")).scalar() == 1


def test_a_call_whose_event_retention_removed_is_not_rerun(tmp_path, db_url, app_factory):
    svc, sup = app_factory(make_config(tmp_path, None, db_url), role="supervisor")
    call_id = accept(sup, event("purged-1", "http://127.0.0.1:9/a.wav?token=gone"))
    fail_for_good(svc)
    with svc.sessions.begin() as s:
        mark_purged(s.get(Call, call_id), "event", svc.clock.now(s))
    r = sup.post(f"/api/calls/{call_id}/rerun", json={})
    assert r.status_code == 409 and r.json["outcome"] == "purged"
    assert "retention removed its raw event" in r.json["message"]
    assert svc.jobs.claim("worker") is None


# --- an analysed call re-run: the results again, no second alert --------------------------

def test_rerun_of_an_analysed_call_sends_no_second_alert(tmp_path, model_dir, db_url, served, recordings,
                                                          crm, wecom, rules_dir):
    (rules_dir / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    svc, sup = served(make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom,
                                  rules={"path": str(rules_dir)}))
    url = recordings.serve_file("/a.wav", make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0))
    call_id = accept(sup, event("analysed-1", url))
    work(svc)
    deliver(svc)
    first = sup.get(f"/api/calls/{call_id}").json
    assert first["status"] == "analyzed" and len(first["alerts"]) == 1
    before, sent = counts(svc), (len(crm.requests), len(wecom.requests))
    # the rule's action (crm) and the supervisors' notification (routing.yaml)
    assert (before["alerts"], before["deliveries"], before["notifications"]) == (1, 2, 1) and sent == (1, 1)

    r = sup.post("/api/calls/rerun", json={"ids": [call_id]})
    assert r.json["results"][0]["outcome"] == "queued" and r.json["results"][0]["was"] == "analyzed"
    page = sup.get(f"/calls/{call_id}", headers=EN).text
    assert "re-run queued" in page  # the results shown stay until the new ones replace them
    assert "重新分析排队中" in sup.get(f"/calls/{call_id}", headers={"Accept-Language": "zh-CN"}).text
    assert sup.get(f"/api/calls/{call_id}").json["status"] == "analyzed"
    work(svc)
    deliver(svc)

    after = sup.get(f"/api/calls/{call_id}").json
    assert after["status"] == "analyzed" and [j["status"] for j in after["jobs"]] == ["done", "done"]
    assert counts(svc) == {**before, "jobs": 2}  # segments rewritten, not added
    assert [a["id"] for a in after["alerts"]] == [a["id"] for a in first["alerts"]]
    assert after["alerts"][0]["routing"] == first["alerts"][0]["routing"]
    assert (len(crm.requests), len(wecom.requests)) == sent  # nothing sent twice


# --- a call that is retrying says why, and when next ---------------------------------------

def test_a_retrying_call_shows_its_last_error_and_next_attempt(tmp_path, model_dir, db_url, served, recordings):
    cfg = make_config(tmp_path, model_dir, db_url, worker={"retry_backoff_s": 90, "retry_max_s": 600})
    svc, sup = served(cfg)
    recordings.routes["/later.wav"] = Reply(503, "busy")
    call_id = accept(sup, event("retry-1", recordings.url + "/later.wav"))
    work(svc)
    call = sup.get(f"/api/calls/{call_id}").json
    assert call["status"] == "received"
    retry = call["retry"]
    assert "HTTP 503" in retry["last_error"] and retry["attempts"] == 1 and retry["running"] is False
    with svc.sessions() as s:
        due = s.execute(select(Job.run_after).where(Job.call_id == call_id)).scalar()
    assert retry["next_attempt_at"] == due.isoformat(timespec="milliseconds") + "Z"
    assert (due - svc.clock.now()).total_seconds() == 90
    page = sup.get(f"/calls/{call_id}", headers=EN).text
    # The next attempt's time in a <time> element (the team's zone shown, UTC in datetime=).
    assert "retrying" in page and "HTTP 503" in page
    assert f'datetime="{retry["next_attempt_at"].replace(".000Z", "Z")}"' in page

    # While the next attempt runs, it is still retrying, with no time to wait for.
    svc.clock.advance(seconds=91)
    assert svc.jobs.claim("worker") is not None
    running = sup.get(f"/api/calls/{call_id}").json["retry"]
    assert running["running"] is True and running["next_attempt_at"] is None
    assert "trying again now" in sup.get(f"/calls/{call_id}", headers=EN).text


def test_viewers_see_a_retrying_calls_error_with_the_phone_masked(tmp_path, db_url, app_factory, clock):
    svc, sup = app_factory(make_config(tmp_path, None, db_url), clock=clock, role="supervisor")
    call_id = accept(sup, event("mask-1", "http://127.0.0.1:9/a.wav"))
    job_id = svc.jobs.claim("worker")
    with svc.sessions.begin() as s:
        svc.jobs.fail(s, job_id, "worker", f"recording server answered HTTP 503 for /calls/{PHONE}.wav", 60)
    from tests.conftest import authed
    viewer = authed(sup.application, "viewer")
    assert PHONE in sup.get(f"/api/calls/{call_id}").json["retry"]["last_error"]
    seen = viewer.get(f"/api/calls/{call_id}").json
    assert PHONE not in str(seen) and "+86138****5678" in seen["retry"]["last_error"]
    assert PHONE not in viewer.get(f"/calls/{call_id}").text
    assert PHONE not in str(viewer.get("/api/calls").json)


# --- the command line ---------------------------------------------------------------------

@pytest.fixture
def cli_calls():
    """`callmood calls` as the lead registers it in plugin/cli.py (added here until then)."""
    from plugin.cli import main
    from plugin.commands.calls import calls_group
    added = "calls" not in main.commands
    if added:
        main.add_command(calls_group)
    yield
    if added:
        main.commands.pop("calls", None)


def test_calls_rerun_from_the_command_line(tmp_path, db_url, app_factory, cli_calls):
    cfg = make_config(tmp_path, None, db_url)
    svc, sup = app_factory(cfg, role="supervisor")  # the database's clock, as the command's
    failed = accept(sup, event("cli-1", "http://127.0.0.1:9/a.wav"))
    fail_for_good(svc)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": cfg.data_dir, "database": {"url": db_url}}), encoding="utf-8")

    r = run_cli("calls", "rerun", failed, "-c", config)
    assert r.returncode == 0, r.stderr
    with svc.sessions() as s:
        job_id = s.execute(select(func.max(Job.id)).where(Job.call_id == failed)).scalar()
    assert r.stdout.splitlines() == [f"call {failed}: queued (job {job_id})", "1 queued, 0 already queued or running"]
    assert f"call {failed} re-run asked by " in r.stderr and "(command line): queued" in r.stderr  # audit

    again = run_cli("calls", "rerun", failed, failed, "-c", config)
    assert again.returncode == 0
    assert again.stdout.splitlines()[0] == f"call {failed}: already queued (job {job_id}); not queued twice"

    missing = run_cli("calls", "rerun", failed, 999999, "-c", config)
    assert missing.returncode == 1 and "call 999999: no such call" in missing.stdout

    # --failed: nothing failed within the day any more (it was queued above)
    none = run_cli("calls", "rerun", "--failed", "--since", "1d", "-c", config)
    assert none.returncode == 0 and none.stdout.strip() == "no call failed within 1d"
    fail_for_good(svc)  # its re-run failed too
    some = run_cli("calls", "rerun", "--failed", "-c", config)
    assert some.returncode == 0 and some.stdout.splitlines()[0].startswith(f"call {failed}: queued (job ")

    for args, expected in {(): "give call ids, or --failed", (str(failed), "--failed"): "one or the other",
                           ("--since", "1d", str(failed)): "--since goes with --failed",
                           ("--failed", "--since", "soon"): "--since", ("0",): "0"}.items():
        r = run_cli("calls", "rerun", *args, "-c", config)
        assert r.returncode == 2 and expected in r.stderr, (args, r.stderr)


def test_a_retrying_calls_error_is_text_on_the_call_page(tmp_path, db_url, app_factory, clock):
    """A vendor's error text (an API answer, a recording host's name) reaches the page as text."""
    svc, sup = app_factory(make_config(tmp_path, None, db_url), clock=clock, role="supervisor")
    call_id = accept(sup, event("retry-html", "http://127.0.0.1:9/r.wav"))
    job_id = svc.jobs.claim("worker")
    hostile = 'alibaba: CCC said <script>alert(1)</script><img src=x onerror="x()">'
    with svc.sessions.begin() as s:
        assert svc.jobs.fail(s, job_id, "worker", hostile, retry_in_s=60) == "queued"
    page = sup.get(f"/calls/{call_id}", headers=EN).text
    assert "retrying" in page and "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- a re-run with words: the alert it keeps gets its quotes ---------------------------------

def test_a_rerun_with_words_gives_the_alert_it_keeps_its_quotes(tmp_path, sqlite_url):
    """A call first analysed without transcripts (or whose segments' words a purge took)
    and re-run with them: its alert is the same row (no second alert), now with the quotes
    messages and pages show; its measures stay as stored."""
    import dataclasses

    from plugin.core.data import QUOTES_KEY
    from plugin.flow.context import call_context
    from plugin.flow.results import plan_alert
    from plugin.services import build
    from tests.helpers import make_alert

    said = [{"start": 63.0, "end": 66.0, "role": "customer", "text": "我要退款"}]
    svc = build(make_config(tmp_path, None, sqlite_url))
    try:
        with svc.sessions.begin() as s:
            now = svc.clock.now(s)
            call = Call(source="generic", external_id="words-later", recording_url="http://pbx/r.wav",
                        customer_id="cust-5", event={}, status="analyzed", received_at=now)
            s.add(call)
            s.flush()
            ctx = call_context(call)
            first = plan_alert(s, call, ctx, make_alert(), svc.outputs, now)
            assert QUOTES_KEY not in first.details
            again = plan_alert(s, call, ctx, dataclasses.replace(make_alert(), quotes=said), svc.outputs, now)
            # A re-run that heard nothing (words off again) leaves the quotes it has.
            plan_alert(s, call, ctx, make_alert(), svc.outputs, now)
            call_id = call.id
        assert again.id == first.id
        with svc.sessions() as s:
            [row] = s.execute(select(AlertRow).where(AlertRow.call_id == call_id)).scalars().all()
            assert row.details == {"share": 0.5, QUOTES_KEY: said}
    finally:
        svc.close()
