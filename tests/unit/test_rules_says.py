"""Rules that listen to the words: says:, says_regex:, tag_emotions:, events: and the
quotes an alert carries. Segment results are built by hand (never the model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plugin.core.data import MAX_QUOTES, SegmentResult, summarize
from plugin.core.transcript import normalize
from rules.conditions import MEASURES, Condition
from rules.engine import RulesError, evaluate, load_rules
from rules.words import MAX_REGEX_WINDOW_CHARS, MAX_WINDOW_CHARS, regex_problem

CALL = {"id": 1, "customer_id": "c-9", "agent_id": "a-1", "queue": None, "source": "generic"}


def win(start, text, role="customer", channel=1, label="neutral", conf=0.9, tag=None, events=(), length=3.0):
    """One window as the pipeline would leave it with a transcript (text None: without one)."""
    return SegmentResult(start, start + length, channel, role, label, conf, {label: conf}, text=text,
                         language="zh" if text is not None else None, tag_emotion=tag, events=tuple(events),
                         normalized=normalize(text) if text is not None else None)


def call(*segs, duration=None):
    return summarize(list(segs), duration if duration is not None else max((s.end for s in segs), default=0.0))


def rules_from(tmp_path, when, **rule):
    body = {"default": True, "rules": [{"name": "r", "when": when, **rule}]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return load_rules(tmp_path)


def alert(rules, analysis):
    alerts = evaluate(rules, analysis, CALL)[1]
    return alerts[0] if alerts else None


def fires(rules, analysis) -> bool:
    return alert(rules, analysis) is not None


# --- keywords, phrases, patterns ------------------------------------------------------------

def test_keywords_any_of_them_normalized_on_both_sides(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉", "退款", 12315, "律师", "Refund!", "投诉 电话"]})
    assert fires(rs, call(win(0, "你好"), win(3, "我要投诉你们！")))
    assert fires(rs, call(win(0, "我要打幺二三幺五")))  # Chinese digits read out
    assert fires(rs, call(win(0, "我要打１２３１５。")))  # full width
    assert fires(rs, call(win(0, "I want a REFUND, now.")))
    assert not fires(rs, call(win(0, "我很满意，谢谢"), win(3, "再见")))
    a = alert(rs, call(win(0, "我找律师"), win(3, "还要退款")))
    assert a.details["keywords"] == ["退款", "律师"]  # as written, in the rule's order
    assert a.details["mentions"] == 2

    one = rules_from(tmp_path, {"says": "律师"})  # one string
    assert fires(one, call(win(0, "我会请律师的")))
    phrase = rules_from(tmp_path, {"says": ["投诉 电话"]})
    assert fires(phrase, call(win(0, "你们的投诉电话是多少")))
    assert not fires(phrase, call(win(0, "我要投诉")))


def test_regular_expressions_on_the_normalized_text(tmp_path):
    rs = rules_from(tmp_path, {"says_regex": ["退(款|钱)", r"\d{5}"]})
    assert fires(rs, call(win(0, "把钱退钱给我")))
    assert fires(rs, call(win(0, "我打幺二三幺五")))  # 12315 once normalized
    assert not fires(rs, call(win(0, "退一下，一二三")))
    a = alert(rs, call(win(0, "我要退款"), win(3, "打12315")))
    assert a.details["keywords"] == ["退(款|钱)", r"\d{5}"] and a.details["mentions"] == 2


def test_overlapping_terms_count_once(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉", "投诉电话"], "min_mentions": 2})
    assert not fires(rs, call(win(0, "投诉电话")))  # one mention: the longer term
    a = alert(rs, call(win(0, "投诉电话"), win(10, "我要投诉")))
    assert a.details["mentions"] == 2 and a.details["keywords"] == ["投诉", "投诉电话"]


def test_segments_without_a_transcript_never_match(tmp_path):
    no_text = SegmentResult(0, 3, 1, "customer", "angry", 0.9, {"angry": 0.9}, normalized="投诉", tag_emotion="angry")
    for when in ({"says": ["投诉"]}, {"says_regex": ["投诉"]}, {"tag_emotions": ["angry"]}):
        assert not fires(rules_from(tmp_path, when), call(no_text))
    # an emotion rule still fires on it
    assert fires(rules_from(tmp_path, {"emotions": ["angry"]}), call(no_text))
    # no words heard is no match either
    assert not fires(rules_from(tmp_path, {"says_regex": ["."]}), call(win(0, "")))


def test_the_matching_form_is_made_when_a_segment_lacks_it(tmp_path):
    bare = SegmentResult(0, 3, 1, "customer", "neutral", 0.9, {}, text="我要投诉！")
    assert fires(rules_from(tmp_path, {"says": ["投诉"]}), call(bare))


def test_window_text_is_bounded(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"]})
    assert fires(rs, call(win(0, "好" * (MAX_WINDOW_CHARS - 2) + "投诉")))
    assert not fires(rs, call(win(0, "好" * MAX_WINDOW_CHARS + "投诉")))
    # a regular expression reads less: the first characters, and across a boundary the
    # first window's last ones and the next one's first ones
    rx = rules_from(tmp_path, {"says_regex": ["投诉"]})
    assert fires(rx, call(win(0, "好" * (MAX_REGEX_WINDOW_CHARS - 2) + "投诉")))
    assert not fires(rx, call(win(0, "好" * MAX_REGEX_WINDOW_CHARS + "投诉")))
    a = alert(rx, call(win(0, "好" * 200 + "我要投"), win(3, "诉")))
    assert a.details["mentions"] == 1 and a.matched == [(0.0, 3.0), (3.0, 6.0)]
    assert fires(rules_from(tmp_path, {"says": ["投诉"]}), call(win(0, "好" * 200 + "我要投"), win(3, "诉")))


# --- whose words, when, how often ----------------------------------------------------------

def test_roles_and_the_mixed_fallback(tmp_path):
    agent_says = call(win(0, "您可以投诉", "agent", 0), win(3, "好的"))
    customer = rules_from(tmp_path, {"says": ["投诉"]})
    assert not fires(customer, agent_says)
    assert fires(rules_from(tmp_path, {"says": ["投诉"], "role": "agent"}), agent_says)
    assert fires(rules_from(tmp_path, {"says": ["投诉"], "role": "any"}), agent_says)
    mono = call(win(0, "我要投诉", "mixed", -1))
    a = alert(customer, mono)
    assert a is not None and a.role == "mixed"  # customer falls back to the mixed track


def test_window_of_the_call(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"], "window": {"last_s": 30}})
    early = call(win(0, "我要投诉"), *[win(3 + 3 * i, "嗯") for i in range(20)])
    late = call(*[win(3 * i, "嗯") for i in range(20)], win(60, "我要投诉"))
    assert not fires(rs, early) and fires(rs, late)


def test_min_mentions(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉", "退款"], "min_mentions": 2})
    assert not fires(rs, call(win(0, "我要投诉"), win(3, "好的")))
    assert fires(rs, call(win(0, "我要投诉"), win(10, "我要退款")))
    a = alert(rs, call(win(0, "投诉投诉")))  # twice in one window
    assert a.details["mentions"] == 2 and a.details["keywords"] == ["投诉"]
    assert a.matched == [(0.0, 3.0)]


def test_a_keyword_split_between_two_windows(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"], "role": "any"})
    split = call(win(0, "我要投"), win(3, "诉你们"))
    a = alert(rs, split)
    assert a.details["mentions"] == 1 and a.matched == [(0.0, 3.0), (3.0, 6.0)]  # once, both windows
    # windows shifted by up to half a second are still neighbours
    assert fires(rs, call(win(0, "我要投"), win(3.5, "诉")))
    assert not fires(rs, call(win(0, "我要投"), win(4, "诉")))  # a gap: another stretch of speech
    assert not fires(rs, call(win(0, "我要投", "agent", 0), win(3, "诉", "customer", 1)))  # another channel
    assert not fires(rs, call(win(0, "我要投"), win(3, None), win(6, "诉")))  # no transcript between


def test_matches_in_one_window_are_not_counted_again_from_the_pair(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"]})
    a = alert(rs, call(win(0, "投诉"), win(3, "投诉")))
    assert a.details["mentions"] == 2
    a = alert(rs, call(win(0, "我要投"), win(3, "诉投诉")))  # one across, one inside the second
    assert a.details["mentions"] == 2
    a = alert(rs, call(win(0, "投诉"), win(3, "诉")))  # "投诉诉": the first window's own only
    assert a.details["mentions"] == 1 and a.matched == [(0.0, 3.0)]


# --- SenseVoice's emotion tag and events ----------------------------------------------------

def test_tag_emotions_alone_and_as_corroboration(tmp_path):
    alone = rules_from(tmp_path, {"tag_emotions": ["angry", "disgusted"]})
    assert fires(alone, call(win(0, "你们怎么回事", tag="angry")))
    assert not fires(alone, call(win(0, "好的", tag="neutral")))

    both = rules_from(tmp_path, {"emotions": ["angry"], "tag_emotions": ["angry"]})
    assert fires(both, call(win(0, "什么", label="angry", tag="angry")))
    assert not fires(both, call(win(0, "什么", label="angry", tag="neutral")))  # the recognizer disagrees
    assert not fires(both, call(win(0, "什么", label="neutral", tag="angry")))

    said = rules_from(tmp_path, {"says": ["投诉"], "tag_emotions": ["angry"]})
    assert not fires(said, call(win(0, "我要投诉", tag="neutral"), win(10, "烦死了", tag="angry")))
    assert fires(said, call(win(0, "我要投诉", tag="angry")))


def test_events(tmp_path):
    rs = rules_from(tmp_path, {"events": ["cry"], "role": "any"})
    assert fires(rs, call(win(0, "呜呜", events=("cry",))))
    assert not fires(rs, call(win(0, "哈哈", events=("laughter",))))


# --- one clause, several criteria; combinations ---------------------------------------------

def test_every_criterion_of_a_clause_holds_for_the_same_segment(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"], "emotions": ["angry"], "min_confidence": 0.7})
    apart = call(win(0, "我要投诉", label="neutral"), win(3, "你们太差了", label="angry"))
    assert not fires(rs, apart)
    assert fires(rs, call(win(0, "我要投诉", label="angry", conf=0.8)))
    assert not fires(rs, call(win(0, "我要投诉", label="angry", conf=0.6)))
    # split across two windows: counts where one of them is angry, and hits that one
    a = alert(rs, call(win(0, "我要投", label="angry"), win(3, "诉", label="neutral")))
    assert a.matched == [(0.0, 3.0)] and a.details["mentions"] == 1


def test_thresholds_over_the_segments_that_said_it(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"], "min_share": 0.5})
    assert fires(rs, call(win(0, "投诉"), win(3, "嗯")))
    assert not fires(rs, call(win(0, "投诉"), win(3, "嗯"), win(6, "嗯")))
    a = alert(rs, call(win(0, "投诉"), win(3, "嗯")))
    assert a.share == 0.5 and a.details["segments"] == 1 and a.details["role_segments"] == 2


def test_all_any_none_with_emotions(tmp_path):
    rs = rules_from(tmp_path, {"all": [{"says": ["投诉", "退款"], "window": {"last_s": 120}},
                                       {"emotions": ["angry"], "min_share": 0.2}]})
    angry_complaint = call(win(0, "你们太差", label="angry"), win(3, "我要投诉"))
    assert fires(rs, angry_complaint)
    assert not fires(rs, call(win(0, "你好"), win(3, "我要投诉"), win(6, "嗯"), win(9, "嗯"), win(12, "嗯"),
                              win(15, "嗯")))  # no anger
    assert not fires(rs, call(win(0, "你们太差", label="angry"), win(3, "好的")))  # no complaint
    a = alert(rs, angry_complaint)
    assert a.details["keywords"] == ["投诉"] and a.details["mentions"] == 1
    assert [c["role"] for c in a.details["conditions"]] == ["customer", "customer"]
    assert a.matched == [(0.0, 3.0), (3.0, 6.0)]

    either = rules_from(tmp_path, {"any": [{"says": ["律师"]}, {"emotions": ["angry"], "min_confidence": 0.9}]})
    assert fires(either, call(win(0, "我找律师")))
    a = alert(either, call(win(0, "气死了", label="angry", conf=0.95)))
    assert a.details["keywords"] == [] and a.details["mentions"] == 0  # the rule listens: always there

    not_thanked = rules_from(tmp_path, {"all": [{"emotions": ["angry"]}, {"none": [{"says": ["谢谢"]}]}]})
    assert fires(not_thanked, call(win(0, "气死了", label="angry")))
    assert not fires(not_thanked, call(win(0, "气死了", label="angry"), win(10, "好吧谢谢")))


def test_emotion_only_measures_are_unchanged(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["angry"]})
    a = alert(rs, call(win(0, "气死了", label="angry")))
    assert set(a.details) == set(MEASURES) | {"conditions"}
    assert a.summary == "c-9: angry in 100% of customer speech"
    said = alert(rules_from(tmp_path, {"says": ["投诉", "退款"]}), call(win(0, "投诉"), win(3, "退款")))
    assert said.summary == "c-9: customer said 投诉/退款"  # the default summary names the words


# --- quotes ---------------------------------------------------------------------------------

def test_quotes_in_call_order_capped_and_not_in_details(tmp_path):
    rs = rules_from(tmp_path, {"says": ["退款"], "role": "any"})
    segs = [win(3 * i, f"第{i}次说退款", role="customer" if i % 2 else "agent", channel=i % 2)
            for i in range(MAX_QUOTES + 3)]
    a = alert(rs, call(*reversed(segs)))
    assert len(a.quotes) == MAX_QUOTES
    assert a.quotes[0] == {"start": 0.0, "end": 3.0, "role": "agent", "text": "第0次说退款"}
    assert [q["start"] for q in a.quotes] == sorted(q["start"] for q in a.quotes)
    assert "quotes" not in a.details


def test_an_emotion_rule_quotes_what_the_angry_windows_said(tmp_path):
    rs = rules_from(tmp_path, {"emotions": ["angry"]})
    a = alert(rs, call(win(0, "你好"), win(3.333, "你们太过分了", label="angry"), win(6, "", label="angry"),
                       SegmentResult(9, 12, 1, "customer", "angry", 0.9, {})))
    assert a.quotes == [{"start": 3.33, "end": 6.33, "role": "customer", "text": "你们太过分了"}]
    assert len(a.matched) == 3  # the windows without words fired too, and are not quoted
    # without transcripts, no quotes
    assert alert(rs, call(SegmentResult(0, 3, 1, "customer", "angry", 0.9, {}))).quotes == []


def test_quotes_prefer_the_windows_that_said_it(tmp_path):
    rs = rules_from(tmp_path, {"all": [{"emotions": ["angry"]}, {"says": ["投诉"]}]})
    angry = [win(3 * i, f"气{i}", label="angry") for i in range(MAX_QUOTES + 2)]
    complaint = win(60, "我要投诉")
    a = alert(rs, call(*angry, complaint))
    assert len(a.quotes) == MAX_QUOTES and a.quotes[-1]["text"] == "我要投诉"
    assert [q["text"] for q in a.quotes[:-1]] == [f"气{i}" for i in range(MAX_QUOTES - 1)]


def test_quotes_and_keywords_in_templates(tmp_path):
    rs = rules_from(tmp_path, {"says": ["投诉"]},
                    summary="{{ alert.details.keywords | join(',') }} x{{ alert.details.mentions }}: "
                            "{{ alert.quotes[0].text }}")
    assert alert(rs, call(win(0, "我要投诉"))).summary == "投诉 x1: 我要投诉"


# --- the schema -----------------------------------------------------------------------------

def write(tmp_path, text):
    (tmp_path / "s.yaml").write_text(text, encoding="utf-8")


@pytest.mark.parametrize("when,expected", [
    ("      says: [投诉, '!!!']\n", "s.yaml:4: rules.0.when.says.1: keyword '!!!' has nothing left to match"),
    ("      says: ['" + "长" * 201 + "']\n", "rules.0.when.says.0: a keyword is at most 200 characters"),
    ("      says: []\n", "s.yaml:4: rules.0.when.says: List should have at least 1 item"),
    ("      says_regex:\n        - 退款\n        - '(a+)+'\n",
     "s.yaml:6: rules.0.when.says_regex.1: regular expression '(a+)+': nested quantifiers"),
    ("      says_regex: ['(退款|投诉)+']\n", "rules.0.when.says_regex.0: regular expression '(退款|投诉)+': a repeated "
                                         "alternation"),
    ("      says_regex: ['.*a.*b.*c']\n", "has more than 2 quantifiers of variable length"),
    ("      says_regex: ['退款[']\n", "s.yaml:4: rules.0.when.says_regex.0: bad regular expression '退款['"),
    ("      says_regex: ['x*']\n", "matches empty text"),
    ("      says_regex: ['a{4294967296}']\n", "bad regular expression 'a{4294967296}': the repetition number is too"),
    ("      says_regex: ['(\\w+)(\\w+)\\2\\1c']\n", "s.yaml:4: rules.0.when.says_regex.0: regular expression "
                                                 "'(\\\\w+)(\\\\w+)\\\\2\\\\1c': backreferences"),
    ("      says_regex: ['(?=(\\w+)c)']\n", "lookarounds ((?=, (?!, (?<=, (?<!) are not allowed"),
    ("      says_regex: ['(?:\\w?){30}c']\n", "nested quantifiers"),
    ("      says_regex: ['(?:a|b1)(?:c|d1)x*']\n", "has more than 2 quantifiers of variable length"),
    ("      says_regex: [退款, 'ABC']\n", "s.yaml:4: rules.0.when.says_regex.1: regular expression 'ABC' looks for "
                                     "'A', which is never there: the text a pattern sees is normalized: lowercase"),
    ("      says_regex: ['投诉 电话']\n", "looks for ' ', which is never there"),
    ("      says_regex: ['12315！']\n", "looks for '！', which is never there"),
    ("      says: [0755, 010, 0x1F]\n      says_regex:\n        - 退款\n        - no\n",
     "s.yaml:7: rules.0.when.says_regex.1: YAML reads yes/no/on/off/true/false as true or false: quote it ('no')"),
    ("      says:\n        - cancel\n        - off\n",
     "s.yaml:6: rules.0.when.says.1: YAML reads yes/no/on/off/true/false as true or false: quote it ('no')"),
    ("      says_regex: ['" + "a" * 201 + "']\n", "a regular expression is at most 200 characters"),
    ("      tag_emotions: [furious]\n", "s.yaml:4: rules.0.when.tag_emotions: unknown emotion 'furious'"),
    ("      events: [speech]\n", "s.yaml:4: rules.0.when.events: unknown event 'speech' (nearly every window"),
    ("      events: [burp]\n", "unknown event 'burp'; known: bgm, applause, laughter, cry"),
    ("      emotions: [angry]\n      min_mentions: 2\n", "s.yaml:3: rules.0.when: min_mentions counts what says:"),
    ("      says: 投诉\n      min_mentions: 0\n", "s.yaml:5: rules.0.when.min_mentions: Input should be greater"),
    ("      min_share: 0.5\n", "a condition needs emotions: [...], says:, says_regex:, tag_emotions: or events:"),
    ("      says: 投诉\n      says_regx: [a]\n", "s.yaml:5: rules.0.when.says_regx: unknown key"),
    ("      all:\n        - emotions: [angry]\n        - {says: [投诉], tag_emotions: [mad]}\n",
     "s.yaml:6: rules.0.when.all.1.tag_emotions: unknown emotion 'mad'"),
])
def test_schema_errors_name_file_line_and_key(tmp_path, when, expected):
    write(tmp_path, "rules:\n  - name: r\n    when:\n" + when)
    with pytest.raises(RulesError) as err:
        load_rules(tmp_path)
    assert expected in str(err.value), str(err.value)


@pytest.mark.parametrize("pattern", [r"退(款|钱)", r"\d{5}", r"^a.b*c?$", r"[A-Z.!]x", r"\bx", r"a{2,3}(b|c)",
                                     r"(?i)ABC", r"(?i:A)b", r"两个", r"[^ ]+款", r"\w*\w*c"])
def test_regex_syntax_is_not_taken_for_what_is_never_there(pattern):
    assert regex_problem(pattern) is None


def test_numbers_in_says_are_the_words_as_written(tmp_path):
    write(tmp_path, "default: true\nrules:\n  - name: r\n    when:\n      says: [0755, 010, 0x1F, 12315]\n"
                    "      says_regex: [0123]\n      min_mentions: 010\n")
    c = load_rules(tmp_path).scenarios[0].rules[0].when
    assert c.says == ["0755", "010", "0x1F", "12315"] and c.says_regex == ["0123"]
    assert c.min_mentions == 8  # other keys read YAML's numbers as before
    assert fires(load_rules(tmp_path), call(win(0, "0755" * 4), win(3, "0x1f" * 4)))


def test_word_measures_in_templates_only_where_the_rule_listens(tmp_path):
    write(tmp_path, "rules:\n  - name: r\n    when: {emotions: [angry]}\n"
                    "    summary: '{{ alert.details.keywords | join }}'\n")
    with pytest.raises(RulesError, match=r"s.yaml:4: rules.0.summary: bad template: .*keywords"):
        load_rules(tmp_path)
    write(tmp_path, "rules:\n  - name: r\n    when: {any: [{emotions: [angry]}, {says: 投诉}]}\n"
                    "    summary: '{{ alert.details.keywords | join }} {{ alert.quotes | length }}'\n")
    assert load_rules(tmp_path).rule_count() == 1


def test_a_clause_survives_a_round_trip(tmp_path):
    """The threshold sweep (plugin/flow/evaluate/sweep.py) dumps and re-validates clauses."""
    c = Condition.model_validate({"says": ["投诉", 12315], "says_regex": r"\d{5}", "min_mentions": 2})
    again = Condition.model_validate({**c.model_dump(by_alias=True, exclude_unset=True), "min_confidence": 0.5})
    assert again.says == ["投诉", "12315"] and again.says_regex == [r"\d{5}"]
    assert [t.written for t in again.terms] == ["投诉", "12315", r"\d{5}"] and again.terms == c.terms


# --- the shipped scenarios ------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "scenarios"


@pytest.mark.parametrize("context,text,rule", [
    ({}, "我要打幺二三幺五投诉你们", "complaint_escalation_threat"),
    ({}, "不行我就找律师", "complaint_escalation_threat"),
    ({"queue": "finance-complaints"}, "我要向银保监会反映", "regulator_complaint_threat"),
    ({"queue": "finance-complaints"}, "我打一二三七八", "regulator_complaint_threat"),
    ({"queue": "marketing"}, "别再打了，这是骚扰电话", "do_not_call_request"),
    ({"customer_tier": "gold"}, "我要销户", "vip_complaint_or_churn_words"),
])
def test_the_shipped_keyword_rules(context, text, rule):
    rs = load_rules(SHIPPED)
    heard = call(win(0, "您好"), win(3, text), win(6, "好的"))
    _, alerts = evaluate(rs, heard, {**CALL, **context})
    assert [a.rule for a in alerts] == [rule]
    assert alerts[0].quotes == [{"start": 3.0, "end": 6.0, "role": "customer", "text": text}]
    assert "提到" in alerts[0].summary or "不再来电" in alerts[0].summary
    # the same call without transcripts: nothing
    bare = call(*[SegmentResult(s.start, s.end, s.channel, s.role, s.label, s.confidence, s.scores)
                  for s in heard.segments])
    assert evaluate(rs, bare, {**CALL, **context})[1] == []


def test_the_shipped_emotion_rules_quote_what_was_said():
    rs = load_rules(SHIPPED)
    _, alerts = evaluate(rs, call(win(0, "你们怎么回事", label="angry"), win(3, "好的")), CALL)
    assert [a.rule for a in alerts] == ["angry_customer"]
    assert alerts[0].quotes == [{"start": 0.0, "end": 3.0, "role": "customer", "text": "你们怎么回事"}]
