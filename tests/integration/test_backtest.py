"""`callmood rules backtest` over a seeded history, and the alert feedback API it measures with.

The history is written straight into the database (calls, segment results, alerts,
feedback), as the worker would have left it; the backtest never runs the model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin.cli import main
from plugin.core.clock import ManualClock
from plugin.core.data import SegmentResult
from plugin.core.transcript import normalize
from plugin.flow.backtest import ReplayedCall, compare, format_report, read_calls, run_backtest
from plugin.services import build
from plugin.store.tables import AlertRow, Call, Feedback, Segment
from rules.engine import load_rules
from tests.conftest import T0, make_config

CURRENT = """\
scenario: general
default: true
rules:
  - name: angry_customer
    when: {role: customer, emotions: [angry], min_confidence: 0.7, min_share: 0.2}
  - name: fearful_customer
    when: {role: customer, emotions: [fearful], min_confidence: 0.7, min_segments: 1}
  - name: agent_tone
    severity: info
    when: {role: agent, emotions: [angry], min_confidence: 0.7, min_segments: 2}
"""

# Stricter anger, no fearful rule, a new sad rule, and a VIP scenario that takes gold customers.
CANDIDATE = """\
scenario: general
default: true
rules:
  - name: angry_customer
    when: {role: customer, emotions: [angry], min_confidence: 0.8, min_share: 0.3}
  - name: sad_customer
    when: {role: customer, emotions: [sad], min_confidence: 0.6, min_segments: 1}
  - name: agent_tone
    severity: info
    when: {role: agent, emotions: [angry], min_confidence: 0.7, min_segments: 2}
"""
CANDIDATE_VIP = """\
scenario: vip
priority: 10
match: {customer_tier: [gold]}
rules:
  - name: vip_any_anger
    when: {role: any, emotions: [angry], min_confidence: 0.7, min_segments: 1}
"""

# external id -> (customer segments as (label, confidence), 10 of 3 s each, padded with neutral;
#                 agent segments; stored alerts {rule: feedback verdict or None}; days ago; event)
HISTORY = {
    "c-1": ([("angry", 0.9)] * 5, [], {"angry_customer": "correct"}, 1, {}),
    "c-2": ([("angry", 0.75)] * 4, [], {"angry_customer": "correct"}, 1, {}),
    "c-3": ([("angry", 0.72)] * 2, [], {"angry_customer": "false_alarm"}, 2, {}),
    "c-4": ([("angry", 0.95)] * 3, [], {"angry_customer": None}, 2, {}),
    "c-5": ([("angry", 0.85)] * 2 + [("fearful", 0.8)], [],
            {"angry_customer": None, "fearful_customer": None}, 3, {}),
    # A rule since deleted fired here, and was marked a false alarm.
    "c-6": ([("sad", 0.7)], [], {"old_rule": "false_alarm"}, 3, {}),
    "c-7": (None, None, {}, 1, {}),  # analysed but no stored segments
    "c-8": ([("angry", 0.9)] * 10, [], {"angry_customer": "false_alarm"}, 30, {}),  # outside 7d
    "c-9": ([], [("angry", 0.9)] * 2, {"agent_tone": None}, 1, {"customer_tier": "gold"}),
}


def write_rules(tmp_path: Path) -> tuple[Path, Path]:
    current, candidate = tmp_path / "rules-current", tmp_path / "rules-candidate"
    current.mkdir()
    candidate.mkdir()
    (current / "general.yaml").write_text(CURRENT, encoding="utf-8")
    (candidate / "general.yaml").write_text(CANDIDATE, encoding="utf-8")
    (candidate / "vip.yaml").write_text(CANDIDATE_VIP, encoding="utf-8")
    return current, candidate


def segments_of(customer, agent) -> list[SegmentResult]:
    if customer is None:
        return []
    out = []
    for i, (label, conf) in enumerate((agent + [("neutral", 0.9)] * 4)[:4] if agent else []):
        out.append(SegmentResult(i * 3.0, i * 3.0 + 3, 0, "agent", label, conf, {label: conf}))
    for i, (label, conf) in enumerate((customer + [("neutral", 0.9)] * 10)[:10]):
        out.append(SegmentResult(i * 3.0, i * 3.0 + 3, 1, "customer", label, conf, {label: conf}))
    return out


def seed(svc) -> dict[str, int]:
    """Write HISTORY, days before ``svc``'s clock; returns external id -> call id, and
    alert ids as 'c-1/angry_customer'."""
    ids: dict[str, int] = {}
    with svc.sessions.begin() as s:
        now = svc.clock.now(s)
        for ext, (customer, agent, alerts, days, event) in HISTORY.items():
            segs = segments_of(customer, agent)
            call = Call(source="generic", external_id=ext, recording_url=f"http://x/{ext}.wav",
                        customer_id=f"cust-{ext}", event={"call_id": ext, **event}, status="analyzed",
                        received_at=now - timedelta(days=days), analyzed_at=now - timedelta(days=days),
                        duration_s=30.0, scenario="general", channel_roles={"0": "agent", "1": "customer"})
            s.add(call)
            s.flush()
            ids[ext] = call.id
            s.add_all(Segment(call_id=call.id, channel=r.channel, role=r.role, start=r.start, end=r.end,
                              label=r.label, confidence=r.confidence, scores=r.scores) for r in segs)
            for rule, verdict in alerts.items():
                a = AlertRow(call_id=call.id, rule=rule, scenario="general", severity="warning",
                             role="customer", emotions=["angry"], share=0.5, confidence=0.9, matched=[],
                             summary=f"{rule} on {ext}", customer_id=call.customer_id, created_at=now)
                s.add(a)
                s.flush()
                ids[f"{ext}/{rule}"] = a.id
                if verdict:
                    s.add(Feedback(alert_id=a.id, verdict=verdict, by="sup-1", created_at=now, updated_at=now))
        # Not analysed: never replayed.
        s.add(Call(source="generic", external_id="c-10", recording_url="http://x/c-10.wav",
                   customer_id="cust-c-10", event={}, status="failed", error="boom", received_at=now))
    return ids


def backtest(svc, candidate: str | None, since: str, limit: int = 20) -> str:
    """``callmood rules backtest`` against ``svc``'s database and rules."""
    return run_backtest(svc.sessions, svc.clock, svc.rules, candidate, since, limit, set(svc.sinks) or None)


def row(report: str, key: str) -> list[str]:
    """The table row of ``key``, split into cells (precision cells are 'N% (a/b)' or '—')."""
    table = report.split("\nprecision = ")[0]
    [line] = [ln for ln in table.splitlines() if ln.startswith(key + " ")]
    cells = line[len(key):].split()
    out, i = [], 0
    while i < len(cells):
        if cells[i].endswith("%"):
            out.append(f"{cells[i]} {cells[i + 1]}")
            i += 2
        else:
            out.append(cells[i])
            i += 1
    return out


# columns after the rule: before, after, +, -, precision before, precision after, labelled,
# lost confirmed, false alarms avoided


@pytest.fixture
def seeded(tmp_path, db_url):
    current, candidate = write_rules(tmp_path)
    svc = build(make_config(tmp_path, None, db_url, rules={"path": str(current)}))
    svc.clock = ManualClock(T0)
    ids = seed(svc)
    yield svc, ids, candidate
    svc.close()


def test_backtest_on_seeded_history(seeded):
    svc, ids, candidate = seeded
    out = backtest(svc, str(candidate), "7d", 20)

    assert "7 replayed, 1 skipped (no stored segments)" in out
    assert row(out, "general/angry_customer") == ["5", "2", "+0", "-3", "67% (2/3)", "100% (1/1)", "3", "1", "1"]
    assert row(out, "general/fearful_customer") == ["1", "0", "+0", "-1", "—", "—", "0", "0", "0"]
    assert row(out, "general/sad_customer") == ["0", "1", "+1", "-0", "—", "—", "0", "0", "0"]
    assert row(out, "general/agent_tone") == ["1", "0", "+0", "-1", "—", "—", "0", "0", "0"]
    assert row(out, "vip/vip_any_anger") == ["0", "1", "+1", "-0", "—", "—", "0", "0", "0"]
    # Feedback on a rule neither set has any more still shows up, unmatched.
    assert row(out, "general/old_rule") == ["0", "0", "+0", "-0", "—", "—", "1", "0", "0"]
    assert "5 call(s) change their alerts; 1 change scenario." in out
    assert "1 call(s) where the rules in force no longer give the stored alerts" in out  # c-6

    changed = out.split("Changed calls (now → candidate; up to 20 per rule):")[1]
    block = changed.split("general/angry_customer  +0 -3\n")[1].split("\ngeneral/")[0].splitlines()
    assert [ln.split()[:3] for ln in block] == [["-", "call", str(ids["c-2"])], ["-", "call", str(ids["c-3"])],
                                                ["-", "call", str(ids["c-5"])]]
    assert block[0].split()[3:] == ["c-2", "cust-c-2", "marked", "correct", "(lost)"]
    assert block[1].split()[3:] == ["c-3", "cust-c-3", "marked", "false", "alarm", "(avoided)"]
    assert block[2].split()[3:] == ["c-5", "cust-c-5"]
    assert f"+  call {ids['c-6']}  c-6" in changed and f"+  call {ids['c-9']}  c-9" in changed
    assert "c-8" not in out and "c-10" not in out and "c-1 " not in changed

    # A longer window takes the month-old call (marked a false alarm) in.
    out = backtest(svc, str(candidate), "60d", 1)
    assert "8 replayed, 1 skipped" in out
    assert row(out, "general/angry_customer") == ["6", "3", "+0", "-3", "50% (2/4)", "50% (1/2)", "4", "1", "1"]
    assert "  ... and 2 more" in out  # --limit 1


def test_backtest_without_candidate_compares_stored_alerts(seeded):
    svc, ids, _ = seeded
    out = backtest(svc, None, "7d", 20)
    assert "stored: the alerts stored when the calls were analysed; now: the rules in force" in out
    assert row(out, "general/angry_customer") == ["5", "5", "+0", "-0", "67% (2/3)", "67% (2/3)", "3", "0", "0"]
    assert row(out, "general/old_rule") == ["1", "0", "+0", "-1", "0% (0/1)", "—", "1", "0", "1"]
    assert "1 call(s) change their alerts; 0 change scenario." in out
    assert f"-  call {ids['c-6']}  c-6  cust-c-6  marked false alarm (avoided)" in out


def test_backtest_reads_in_chunks(seeded, monkeypatch):
    svc, _, candidate = seeded
    whole = backtest(svc, str(candidate), "7d", 20)
    monkeypatch.setattr("plugin.flow.backtest.CALLS_PER_QUERY", 2)
    chunks = list(read_calls(svc.sessions, T0 - timedelta(days=7), chunk=2))
    assert len(chunks) == 8 and len({c.id for c in chunks}) == 8
    assert backtest(svc, str(candidate), "7d", 20).splitlines()[1:] == whole.splitlines()[1:]


def test_compare_on_plain_data(tmp_path):
    current_dir, candidate_dir = write_rules(tmp_path)
    current, candidate = load_rules(current_dir), load_rules(candidate_dir)
    calls = []
    for n, (ext, (customer, agent, alerts, days, event)) in enumerate(HISTORY.items(), 1):
        ctx = {"id": n, "customer_id": f"cust-{ext}", "customer_tier": event.get("customer_tier"),
               "tags": [], "metadata": event, "queue": None, "source": "generic", "duration_s": 30.0}
        calls.append(ReplayedCall(n, ext, f"cust-{ext}", segments_of(customer, agent), 30.0, ctx, "general",
                                  {f"general/{r}" for r in alerts},
                                  {f"general/{r}": v for r, v in alerts.items() if v}))
    report = compare(iter(calls), current, candidate)
    assert (report.replayed, report.skipped, report.changed_calls, report.changed_scenario) == (8, 1, 5, 1)
    st = report.rules["general/angry_customer"]
    assert st.before == {1, 2, 3, 4, 5, 8} and st.after == {1, 4, 8}
    assert st.precision(st.before) == (2, 4) and st.precision(st.after) == (1, 2)
    assert st.lost_confirmed == [2] and st.avoided_false_alarms == [3]
    text = format_report(report, limit=0)
    assert "general/angry_customer" in text and "  ... and 3 more" in text


def config_file(tmp_path: Path, db: str, rules: Path) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {tmp_path / 'var'}\ndatabase: {{url: '{db}'}}\nrules: {{path: '{rules}'}}\n",
                 encoding="utf-8")
    return p


def test_cli_backtest(tmp_path, sqlite_url):
    current, candidate = write_rules(tmp_path)
    svc = build(make_config(tmp_path, None, sqlite_url, rules={"path": str(current)}))
    ids = seed(svc)
    svc.close()
    cfg = config_file(tmp_path, sqlite_url, current)
    runner = CliRunner()

    r = runner.invoke(main, ["rules", "backtest", "-c", str(cfg), "--rules", str(candidate), "--since", "7d"])
    assert r.exit_code == 0, r.output
    assert row(r.output, "general/angry_customer")[:4] == ["5", "2", "+0", "-3"]
    assert "67% (2/3)" in r.output and f"call {ids['c-2']}" in r.output and "c-8" not in r.output

    r = runner.invoke(main, ["rules", "backtest", "-c", str(cfg), "--rules", str(candidate), "--since", "45d"])
    assert r.exit_code == 0, r.output
    assert row(r.output, "general/angry_customer")[:4] == ["6", "3", "+0", "-3"] and "8 replayed" in r.output

    r = runner.invoke(main, ["rules", "backtest", "-c", str(cfg), "--since", "7x"])
    assert r.exit_code == 1 and "Error: --since: '7x' is not a duration" in r.output

    (candidate / "general.yaml").write_text(CANDIDATE.replace("min_share: 0.3", "min_share: 3"), encoding="utf-8")
    r = runner.invoke(main, ["rules", "backtest", "-c", str(cfg), "--rules", str(candidate)])
    assert r.exit_code == 1
    assert "Error: candidate rules: " in r.output and "general.yaml:5: " in r.output and "min_share" in r.output


def test_feedback_api(app_factory, tmp_path, db_url, clock):
    current, _ = write_rules(tmp_path)
    svc, http = app_factory(make_config(tmp_path, None, db_url, rules={"path": str(current)}), clock=clock)
    ids = seed(svc)
    alert_id = ids["c-4/angry_customer"]
    url = f"/api/alerts/{alert_id}"

    r = http.get(url)
    assert r.status_code == 200
    assert r.json["call_id"] == ids["c-4"] and r.json["feedback"] is None

    r = http.post(url + "/feedback", json={"verdict": "correct", "by": "sup-7", "note": "rightly flagged"})
    assert r.status_code == 200, r.text
    first = r.json["feedback"]
    assert r.json["id"] == alert_id and r.json["rule"] == "angry_customer"
    # `by` is who is asking (an admin token here); a name it gives is kept beside it.
    assert (first["verdict"], first["by"], first["note"]) == ("correct", "test-admin (for sup-7)", "rightly flagged")

    # A new verdict replaces the old one (one row per alert).
    later = clock.advance(minutes=5)
    r = http.post(url + "/feedback", json={"verdict": "false-alarm", "by": "sup-8"})
    assert r.status_code == 200
    second = r.json["feedback"]
    assert (second["verdict"], second["by"], second["note"]) == ("false_alarm", "test-admin (for sup-8)", None)
    assert second["updated_at"] == later.isoformat(timespec="milliseconds") + "Z" != first["updated_at"]
    with svc.sessions() as s:
        assert s.query(Feedback).filter_by(alert_id=alert_id).count() == 1
    call = http.get(f"/api/calls/{ids['c-4']}").json
    assert call["alerts"][0]["feedback"]["verdict"] == "false_alarm"
    listed = http.get("/api/calls?limit=20").json["calls"]
    assert [c["alerts"][0]["feedback"] for c in listed if c["id"] == ids["c-3"]][0]["verdict"] == "false_alarm"

    # Bad bodies: 400 naming the field; nothing changes.
    for body, field in [(b"not json", None), (b"[1]", None), ({"verdict": "maybe"}, "verdict"),
                        ({}, "verdict"), ({"verdict": 1}, "verdict"),
                        ({"verdict": "correct", "by": "x" * 256}, "by"),
                        ({"verdict": "correct", "note": "x" * 4001}, "note"),
                        ({"verdict": "correct", "note": 5}, "note"),
                        ({"verdict": "correct", "verdit": "x"}, "verdit")]:
        if isinstance(body, bytes):
            r = http.post(url + "/feedback", data=body, headers={"Content-Type": "application/json"})
        else:
            r = http.post(url + "/feedback", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json["field"] == field and "\n" not in r.json["error"]
        if field:
            assert r.json["error"].startswith(field + ":")
    assert http.get(url).json["feedback"]["verdict"] == "false_alarm"
    r = http.post(url + "/feedback", json={"verdict": "ok"})
    assert r.json == {"error": "verdict: must be 'correct' or 'false_alarm', not 'ok'", "field": "verdict"}

    assert http.post("/api/alerts/999999/feedback", json={"verdict": "correct"}).status_code == 404
    assert http.get("/api/alerts/999999").status_code == 404

    # The backtest measures with it: c-4 is now a false alarm the candidate still fires on.
    out = backtest(svc, str(tmp_path / "rules-candidate"), "7d", 20)
    assert row(out, "general/angry_customer")[4:7] == ["50% (2/4)", "50% (1/2)", "4"]


# A candidate that listens: the customer threatening to call the consumer hotline.
LISTENING = CANDIDATE + """\
  - name: hotline_threat
    severity: critical
    when: {role: customer, says: [12315, 律师], min_mentions: 1}
"""


def test_backtest_replays_rules_that_listen_on_stored_transcripts(tmp_path, db_url):
    """Stored transcripts (and their matching form) come back from the segments table, so a
    says: rule fires in the backtest as it would have when the calls were analysed; calls
    stored without transcripts never fire it."""
    current, candidate = write_rules(tmp_path)
    (candidate / "general.yaml").write_text(LISTENING, encoding="utf-8")
    svc = build(make_config(tmp_path, None, db_url, rules={"path": str(current)}))
    svc.clock = ManualClock(T0)
    said = {"t-1": ["您好", "我要打幺二三幺五投诉你们", "好的"],  # Chinese digits: normalized when stored
            "t-2": ["我要找律", "师起诉你们", "嗯"],  # split between two windows
            "t-3": ["您好", "谢谢", "再见"]}
    try:
        ids = seed(svc)  # the history above: stored without transcripts
        with svc.sessions.begin() as s:
            now = svc.clock.now(s)
            for ext, texts in said.items():
                call = Call(source="generic", external_id=ext, recording_url=f"http://x/{ext}.wav",
                            customer_id=f"cust-{ext}", event={"call_id": ext}, status="analyzed",
                            received_at=now - timedelta(days=1), analyzed_at=now - timedelta(days=1),
                            duration_s=9.0, scenario="general", channel_roles={"0": "agent", "1": "customer"})
                s.add(call)
                s.flush()
                ids[ext] = call.id
                s.add_all(Segment(call_id=call.id, channel=1, role="customer", start=i * 3.0, end=i * 3.0 + 3,
                                  label="neutral", confidence=0.9, scores={"neutral": 0.9}, text=text,
                                  language="zh", tag_emotion="neutral", events=[], normalized=normalize(text))
                          for i, text in enumerate(texts))
        out = backtest(svc, str(candidate), "7d", 20)
    finally:
        svc.close()
    assert "10 replayed, 1 skipped" in out, out
    assert row(out, "general/hotline_threat") == ["0", "2", "+2", "-0", "—", "—", "0", "0", "0"]
    changed = out.split("Changed calls (now → candidate; up to 20 per rule):")[1]
    block = changed.split("general/hotline_threat  +2 -0\n")[1].split("\ngeneral/")[0].splitlines()
    assert [ln.split()[:4] for ln in block] == [["+", "call", str(ids["t-1"]), "t-1"],
                                                ["+", "call", str(ids["t-2"]), "t-2"]]  # not t-3
