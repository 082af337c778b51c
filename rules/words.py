"""What a rule listens for in a call's transcript: ``says:`` keywords and ``says_regex:``
patterns, found in the segments' matching form (``SegmentResult.normalized``).

Both sides go through plugin.core.transcript.normalize: a keyword "12315！" is "12315",
"投诉 电话" is "投诉电话", and a transcript's "幺二三幺五" is "12315" too. Regular
expressions are not normalized: they are matched as written on text that is lowercase,
with no spaces or punctuation, and digits in ASCII.

A window is cut every few seconds, so a word may be split between two windows of one
channel ("我要投" | "诉"): each pair of neighbouring windows (the gap between them at most
JOIN_GAP_S) is searched as one text too, and a match across their boundary counts once,
for both windows. A match inside one window counts once, never again from a pair.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from re import _parser as _sre  # re's own parser (sre_parse before 3.11): a pattern's structure

from plugin.core.data import SegmentResult
from plugin.core.transcript import NEIGHBOUR_GAP_S, normalize

# Windows of one channel this close (seconds) are read as one text: windows follow each
# other, the last one of a stretch of speech may be shifted by up to 0.25 s (plugin/audio/segment.py).
JOIN_GAP_S = NEIGHBOUR_GAP_S  # the windows masking joins too (plugin/core/transcript.py)
MAX_PATTERN = 200  # characters of one keyword or regular expression
# Characters of one window a keyword is looked for in: it bounds the work whatever the
# stored text holds. A 3 s window (audio.window_s's default) holds some 10 to 30 characters
# of speech; only a window of tens of seconds of fast speech reaches it.
MAX_WINDOW_CHARS = 256
# Characters of one window a regular expression reads (its first ones; across two windows,
# the first's last ones and the second's first ones: 128 in all). Python's re has no time
# limit, so the text is kept short, and regex_problem refuses the shapes whose cost grows
# fastest: nested quantifiers, backreferences, lookarounds, and more than MAX_OPEN_REPEATS
# quantifiers of variable reach (*, +, ?, {0,10}) and alternations (a failing search costs
# about the text's length to the power of their number plus one). Measured on Python 3.11,
# one core, each accepted pattern searched in the worst text for it, "a" * 128:
#   python -c 'import re,time; t=time.perf_counter(); list(re.finditer(P, "a"*128)); print(time.perf_counter()-t)'
# \w*\w*\w{3}...\w{3}c (20 of them, 200 characters) 0.058 s, the worst found; \w*\w*\w\w...c
# 0.047 s; (?:\w|...40 alternatives)\w*\w{3}...c 0.038 s; \w{0,60}\w{0,60}\w{60}c 0.013 s;
# (?:\w+)\w+\w{5}c 0.014 s; \w*\w*c 0.002 s. Refused, on 512 characters: (\w+)(\w+)\1\2\1\2c
# 1.9 s, (?=(\w+)(\w+)\2\1c) 1.6 s; (?:\w|\w)x6 \w*\w*\w{3}x7 c 1.8 s on 128. A 3 s window holds
# 10 to 30 characters, where each of these costs under a millisecond (0.2 ms on 30).
MAX_REGEX_WINDOW_CHARS = 64
MAX_OPEN_REPEATS = 2

_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT}


@dataclass(frozen=True)
class Term:
    """One thing a clause listens for: as written in the rule, and how to find it."""

    written: str
    kind: str  # "keyword" or "regex"
    # (start, end) of each match in a text, non-overlapping
    find: Callable[[str], Iterator[tuple[int, int]]] = field(compare=False, repr=False)
    reach: int = MAX_WINDOW_CHARS  # characters of one window it reads


@dataclass(frozen=True)
class Mention:
    """One match in the transcript: which term, and the windows it lies in (indices into
    the segments searched: one, or two neighbours when it spans their boundary)."""

    term: str
    segments: tuple[int, ...]


def keyword_problem(keyword: str) -> str | None:
    if len(keyword) > MAX_PATTERN:
        return f"a keyword is at most {MAX_PATTERN} characters"
    if not normalize(keyword):
        return (f"keyword {keyword!r} has nothing left to match once normalized "
                f"(spaces, punctuation and symbols are dropped)")
    return None


def regex_problem(pattern: str) -> str | None:
    """What is wrong with a ``says_regex:`` pattern, or None.

    Rules files may be hostile, and Python's re has no time limit: patterns whose search
    can take exponential time (a quantifier inside another, ``(a+)+``; a repeated
    alternation, ``(a|ab)+``) are refused, so are backreferences and lookarounds, and
    patterns with more than MAX_OPEN_REPEATS quantifiers of variable length. What is left
    costs at most a small power of the text's length, and that text is short
    (MAX_REGEX_WINDOW_CHARS a window). A pattern that can never match the normalized text
    (an uppercase letter, a space, punctuation) is refused too: it would fail silently."""
    if len(pattern) > MAX_PATTERN:
        return f"a regular expression is at most {MAX_PATTERN} characters"
    try:
        compiled = re.compile(pattern)
        parsed = _sre.parse(pattern)
        problem = _shape_problem(parsed, inside=False)
        repeats = _open_repeats(parsed)
        unseen = _unseen_literal(parsed, bool(parsed.state.flags & re.IGNORECASE))
    except (re.error, OverflowError, ValueError) as exc:  # OverflowError: a{4294967296}
        return f"bad regular expression {pattern!r}: {exc}"
    except RecursionError:
        return f"regular expression {pattern!r} is nested too deep"
    if problem:
        return f"regular expression {pattern!r}: {problem}"
    if repeats > MAX_OPEN_REPEATS:
        return (f"regular expression {pattern!r} has more than {MAX_OPEN_REPEATS} quantifiers of variable "
                f"length (*, +, ?, {{0,10}}) and alternations (a|b), each making a failing search slower; "
                f"split it into two patterns, or list keywords in says:")
    if unseen:
        return (f"regular expression {pattern!r} looks for {unseen!r}, which is never there: the text a pattern "
                f"sees is normalized: lowercase, no spaces or punctuation, digits in ASCII (幺二三 is 123)")
    if compiled.fullmatch(""):
        return f"regular expression {pattern!r} matches empty text, so it would match every window"
    return None


def _subpatterns(av: object) -> Iterator[object]:
    """The parsed sub-patterns inside one node's arguments, at any depth of tuples/lists."""
    if isinstance(av, _sre.SubPattern):
        yield av
    elif isinstance(av, (tuple, list)):
        for x in av:
            yield from _subpatterns(x)


def _shape_problem(sub: object, inside: bool) -> str | None:
    for op, av in sub:  # type: ignore[attr-defined]
        if op in (_sre.GROUPREF, _sre.GROUPREF_EXISTS):
            return ("backreferences (\\1, (?P=name), (?(1)...)) are not allowed: their search can take "
                    "seconds; write the words out")
        if op in (_sre.ASSERT, _sre.ASSERT_NOT):
            return ("lookarounds ((?=, (?!, (?<=, (?<!) are not allowed: their search can take seconds; "
                    "match the words themselves")
        repeats = op in _REPEATS and av[1] > 1
        # Inside a repeat, any quantifier of variable reach nests: (a?){30} is as slow as (a+)+.
        if inside and op in _REPEATS and (repeats or av[0] != av[1]):
            return ("nested quantifiers, such as (a+)+, (a?){9} or (ab*){2,}, can take exponential time; "
                    "write it without the nesting")
        if op == _sre.BRANCH and inside:
            return ("a repeated alternation, such as (a|ab)+, can take exponential time; use a character "
                    "class [ab]+ or list the words in says:")
        for child in _subpatterns(av):
            problem = _shape_problem(child, inside or repeats)
            if problem:
                return problem
    return None


def _open_repeats(sub: object) -> int:
    """Quantifiers of variable reach and alternations: a failing search tries each of
    their choices with each of the others'."""
    n = 0
    for op, av in sub:  # type: ignore[attr-defined]
        if (op in _REPEATS and av[0] != av[1]) or op == _sre.BRANCH:
            n += 1
        n += sum(_open_repeats(child) for child in _subpatterns(av))
    return n


def _unseen_literal(sub: object, ignorecase: bool) -> str | None:
    """The first run of literal characters (outside character classes) that the normalized
    text never holds: "A", " ", "！", "一二" (it is "12" there); None if there is none."""
    run = ""
    for op, av in list(sub) + [(None, None)]:  # type: ignore[call-overload]
        if op == _sre.LITERAL:
            run += chr(av)
            continue
        if run and _changed(run, ignorecase):
            return next((c for c in run if _changed(c, ignorecase)), run)
        run = ""
        if op == _sre.SUBPATTERN:  # (?i:...) and (?-i:...) change the case rule inside
            _, add, drop, child = av
            inner = (ignorecase or bool(add & re.IGNORECASE)) and not drop & re.IGNORECASE
            found = _unseen_literal(child, inner)
        else:
            found = next(filter(None, (_unseen_literal(c, ignorecase) for c in _subpatterns(av))), None)
        if found:
            return found
    return None


def _changed(text: str, ignorecase: bool) -> bool:
    """Whether normalizing changes ``text`` (lowercased first where case is ignored)."""
    text = text.lower() if ignorecase else text
    return normalize(text) != text


def keyword_term(keyword: str) -> Term:
    needle = normalize(keyword)

    def find(text: str) -> Iterator[tuple[int, int]]:
        at = text.find(needle)
        while at >= 0:
            yield at, at + len(needle)
            at = text.find(needle, at + len(needle))
    return Term(keyword, "keyword", find, MAX_WINDOW_CHARS)


def regex_term(pattern: str) -> Term:
    compiled = re.compile(pattern)

    def find(text: str) -> Iterator[tuple[int, int]]:
        for m in compiled.finditer(text):
            if m.end() > m.start():  # an empty match says nothing was heard
                yield m.span()
    return Term(pattern, "regex", find, MAX_REGEX_WINDOW_CHARS)


def matching_text(s: SegmentResult) -> str | None:
    """A window's text in matching form; None without a transcript."""
    if s.text is None:
        return None
    text = s.normalized if s.normalized is not None else normalize(s.text)
    return text[:MAX_WINDOW_CHARS]


def mentions(terms: Sequence[Term], segs: Sequence[SegmentResult]) -> list[Mention]:
    """Every match of ``terms`` in ``segs``' transcripts, in no particular order.

    Matches do not overlap: where two terms match the same characters (says: [投诉, 投诉电话]),
    the one that starts first, then the longer one, counts. Windows without a transcript
    are skipped, and so are pairs with one."""
    texts = [matching_text(s) for s in segs]
    channels: dict[int, list[int]] = {}
    for i in sorted((i for i, t in enumerate(texts) if t is not None), key=lambda i: segs[i].start):
        channels.setdefault(segs[i].channel, []).append(i)
    found: list[Mention] = []
    for order in channels.values():
        taken: dict[int, list[tuple[int, int]]] = {i: [] for i in order}
        for i in order:
            for term, a, b in _spans(terms, texts[i]):
                if _free(taken[i], a, b):
                    taken[i].append((a, b))
                    found.append(Mention(term, (i,)))
        for i, j in zip(order, order[1:]):
            if segs[j].start - segs[i].end > JOIN_GAP_S:
                continue
            edge = len(texts[i])
            for term, a, b in _spans_across(terms, texts[i], texts[j]):
                if _free(taken[i], a, edge) and _free(taken[j], 0, b - edge):
                    taken[i].append((a, edge))
                    taken[j].append((0, b - edge))
                    found.append(Mention(term, (i, j)))
    return found


def _spans(terms: Sequence[Term], text: str) -> list[tuple[str, int, int]]:
    """Every term's matches in ``text`` (the part it reaches), earliest first, the longer
    first at one start."""
    spans = [(t.written, a, b) for t in terms for a, b in t.find(text[:t.reach])]
    return sorted(spans, key=lambda x: (x[1], x[1] - x[2]))


def _spans_across(terms: Sequence[Term], left: str, right: str) -> list[tuple[str, int, int]]:
    """The matches that span the boundary of two neighbouring windows, as ``_spans`` orders
    them, where (start, end) are offsets in ``left + right``. A term reads the end of
    ``left`` and the start of ``right``, as much of each as it reaches in one window."""
    spans = []
    for t in terms:
        near, far = left[-t.reach:], right[:t.reach]
        shift = len(left) - len(near)
        spans += [(t.written, a + shift, b + shift) for a, b in t.find(near + far) if a < len(near) < b]
    return sorted(spans, key=lambda x: (x[1], x[1] - x[2]))


def _free(taken: list[tuple[int, int]], a: int, b: int) -> bool:
    return all(b <= x or a >= y for x, y in taken)
