"""What was said, as text: SenseVoice's raw output taken apart, the form keyword rules
match, numbers masked before a transcript is stored or sent, and quote times.

Pure functions over strings; none of them raises, whatever the recognizer (or an
attacker speaking to it) produced.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from plugin.core.data import EMOTIONS, EVENTS

# --- SenseVoice's raw output -----------------------------------------------------------

LANGUAGES = ("zh", "en", "yue", "ja", "ko", "nospeech")
_EMOTION_TAGS = {"happy": "happy", "sad": "sad", "angry": "angry", "neutral": "neutral", "fearful": "fearful",
                 "disgusted": "disgusted", "surprised": "surprised", "emo_unknown": "unknown"}
assert set(_EMOTION_TAGS.values()) <= set(EMOTIONS)
# "speech" is not an event worth keeping: nearly every window has it.
_EVENT_TAGS = {e: e for e in EVENTS if e != "speech"}
# Anything between <| and |> is a tag, known or not (<|Speech|>, <|withitn|>, <|Event_UNK|>...).
_TAG = re.compile(r"<\|([^<>|]{0,40})\|>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Parsed:
    text: str
    language: str | None  # LANGUAGES
    tag_emotion: str | None  # in EMOTIONS' names
    events: tuple[str, ...]  # in EVENTS' names, "speech" left out


def parse_sensevoice(raw: str) -> Parsed:
    """"<|zh|><|ANGRY|><|Speech|><|withitn|>我要退款。" -> Parsed("我要退款。", "zh", "angry", ()).

    Long input repeats the tags before each sentence; the first language and emotion win,
    events are gathered from all of them."""
    raw = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    language = emotion = None
    events: list[str] = []
    pieces = _TAG.split(raw)  # text, tag, text, tag, ..., text
    for tag in pieces[1::2]:
        name = tag.strip().lower()
        if name in LANGUAGES:
            language = language or name
        elif name in _EMOTION_TAGS:
            emotion = emotion or _EMOTION_TAGS[name]
        elif name in _EVENT_TAGS and _EVENT_TAGS[name] not in events:
            events.append(_EVENT_TAGS[name])
    text = ""
    for piece in pieces[0::2]:
        piece = piece.strip()
        if piece:
            # Tags sit between sentences: English ones need a space where the tags were,
            # Chinese ones must not get one.
            text += (" " if text and not (_wide(text[-1]) or _wide(piece[0])) else "") + piece
    return Parsed(_SPACES.sub(" ", text).strip(), language, emotion, tuple(events))


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


# --- the form keyword rules match -------------------------------------------------------

# Chinese digits as people say them: 幺 is how a 1 is read in phone numbers, 两 a 2.
CHINESE_DIGITS = {"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
                  "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_DIGIT_RUN = re.compile("[0-9" + "".join(CHINESE_DIGITS) + "]{2,}")


def normalize(text: str) -> str:
    """``text`` as keyword rules match it: "我要投诉，打 12315！" -> "我要投诉打12315".

    NFKC (full-width letters and digits become ASCII), lowercase, and every character
    dropped that is punctuation, a symbol, a space or a control character (unicode
    categories P*, S*, Z*, C*): letters of any script, their marks and digits stay. Then
    runs of two or more digits, Chinese or not, become ASCII digits: "幺二三幺五" and
    "一二三一五" -> "12315", "138一二三四五六七八" -> "13812345678", while a lone "一" or
    "两" ("一下", "两个") stays a word. The runs are found after spaces and punctuation are
    gone, so "幺 二 三" is "123" too.

    Keywords are normalized by this same function (rules/), so both sides agree on every
    choice made here: a keyword "一两天" is "12天" exactly as the transcript's "一两天" is
    (the price: a keyword "两天" does not find "一两天"; write the whole phrase)."""
    try:
        text = text if isinstance(text, str) else ("" if text is None else str(text))
        text = unicodedata.normalize("NFKC", text).lower()
        kept = "".join(c for c in text if unicodedata.category(c)[0] not in "PSZC")
        return _DIGIT_RUN.sub(lambda m: "".join(CHINESE_DIGITS.get(c, c) for c in m.group()), kept)
    except Exception:  # never seen; a rule must not stop a call's analysis
        return ""


# --- numbers masked ----------------------------------------------------------------------

NUMBER_KINDS = ("phone", "id_card", "bank_card")
# Windows of one channel at most this far apart are neighbours: words (and numbers) read
# out across their boundary are one text (keyword rules match, and masking masks, across it).
NEIGHBOUR_GAP_S = 0.5
MASK = "*"
KEEP = 4  # the last digits a masked number keeps: enough to tell two apart, not to call one
# A digit: any decimal digit (ASCII, full-width...) or a Chinese one. Between two of them one
# space, or one dash or punctuation mark with a space either side, may stand: people read
# numbers out in groups, and with ITN on SenseVoice writes the pauses as commas
# ("138，1234，5678", "010-12345678", "(138)12345678", "138 - 1234", "幺三八 幺二三四").
# Two spaces end a number.
_D = r"[\d" + "".join(CHINESE_DIGITS) + "]"
_SPACE = "[ \u00a0\u3000]"
_MARK = "[\\-\uff0d\u2010\u2011\u2012\u2013,，、.。．·/()（）:：]"
_SEP = f"(?:{_SPACE}?{_MARK}{_SPACE}?|{_SPACE})"  # one space, or one mark with a space either side
_RUN = re.compile(rf"([+\uff0b]?)({_D}(?:{_SEP}?{_D})*)({_SEP}?[xX\uff58\uff38])?")
LONGEST = 19  # a bank card's most digits: a longer run holds numbers we cannot tell apart


def mask_numbers(text: str, kinds: Iterable[str] = NUMBER_KINDS) -> str:
    """``text`` with every digit run that looks like one of ``kinds`` masked but for its
    last 4 digits: "我的手机是13812345678" -> "我的手机是*******5678".

    kinds: "phone" (a mainland mobile, 1[3-9] and 9 more digits, after an optional +86,
    86 or 0086; a landline, 0 and 9 to 11 more, or after +86 without its 0), "id_card"
    (a resident ID: 17 digits and a digit or X, or the old 15 digits), "bank_card" (13 to
    19 digits). Digits are ASCII, full-width or Chinese ("幺三八..."), with a space, or a
    dash or punctuation mark (a space either side), between groups ("138，1234，5678"); separators and a leading
    + stay as they are. Short numbers stay:
    hotlines (12315, 95588, 400-820-8820), amounts, years. A run of numbers side by side
    ("13812345678 13912345678") is masked number by number; a run longer than 19 digits
    without separators is masked whole, as it may hold any of them."""
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    if isinstance(kinds, str):  # "phone" alone, not its letters
        kinds = (kinds,)
    try:
        wanted = frozenset(k for k in kinds if k in NUMBER_KINDS) if kinds else frozenset()
    except TypeError:
        wanted = frozenset(NUMBER_KINDS)
    if not wanted:
        return text
    try:
        return _RUN.sub(lambda m: _mask_run(m, wanted), text)
    except Exception:  # never seen; fail closed: a transcript with every digit hidden
        return "".join(MASK if _digit(c) is not None else c for c in text)


def mask_across(first: str, second: str, kinds: Iterable[str] = NUMBER_KINDS) -> tuple[str, str]:
    """Two neighbouring windows' words masked as one text: a number read out across the
    boundary ("我的手机是138" | "12345678，记一下") is masked in both, keeping the last 4
    digits of the whole. Masking keeps every character's place, so the text splits back
    where it was joined."""
    joined = f"{first}{second}"
    masked = mask_numbers(joined, kinds)
    if masked == joined or len(masked) != len(joined):
        return first, second
    return masked[:len(first)], masked[len(first):]


def _mask_run(m: re.Match, wanted: frozenset[str]) -> str:
    plus, body, x = m.group(1), m.group(2), m.group(3) or ""
    run = plus + body + x
    # Groups: the digit positions (in ``run``) between separators.
    groups: list[list[int]] = [[]]
    for i, c in enumerate(body, start=len(plus)):
        if _digit(c) is None:
            groups.append([])
        else:
            groups[-1].append(i)
    hide: set[int] = set()
    i = 0
    while i < len(groups):
        # The longest stretch of groups from here that is a number of a wanted kind (no
        # number has more than 19 digits: a long run of short groups costs little).
        found: list[int] | None = None
        positions: list[int] = []
        for j in range(i, len(groups)):
            positions = positions + groups[j]
            if len(positions) > LONGEST:
                break
            digits = "".join(_digit(run[p]) for p in positions)
            if j == len(groups) - 1 and x and len(digits) == 17 and "id_card" in wanted:
                # The X is the ID's check digit: it stays, with the 3 digits before it.
                found, end = positions + [len(run) - 1], j + 1
            elif wanted & _kinds(digits, bool(plus) and i == 0):
                found, end = positions, j + 1
        if found is not None:
            hide.update(found[:-KEEP])
            i = end
            continue
        if len(groups[i]) > LONGEST:
            hide.update(groups[i][:-KEEP])
        i += 1
    return "".join(MASK if p in hide else c for p, c in enumerate(run))


def _kinds(digits: str, plus: bool) -> set[str]:
    """The kinds of number ``digits`` may be (ASCII digits, separators gone)."""
    n = len(digits)
    found = set()
    local = digits[4:] if digits.startswith("0086") else digits[2:] if digits.startswith("86") else digits
    if (_mobile(digits) or _mobile(local) or (digits[:1] == "0" and 10 <= n <= 12)
            or (plus and digits.startswith("86") and 9 <= n - 2 <= 11)):
        found.add("phone")
    if n in (15, 18):
        found.add("id_card")
    # No Luhn check: a recognizer mishears a digit now and then, and a card number read
    # out with one digit wrong is still the customer's card; masking a long number that
    # is no card costs nothing.
    if 13 <= n <= LONGEST:
        found.add("bank_card")
    return found


def _mobile(digits: str) -> bool:
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


def _digit(c: str) -> str | None:
    """The ASCII digit ``c`` stands for (any script's decimal digit, or a Chinese one)."""
    if c in CHINESE_DIGITS:
        return CHINESE_DIGITS[c]
    value = unicodedata.decimal(c, None)
    return None if value is None else str(value)


# --- quotes ------------------------------------------------------------------------------

def quote_time(seconds: float) -> str:
    """Where a quote starts in the call: "02:13", "1:02:13" past an hour."""
    try:
        s = float(seconds)
    except (TypeError, ValueError, OverflowError):
        s = 0.0
    total = int(s) if math.isfinite(s) and s > 0 else 0
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


_CJK = r"[\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]"  # CJK characters and punctuation, full-width forms
_CJK_SPACE = re.compile(f"(?<={_CJK}) +(?={_CJK})")


def parse_paraformer(raw: str) -> Parsed:
    """Paraformer-zh's text: Chinese characters joined by spaces ("我 要 退 款"), English
    words whole. The spaces between Chinese characters go (keyword rules and people read
    "我要退款"); it has no language id, emotion tag or events (Mandarin is its language)."""
    text = " ".join(str(raw or "").split())
    text = _CJK_SPACE.sub("", text)
    return Parsed(text=text, language="zh" if text else None, tag_emotion=None, events=())
