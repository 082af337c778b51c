"""Conditions: what a rule asks of a call's per-role segment results.

A condition is either one *clause* (whose segments, which emotions, how much of them)
or a combination: ``all:``, ``any:`` or ``none:`` of conditions, nested as deep as needed.

    when:
      all:
        - emotions: [angry]              # the customer is angry in >= 20% of their speech
          min_share: 0.2
        - emotions: [angry, disgusted]   # ...and still upset in the call's last minute
          window: {last_s: 60}
          min_segments: 1

A clause may also listen to the words (rules/words.py), alone or beside ``emotions:``:

    when:
      all:
        - says: [投诉, 退款, 12315, 律师]   # any of them, twice in the last two minutes
          min_mentions: 2
          window: {last_s: 120}
        - emotions: [angry]
          min_share: 0.2

``says:`` keywords, ``says_regex:`` patterns, ``tag_emotions:`` (SenseVoice's own emotion
tag) and ``events:`` (laughter, cry...) need a transcript: segments without one never
match them. Every criterion given in a clause must hold for the same segment.

Every threshold given in a clause must hold; a clause with no threshold needs one
matching segment. Measures are computed on the role's own segments inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from plugin.core.data import EMOTIONS, EVENTS, CallAnalysis, SegmentResult
from plugin.core.validation import checked
from rules.schema import MaybeStrings, Strict
from rules.words import Term, keyword_problem, keyword_term, mentions, regex_problem, regex_term

# Threshold keys and what they measure; also the names templates see in alert.details.
THRESHOLDS = ("min_share", "min_segments", "min_seconds", "min_consecutive",
              "min_consecutive_s", "min_rise", "min_mentions")
MEASURES = ("segments", "share", "seconds", "longest_run", "longest_run_s", "rise",
            "first_third_share", "last_third_share", "role_segments")
# What a clause that listens (says: or says_regex:) measures besides: how many matches,
# and the distinct keywords or patterns heard, as written in the rule.
WORD_MEASURES = ("mentions", "keywords")
# Events a clause may name: SenseVoice tags nearly every window as speech, so it is not kept.
KNOWN_EVENTS = tuple(e for e in EVENTS if e != "speech")


def _words(v: Any) -> Any:
    """One keyword or pattern (``says: 投诉``) is a list of one."""
    return [v] if v is not None and not isinstance(v, list) else v


def _word(v: Any) -> Any:
    """A keyword as written. YAML reads ``says: [投诉, 12315]``'s 12315 as a number, and
    0755 as the octal 493: rules/yamlfile.py keeps the text of each, which is the words.
    It reads no, off, yes... as booleans, whose text is lost."""
    if isinstance(v, bool):
        raise ValueError("YAML reads yes/no/on/off/true/false as true or false: quote it ('no')")
    if isinstance(v, int):
        return getattr(v, "text", str(v))
    return v


def _each(problem: Any) -> Any:
    """A list (or one string) whose items are each checked by ``problem``, None allowed."""
    item = Annotated[str, BeforeValidator(_word), AfterValidator(checked(problem))]
    return Annotated[list[item] | None, BeforeValidator(_words)]  # type: ignore[valid-type]


Keywords = _each(keyword_problem)
Patterns = _each(regex_problem)


class TimeRange(Strict):
    """The part of the call a clause looks at (seconds; a segment counts if it overlaps)."""

    first_s: float | None = Field(None, gt=0)  # the call's first N seconds
    last_s: float | None = Field(None, gt=0)  # the call's last N seconds: catches a call that ends angry
    from_s: float | None = Field(None, ge=0)
    to_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> TimeRange:
        kinds = [self.first_s is not None, self.last_s is not None,
                 self.from_s is not None or self.to_s is not None]
        if sum(kinds) != 1:
            raise ValueError("give one of first_s, last_s, or from_s/to_s")
        if self.from_s is not None and self.to_s is not None and self.to_s <= self.from_s:
            raise ValueError("to_s must be after from_s")
        return self

    def bounds(self, duration: float) -> tuple[float, float]:
        if self.first_s is not None:
            return 0.0, min(self.first_s, duration)
        if self.last_s is not None:
            return max(0.0, duration - self.last_s), duration
        return self.from_s or 0.0, min(self.to_s if self.to_s is not None else duration, duration)


class Condition(Strict):
    # Combinations (a condition is one of these, or a clause).
    all_: list[Condition] | None = Field(None, alias="all", min_length=1)
    any_: list[Condition] | None = Field(None, alias="any", min_length=1)
    none_: list[Condition] | None = Field(None, alias="none", min_length=1)

    # A clause. Whose segments: "customer" falls back to the mixed track when the
    # recording does not separate the customer's channel; "agent" is for quality review.
    role: Literal["customer", "agent", "any"] = "customer"
    emotions: MaybeStrings = Field(None, min_length=1)
    min_confidence: float = Field(0.7, ge=0, le=1)  # a segment counts only this sure (of emotions:)
    # What was said (rules/words.py): keywords or phrases, any of them; regular expressions
    # matched on the normalized text. Then how many matches the clause needs.
    says: Keywords = Field(None, min_length=1, max_length=500)
    says_regex: Patterns = Field(None, min_length=1, max_length=50)
    min_mentions: int | None = Field(None, ge=1)
    # SenseVoice's own emotion tag and audio events, to corroborate (or alone).
    tag_emotions: MaybeStrings = Field(None, min_length=1)
    events: MaybeStrings = Field(None, min_length=1)
    window: TimeRange | None = None
    min_share: float | None = Field(None, ge=0, le=1)  # of the role's segments in the window
    min_segments: int | None = Field(None, ge=1)
    min_seconds: float | None = Field(None, gt=0)  # matching speech, summed
    min_consecutive: int | None = Field(None, ge=1)  # matching segments in a row (the role's own turns)
    min_consecutive_s: float | None = Field(None, gt=0)  # speech seconds of that run
    # Share in the last third minus share in the first third (of the window, else the call).
    min_rise: float | None = Field(None, gt=0, le=1)

    _terms: list[Term] = PrivateAttr(default_factory=list)

    @field_validator("emotions", "tag_emotions")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        for e in v or []:
            if e not in EMOTIONS:
                raise ValueError(f"unknown emotion {e!r}; known: {', '.join(EMOTIONS)}")
        return v

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str] | None) -> list[str] | None:
        for e in v or []:
            if e not in KNOWN_EVENTS:
                why = " (nearly every window is speech: it is not kept)" if e == "speech" else ""
                raise ValueError(f"unknown event {e!r}{why}; known: {', '.join(KNOWN_EVENTS)}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        combos = [k for k in ("all_", "any_", "none_") if getattr(self, k) is not None]
        own = self.model_fields_set - {"all_", "any_", "none_"}
        if len(combos) > 1:
            raise ValueError("use one of all/any/none per condition; nest them for more")
        if combos and own:
            raise ValueError(f"{combos[0].rstrip('_')}: cannot sit beside clause keys "
                             f"({', '.join(sorted(own))}); put those in a condition of their own")
        if not combos and not (self.emotions or self.listens or self.tag_emotions or self.events):
            raise ValueError("a condition needs emotions: [...], says:, says_regex:, tag_emotions: or events: "
                             "(or all:/any:/none: of conditions)")
        if self.min_mentions is not None and not self.listens:
            raise ValueError("min_mentions counts what says: or says_regex: hear; give one of them")
        self._terms = [keyword_term(k) for k in self.says or ()] + [regex_term(p) for p in self.says_regex or ()]
        return self

    @property
    def terms(self) -> list[Term]:
        """What the clause listens for: its keywords, then its patterns."""
        return self._terms

    @property
    def listens(self) -> bool:
        """Whether the clause listens to the words (says: or says_regex:)."""
        return bool(self.says or self.says_regex)

    @property
    def needs_transcript(self) -> bool:
        """Whether the clause can only hold on a call that was transcribed."""
        return self.listens or bool(self.tag_emotions or self.events)

    @property
    def combinator(self) -> str | None:
        for k in ("all", "any", "none"):
            if getattr(self, k + "_") is not None:
                return k
        return None

    def clauses(self) -> list[Condition]:
        """Every clause in this condition, depth first."""
        kids = self.all_ or self.any_ or self.none_
        return [c for k in kids for c in k.clauses()] if kids else [self]


Condition.model_rebuild()


@dataclass
class ClauseResult:
    """One clause's measures on a call, and the segments that matched it."""

    held: bool
    role: str
    hits: list[SegmentResult]
    measures: dict[str, Any]  # numbers; "keywords" (a list) in a clause that listens


@dataclass
class Verdict:
    held: bool
    evidence: list[ClauseResult] = field(default_factory=list)  # the clauses that held


def judge(cond: Condition, analysis: CallAnalysis) -> Verdict:
    kind = cond.combinator
    if kind is None:
        r = judge_clause(cond, analysis)
        return Verdict(r.held, [r] if r.held else [])
    parts = [judge(c, analysis) for c in (cond.all_ or cond.any_ or cond.none_)]
    if kind == "all":
        held = all(p.held for p in parts)
    elif kind == "any":
        held = any(p.held for p in parts)
    else:
        held = not any(p.held for p in parts)
        return Verdict(held, [])  # what did not happen has no segments to show
    return Verdict(held, [e for p in parts if p.held for e in p.evidence] if held else [])


def role_segments(analysis: CallAnalysis, role: str) -> tuple[str, list[SegmentResult]]:
    if role == "any":
        return "any", sorted(analysis.segments, key=lambda s: s.start)
    own = [s for s in analysis.segments if s.role == role]
    if not own and role == "customer":
        own = [s for s in analysis.segments if s.role == "mixed"]
        role = "mixed" if own else role
    return role, sorted(own, key=lambda s: s.start)


def judge_clause(c: Condition, analysis: CallAnalysis) -> ClauseResult:
    role, segs = role_segments(analysis, c.role)
    lo, hi = 0.0, analysis.duration
    if c.window:
        lo, hi = c.window.bounds(analysis.duration)
        segs = [s for s in segs if s.end > lo and s.start < hi]
    heard = mentions(c.terms, segs) if c.listens else []
    hit = [_fits(c, s) for s in segs]
    if c.listens:
        said = {i for m in heard for i in m.segments}
        hit = [h and i in said for i, h in enumerate(hit)]
    hits = [s for s, h in zip(segs, hit) if h]
    run = best = 0
    run_s = best_s = 0.0
    for s, h in zip(segs, hit):
        if h:
            run, run_s = run + 1, run_s + (s.end - s.start)
            best, best_s = max(best, run), max(best_s, run_s)
        else:
            run, run_s = 0, 0.0
    third = (hi - lo) / 3

    def share_in(a: float, b: float) -> float:
        part = [h for s, h in zip(segs, hit) if a <= (s.start + s.end) / 2 < b]
        return sum(part) / len(part) if part else 0.0

    first, last = (share_in(lo, lo + third), share_in(hi - third, hi + 1e-9)) if third > 0 else (0.0, 0.0)
    m: dict[str, Any] = {
        "role_segments": len(segs),
        "segments": len(hits),
        "share": round(len(hits) / len(segs), 4) if segs else 0.0,
        "seconds": round(sum(s.end - s.start for s in hits), 3),
        "longest_run": best,
        "longest_run_s": round(best_s, 3),
        "first_third_share": round(first, 4),
        "last_third_share": round(last, 4),
        "rise": round(last - first, 4),
    }
    checks = [
        (c.min_share, m["share"]), (c.min_segments, m["segments"]), (c.min_seconds, m["seconds"]),
        (c.min_consecutive, m["longest_run"]), (c.min_consecutive_s, m["longest_run_s"]),
        (c.min_rise, m["rise"]),
    ]
    if c.listens:
        # A match counts where the rest of the clause holds too (for one of its windows).
        counted = [x for x in heard if any(hit[i] for i in x.segments)]
        names = {x.term for x in counted}
        m["mentions"] = len(counted)
        m["keywords"] = list(dict.fromkeys(t.written for t in c.terms if t.written in names))
        checks.append((c.min_mentions, m["mentions"]))
    given = [(need, have) for need, have in checks if need is not None]
    held = bool(hits) and all(have >= need - 1e-9 for need, have in given)
    return ClauseResult(held, role, hits, m)


def _fits(c: Condition, s: SegmentResult) -> bool:
    """Whether one segment meets the clause's criteria other than the words."""
    if c.emotions and not (s.label in c.emotions and s.confidence >= c.min_confidence):
        return False
    if c.tag_emotions and not (s.text is not None and s.tag_emotion in c.tag_emotions):
        return False
    if c.events and not (s.text is not None and set(s.events) & set(c.events)):
        return False
    return True
