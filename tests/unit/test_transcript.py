"""plugin/core/transcript.py: SenseVoice's raw output taken apart, the form keyword rules
match, numbers masked before a transcript is stored, quote times; none of them raises."""

from __future__ import annotations

import random

import pytest

from plugin.core.data import EMOTIONS, EVENTS
from plugin.core.transcript import Parsed, mask_numbers, normalize, parse_sensevoice, quote_time

# --- parse_sensevoice ---------------------------------------------------------------------


@pytest.mark.parametrize("raw,expected", [
    ("<|zh|><|ANGRY|><|Speech|><|withitn|>我要退款，不然我打12315。",
     Parsed("我要退款，不然我打12315。", "zh", "angry", ())),
    ("<|en|><|HAPPY|><|Speech|><|woitn|>thank you so much",
     Parsed("thank you so much", "en", "happy", ())),
    ("<|yue|><|SAD|><|Cry|><|withitn|>唔该", Parsed("唔该", "yue", "sad", ("cry",))),
    ("<|ja|><|FEARFUL|><|Speech|><|withitn|>すみません", Parsed("すみません", "ja", "fearful", ())),
    ("<|ko|><|DISGUSTED|><|Speech|><|withitn|>네", Parsed("네", "ko", "disgusted", ())),
    ("<|zh|><|SURPRISED|><|Speech|><|withitn|>啊？", Parsed("啊？", "zh", "surprised", ())),
    ("<|nospeech|><|EMO_UNKNOWN|><|Event_UNK|><|woitn|>", Parsed("", "nospeech", "unknown", ())),
    ("<|zh|><|NEUTRAL|><|BGM|><|Speech|><|withitn|>您好", Parsed("您好", "zh", "neutral", ("bgm",))),
    # every event, in the order heard, once each
    ("<|zh|><|NEUTRAL|><|Applause|><|Laughter|><|Cry|><|Sneeze|><|Breath|><|Cough|><|Laughter|><|withitn|>嗯",
     Parsed("嗯", "zh", "neutral", ("applause", "laughter", "cry", "sneeze", "breath", "cough"))),
    # other tags (and ones SenseVoice may add one day) are dropped from the text
    ("<|zh|><|ANGRY|><|Speech_Noise|><|GBG|><|Sing|><|FutureTag|><|withitn|>好", Parsed("好", "zh", "angry", ())),
    # long input: the tags again before each sentence; the first language and emotion win
    ("<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello. <|en|><|ANGRY|><|Laughter|><|withitn|>How are you?",
     Parsed("Hello. How are you?", "en", "neutral", ("laughter",))),
    ("<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello.<|en|><|NEUTRAL|><|Speech|><|withitn|>Bye.",
     Parsed("Hello. Bye.", "en", "neutral", ())),  # a space where the tags stood between English
    ("<|zh|><|ANGRY|><|Speech|><|withitn|>我要退款。<|zh|><|ANGRY|><|Cough|><|withitn|>马上！",
     Parsed("我要退款。马上！", "zh", "angry", ("cough",))),  # none between Chinese
    ("<|zh|><|ANGRY|><|Speech|><|withitn|>  我要   退款 \n\t 现在  ", Parsed("我要 退款 现在", "zh", "angry", ())),
    # tags missing altogether, or some of them
    ("just words", Parsed("just words", None, None, ())),
    ("<|Speech|>words", Parsed("words", None, None, ())),
    ("<|ANGRY|>先情绪后语言<|zh|>", Parsed("先情绪后语言", "zh", "angry", ())),
    ("", Parsed("", None, None, ())),
    # not tags: kept as text
    ("a <| b |> c", Parsed("a c", None, None, ())),  # (this one is a tag: "<| b |>")
    ("1 < 2 | 3 > 0", Parsed("1 < 2 | 3 > 0", None, None, ())),
    ("<|zh" + "|" + ">x<|unclosed", Parsed("x<|unclosed", "zh", None, ())),
])
def test_sensevoice_output_is_taken_apart(raw, expected):
    assert parse_sensevoice(raw) == expected


def test_the_names_are_callmoods():
    every = "".join(f"<|{t}|>" for t in ("HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED",
                                          "EMO_UNKNOWN"))
    assert parse_sensevoice(every).tag_emotion == "happy"
    for tag in ("HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"):
        assert parse_sensevoice(f"<|{tag}|>").tag_emotion in EMOTIONS
    events = parse_sensevoice("<|BGM|><|Applause|><|Laughter|><|Cry|><|Sneeze|><|Breath|><|Cough|>").events
    assert set(events) == set(EVENTS) - {"speech"}
    assert parse_sensevoice("<|ZH|>").language == "zh"  # lowercase whatever the case


def test_parse_is_frozen():
    with pytest.raises(AttributeError):
        parse_sensevoice("x").text = "y"  # type: ignore[misc]


@pytest.mark.parametrize("raw", [None, 42, b"<|zh|>bytes"])
def test_parse_takes_anything(raw):
    assert isinstance(parse_sensevoice(raw), Parsed)


# --- normalize ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("我要投诉，打 12315！", "我要投诉打12315"),
    ("幺二三幺五", "12315"),
    ("一二三一五", "12315"),
    ("幺 二 三 幺 五", "12315"),  # spaces go first: a run read slowly is still a run
    ("打一二三幺五投诉", "打12315投诉"),
    ("一下", "一下"),  # a lone Chinese digit is a word
    ("两个", "两个"),
    ("等一下两个人", "等一下两个人"),
    ("两三个", "23个"),
    ("零〇", "00"),
    ("一百", "一百"),  # 百 and 十 are no digits: amounts in words stay words
    ("十一", "十一"),
    ("138一二三四五六七八", "13812345678"),  # mixed runs count as one
    ("一2", "12"),
    # full-width becomes half-width, then lowercase
    ("ＡＢＣ　１２３！", "abc123"),
    ("REFUND Now", "refundnow"),
    ("Ｉ want a ｒｅｆｕｎｄ.", "iwantarefund"),
    # punctuation, symbols, spaces and control characters of every kind go
    ("“退款”——马上！！？。、；：《》【】", "退款马上"),
    ("¥3000 $5 €6 +-=<>~^`|", "300056"),
    ("a\u200bb\u00a0c\u3000d\te\nf\x00g\u202eh", "abcdefgh"),
    ("😡 angry 👍", "angry"),
    # letters of every script and their marks stay
    ("café CAFÉ", "cafécafé"),
    ("すみません、네!", "すみません네"),
    ("", ""),
    ("，。！", ""),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_keywords_and_transcripts_agree():
    """Keywords go through the same function: what is written either way meets."""
    for keyword, said in [("12315", "幺二三幺五"), ("幺二三幺五", "打12315"), ("退款", "退　款！"),
                          ("REFUND", "refund"), ("１２３１５", "一二三一五"), ("一两天", "就一两天吧")]:
        assert normalize(keyword) in normalize(said), (keyword, said)


def test_normalize_is_idempotent():
    for text in ("幺二三幺五", "我要投诉，打 12315！", "ＡＢＣ　１２３", "两个一下", "138一二三四五六七八"):
        assert normalize(normalize(text)) == normalize(text)


@pytest.mark.parametrize("text", [None, 7])
def test_normalize_takes_anything(text):
    assert isinstance(normalize(text), str)


# --- mask_numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    # mobiles
    ("我的手机是13812345678", "我的手机是*******5678"),
    ("13812345678", "*******5678"),
    ("19912345678，记一下", "*******5678，记一下"),
    ("+8613812345678", "+*********5678"),
    ("8613812345678", "*********5678"),
    ("+86 138 1234 5678", "+** *** **** 5678"),
    ("138 1234 5678", "*** **** 5678"),  # as people say it
    ("138-1234-5678", "***-****-5678"),
    ("１３８１２３４５６７８", "*******５６７８"),  # full-width digits, kept as written
    ("幺三八幺二三四五六七八", "*******五六七八"),  # Chinese digits
    ("一三八一二三四五六七八", "*******五六七八"),
    ("幺三八 幺二三四 五六七八", "*** **** 五六七八"),
    ("138一二三四五六七八", "*******五六七八"),  # mixed
    ("电话13812345678和13987654321", "电话*******5678和*******4321"),
    ("13812345678 13987654321", "*******5678 *******4321"),  # side by side: number by number
    # landlines
    ("010-12345678", "***-****5678"),
    ("01012345678", "*******5678"),
    ("0755 1234 5678", "**** **** 5678"),
    ("057112345678", "********5678"),
    ("+86 10 1234 5678", "+** ** **** 5678"),
    # resident ID cards
    ("身份证号11010519491231002X", "身份证号**************002X"),
    ("11010519491231002x。", "**************002x。"),
    ("110105194912310021", "**************0021"),
    ("１１０１０５１９４９１２３１００２Ｘ", "**************００２Ｘ"),
    ("110105 19491231 002X", "****** ******** 002X"),
    ("110105491231002", "***********1002"),  # the old 15 digits
    # bank cards (no Luhn check)
    ("卡号6222021234567890123", "卡号***************0123"),
    ("6222 0212 3456 7890 123", "**** **** **** ***0 123"),  # the last 4 digits, wherever the spaces
    ("4111111111111111", "************1111"),
    ("1234567890123", "*********0123"),
    # a run longer than any number is masked whole
    ("1" * 25, "*" * 21 + "1111"),
    # left alone: hotlines, short numbers, amounts, years, times, dates
    ("打12315投诉", "打12315投诉"),
    ("110", "110"),
    ("95588", "95588"),
    ("10086", "10086"),
    ("400-820-8820", "400-820-8820"),
    ("4008208820", "4008208820"),
    ("800 820 8820", "800 820 8820"),
    ("退3000元", "退3000元"),
    ("2026年11月26日", "2026年11月26日"),
    ("2026-11-26 14:30", "2026-11-26 14:30"),
    ("订单12345678", "订单12345678"),
    ("1381234567", "1381234567"),  # 10 digits: no mobile
    ("12812345678", "12812345678"),  # 11 digits, but no mobile prefix
    ("等一下两个人", "等一下两个人"),
    ("一二三一五", "一二三一五"),
    ("138123456789", "138123456789"),  # 12 digits, no 0: no kind
    ("138 1234 5678  139", "*** **** 5678  139"),  # two spaces end a run
    # no digits at all
    ("我要退款，马上！", "我要退款，马上！"),
    ("", ""),
    ("X marks the spot", "X marks the spot"),
])
def test_mask_numbers(text, expected):
    assert mask_numbers(text) == expected


@pytest.mark.parametrize("kinds,text,expected", [
    (["phone"], "手机13812345678 身份证11010519491231002X 卡6222021234567890123",
     "手机*******5678 身份证11010519491231002X 卡6222021234567890123"),
    (["id_card"], "手机13812345678 身份证11010519491231002X 卡6222021234567890123",
     "手机13812345678 身份证**************002X 卡6222021234567890123"),
    (["bank_card"], "手机13812345678 身份证11010519491231002X 卡6222021234567890123",
     "手机13812345678 身份证*************1002X 卡***************0123"),  # 17 digits: a card's length
    (["bank_card"], "110105194912310021", "**************0021"),  # an ID's 18 digits: a card's too
    (["id_card"], "6222021234567890123", "6222021234567890123"),  # 19 digits: no ID
    (["phone"], "010-12345678 和 6222021234567890123", "***-****5678 和 6222021234567890123"),
    (["phone", "id_card"], "13812345678 11010519491231002X", "*******5678 **************002X"),
    ([], "13812345678 11010519491231002X", "13812345678 11010519491231002X"),
    ((), "13812345678", "13812345678"),
    (None, "13812345678", "13812345678"),
    ("phone", "13812345678", "*******5678"),  # a name, not its letters
    (["email", "phone"], "13812345678", "*******5678"),  # unknown names are ignored
    (["email"], "13812345678", "13812345678"),
])
def test_only_the_kinds_asked_for_are_masked(kinds, text, expected):
    assert mask_numbers(text, kinds) == expected


def test_a_date_glued_to_a_number_may_be_masked_too_but_never_the_number_kept():
    out = mask_numbers("2026-11-26 13812345678")
    assert out.endswith("*******5678") and "1381234" not in out


def test_masking_keeps_everything_but_the_digits():
    text = "客户说：我的号码是 138-1234-5678，身份证 11010519491231002X，卡号 6222 0212 3456 7890 123。"
    out = mask_numbers(text)
    assert len(out) == len(text)
    assert [c for c, o in zip(text, out) if c != o and not c.isdigit()] == []
    assert "138" not in out and "19491231" not in out and "6222" not in out


def test_no_digits_kept_but_the_last_four():
    rng = random.Random(17)
    for _ in range(300):
        digits = "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
        out = mask_numbers(f"号码{digits}。")
        assert out == f"号码{'*' * 7}{digits[-4:]}。"


# --- quote_time ---------------------------------------------------------------------------


@pytest.mark.parametrize("seconds,expected", [
    (0, "00:00"), (0.9, "00:00"), (9.5, "00:09"), (59.99, "00:59"), (60, "01:00"), (133.2, "02:13"),
    (599, "09:59"), (3599.9, "59:59"), (3600, "1:00:00"), (3733, "1:02:13"), (36000 + 61, "10:01:01"),
    (-5, "00:00"), (float("nan"), "00:00"), (float("inf"), "00:00"), (None, "00:00"), ("oops", "00:00"),
])
def test_quote_time(seconds, expected):
    assert quote_time(seconds) == expected


# --- none of them raises --------------------------------------------------------------------

ALPHABET = ("0123456789０１２３４５６７８９零〇一二三四五六七八九幺两十百xXＸ+＋- \u3000\u00a0\t\n-－–"
            "<|>zhenANGRYSpeechwithitn我要退款，。！?\x00\u200b\u202e\ud800\U0001f621éß İ")


def random_texts(n: int):
    rng = random.Random(1717)
    pieces = ["<|zh|>", "<|ANGRY|>", "<|Speech|>", "<|withitn|>", "<|Laughter|>", "<|", "|>", "13812345678",
              "11010519491231002", "+86 ", "幺三八"]
    for _ in range(n):
        parts = [rng.choice(ALPHABET) if rng.random() < 0.8 else rng.choice(pieces)
                 for _ in range(rng.randint(0, 80))]
        yield "".join(parts)
    for _ in range(n // 4):  # any code point at all
        yield "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 40)))


def test_nothing_raises_on_random_input():
    """(hypothesis is not installed here: a seeded loop of random strings instead)"""
    for text in random_texts(3000):
        parsed = parse_sensevoice(text)
        assert isinstance(parsed.text, str) and parsed.language in (None, "zh", "en", "yue", "ja", "ko", "nospeech")
        assert parsed.tag_emotion in (None, *EMOTIONS) and set(parsed.events) <= set(EVENTS)
        assert isinstance(normalize(text), str)
        masked = mask_numbers(text)
        assert len(masked) == len(text)  # only digits are replaced, one for one
        assert isinstance(quote_time(len(text) * 37.3), str)


def test_long_hostile_input_is_quick():
    import time

    for text in ("1 " * 50_000, "1" * 100_000, "一" * 100_000, "1-" * 50_000 + "X", "<|" * 50_000, "<|a|>" * 20_000):
        started = time.monotonic()
        parse_sensevoice(text), normalize(text), mask_numbers(text)
        assert time.monotonic() - started < 5, text[:10]


@pytest.mark.parametrize("raw,text", [
    ("我 要 退 款", "我要退款"), ("我 要 退 款 refund please", "我要退款 refund please"),
    ("打 一 二 三 一 五", "打一二三一五"), ("  ", ""), ("", ""), ("我，要 。", "我，要。"),
])
def test_paraformer_text_loses_the_spaces_between_chinese_characters(raw, text):
    from plugin.core.transcript import parse_paraformer

    parsed = parse_paraformer(raw)
    assert parsed.text == text and parsed.tag_emotion is None and parsed.events == ()
    assert parsed.language == ("zh" if text else None)
