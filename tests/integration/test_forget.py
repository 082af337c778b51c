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


# --- transcripts: the words of the customer's calls ------------------------------------------

SAID_GONE = "我的手机是*******2222，马上给我退款"
SAID_GONE_MD = "Refund *now* or I call 12315"  # a sink's markdown escapes its stars
SAID_KEPT = "好的，我再等两天"


def seed_words(svc, clock, customer: str, ext: str, quotes: list[str]) -> int:
    """A call as the pipeline stores it where a recognizer ran: segments with their words,
    an alert quoting them."""
    from plugin.store.tables import AlertRow, Call, Segment

    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=ext, customer_id=customer, recording_url="https://pbx/r.wav",
                    event={}, status="analyzed", received_at=clock.t, analyzed_at=clock.t, emotion="angry",
                    confidence=0.9, summary={})
        s.add(call)
        s.flush()
        s.add_all(Segment(call_id=call.id, channel=0, role="customer", start=3.0 * i, end=3.0 * i + 3,
                          label="angry", confidence=0.9, scores={"angry": 0.9}, text=words, language="zh",
                          normalized=words) for i, words in enumerate(quotes))
        s.add(AlertRow(call_id=call.id, rule="angry_customer", scenario="general", severity="warning",
                       role="customer", emotions=["angry"], share=1.0, confidence=0.9, matched=[[0, 3]],
                       summary="angry", customer_id=customer, created_at=clock.t,
                       details={"share": 1.0, "quotes": [{"start": 3.0 * i, "end": 3.0 * i + 3, "role": "customer",
                                                          "text": words} for i, words in enumerate(quotes)]}))
        return call.id


def digest_of_every_alert(svc, clock, lines: list[str]) -> None:
    """A quiet-hours digest of every stored alert, delivered with ``lines`` as its markdown."""
    from plugin.store.tables import AlertRow, Delivery, Notification, NotificationAlert

    with svc.sessions.begin() as s:
        digest = Notification(receiver="supervisors", sink="wecom", group_key="digest", kind="digest",
                              status="flushed", severity="warning", flush_at=clock.t, created_at=clock.t,
                              flushed_at=clock.t)
        s.add(digest)
        s.flush()
        s.add_all(NotificationAlert(notification_id=digest.id, alert_id=a) for a in
                  s.execute(select(AlertRow.id)).scalars())
        s.add(Delivery(notification_id=digest.id, sink="wecom", status="delivered", attempts=1,
                       next_attempt_at=clock.t, created_at=clock.t, delivered_at=clock.t,
                       payload={"msgtype": "markdown", "markdown": {"content": "\n".join(lines)}}))


def test_forget_removes_the_customers_words_and_their_quotes_in_shared_messages(tmp_path, db_url, clock,
                                                                                 app_factory):
    from plugin.store.tables import AlertRow, Delivery, Segment

    svc, client = app_factory(make_config(tmp_path, None, db_url), clock=clock)
    gone = seed_words(svc, clock, "cust-forget", "forget-call-1", [SAID_GONE, SAID_GONE_MD, "好的"])
    kept = seed_words(svc, clock, "cust-keep", "keep-call-1", [SAID_KEPT])
    # A quiet-hours digest of both alerts, rendered with their quotes as WeCom markdown.
    lines = ["00:00 客户: " + SAID_GONE, "00:03 客户: " + SAID_GONE_MD.replace("*", "\\*"), "00:06 客户: 好的",
             "00:00 客户: " + SAID_KEPT]
    digest_of_every_alert(svc, clock, lines)
    everything = stored_text(svc)
    assert SAID_GONE in everything and SAID_GONE_MD in everything

    removed = svc.forget("cust-forget")
    assert removed["segments"] == 3 and removed["alerts"] == 1 and removed["shared notifications redacted"] == 1
    left = stored_text(svc)
    assert SAID_GONE not in left and SAID_GONE_MD not in left and "12315" not in left
    assert "cust-forget" not in left and "forget-call-1" not in left
    with svc.sessions() as s:
        assert s.execute(select(Segment.text).where(Segment.call_id == gone)).all() == []
        assert s.execute(select(AlertRow).where(AlertRow.call_id == gone)).all() == []
        body = s.execute(select(Delivery.payload).where(Delivery.notification_id.is_not(None))).scalar_one()
    # The other customer's words stay, in their segments, their alert and the shared digest;
    # a quote too short to name anyone ("好的") is left where it stands in theirs.
    assert body["markdown"]["content"].splitlines() == [
        "00:00 客户: [removed]", "00:03 客户: [removed]", "00:06 客户: 好的", "00:00 客户: " + SAID_KEPT]
    got = client.get(f"/api/calls/{kept}").json
    assert SAID_KEPT in str(got["alerts"][0]["quotes"])
    with svc.sessions() as s:
        assert s.execute(select(Segment.text).where(Segment.call_id == kept)).scalars().all() == [SAID_KEPT]


def test_forget_finds_the_customers_quotes_where_messages_cut_them(tmp_path, sqlite_url, clock, app_factory):
    """A long quote is cut in a message (a robot's line at 80 characters, an app card's at
    60, a CRM note's at 200, the REST body's at 500, "…" after the cut): what is left of it
    goes too."""
    from connectors.sinks import quotes as sink_quotes
    from connectors.sinks import wecom_app, zendesk
    from plugin.core.quote_text import QUOTE_CUTS
    from plugin.store.tables import Delivery

    # Every length a sink cuts a quote to is one forget looks for.
    assert {sink_quotes.QUOTE_CHARS, wecom_app.CARD_QUOTE_CHARS, zendesk.QUOTE_CHARS, 200, 500} <= set(QUOTE_CUTS)
    said = "".join(f"第{i}次打电话了，\n我要退款，" for i in range(60))  # 600 characters and more, on two lines each
    svc, _ = app_factory(make_config(tmp_path, None, sqlite_url), clock=clock)
    seed_words(svc, clock, "cust-forget", "forget-call-1", [said])
    seed_words(svc, clock, "cust-keep", "keep-call-1", [SAID_KEPT])
    quoted = {"quotes": [{"start": 0.0, "role": "customer", "text": said}]}
    lines = [sink_quotes.quote_lines(quoted, chars=n)[0] for n in QUOTE_CUTS]
    assert all(line.endswith("…") and len(line) < len(said) for line in lines)
    digest_of_every_alert(svc, clock, [*lines, "00:00 客户: " + SAID_KEPT])

    assert svc.forget("cust-forget")["shared notifications redacted"] == 1
    with svc.sessions() as s:
        body = s.execute(select(Delivery.payload).where(Delivery.notification_id.is_not(None))).scalar_one()
    assert body["markdown"]["content"].splitlines() == ["00:00 客户: [removed]…"] * len(QUOTE_CUTS) + [
        "00:00 客户: " + SAID_KEPT]
    assert "第0次打电话了" not in stored_text(svc)


def test_forget_counts_quotes_only_where_alerts_have_them(tmp_path, sqlite_url, clock, app_factory):
    """Alerts stored before transcripts (no quotes in their details) and odd shapes of
    details do not trouble forget."""
    from plugin.store.forget import quoted_words

    assert quoted_words([{}, {"quotes": None}, {"quotes": "text"}, None, "x", {"quotes": [None, 3, {"text": 5}]},
                         {"quotes": [{"text": " 我要\n退款 "}, {"text": "好"}]}]) in (
        ["我要\n退款", "我要 退款"], ["我要 退款", "我要\n退款"])
    svc, _ = app_factory(make_config(tmp_path, None, sqlite_url), clock=clock)
    seed_words(svc, clock, "cust-forget", "forget-call-1", [])
    assert svc.forget("cust-forget")["alerts"] == 1
