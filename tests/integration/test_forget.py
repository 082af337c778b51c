"""`callmood forget --customer ID` (plugin/store/forget.py): after calls went the whole way
(webhook, analysis, alerts, deliveries, feedback, a quiet-hours digest shared with another
customer, recording copies), nothing of the customer is left in any column of any table
or in data_dir, and the other customer's data is as it was. SQLite and PostgreSQL."""

from __future__ import annotations

import textwrap
from datetime import datetime
from urllib.parse import unquote

import requests
from sqlalchemy import JSON, String, Text, cast, select

from plugin.core import files
from plugin.store import phone_lookups
from plugin.store.tables import Base
from tests.conftest import ALWAYS, event, make_config, signed
from tests.helpers import make_audio, run_cli

GONE = {"customer_id": "cust-forget", "customer_phone": "+8613811112222"}
KEPT = {"customer_id": "cust-keep", "customer_phone": "+8613933334444"}
# Every value of the forgotten customer that could be stored somewhere.
NEEDLES = ("cust-forget", "+8613811112222", "8613811112222", "forget-call-1", "forget-call-2",
           "T-GONE-1", "T-GONE-2")

RULES = ALWAYS.replace("severity: critical", "severity: warning").replace(
    "    actions:", '    summary: "{{ call.customer_id }} ({{ call.customer_phone }}) on ticket {{ call.ticket_id }}"\n'
    "    actions:")
ROUTING = """\
defaults: {group_by: [customer_id], group_wait: 0s, cooldown: 4h}
receivers:
  supervisors: {sink: wecom, mentions: [supervisor01]}
routes:
  - receiver: supervisors
quiet_hours: {timezone: Asia/Shanghai, start: "09:00", end: "12:00", min_severity: critical}
"""


def stored_text(svc) -> str:
    """Every text and JSON value in every table, backslashes and percent-encoding undone
    (so an escaped or URL-encoded copy is found too)."""
    out = []
    with svc.sessions() as s:
        for table in Base.metadata.sorted_tables:
            cols = [cast(c, String) for c in table.columns if isinstance(c.type, (String, Text, JSON))]
            if cols:
                for row in s.execute(select(*cols)).all():
                    out.extend(str(v) for v in row if v is not None)
    text = "\n".join(out)
    return unquote(text.replace("\\", ""))


def copies(cfg) -> set[str]:
    folder = files.recording_copy(cfg.data_dir, 0).parent
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def run_everything(svc, client, clock, recordings, tmp_path) -> dict[str, list[int]]:
    """Three calls the whole way: analysis, the rules' deliveries, feedback, and the
    quiet-hours digest of all three alerts, sent when quiet hours end."""
    url = recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 7.0))
    ids: dict[str, list[int]] = {"gone": [], "kept": []}
    for who, ext, ticket in (("gone", "forget-call-1", "T-GONE-1"), ("kept", "keep-call-1", "T-KEEP-1"),
                             ("gone", "forget-call-2", "T-GONE-2")):
        body = event(ext, url, ticket_id=ticket, **(GONE if who == "gone" else KEPT))
        r = client.post("/webhooks/generic", **signed(body))
        assert r.status_code == 202, r.text
        ids[who].append(r.json["call_id"])
        job = svc.jobs.claim("worker")
        svc.pipeline().run_job(job, "worker")
    for call_id in (ids["gone"][0], ids["kept"][0]):
        [alert] = client.get(f"/api/calls/{call_id}").json["alerts"]
        r = client.post(f"/api/alerts/{alert['id']}/feedback",
                        json={"verdict": "correct", "by": "supervisor01", "note": "heard it too"})
        assert r.status_code == 200, r.text
    clock.t = datetime(2026, 11, 24, 4, 1)  # 12:01 in Shanghai: quiet hours are over
    assert svc.flush_notifications() == 1
    with requests.Session() as http:
        http.trust_env = False
        assert svc.outbox().drain(http, "sender") == 3 + 1  # each call's CRM record, one digest
    return ids


def test_forget_removes_every_trace_and_nothing_else(tmp_path, model_dir, db_url, clock, app_factory,
                                                     recordings, crm, wecom):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "always.yaml").write_text(RULES, encoding="utf-8")
    (rules / "routing.yaml").write_text(textwrap.dedent(ROUTING), encoding="utf-8")
    cfg = make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom, worker={"keep_recordings": True},
                      rules={"path": str(rules), "reload_interval_s": 0})
    svc, client = app_factory(cfg, model=True, clock=clock)
    ids = run_everything(svc, client, clock, recordings, tmp_path)
    digest_id = client.get(f"/api/calls/{ids['kept'][0]}").json["alerts"][0]["routing"][0]["notification_id"]
    digest = client.get(f"/api/notifications/{digest_id}").json
    assert digest["kind"] == "digest" and len(digest["alerts"]) == 3
    assert digest["delivery"]["status"] == "delivered"

    with svc.sessions.begin() as s:  # the CRM's answers for both customers' numbers, cached
        phone_lookups.put(s, "+8613811112222", "cust-forget", clock.now(s))
        phone_lookups.put(s, "+8613933334444", "cust-keep", clock.now(s))
    everything = stored_text(svc)
    assert all(n in everything for n in NEEDLES)  # the search sees them while they are there
    kept_before = client.get(f"/api/calls/{ids['kept'][0]}").json
    assert copies(cfg) == {f"call-{i}" for i in ids["gone"] + ids["kept"]}

    dry = svc.forget("cust-forget", dry_run=True)
    assert stored_text(svc) == everything and len(copies(cfg)) == 3
    removed = svc.forget("cust-forget")
    assert removed == dry
    segments = sum(len(c["segments"]) for c in [kept_before]) * 2  # the same recording for every call
    assert dict(removed) == {"calls": 2, "jobs": 2, "segments": segments, "alerts": 2, "feedback": 1,
                             "deliveries": 2, "shared notifications redacted": 1, "phone lookups": 1,
                             "recording copies": 2}
    with svc.sessions() as s:
        assert phone_lookups.get(s, "+8613811112222") is None
        assert phone_lookups.get(s, "+8613933334444").customer_id == "cust-keep"

    left = stored_text(svc)
    assert [n for n in NEEDLES if n in left] == []
    assert "cust-keep" in left and "+8613933334444" in left and "[removed]" in left
    assert copies(cfg) == {f"call-{ids['kept'][0]}"}
    for call_id in ids["gone"]:
        assert client.get(f"/api/calls/{call_id}").status_code == 404
    # The other customer: their call, alert, deliveries, feedback and routing as before;
    # the shared digest keeps their alert (and its delivery stays delivered).
    assert client.get(f"/api/calls/{ids['kept'][0]}").json == kept_before
    digest = client.get(f"/api/notifications/{digest_id}").json
    assert [a["customer_id"] for a in digest["alerts"]] == ["cust-keep"]
    assert digest["delivery"]["status"] == "delivered"
    assert [f["customer_id"] for f in client.get("/api/flagged").json["customers"]] == ["cust-keep"]

    assert +svc.forget("cust-forget") == {}  # nothing left to remove


def test_callmood_forget_prints_what_it_removed(tmp_path, model_dir, sqlite_url, clock, app_factory, recordings):
    cfg = make_config(tmp_path, model_dir, sqlite_url, worker={"keep_recordings": True})
    svc, client = app_factory(cfg, model=True, clock=clock)
    url = recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 4.0))
    assert client.post("/webhooks/generic", **signed(event("c-1", url, **GONE))).status_code == 202
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    conf = tmp_path / "config.yaml"
    conf.write_text(f"data_dir: {cfg.data_dir}\ndatabase: {{url: '{sqlite_url}'}}\n"
                    f"rules: {{path: '{cfg.rules_path}'}}\nsources: {{generic: {{secret: s}}}}\n")

    dry = run_cli("forget", "--customer", "cust-forget", "--dry-run", "-c", conf)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "customer 'cust-forget': would be removed:"
    assert lines[1:3] == ["  calls: 1", "  jobs: 1"] and lines[-1] == "  recording copies: 1"
    real = run_cli("forget", "--customer", "cust-forget", "-c", conf)
    assert real.returncode == 0 and real.stdout == dry.stdout.replace("would be removed", "removed")
    again = run_cli("forget", "--customer", "cust-forget", "-c", conf)
    assert again.stdout == "customer 'cust-forget': nothing stored (no call, no alert)\n"
    assert run_cli("forget", "-c", conf).returncode == 2  # --customer is required
    empty = run_cli("forget", "--customer", " ", "-c", conf)
    assert empty.returncode == 1 and "--customer: the customer id is empty" in empty.stderr
