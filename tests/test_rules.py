"""The rule engine fed with known segment results (random model labels are arbitrary)."""

from pathlib import Path

import pytest

from plugin.analysis import summarize
from plugin.data import EMOTIONS, SegmentResult
from rules.engine import RulesError, evaluate, load_rules

SHIPPED = Path(__file__).resolve().parent.parent / "rules" / "scenarios"


def seg(label, conf, role="customer", channel=1):
    """(label, confidence, role, channel) of one 3 s window; call_of places it in time."""
    return label, conf, role, channel


def call_of(*windows):
    segs = []
    for i, (label, conf, role, channel) in enumerate(windows):
        scores = {e: (1 - conf) / 8 for e in EMOTIONS}
        scores[label] = conf
        segs.append(SegmentResult(i * 3.0, i * 3.0 + 3, channel, role, label, conf, scores))
    return summarize(segs, 3.0 * len(segs))


CALL = {"customer_id": "c-9", "scenario_hint": None, "source": "generic"}


def fired(analysis, hint=None, rules=None):
    scenario, alerts = evaluate(rules or load_rules(SHIPPED), analysis, {**CALL, "scenario_hint": hint})
    return scenario.scenario, [a.rule for a in alerts], alerts


def test_shipped_scenarios_and_selection():
    rs = load_rules(SHIPPED)
    assert {s.scenario for s in rs.scenarios} == {"general", "finance_complaint", "marketing"}
    assert rs.select("Finance-Complaints").scenario == "finance_complaint"
    assert rs.select("信用卡投诉").scenario == "finance_complaint"
    assert rs.select("marketing-q4").scenario == "marketing"
    assert rs.select("support").scenario == "general"
    assert rs.select(None).scenario == "general"
    assert rs.sinks() == {"crm", "wecom"}


@pytest.mark.parametrize("conf,hint,expected", [
    # the tutorial's thresholds: 0.6 finance complaints, 0.8 marketing, 0.7 otherwise
    (0.65, "finance-complaint", ["upset_finance_customer"]),
    (0.55, "finance-complaint", []),
    (0.75, None, ["angry_customer"]),
    (0.65, None, []),
    (0.85, "marketing", ["annoyed_prospect"]),
    (0.75, "marketing", []),
])
def test_seed_thresholds(conf, hint, expected):
    analysis = call_of(seg("angry", conf), seg("angry", conf), seg("neutral", 0.9))
    assert fired(analysis, hint)[1] == expected


def test_finance_catches_more_negative_emotions():
    analysis = call_of(seg("fearful", 0.7), *[seg("neutral", 0.9)] * 5)
    assert fired(analysis, "finance")[1] == ["upset_finance_customer"]
    assert fired(analysis, None)[1] == []  # general looks at anger only


def test_share_and_count():
    # general: angry >= 0.7 in at least 20% of the customer's segments
    one_in_four = call_of(seg("angry", 0.9), *[seg("neutral", 0.9)] * 3)
    one_in_six = call_of(seg("angry", 0.9), *[seg("neutral", 0.9)] * 5)
    assert fired(one_in_four)[1] == ["angry_customer"]
    assert fired(one_in_six)[1] == []
    # marketing also needs two segments
    assert fired(call_of(seg("angry", 0.9), seg("neutral", 0.9)), "marketing")[1] == []


def test_roles():
    agent_angry = call_of(seg("angry", 0.9, role="agent", channel=0), seg("neutral", 0.9))
    assert fired(agent_angry)[1] == []  # the agent's anger is not the customer's
    mono = call_of(seg("angry", 0.9, role="mixed", channel=-1))
    _, rules, [alert] = fired(mono)
    assert rules == ["angry_customer"] and alert.role == "mixed"  # customer falls back to the mixed track


def test_alert_evidence_and_summary():
    analysis = call_of(seg("neutral", 0.9), seg("angry", 0.8), seg("angry", 0.9))
    _, _, [a] = fired(analysis)
    assert a.emotions == ["angry"] and a.share == pytest.approx(2 / 3, abs=1e-3)
    assert a.confidence == pytest.approx(0.85) and a.matched == [(3.0, 6.0), (6.0, 9.0)]
    assert "c-9" in a.summary and "67%" in a.summary
    assert [x.sink for x in a.actions] == ["crm", "wecom"] and a.actions[0].params == {"tag": "angry-customer"}


def test_no_segments_no_alert():
    assert fired(summarize([], 10.0))[1] == []


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


GOOD_RULE = "rules:\n  - name: r\n    when: {emotions: [angry]}\n"


@pytest.mark.parametrize("text,expected", [
    ("rules:\n  - name: r\n    when: {emotions: [furious]}\n", "rules.0.when.emotions: Value error, unknown emotion 'furious'"),
    ("rules:\n  - name: r\n    when: {emotions: [angry], min_confidence: 1.5}\n", "rules.0.when.min_confidence: Input should be less than or equal to 1"),
    ("rules:\n  - name: r\n    when: {emotions: [angry], min_confidance: 0.5}\n", "rules.0.when.min_confidance: unknown key"),
    ("rules:\n  - name: r\n    when: {emotions: [angry]}\n    summary: '{{ oops'\n", "rules.0.summary: Value error, bad template"),
    ("rules: [\n", "s.yaml:2: invalid YAML"),
    ("rules:\n  - name: r\n    when: {emotions: [angry]}\n  - name: r\n    when: {emotions: [sad]}\n", "rule name 'r' is used twice"),
])
def test_invalid_files_are_reported_with_file_and_key(tmp_path, text, expected):
    write(tmp_path, "s.yaml", text)
    with pytest.raises(RulesError) as err:
        load_rules(tmp_path)
    assert expected in str(err.value) and "s.yaml" in str(err.value)


def test_scenario_name_defaults_to_file_name(tmp_path):
    rs = load_rules(write(tmp_path, "vip.yaml", GOOD_RULE))
    assert rs.scenarios[0].scenario == "vip"


def test_two_defaults_refused(tmp_path):
    write(tmp_path, "a.yaml", "default: true\n" + GOOD_RULE)
    write(tmp_path, "b.yaml", "default: true\n" + GOOD_RULE)
    with pytest.raises(RulesError, match="more than one scenario has default"):
        load_rules(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "nope")
    with pytest.raises(RulesError, match="no scenario files"):
        load_rules(tmp_path)
