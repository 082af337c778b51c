"""Per scenario, how its alerts would agree with the labels at each threshold.

For t = 0.50, 0.55 ... 0.95 the scenario is judged with every clause's min_confidence set
to t (inside all/any/none too), on every labelled call it counts for: a call with a row
naming the scenario, or a row naming none. The call "should alert" when one of those
rows' emotions is among the emotions of the scenario's clauses, said of a role the clause
looks at (an empty role fits any; a clause on the customer also fits "mixed", as rules
fall back to the mixed track). Clauses under ``none:`` say what must not be heard, and
do not make a call one that should alert. The row "as written" is the scenario unchanged.

Only the rules with a clause on ``emotions:`` are judged, at every threshold and as
written: the others (keywords, SenseVoice's tags or events only) fire the same at every
threshold, and only on calls that were transcribed, which calls read from files are not.

Pure: plain data in (segment results, call contexts, rules), counts out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from plugin.core.data import CallAnalysis
from rules.conditions import Condition
from rules.engine import RuleSet, Scenario, evaluate

THRESHOLDS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))  # 0.5 ... 0.95
AS_WRITTEN = "as written"


@dataclass(frozen=True)
class Case:
    """One labelled call, as the sweep needs it."""

    key: str
    analysis: CallAnalysis
    context: dict[str, Any]
    labels: list[tuple[str | None, str, str | None]]  # (role, emotion, scenario) of each of its rows


@dataclass
class Point:
    threshold: float | str  # a threshold, or AS_WRITTEN
    fired: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    failed: int = 0  # calls the rules raised on (a summary template, say)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None  # None: nothing fired

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None  # None: no call should alert


@dataclass
class ScenarioSweep:
    scenario: str
    current: list[float]  # the distinct min_confidence of its clauses with emotions:, as written
    calls: int = 0  # labelled calls it counts
    positives: int = 0  # of them, those that should alert
    emotions: list[str] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)  # THRESHOLDS, then AS_WRITTEN

    def is_current(self, t: float | str) -> bool:
        return isinstance(t, float) and any(abs(t - c) < 1e-9 for c in self.current)


def with_threshold(scenario: Scenario, t: float) -> Scenario:
    """``scenario`` with every clause's min_confidence set to ``t`` (nested ones too)."""
    data = scenario.model_dump(by_alias=True, exclude_unset=True)

    def walk(cond: dict[str, Any]) -> None:
        kids = cond.get("all") or cond.get("any") or cond.get("none")
        if kids:
            for k in kids:
                walk(k)
        else:
            cond["min_confidence"] = t

    for rule in data.get("rules", []):
        walk(rule["when"])
    return Scenario.model_validate(data)


def clauses(cond: Condition, negated: bool = False) -> list[tuple[Condition, bool]]:
    """Every clause of ``cond``, depth first, with whether it sits under a ``none:``."""
    kids = cond.all_ or cond.any_ or cond.none_
    if not kids:
        return [(cond, negated)]
    inner = negated or cond.none_ is not None
    return [c for k in kids for c in clauses(k, inner)]


def _fits(label_role: str | None, clause_role: str) -> bool:
    if label_role is None or clause_role == "any":
        return True
    return label_role == clause_role or (clause_role == "customer" and label_role == "mixed")


def should_alert(scenario: Scenario, labels: Iterable[tuple[str | None, str]]) -> bool:
    """Whether a call with these (role, emotion) labels is one the scenario is meant to alert on."""
    wanted = [(c.role, set(c.emotions or ())) for r in scenario.rules for c, neg in clauses(r.when) if not neg]
    return any(emotion in emotions and _fits(role, clause_role)
               for role, emotion in labels for clause_role, emotions in wanted)


def current_thresholds(scenario: Scenario) -> list[float]:
    """The distinct min_confidence of the clauses that have ``emotions:``: it means nothing
    in the others (keywords, SenseVoice's tags or events only), whose default 0.7 is not a
    threshold anyone set."""
    return sorted({c.min_confidence for r in scenario.rules for c, _ in clauses(r.when) if c.emotions})


def emotion_rules(scenario: Scenario) -> Scenario:
    """``scenario`` with only its rules that have a clause on ``emotions:`` (as
    ``current_thresholds`` counts them): the sweep judges the model, not the words."""
    kept = [r for r in scenario.rules if any(c.emotions for c, _ in clauses(r.when))]
    return scenario.model_copy(update={"rules": kept})


def _fires(ruleset: RuleSet, scenario: Scenario, case: Case) -> bool:
    _, alerts = evaluate(ruleset, case.analysis, dict(case.context), scenario=scenario)
    return bool(alerts)


class Sweeper:
    """The sweep of every scenario of ``ruleset``, one labelled call at a time (``add``), so
    a call's segment results need not be kept once it is counted."""

    def __init__(self, ruleset: RuleSet, thresholds: Iterable[float] = THRESHOLDS):
        self.ruleset = ruleset
        self.results: list[ScenarioSweep] = []
        self._variants: list[list[tuple[float | str, Scenario]]] = []
        for scenario in ruleset.scenarios:
            judged = emotion_rules(scenario)
            variants = [(t, with_threshold(judged, t)) for t in thresholds] + [(AS_WRITTEN, judged)]
            self._variants.append(variants)
            self.results.append(ScenarioSweep(
                scenario.scenario, current_thresholds(scenario), points=[Point(t) for t, _ in variants],
                emotions=sorted({e for r in scenario.rules for c, neg in clauses(r.when) if not neg
                                 for e in c.emotions or ()})))

    def add(self, case: Case) -> None:
        for scenario, result, variants in zip(self.ruleset.scenarios, self.results, self._variants):
            rows = [(role, emotion) for role, emotion, scen in case.labels if scen in (None, scenario.scenario)]
            if not rows:
                continue
            truth = should_alert(scenario, rows)
            result.calls += 1
            result.positives += truth
            for point, (_, variant) in zip(result.points, variants):
                try:
                    fired = _fires(self.ruleset, variant, case)
                except Exception:  # noqa: BLE001 -- e.g. a summary template failing on this call: counted, said
                    point.failed += 1
                    continue
                point.fired += fired
                point.tp += fired and truth
                point.fp += fired and not truth
                point.fn += truth and not fired
                point.tn += not truth and not fired


def sweep(ruleset: RuleSet, cases: Iterable[Case], thresholds: Iterable[float] = THRESHOLDS) -> list[ScenarioSweep]:
    """Every scenario of ``ruleset``, swept over ``thresholds`` on the cases it counts."""
    sweeper = Sweeper(ruleset, thresholds)
    for case in cases:
        sweeper.add(case)
    return sweeper.results
