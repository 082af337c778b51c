"""Rule engine: load YAML scenarios, pick the call's scenario, judge its analysis.

Pure: reads files and data, never the network or the database. Rule tests feed
known SegmentResults in, since a random-weight model gives arbitrary labels.

Files in a rules directory: one scenario per ``*.yaml`` (see rules/scenarios/general.yaml)
and optionally ``routing.yaml``, which routes alerts to supervisors (rules/routing.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from plugin.core.data import MAX_QUOTES, SEVERITIES, Action, Alert, CallAnalysis, SegmentResult, Severity, severity_rank
from rules.conditions import ClauseResult, Condition, judge
from rules.routing import Routing, parse_routing
from rules.schema import Strict, Strings, matches_any
from rules.templates import render, trial_error
from rules.yamlfile import RulesError, YamlFile, line_of, read, unknown_sink

__all__ = ["RuleSet", "RulesError", "Scenario", "Rule", "evaluate", "load_rules", "render",
           "alert_context", "SEVERITIES", "severity_rank"]

ROUTING_FILES = ("routing.yaml", "routing.yml")

# One alert, one supervisor message: people are messaged through routing.yaml only.
MESSAGING_ACTION = ("sink {sink!r} messages people (a WeCom robot or app), and only routing.yaml sends to them, "
                    "with its cooldown, grouping and quiet hours; as a rule action it would message them a "
                    "second time. Remove this action and give routing.yaml a receiver with sink: {sink}")


def rule_files(path: Path) -> list[Path]:
    """The YAML files of a rules directory (or the one file ``path`` names), in load order."""
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]


class ActionSpec(Strict):
    # Sink-specific parameters, e.g. tag. String values are templates over call and alert,
    # rendered when the rule fires; `template` is the sink's own and is rendered by it.
    model_config = ConfigDict(extra="allow")
    sink: str


DEFAULT_SUMMARY = ("{{ call.customer_id or 'unknown customer' }}: "
                   "{% if alert.details.keywords is defined and alert.details.keywords %}"
                   "{{ alert.role }} said {{ alert.details.keywords | join('/') }}{% else %}"
                   "{{ alert.emotions | join('/') }} "
                   "in {{ (alert.share * 100) | round | int }}% of {{ alert.role }} speech{% endif %}")


class Rule(Strict):
    name: str = Field(min_length=1, max_length=128)
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)  # free-form, e.g. team: quality; routes match on them
    when: Condition
    summary: str = DEFAULT_SUMMARY
    actions: list[ActionSpec] = Field(default_factory=list)


class Match(Strict):
    """Which calls a scenario claims. Every key given must match; within a key any
    pattern may (glob patterns, case-insensitive)."""

    queue: Strings = Field(default_factory=list)  # the helpdesk's queue
    source: Strings = Field(default_factory=list)  # which source sent the event (generic, ...)
    tags: Strings = Field(default_factory=list)  # any of the call's tags
    customer_tier: Strings = Field(default_factory=list)
    agent_id: Strings = Field(default_factory=list)
    metadata: dict[str, list[str]] = Field(default_factory=dict)  # any other field of the event
    # Earlier names of queue and source, still accepted.
    hints: Strings = Field(default_factory=list)
    sources: Strings = Field(default_factory=list)

    def criteria(self) -> list[tuple[str, list[str]]]:
        out = [("queue", self.queue + self.hints), ("source", self.source + self.sources),
               ("tags", self.tags), ("customer_tier", self.customer_tier), ("agent_id", self.agent_id)]
        out += [(f"metadata.{k}", v) for k, v in self.metadata.items()]
        return [(k, v) for k, v in out if v]

    def matches(self, call: dict[str, Any]) -> bool:
        crit = self.criteria()
        if not crit:
            return False  # only a default scenario claims every call
        for key, patterns in crit:
            if key.startswith("metadata."):
                value = (call.get("metadata") or {}).get(key[len("metadata."):])
            else:
                value = call.get(key)
            if not matches_any(value, patterns):
                return False
        return True


class Scenario(Strict):
    scenario: str
    description: str = ""
    default: bool = False  # used when no other scenario matches
    priority: int = 0  # higher wins when several match
    match: Match = Field(default_factory=Match)
    rules: list[Rule] = Field(default_factory=list)

    def matches(self, call: dict[str, Any]) -> bool:
        return self.match.matches(call)


@dataclass
class RuleSet:
    scenarios: list[Scenario]
    path: Path | None = None
    routing: Routing | None = None  # None: alerts only run their rules' actions
    files: list[Path] = field(default_factory=list)

    def select(self, call: dict[str, Any] | str | None, source: str | None = None) -> Scenario | None:
        """The scenario for a call context (or, for short, a queue and source)."""
        if not isinstance(call, dict):
            call = {"queue": call, "source": source}
        found = [s for s in self.scenarios if s.matches(call)]
        if found:
            return max(found, key=lambda s: s.priority)
        defaults = [s for s in self.scenarios if s.default]
        return defaults[0] if defaults else None

    def sinks(self) -> set[str]:
        names = {a.sink for s in self.scenarios for r in s.rules for a in r.actions}
        if self.routing is not None:
            names |= self.routing.sinks()
        return names

    def rule_count(self) -> int:
        return sum(len(s.rules) for s in self.scenarios)


def load_rules(path: str | Path, known_sinks: set[str] | None = None) -> RuleSet:
    """Load every *.yaml / *.yml under ``path`` (a directory or one file).

    Raises RulesError listing every problem found, each with file and line. With
    ``known_sinks``, an action or receiver naming another sink is a problem too; when it
    maps each name to whether that sink messages people (``Sink.messaging``), a rule action
    naming a messaging sink is one as well."""
    path = Path(path)
    if not path.exists():
        raise RulesError(f"{path}: rules path does not exist")
    files = rule_files(path)
    if not any(f.name not in ROUTING_FILES for f in files):
        raise RulesError(f"{path}: no scenario files (*.yaml)")
    problems: list[str] = []
    scenarios: list[Scenario] = []
    routing = None
    seen: dict[str, Path] = {}
    defaults: list[Path] = []
    for f in files:
        try:
            src = read(f)
        except RulesError as exc:
            problems += exc.problems
            continue
        if f.name in ROUTING_FILES:
            routing, found = parse_routing(src, known_sinks)
            problems += found
            continue
        scenario, found = _scenario(src, known_sinks)
        problems += found
        if scenario is None:
            continue
        if scenario.scenario in seen:
            problems.append(src.problem(("scenario",), f"scenario {scenario.scenario!r} is already "
                                                       f"defined in {seen[scenario.scenario]}"))
        seen[scenario.scenario] = f
        if scenario.default:
            defaults.append(f)
        scenarios.append(scenario)
    if len(defaults) > 1:
        problems.append(f"{path}: more than one scenario has default: true "
                        f"({', '.join(d.name for d in defaults)})")
    if problems:
        raise RulesError(problems)
    return RuleSet(scenarios, path, routing, files)


def _scenario(src: YamlFile, known_sinks: set[str] | None) -> tuple[Scenario | None, list[str]]:
    data = src.data
    if not isinstance(data, dict):
        return None, [src.problem((), "expected a mapping with 'scenario' and 'rules'")]
    data = {"scenario": src.path.stem, **data}
    scenario, problems = None, []
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        problems = src.problems(err)
    # Names, sinks and templates are checked on the file as written, so that one run of
    # `rules check` lists them beside any schema errors.
    rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    names: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        where = ("rules", i)
        name = rule.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append(src.problem(where + ("name",), f"rule name {name!r} is used twice "
                                                               f"(also rules.{names[name]})"))
            names.setdefault(name, i)
        labels = rule.get("labels") if isinstance(rule.get("labels"), dict) else {}
        labels = {str(k): str(v) for k, v in labels.items()}
        listens = _listens(rule.get("when"))
        if isinstance(rule.get("summary"), str):
            problem = trial_error(rule["summary"], labels, listens=listens)
            if problem:
                problems.append(src.problem(where + ("summary",), problem))
        actions = rule.get("actions") if isinstance(rule.get("actions"), list) else []
        for j, action in enumerate(actions):
            if not isinstance(action, dict):
                continue
            sink = action.get("sink")
            if known_sinks is not None and isinstance(sink, str) and sink not in known_sinks:
                problems.append(src.problem(where + ("actions", j, "sink"), unknown_sink(sink, known_sinks)))
            elif isinstance(sink, str) and isinstance(known_sinks, Mapping) and known_sinks.get(sink):
                problems.append(src.problem(where + ("actions", j, "sink"), MESSAGING_ACTION.format(sink=sink)))
            params = {k: v for k, v in action.items() if k != "sink"}
            for key, value in params.items():
                if isinstance(value, str):
                    problem = trial_error(value, labels, params, listens=listens)
                    if problem:
                        problems.append(src.problem(where + ("actions", j, key), problem))
    problems.sort(key=line_of)
    return (scenario if not problems else None), problems


def _listens(when: Any) -> bool:
    """Whether a condition as written has a clause that listens to the words, at any depth:
    only then do its alerts' details have mentions and keywords for templates."""
    if isinstance(when, dict):
        return "says" in when or "says_regex" in when or any(_listens(v) for v in when.values())
    return isinstance(when, list) and any(_listens(v) for v in when)


def _params(action: ActionSpec) -> dict[str, Any]:
    return {k: v for k, v in action.model_dump().items() if k != "sink"}


def evaluate(ruleset: RuleSet, analysis: CallAnalysis, call: dict[str, Any],
             scenario: Scenario | None = None) -> tuple[Scenario | None, list[Alert]]:
    """The scenario picked for the call and the alerts its rules fire."""
    scenario = scenario or ruleset.select(call)
    if scenario is None:
        return None, []
    alerts = []
    for rule in scenario.rules:
        alert = fire(rule, scenario, analysis, call)
        if alert:
            alerts.append(alert)
    return scenario, alerts


def fire(rule: Rule, scenario: Scenario, analysis: CallAnalysis, call: dict) -> Alert | None:
    """The alert ``rule`` raises on this call, or None."""
    verdict = judge(rule.when, analysis)
    if not verdict.held:
        return None
    ev = verdict.evidence
    hits = {(s.channel, s.start): s for e in ev for s in e.hits}
    segs = sorted(hits.values(), key=lambda s: (s.start, s.channel))
    primary = ev[0] if ev else None
    details: dict[str, Any] = dict(primary.measures) if primary else {}
    details["conditions"] = [{"role": e.role, **e.measures} for e in ev]
    if any(c.listens for c in rule.when.clauses()):
        # The words heard by every clause that listened, so a template always finds them.
        heard = [e for e in ev if "mentions" in e.measures]
        details["mentions"] = sum(e.measures["mentions"] for e in heard)
        details["keywords"] = list(dict.fromkeys(k for e in heard for k in e.measures["keywords"]))
    alert = Alert(
        rule=rule.name, scenario=scenario.scenario, severity=rule.severity,
        role=primary.role if primary else rule.when.clauses()[0].role,
        emotions=sorted({s.label for s in segs}),
        share=primary.measures["share"] if primary else 0.0,
        confidence=round(sum(s.confidence for s in segs) / len(segs), 4) if segs else 0.0,
        matched=[(round(s.start, 2), round(s.end, 2)) for s in segs], summary="",
        labels=dict(rule.labels), details=details, quotes=quotes(ev),
    )
    ctx = alert_context(alert)
    summary = render(rule.summary, call=call, alert=ctx)
    ctx["summary"] = summary
    actions = [Action(a.sink, {k: (render(v, call=call, alert=ctx, action=_params(a))
                                   if isinstance(v, str) and k != "template" else v)
                               for k, v in _params(a).items()})
               for a in rule.actions]
    return Alert(**{**alert.__dict__, "summary": summary, "actions": actions})


def quotes(evidence: list[ClauseResult]) -> list[dict[str, Any]]:
    """What was said in the segments that fired, in call order, at most MAX_QUOTES.

    When there are more, the windows where a listening clause heard its words go first:
    a supervisor wants the "我要投诉", not the angry windows before it."""
    heard = {(s.channel, s.start): s for e in evidence if "mentions" in e.measures for s in e.hits if s.text}
    rest = {(s.channel, s.start): s for e in evidence for s in e.hits if s.text}
    chosen = _in_order(heard.values())[:MAX_QUOTES]
    chosen += _in_order(s for k, s in rest.items() if k not in heard)[:MAX_QUOTES - len(chosen)]
    return [{"start": round(s.start, 2), "end": round(s.end, 2), "role": s.role, "text": s.text}
            for s in _in_order(chosen)]


def _in_order(segs: Any) -> list[SegmentResult]:
    return sorted(segs, key=lambda s: (s.start, s.channel))


def alert_context(alert: Alert) -> dict[str, Any]:
    return {k: v for k, v in alert.__dict__.items() if k != "actions"}
