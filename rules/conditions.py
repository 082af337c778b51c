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

Every threshold given in a clause must hold; a clause with no threshold needs one
matching segment. Measures are computed on the role's own segments inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

from plugin.core.data import EMOTIONS, CallAnalysis, SegmentResult
from rules.schema import MaybeStrings, Strict

# Threshold keys and what they measure; also the names templates see in alert.details.
THRESHOLDS = ("min_share", "min_segments", "min_seconds", "min_consecutive",
              "min_consecutive_s", "min_rise")
MEASURES = ("segments", "share", "seconds", "longest_run", "longest_run_s", "rise",
            "first_third_share", "last_third_share", "role_segments")


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
    min_confidence: float = Field(0.7, ge=0, le=1)  # a segment counts only this sure
    window: TimeRange | None = None
    min_share: float | None = Field(None, ge=0, le=1)  # of the role's segments in the window
    min_segments: int | None = Field(None, ge=1)
    min_seconds: float | None = Field(None, gt=0)  # matching speech, summed
    min_consecutive: int | None = Field(None, ge=1)  # matching segments in a row (the role's own turns)
    min_consecutive_s: float | None = Field(None, gt=0)  # speech seconds of that run
    # Share in the last third minus share in the first third (of the window, else the call).
    min_rise: float | None = Field(None, gt=0, le=1)

    @field_validator("emotions")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        for e in v or []:
            if e not in EMOTIONS:
                raise ValueError(f"unknown emotion {e!r}; known: {', '.join(EMOTIONS)}")
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
        if not combos and not self.emotions:
            raise ValueError("a condition needs emotions: [...] (or all:/any:/none: of conditions)")
        return self

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
    measures: dict[str, float]


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
    wanted = set(c.emotions or ())

    def hit(s: SegmentResult) -> bool:
        return s.label in wanted and s.confidence >= c.min_confidence

    hits = [s for s in segs if hit(s)]
    run = best = 0
    run_s = best_s = 0.0
    for s in segs:
        if hit(s):
            run, run_s = run + 1, run_s + (s.end - s.start)
            best, best_s = max(best, run), max(best_s, run_s)
        else:
            run, run_s = 0, 0.0
    third = (hi - lo) / 3

    def share_in(a: float, b: float) -> float:
        part = [s for s in segs if a <= (s.start + s.end) / 2 < b]
        return sum(hit(s) for s in part) / len(part) if part else 0.0

    first, last = (share_in(lo, lo + third), share_in(hi - third, hi + 1e-9)) if third > 0 else (0.0, 0.0)
    m = {
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
    given = [(need, have) for need, have in checks if need is not None]
    held = bool(hits) and all(have >= need - 1e-9 for need, have in given)
    return ClauseResult(held, role, hits, m)
