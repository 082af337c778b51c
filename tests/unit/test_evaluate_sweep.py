"""The per-scenario threshold sweep of `callmood evaluate`, on synthetic segment results
(a random-weight model's labels would say nothing), and each label's prediction."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from plugin.core.data import SegmentResult, summarize
from plugin.flow.context import call_context
from plugin.flow.evaluate.labels import Label
from plugin.flow.evaluate.metrics import NONE
from plugin.flow.evaluate.predict import predict
from plugin.flow.evaluate.sweep import (AS_WRITTEN, THRESHOLDS, Case, clauses, current_thresholds,
                                        should_alert, sweep, with_threshold)
from plugin.store.tables import Call
from rules.engine import load_rules

GENERAL = """\
scenario: general
default: true
rules:
  - name: angry_customer
    when: {role: customer, emotions: [angry], min_confidence: 0.7, min_share: 0.2}
"""
NESTED = """\
scenario: nested
match: {queue: [x]}
rules:
  - name: upset_then_not_calm
    when:
      all:
        - any:
            - {role: customer, emotions: [sad], min_confidence: 0.6}
            - {role: agent, emotions: [disgusted], min_confidence: 0.9}
        - none:
            - {role: customer, emotions: [happy], min_confidence: 0.8, min_segments: 3}
"""


def rules(tmp_path: Path, *texts: str):
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    for i, t in enumerate(texts):
        (d / f"s{i}.yaml").write_text(t, encoding="utf-8")
    return load_rules(d)


def segs(*spec: tuple[str, str, float], role: str = "customer") -> list[SegmentResult]:
    """(label, confidence) windows of 3 s each, one after another."""
    return [SegmentResult(i * 3.0, i * 3.0 + 3, 1, role, label, conf, {label: conf})
            for i, (label, conf) in enumerate(spec)]


def case(key: str, segments: list[SegmentResult], *labels) -> Case:
    duration = max((s.end for s in segments), default=0.0)
    ctx = call_context(Call(source="cli", external_id=key, recording_url=key, duration_s=duration, event={}))
    return Case(key, summarize(segments, duration), ctx, list(labels))


def test_every_clause_gets_the_threshold_nested_ones_too(tmp_path):
    rs = rules(tmp_path, GENERAL, NESTED)
    nested = next(s for s in rs.scenarios if s.scenario == "nested")
    assert current_thresholds(nested) == [0.6, 0.8, 0.9]
    swept = with_threshold(nested, 0.55)
    assert [(c.min_confidence, neg) for c, neg in clauses(swept.rules[0].when)] == \
        [(0.55, False), (0.55, False), (0.55, True)]
    # Everything else is the scenario as written.
    assert swept.rules[0].when.all_[1].none_[0].min_segments == 3 and swept.match.queue == ["x"]
    assert nested.rules[0].when.all_[0].any_[0].min_confidence == 0.6  # the original is untouched
    assert THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


WORDS = """\
scenario: words
match: {queue: [y]}
rules:
  - name: threat
    when: {role: customer, says: [投诉, 12315]}
  - name: upset_threat
    when:
      all:
        - {role: customer, says_regex: ['退款'], min_mentions: 2}
        - {role: customer, emotions: [angry], min_confidence: 0.65}
        - {role: customer, tag_emotions: [angry], events: [cry]}
"""
SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "scenarios"


def test_current_thresholds_are_those_of_clauses_with_emotions(tmp_path):
    # A clause that only listens (or reads SenseVoice's tags) has min_confidence 0.7 by
    # default, which judges nothing: it is no current threshold.
    words = rules(tmp_path, WORDS).scenarios[0]
    assert current_thresholds(words) == [0.65]
    only_words = words.model_copy(update={"rules": words.rules[:1]})
    assert current_thresholds(only_words) == []
    finance = next(s for s in load_rules(SHIPPED).scenarios if s.scenario == "finance_complaint")
    assert any(c.says and not c.emotions for r in finance.rules for c, _ in clauses(r.when))  # the case in point
    assert current_thresholds(finance) == [0.6]


def test_only_rules_on_emotions_are_swept(tmp_path):
    # A keyword rule fires the same at every threshold, and only on transcribed calls:
    # it is left out of the sweep and of "as written" alike.
    rs = rules(tmp_path, GENERAL + "  - name: threat\n    when: {role: customer, says: [投诉]}\n")
    said = [SegmentResult(0, 3, 1, "customer", "neutral", 0.9, {"neutral": 0.9}, text="我要投诉",
                          normalized="我要投诉")]
    angry = segs(("angry", 0.8))
    [sw] = sweep(rs, [case("a", said, ("customer", "neutral", None)), case("b", angry, ("customer", "angry", None))])
    got = {p.threshold: (p.fired, p.tp, p.fp) for p in sw.points}
    assert got[0.5] == got[AS_WRITTEN] == (1, 1, 0) and got[0.95] == (0, 0, 0)
    assert len(rs.scenarios[0].rules) == 2  # the rules themselves are untouched


def test_which_calls_should_alert(tmp_path):
    rs = rules(tmp_path, GENERAL, NESTED)
    general, nested = rs.scenarios
    assert should_alert(general, [("customer", "angry")]) and should_alert(general, [(None, "angry")])
    assert should_alert(general, [("mixed", "angry")])  # a customer clause falls back to the mixed track
    assert not should_alert(general, [("agent", "angry")]) and not should_alert(general, [("customer", "sad")])
    assert should_alert(nested, [("agent", "disgusted")]) and not should_alert(nested, [("customer", "disgusted")])
    assert not should_alert(nested, [("customer", "happy")])  # under none: what must not be heard


def test_counts_at_each_threshold(tmp_path):
    rs = rules(tmp_path, GENERAL)
    cases = [
        case("a", segs(("angry", 0.92), ("angry", 0.9), ("neutral", 0.8)), ("customer", "angry", None)),  # TP to 0.90
        case("b", segs(("angry", 0.66), ("neutral", 0.9)), ("customer", "angry", None)),  # TP at 0.50-0.65
        case("c", segs(("angry", 0.75), ("neutral", 0.9)), (None, "neutral", None)),  # FP to 0.75
        case("d", segs(("neutral", 0.9)), ("customer", "neutral", None)),  # TN
        case("e", segs(("angry", 0.99)), ("customer", "angry", "other")),  # another scenario's: not counted
    ]
    [sw] = sweep(rs, cases)
    assert (sw.scenario, sw.calls, sw.positives, sw.current, sw.emotions) == ("general", 4, 2, [0.7], ["angry"])
    got = {p.threshold: (p.fired, p.tp, p.fp, p.fn, p.tn) for p in sw.points}
    assert got[0.5] == got[0.65] == (3, 2, 1, 0, 1)
    assert got[0.7] == got[0.75] == (2, 1, 1, 1, 1)
    assert got[0.8] == got[0.9] == (1, 1, 0, 1, 2)
    assert got[0.95] == (0, 0, 0, 2, 2)
    assert got[AS_WRITTEN] == got[0.7]
    by = {p.threshold: p for p in sw.points}
    assert (by[0.5].precision, by[0.5].recall) == (pytest.approx(2 / 3), 1.0)
    assert (by[0.8].precision, by[0.8].recall) == (1.0, 0.5)
    assert (by[0.95].precision, by[0.95].recall) == (None, 0.0)  # nothing fires: no precision
    assert [p.threshold for p in sw.points if sw.is_current(p.threshold)] == [0.7]


def test_recall_never_rises_with_the_threshold(tmp_path):
    rs = rules(tmp_path, GENERAL, NESTED.replace("match: {queue: [x]}", "").replace(
        "        - none:\n            - {role: customer, emotions: [happy], min_confidence: 0.8, min_segments: 3}\n",
        "        - {role: customer, emotions: [sad, angry], min_segments: 1}\n"))
    rng = random.Random(15)
    cases = []
    for i in range(60):
        customer = segs(*[(rng.choice(["angry", "sad", "neutral", "happy"]), round(rng.uniform(0.3, 1), 3))
                          for _ in range(rng.randint(1, 8))])
        agent = segs(*[(rng.choice(["disgusted", "neutral"]), round(rng.uniform(0.3, 1), 3)) for _ in range(3)],
                     role="agent")
        truth = [(rng.choice(["customer", "agent", None]), rng.choice(["angry", "sad", "disgusted", "neutral"]),
                  None)]
        cases.append(case(f"c{i}", customer + agent, *truth))
    for sw in sweep(rs, cases):
        recalls = [p.recall for p in sw.points if p.threshold != AS_WRITTEN]
        fired = [p.fired for p in sw.points if p.threshold != AS_WRITTEN]
        assert sw.positives > 0 and all(r is not None for r in recalls)
        assert recalls == sorted(recalls, reverse=True), (sw.scenario, recalls)
        assert fired == sorted(fired, reverse=True)
        assert all(p.tp + p.fp + p.fn + p.tn == sw.calls for p in sw.points)


def test_a_rule_that_fails_on_a_call_is_counted_not_fatal(tmp_path):
    rs = rules(tmp_path, GENERAL)
    good = case("a", segs(("angry", 0.9)), ("customer", "angry", None))
    bad = Case("b", good.analysis, {}, good.labels)  # its summary template finds no call.customer_id
    [sw] = sweep(rs, [good, bad])
    assert (sw.points[0].failed, sw.points[0].fired, sw.points[-1].failed) == (1, 1, 1)


def label(start=None, end=None, role=None) -> Label:
    return Label(line=2, emotion="angry", call_id=1, start=start, end=end, role=role)


def test_the_prediction_of_a_label():
    customer = segs(("angry", 0.9), ("sad", 0.8), ("sad", 0.6), ("neutral", 0.9))  # 0-3 3-6 6-9 9-12
    agent = segs(("happy", 0.9), ("happy", 0.9), ("happy", 0.9), ("happy", 0.9), role="agent")
    a = summarize(customer + agent, 12.0)
    assert predict(label(), a) == a.emotion == "sad"  # the whole call, no role: the call's verdict
    assert predict(label(role="agent"), a) == "happy"
    assert predict(label(role="customer"), a) == "sad"
    assert predict(label(0, 4, "customer"), a) == "angry"  # 3 s of angry, 1 s of sad
    assert predict(label(2, 4, "customer"), a) == "angry"  # 1 s each: angry's confidence is higher
    assert predict(label(2, 6, "customer"), a) == "sad"
    assert predict(label(0, 12), a) == "happy"  # every track: 12 s of happy against 6 of sad
    assert predict(label(12, 20, "customer"), a) == NONE  # no window there: a miss
    assert predict(label(0, 3, "mixed"), a) == NONE
    mono = summarize(segs(("fearful", 0.7), role="mixed"), 3.0)
    assert predict(label(0, 3, "customer"), mono) == "fearful"  # no customer track: the mixed one, as rules do
    assert predict(label(), summarize([], 5.0)) == NONE
