"""The pages' names for stored codes (plugin/web/terms.py) and how long ago (plugin/web/times.py):
every emotion the model gives and every severity a rule sets has a name; in Chinese the
emotions are FunASR's own names (the model's label tokens), so a page, an evaluation file
and the model say the same word; outside a request the words are the English ones."""

from __future__ import annotations

from babel.messages.pofile import read_po

from plugin.core.data import EMOTIONS, SEVERITIES
from plugin.model.modeldir import LABEL_TOKENS
from plugin.web import terms
from plugin.web.times import ago
from tests.unit.test_translations import LC


def _chinese() -> dict[str, str]:
    with open(LC / "messages.po", "rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def test_every_emotion_and_severity_has_a_name():
    assert set(terms.EMOTIONS) == set(EMOTIONS)
    assert set(SEVERITIES) | {"false_alarm"} == set(terms.SEVERITIES)


def test_the_emotions_chinese_names_are_funasrs():
    funasr = dict(reversed(token.split("/")) for token in LABEL_TOKENS if "/" in token)  # angry -> 生气
    zh = _chinese()
    assert {code: zh[str(terms.EMOTIONS[code])] for code in funasr} == funasr
    assert zh["unknown"] == "未知"  # FunASR's <unk> has no Chinese name


def test_outside_a_request_the_words_are_english():
    assert terms.name(terms.EMOTIONS, "angry") == "angry"
    assert terms.name(terms.SEVERITIES, "false_alarm") == "false alarm"
    assert terms.name(terms.STATUSES, "made-up") == "made-up" and terms.name(terms.STATUSES, None) == ""
    assert [ago(s) for s in (10, -10, 180, 7200, -7200, 3 * 86400, 100 * 86400)] == [
        "just now", "just now", "3 min ago", "2 h ago", "in 2 h", "3 d ago", "3 mo ago"]
