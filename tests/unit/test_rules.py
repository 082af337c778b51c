"""The rule engine fed with known segment results (random model labels are arbitrary)."""

from pathlib import Path

import pytest

from plugin.core.data import EMOTIONS, SegmentResult, summarize
from rules.engine import RulesError, evaluate, load_rules

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "scenarios"


def seg(label, conf, role="customer", channel=1):
    """(label, confidence, role, channel) of one 3 s window; call_of places it in time."""
    return label, conf, role, channel


def call_of(*windows, step=3.0):
    """A call whose windows follow each other every ``step`` seconds."""
    segs = []
    for i, (label, conf, role, channel) in enumerate(windows):
        scores = {e: (1 - conf) / 8 for e in EMOTIONS}
        scores[label] = conf
        segs.append(SegmentResult(i * step, i * step + 3, channel, role, label, conf, scores))
    return summarize(segs, step * (len(segs) - 1) + 3 if segs else 0.0)


CALL = {"id": 1, "customer_id": "c-9", "agent_id": "a-1", "queue": None, "source": "generic"}


def fired(analysis, queue=None, rules=None, **call):
    scenario, alerts = evaluate(rules or load_rules(SHIPPED), analysis,
                                {**CALL, "queue": queue, **call})
    return scenario.scenario, [a.rule for a in alerts], alerts


def rules_from(tmp_path, when, **rule):
    """A one-rule scenario with this condition, loaded."""
    import yaml
    body = {"default": True, "rules": [{"name": "r", "when": when, **rule}]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    return load_rules(tmp_path)


def fires(rules, analysis) -> bool:
    return bool(evaluate(rules, analysis, CALL)[1])


# --- the shipped scenarios ----------------------------------------------------------

def test_shipped_scenarios_and_selection():
    rs = load_rules(SHIPPED, {"crm", "wecom"})
    assert {s.scenario for s in rs.scenarios} == {"general", "finance_complaint", "marketing", "vip_customer"}
    assert rs.select("Finance-Complaints").scenario == "finance_complaint"
    assert rs.select("信用卡投诉").scenario == "finance_complaint"
    assert rs.select("marketing-q4").scenario == "marketing"
    assert rs.select("support").scenario == "general"
    assert rs.select(None).scenario == "general"
    # selected by metadata other than the queue; the highest priority wins
    assert rs.select({"queue": "finance", "customer_tier": "Gold"}).scenario == "vip_customer"
    assert "crm" in rs.sinks()


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


def test_shipped_escalation_and_agent_review():
    # calm for the first two thirds, then angry to the end
    escalating = call_of(*[seg("neutral", 0.9)] * 8, *[seg("angry", 0.9)] * 4, step=10)
    assert "escalating_customer" in fired(escalating)[1]
    # angry from the start: no rise, so not "escalating"
    steady = call_of(*[seg("angry", 0.9)] * 12, step=10)
    assert fired(steady)[1] == ["angry_customer"]
    agent = call_of(seg("angry", 0.9, "agent", 0), seg("angry", 0.8, "agent", 0), seg("neutral", 0.9))
    names = fired(agent)[1]
    assert names == ["agent_tone_review"]  # the agent's anger is not the customer's


def test_roles():
    mono = call_of(seg("angry", 0.9, role="mixed", channel=-1))
    _, rules, [alert] = fired(mono)
    assert rules == ["angry_customer"] and alert.role == "mixed"  # customer falls back to the mixed track


def test_alert_evidence_summary_labels_and_templated_actions():
    analysis = call_of(seg("neutral", 0.9), seg("angry", 0.8), seg("angry", 0.9))
    _, names, alerts = fired(analysis)
    assert names == ["angry_customer", "escalating_customer"]  # calm, then angry to the end
    a = alerts[0]
    assert a.emotions == ["angry"] and a.share == pytest.approx(2 / 3, abs=1e-3)
    assert a.confidence == pytest.approx(0.85) and a.matched == [(3.0, 6.0), (6.0, 9.0)]
    assert "c-9" in a.summary and "67%" in a.summary
    assert [x.sink for x in a.actions] == ["crm"] and a.actions[0].params == {"tag": "angry-customer"}
    assert a.details["segments"] == 2 and a.details["longest_run"] == 2


def test_templated_action_params_and_labels(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["sad"]}, severity="critical", labels={"team": "care"},
                    actions=[{"sink": "crm", "tag": "{{ alert.labels.team }}-{{ alert.emotions[0] }}",
                              "note": "{{ call.customer_id }}: {{ alert.summary }}",
                              "template": "{{ color }} kept for the sink"}])
    [a] = evaluate(rs, call_of(seg("sad", 0.9)), CALL)[1]
    assert a.severity == "critical" and a.labels == {"team": "care"}
    assert a.actions[0].params["tag"] == "care-sad"
    assert a.actions[0].params["note"].startswith("c-9: c-9: sad in 100%")
    assert a.actions[0].params["template"] == "{{ color }} kept for the sink"  # rendered by the sink


def test_no_segments_no_alert():
    assert fired(summarize([], 10.0))[1] == []


# --- each condition kind ------------------------------------------------------------

def test_emotion_set_and_min_confidence(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["sad", "fearful"], "min_confidence": 0.6})
    assert fires(rs, call_of(seg("fearful", 0.65)))
    assert not fires(rs, call_of(seg("fearful", 0.55)))  # below the segment confidence
    assert not fires(rs, call_of(seg("angry", 0.95)))  # not in the set
    one = rules_from(tmp_path, {"emotions": "sad", "min_confidence": 0})  # a single emotion as a string
    assert fires(one, call_of(seg("sad", 0.1)))


def test_share_of_speech_segments(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "min_share": 0.5})
    assert fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9)))
    assert not fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9), seg("neutral", 0.9)))
    # the agent's segments do not dilute the customer's share
    assert fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9), *[seg("neutral", 0.9, "agent", 0)] * 5))


def test_consecutive_segments_and_seconds(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "min_consecutive": 3})
    broken = call_of(seg("angry", 0.9), seg("angry", 0.9), seg("neutral", 0.9), seg("angry", 0.9), seg("angry", 0.9))
    run = call_of(seg("neutral", 0.9), seg("angry", 0.9), seg("angry", 0.9), seg("angry", 0.9))
    assert not fires(rs, broken) and fires(rs, run)
    # the agent talking in between does not break the customer's run: a run is the role's own speech
    interleaved = call_of(seg("angry", 0.9), seg("neutral", 0.9, "agent", 0), seg("angry", 0.9),
                          seg("happy", 0.9, "agent", 0), seg("angry", 0.9))
    assert fires(rs, interleaved)
    secs = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "min_consecutive_s": 9})
    assert fires(secs, run) and not fires(secs, broken)  # 3 x 3 s in a row vs runs of 6 s
    [a] = evaluate(secs, run, CALL)[1]
    assert a.details["longest_run_s"] == 9.0 and a.details["longest_run"] == 3


def test_min_seconds(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "min_seconds": 6})
    assert fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9), seg("angry", 0.9)))
    assert not fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9)))


def test_window_of_the_call(tmp_path):
    # 20 windows, 10 s apart: a 193 s call. Angry only at the start, or only at the end.
    starts_angry = call_of(*[seg("angry", 0.9)] * 3, *[seg("neutral", 0.9)] * 17, step=10)
    ends_angry = call_of(*[seg("neutral", 0.9)] * 17, *[seg("angry", 0.9)] * 3, step=10)
    last = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "window": {"last_s": 60},
                                 "min_segments": 2})
    assert fires(last, ends_angry) and not fires(last, starts_angry)
    first = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "window": {"first_s": 30}})
    assert fires(first, starts_angry) and not fires(first, ends_angry)
    span = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5,
                                 "window": {"from_s": 100, "to_s": 150}})
    assert not fires(span, ends_angry) and not fires(span, starts_angry)
    # share is measured inside the window: 3 of the last 6 windows
    share = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "window": {"last_s": 60},
                                  "min_share": 0.5})
    [a] = evaluate(share, ends_angry, CALL)[1]
    assert a.share == 0.5 and a.matched[0] == (170.0, 173.0)


def test_rise_from_first_to_last_third(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["angry"], "min_confidence": 0.5, "min_rise": 0.5})
    # thirds of a 27 s call: [0, 9), [9, 18), [18, 27): windows 0-2, 3-5, 6-8 by midpoint
    rising = call_of(*[seg("neutral", 0.9)] * 6, *[seg("angry", 0.9)] * 3)
    falling = call_of(*[seg("angry", 0.9)] * 3, *[seg("neutral", 0.9)] * 6)
    flat = call_of(*[seg("angry", 0.9), seg("neutral", 0.9), seg("angry", 0.9)] * 3)
    assert fires(rs, rising) and not fires(rs, falling) and not fires(rs, flat)
    [a] = evaluate(rs, rising, CALL)[1]
    assert (a.details["first_third_share"], a.details["last_third_share"], a.details["rise"]) == (0.0, 1.0, 1.0)


def test_agent_own_emotion(tmp_path):
    rs = rules_from(tmp_path, {"role": "agent", "emotions": ["angry"], "min_confidence": 0.5})
    assert fires(rs, call_of(seg("neutral", 0.9), seg("angry", 0.9, "agent", 0)))
    assert not fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9, "agent", 0)))
    assert not fires(rs, call_of(seg("angry", 0.9, "mixed", -1)))  # mono: the agent cannot be told apart
    anyone = rules_from(tmp_path, {"role": "any", "emotions": ["angry"], "min_confidence": 0.5})
    assert fires(anyone, call_of(seg("angry", 0.9, "agent", 0)))


def test_all_any_none_nested(tmp_path):
    angry = {"emotions": ["angry"], "min_confidence": 0.5}
    agent_calm = {"role": "agent", "emotions": ["neutral"], "min_confidence": 0.5}
    rs = rules_from(tmp_path, {"all": [angry, {"any": [agent_calm, {"emotions": ["sad"], "min_confidence": 0.5}]},
                                       {"none": [{"emotions": ["happy"], "min_confidence": 0.5}]}]})
    both = call_of(seg("angry", 0.9), seg("neutral", 0.9, "agent", 0))
    assert fires(rs, both)
    assert fires(rs, call_of(seg("angry", 0.9), seg("sad", 0.9)))  # the other branch of any
    assert not fires(rs, call_of(seg("angry", 0.9)))  # any: neither branch
    assert not fires(rs, call_of(seg("angry", 0.9), seg("neutral", 0.9, "agent", 0), seg("happy", 0.9)))  # none:
    [a] = evaluate(rs, both, CALL)[1]
    # evidence from every clause that held, the first one's role and share
    assert a.role == "customer" and a.matched == [(0.0, 3.0), (3.0, 6.0)]
    assert [c["role"] for c in a.details["conditions"]] == ["customer", "agent"]


# --- scenario selection by call metadata ----------------------------------------------

def test_scenario_selected_by_metadata(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "default: true\nrules: []\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        "priority: 5\nmatch:\n  tags: [vip*]\n  source: generic\n  metadata: {region: [east*]}\nrules: []\n",
        encoding="utf-8")
    rs = load_rules(tmp_path)
    assert rs.select({"tags": ["VIP-2"], "source": "generic", "metadata": {"region": "east-1"}}).scenario == "b"
    assert rs.select({"tags": ["VIP-2"], "source": "generic", "metadata": {"region": "west"}}).scenario == "a"
    assert rs.select({"tags": [], "source": "generic", "metadata": {"region": "east"}}).scenario == "a"


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


GOOD_RULE = "rules:\n  - name: r\n    when: {emotions: [angry]}\n"


@pytest.mark.parametrize("text,expected", [
    ("rules:\n  - name: r\n    when: {emotions: [furious]}\n", "s.yaml:3: rules.0.when.emotions: unknown emotion 'furious'"),
    ("rules:\n  - name: r\n    when:\n      emotions: [angry]\n      min_confidence: 1.5\n",
     "s.yaml:5: rules.0.when.min_confidence: Input should be less than or equal to 1"),
    ("rules:\n  - name: r\n    when: {emotions: [angry], min_confidance: 0.5}\n", "rules.0.when.min_confidance: unknown key"),
    ("rules:\n  - name: r\n    when: {emotions: [angry]}\n    summary: '{{ oops'\n", "s.yaml:4: rules.0.summary: bad template"),
    ("rules:\n  - name: r\n    when: {emotions: [angry]}\n    summary: '{{ call.custmer_id }}'\n",
     "rules.0.summary: bad template: 'dict object' has no attribute 'custmer_id'"),
    ("rules: [\n", "s.yaml:2: invalid YAML"),
    ("rules:\n  - name: r\n    when: {emotions: [angry]}\n  - name: r\n    when: {emotions: [sad]}\n",
     "s.yaml:4: rules.1.name: rule name 'r' is used twice"),
    ("rules:\n  - name: r\n    when:\n      all:\n        - emotions: [angry]\n        - {emotions: [sad], window: {last_s: 60, first_s: 9}}\n",
     "s.yaml:6: rules.0.when.all.1.window: give one of first_s, last_s"),
    ("rules:\n  - name: r\n    when: {all: [{emotions: [angry]}], emotions: [sad]}\n", "cannot sit beside clause keys"),
    ("rules:\n  - name: r\n    when: {min_share: 0.5}\n", "a condition needs emotions"),
    ("rules:\n  - name: r\n    severity: urgent\n    when: {emotions: [angry]}\n", "s.yaml:3: rules.0.severity: Input should be 'info', 'warning' or 'critical'"),
])
def test_invalid_files_are_reported_with_file_line_and_key(tmp_path, text, expected):
    write(tmp_path, "s.yaml", text)
    with pytest.raises(RulesError) as err:
        load_rules(tmp_path)
    assert expected in str(err.value) and "s.yaml" in str(err.value)


def test_every_problem_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "rules:\n  - name: r\n    when: {emotions: [furious], min_share: 2}\n"
                              "    actions: [{sink: crmm}]\n")
    write(tmp_path, "b.yaml", "rules:\n  - name: q\n    when: {emotions: [angry]}\n"
                              "    actions:\n      - sink: crm\n        tag: '{{ alert.bogus }}'\n")
    with pytest.raises(RulesError) as err:
        load_rules(tmp_path, known_sinks={"crm", "wecom"})
    problems = err.value.problems
    assert any("a.yaml:3: rules.0.when.emotions: unknown emotion 'furious'" in p for p in problems)
    assert any("a.yaml:3: rules.0.when.min_share" in p for p in problems)
    assert any("a.yaml:4: rules.0.actions.0.sink: unknown sink 'crmm'" in p for p in problems)
    assert any("b.yaml:6: rules.0.actions.0.tag: bad template" in p for p in problems)
    assert "and 3 more" in str(err.value)


def test_unknown_sink(tmp_path):
    write(tmp_path, "s.yaml", GOOD_RULE + "    actions:\n      - sink: crm\n      - sink: wecomm\n")
    with pytest.raises(RulesError, match=r"s.yaml:6: rules.0.actions.1.sink: unknown sink 'wecomm' \(configured: crm, wecom\)"):
        load_rules(tmp_path, known_sinks={"crm", "wecom"})
    assert load_rules(tmp_path).rule_count() == 1  # without a sink list nothing to check against


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


def test_templates_are_tried_with_the_keys_a_call_really_has():
    # rules/templates.py checks templates against a sample call: it must have every key the
    # pipeline gives, or a valid template would be refused (and a typo let through).
    from plugin.flow.context import call_context
    from plugin.store.tables import Call
    from rules.templates import SAMPLE_CALL
    call = Call(id=1, source="generic", external_id="x", recording_url="u", event={"tags": "a, b"})
    ctx = call_context(call)
    assert set(ctx) == set(SAMPLE_CALL) and ctx["tags"] == ["a", "b"]


def test_a_sink_that_is_not_a_name_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "s.yaml").write_text("scenario: s\ndefault: true\nrules:\n  - name: r\n"
                                     "    when: {emotions: [angry]}\n    actions: [{sink: [crm]}]\n")
    with pytest.raises(RulesError) as err:
        load_rules(tmp_path, {"crm": False, "wecom": True})
    assert "actions.0.sink" in str(err.value)
