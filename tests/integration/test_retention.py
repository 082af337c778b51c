"""Retention (plugin/store/retention.py): what each kind's purge removes and what it keeps,
on SQLite and PostgreSQL, with every time taken from a ManualClock stepped through the days;
the scheduled purge in the runtime; `callmood purge`."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select

from plugin.core import files
from plugin.store.tables import AlertRow, Call, Delivery, Job, LoginFailure, Segment
from tests.conftest import make_config
from tests.helpers import run_cli, wait_until

PHONE = "+8613811112222"
RETENTION = {"raw_events_days": 30, "segments_days": 28, "recordings_days": 7,
             "delivery_bodies_days": 30, "login_failures_days": 7}


def seed_call(svc, ext: str, status: str = "analyzed") -> int:
    """A call as the pipeline leaves it, received now by the services' clock: its raw event,
    segments, an alert, and a delivered, a dead and a pending delivery."""
    with svc.sessions.begin() as s:
        now = svc.clock.now(s)
        settled = status != "received"
        call = Call(source="generic", external_id=ext, customer_id="cust-9", customer_phone=PHONE,
                    recording_url=f"https://user:pw@pbx.example/rec/{ext}.wav?token=s3cret",
                    event={"call_id": ext, "customer_id": "cust-9", "customer_phone": PHONE, "tier": "gold"},
                    status=status, received_at=now, analyzed_at=now if settled else None,
                    emotion="angry" if settled else None, confidence=0.9 if settled else None,
                    summary={"audio_s": 9.0} if settled else None)
        s.add(call)
        s.flush()
        s.add(Job(call_id=call.id, status="done" if settled else "queued", run_after=now, created_at=now))
        if settled:
            s.add_all(Segment(call_id=call.id, channel=0, role="customer", start=3.0 * i, end=3.0 * i + 3,
                              label="angry", confidence=0.9, scores={"angry": 0.9}) for i in range(3))
            alert = AlertRow(call_id=call.id, rule="angry_customer", scenario="general", severity="warning",
                             role="customer", emotions=["angry"], share=1.0, confidence=0.9, matched=[[0, 9]],
                             summary="cust-9 angry", customer_id="cust-9", created_at=now)
            s.add(alert)
            s.flush()
            body = {"url": "https://crm.example/customers/cust-9", "body": {"phone": PHONE}}
            s.add_all([
                Delivery(alert_id=alert.id, sink="crm", payload=body, status="delivered", attempts=1,
                         next_attempt_at=now, created_at=now, delivered_at=now),
                Delivery(alert_id=alert.id, sink="wecom", payload=body, status="dead", attempts=12,
                         next_attempt_at=now, created_at=now, last_error="HTTP 400"),
                Delivery(alert_id=alert.id, sink="other", payload=body, status="pending", attempts=3,
                         next_attempt_at=now, created_at=now),
            ])
        return call.id


def login_failure(svc, key: str) -> None:
    with svc.sessions.begin() as s:
        s.add(LoginFailure(key=key, at=svc.clock.now(s)))


def copy_of(cfg, call_id: int) -> str:
    """A recording copy as worker.keep_recordings leaves it."""
    files.data_subdir(cfg.data_dir, files.RECORDINGS)
    path = files.private_file(files.recording_copy(cfg.data_dir, call_id))
    path.write_bytes(b"RIFF....WAVE")
    return path.name


def state(svc):
    """Everything purging may change, per call id."""
    with svc.sessions() as s:
        calls = {c.id: (c.event, c.customer_phone, c.recording_url, c.status, c.emotion, (c.summary or {}).get("purged"))
                 for c in s.execute(select(Call)).scalars()}
        segments = dict(s.execute(select(Segment.call_id, func.count(Segment.id)).group_by(Segment.call_id)).all())
        bodies = {(a.call_id, d.sink): (d.status, d.payload, d.last_error)
                  for d, a in s.execute(select(Delivery, AlertRow).join(AlertRow)).all()}
        failures = sorted(s.execute(select(LoginFailure.key)).scalars())
        alerts = s.execute(select(func.count(AlertRow.id))).scalar()
    return calls, segments, bodies, failures, alerts


def by_kind(purged) -> dict[str, tuple[int, int | None, int]]:
    return {p.kind: (p.count, p.calls, p.leftovers) for p in purged}


def test_purge_removes_each_kind_after_its_days_and_keeps_what_pages_need(tmp_path, db_url, clock, app_factory):
    cfg = make_config(tmp_path, None, db_url, retention=RETENTION)
    svc, client = app_factory(cfg, clock=clock)
    old = seed_call(svc, "old")
    busy = seed_call(svc, "busy", status="received")  # received long ago, still being worked on
    login_failure(svc, "user:old")
    clock.advance(days=6)
    mid = seed_call(svc, "mid")
    clock.advance(days=24, hours=23)  # old: 30 days 23 h; mid: 24 days 23 h
    login_failure(svc, "user:recent")
    new = seed_call(svc, "new")
    copies = [copy_of(cfg, c) for c in (old, mid, new, 99999)]  # 99999: a call that no longer exists
    (files.data_subdir(cfg.data_dir, files.RECORDINGS) / "README").write_text("not a copy")
    tmp = files.data_subdir(cfg.data_dir, files.TMP)
    (tmp / "call7-dead").mkdir()
    (tmp / "call7-dead" / "decoded.wav").write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    for p in (tmp / "call7-dead" / "decoded.wav", tmp / "call7-dead"):
        os.utime(p, (two_days_ago, two_days_ago))
    (tmp / "call8-running").mkdir()  # a worker's folder of right now

    before = state(svc)
    dry = by_kind(svc.purge(dry_run=True))
    assert state(svc) == before and sorted(os.listdir(tmp)) == ["call7-dead", "call8-running"]
    assert {p.name for p in (tmp.parent / files.RECORDINGS).iterdir()} == set(copies) | {"README"}

    purged = svc.purge()
    assert by_kind(purged) == dry == {
        "raw events": (1, None, 0), "segments": (3, 1, 0), "recordings": (3, None, 1),  # + a stale tmp folder
        "delivery bodies": (2, None, 0), "login failures": (1, None, 0),
        "phone lookups": (0, None, 0),  # tests/integration/test_identity.py purges some
        "push ids": (0, None, 0)}  # test_push_ids_are_forgotten_after_a_week

    calls, segments, bodies, failures, alerts = state(svc)
    stamp = (clock.t).isoformat(timespec="seconds") + "Z"
    # Raw event, phone and the URL's credentials and query are gone; the verdict stays.
    assert calls[old] == ({}, None, "https://pbx.example/rec/old.wav?***", "analyzed", "angry",
                          {"event": stamp, "segments": stamp})
    assert calls[mid][:2] == before[0][mid][:2] and calls[mid][5] is None
    assert calls[new] == before[0][new]
    assert calls[busy] == before[0][busy]  # not settled: its URL is still to be fetched
    assert segments == {mid: 3, new: 3} and alerts == 3
    assert bodies[(old, "crm")] == ("delivered", {}, None)
    assert bodies[(old, "wecom")] == ("dead", {}, "HTTP 400")  # the outcome stays, the body goes
    assert bodies[(old, "other")] == before[2][(old, "other")]  # pending: never touched
    assert {k: v for k, v in bodies.items() if k[0] != old} == {k: v for k, v in before[2].items() if k[0] != old}
    assert failures == ["user:recent"]
    assert {p.name for p in (tmp.parent / files.RECORDINGS).iterdir()} == {f"call-{new}", "README"}
    assert sorted(os.listdir(tmp)) == ["call8-running"]

    # The dashboard's view of the old call: row, verdict and alerts, and what was removed.
    got = client.get(f"/api/calls/{old}").json
    assert got["status"] == "analyzed" and got["emotion"] == "angry" and len(got["alerts"]) == 1
    assert got["segments"] == [] and got["customer_phone"] is None and "s3cret" not in str(got)
    assert got["summary"]["purged"] == {"event": stamp, "segments": stamp}
    page = client.get(f"/calls/{old}", headers={"Accept-Language": "en"}).text
    assert "Removed by the retention policy" in page and f"per-segment results ({stamp})" in page
    page = client.get(f"/calls/{old}", headers={"Accept-Language": "zh-CN"}).text
    assert "已按数据保留策略删除" in page and f"逐片段结果（{stamp}）" in page

    # Nothing left to do: a second purge removes nothing.
    assert {k: v[0] for k, v in by_kind(svc.purge()).items()} == dict.fromkeys(dry, 0)


def test_zero_days_keeps_a_kind_forever(tmp_path, sqlite_url, clock, app_factory):
    cfg = make_config(tmp_path, None, sqlite_url, retention={"raw_events_days": 0, "segments_days": None})
    svc, _ = app_factory(cfg, clock=clock)
    call_id = seed_call(svc, "ancient")
    clock.advance(days=3650)
    purged = {p.kind: p for p in svc.purge()}
    assert purged["raw events"].line() == "raw events: kept forever (retention.raw_events_days is 0)"
    assert purged["segments"].days is None and purged["delivery bodies"].count == 2
    calls, segments, *_ = state(svc)
    assert calls[call_id][0]["customer_phone"] == PHONE and segments == {call_id: 3}


def test_the_runtime_purges_on_its_schedule_where_it_sends_deliveries(tmp_path, model_dir, sqlite_url, clock,
                                                                      app_factory):
    cfg = make_config(tmp_path, model_dir, sqlite_url, retention={**RETENTION, "interval_s": 0.05},
                      rules={"reload_interval_s": 0})
    svc, _ = app_factory(cfg, model=True, clock=clock)
    call_id = seed_call(svc, "old")
    clock.advance(days=31)
    receiver_only = svc.runtime(worker=False, deliveries=False).start()
    try:
        assert receiver_only.scheduler.get_job("purge") is None
    finally:
        receiver_only.stop()
    assert state(svc)[0][call_id][0] != {}
    runtime = svc.runtime(worker=False).start()
    try:
        assert runtime.scheduler.get_job("purge") is not None
        wait_until(lambda: state(svc)[0][call_id][0] == {}, timeout=20)
    finally:
        runtime.stop()
    assert state(svc)[1] == {}


def test_callmood_purge_prints_each_kind(tmp_path, sqlite_url, clock, app_factory):
    cfg = make_config(tmp_path, None, sqlite_url)
    svc, _ = app_factory(cfg, clock=clock)
    clock.t = clock.t.replace(year=2020)  # the command uses the real clock: this call is years old
    seed_call(svc, "2020-call")
    conf = tmp_path / "config.yaml"
    conf.write_text(f"data_dir: {cfg.data_dir}\ndatabase: {{url: '{sqlite_url}'}}\n"
                    f"rules: {{path: '{cfg.rules_path}'}}\nsources: {{generic: {{secret: s}}}}\n")
    dry = run_cli("purge", "--dry-run", "-c", conf)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["raw events", "segments", "recordings", "delivery bodies",
                                                  "login failures", "phone lookups", "push ids"]
    assert lines[0].startswith("raw events: 1 call(s) would be cleared (older than 30 days: before ")
    assert lines[1].startswith("segments: 3 segment(s) of 1 call(s) would be deleted (older than 180 days")
    assert lines[3].startswith("delivery bodies: 2 delivery body(ies) would be cleared")
    real = run_cli("purge", "-c", conf)
    assert real.returncode == 0 and real.stdout.replace("would be ", "") == dry.stdout.replace("would be ", "")
    again = run_cli("purge", "-c", conf)
    assert "raw events: 0 call(s) cleared" in again.stdout


@pytest.mark.parametrize("days", [-1, "often"])
def test_bad_retention_values_are_refused_by_name(tmp_path, days):
    conf = tmp_path / "config.yaml"
    conf.write_text(f"retention: {{segments_days: {days}}}\n")
    r = run_cli("purge", "-c", conf)
    assert r.returncode == 1 and "retention.segments_days:" in r.stderr


def test_a_stopping_process_cuts_its_purge_short(tmp_path, sqlite_url, clock, app_factory):
    svc, _ = app_factory(make_config(tmp_path, None, sqlite_url), clock=clock)
    call_id = seed_call(svc, "old")
    clock.advance(days=400)
    before = state(svc)
    assert [p.count for p in svc.purge(stop=lambda: True) if p.kind != "recordings"] == [0, 0, 0, 0, 0, 0]
    assert state(svc) == before
    assert state(svc)[0][call_id][0] != {}
    assert [p.count for p in svc.purge()] == [1, 3, 0, 2, 0, 0, 0]  # the next purge does it all


def test_push_ids_are_forgotten_after_a_week(tmp_path, db_url, clock, app_factory):
    """webhook_pushes gets a row per TCCC push and Zendesk invocation: without a purge it
    grows for ever. A vendor retries within minutes; a week is plenty."""
    from datetime import timedelta

    from plugin.store.retention import PUSH_IDS_DAYS
    from plugin.store.tables import WebhookPush

    svc, _ = app_factory(make_config(tmp_path, None, db_url), clock=clock)
    with svc.sessions.begin() as s:
        old = clock.t - timedelta(days=PUSH_IDS_DAYS, seconds=1)
        s.add_all([WebhookPush(source="tccc", push_id=f"old-{i}", received_at=old) for i in range(3)]
                  + [WebhookPush(source="tccc", push_id="new", received_at=clock.t)])
    dry = {p.kind: p for p in svc.purge(dry_run=True)}["push ids"]
    assert dry.count == 3
    assert dry.line(dry_run=True) == (f"push ids: 3 remembered push id(s) would be deleted "
                                      f"(older than {PUSH_IDS_DAYS} days)")
    assert {p.kind: p.count for p in svc.purge()}["push ids"] == 3
    with svc.sessions() as s:
        assert s.execute(select(WebhookPush.push_id)).scalars().all() == ["new"]


# --- transcripts: the segments' words and the quotes their alerts keep ---------------------

QUOTE = {"start": 3.0, "end": 6.0, "role": "customer", "text": "我的手机是*******2222，马上退款"}


def with_words(svc, call_id: int) -> None:
    """What the pipeline stores where a recognizer ran: each segment's words, and the
    alert's quotes in its details beside its measures."""
    with svc.sessions.begin() as s:
        for seg in s.execute(select(Segment).where(Segment.call_id == call_id)).scalars():
            seg.text, seg.normalized, seg.language = QUOTE["text"], "我的手机是2222马上退款", "zh"
        alert = s.execute(select(AlertRow).where(AlertRow.call_id == call_id)).scalar_one()
        alert.details = {"share": 1.0, "longest_run_s": 9.0, "quotes": [QUOTE, {**QUOTE, "start": 6.0}]}


def words(svc) -> tuple[dict[int, list], dict[int, dict]]:
    """Per call: the segments' texts, and its alert's details."""
    with svc.sessions() as s:
        texts: dict[int, list] = {}
        for call_id, text in s.execute(select(Segment.call_id, Segment.text).order_by(Segment.id)).all():
            texts.setdefault(call_id, []).append(text)
        details = dict(s.execute(select(AlertRow.call_id, AlertRow.details)).tuples().all())
    return texts, details


def test_the_segments_purge_takes_the_words_and_the_alerts_quotes_with_them(tmp_path, db_url, clock, app_factory):
    svc, client = app_factory(make_config(tmp_path, None, db_url, retention=RETENTION), clock=clock)
    old, silent = seed_call(svc, "old"), seed_call(svc, "old-no-words")
    with_words(svc, old)
    clock.advance(days=20)
    new = seed_call(svc, "new")
    with_words(svc, new)
    clock.advance(days=9)  # old: 29 days (segments_days is 28); new: 9 days
    before = words(svc)
    assert before[1][old]["quotes"] and before[0][old] == [QUOTE["text"]] * 3

    dry = {p.kind: (p.count, p.calls) for p in svc.purge(dry_run=True)}
    assert dry["segments"] == (6, 2) and words(svc) == before  # a dry run changes nothing
    assert {p.kind: (p.count, p.calls) for p in svc.purge()}["segments"] == (6, 2)

    texts, details = words(svc)
    assert set(texts) == {new} and texts[new] == [QUOTE["text"]] * 3
    # The old call's alert stays, its measures too; only what was said is gone.
    assert details[old] == {"share": 1.0, "longest_run_s": 9.0}
    assert details[silent] == before[1][silent] == {}  # an alert without quotes is left as it was
    assert details[new] == before[1][new]  # within the days: the quotes stay
    got = client.get(f"/api/calls/{old}").json
    assert len(got["alerts"]) == 1 and got["segments"] == [] and "退款" not in str(got)
    assert "退款" in str(client.get(f"/api/calls/{new}").json)

    assert {p.kind: p.count for p in svc.purge()}["segments"] == 0  # nothing left to do
    assert words(svc)[1] == details


def test_quotes_go_in_the_transaction_that_deletes_the_segments(tmp_path, sqlite_url, clock, app_factory,
                                                                 monkeypatch):
    """A purge that fails after the segments' delete keeps the quotes too: words and quotes
    go together or not at all (the next purge does both)."""
    from plugin.store import retention

    svc, _ = app_factory(make_config(tmp_path, None, sqlite_url, retention=RETENTION), clock=clock)
    call_id = seed_call(svc, "old")
    with_words(svc, call_id)
    clock.advance(days=29)
    before = words(svc)

    real = retention.drop_quotes
    monkeypatch.setattr(retention, "drop_quotes", lambda s, ids: (real(s, ids), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        svc.purge()
    assert words(svc) == before
    monkeypatch.setattr(retention, "drop_quotes", real)
    svc.purge()
    assert words(svc) == ({}, {call_id: {"share": 1.0, "longest_run_s": 9.0}})
