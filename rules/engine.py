"""Rule engine: load YAML scenarios, pick the call's scenario, judge its analysis.

Pure: reads files and data, never the network or the database. Rule tests feed
known SegmentResults in, since a random-weight model gives arbitrary labels.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from plugin.data import EMOTIONS, Action, Alert, CallAnalysis, SegmentResult

SEVERITIES = ("info", "warning", "critical")
_templates = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class RulesError(Exception):
    """A scenario file is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(_Strict):
    # Whose segments to judge. "customer" falls back to the mixed track when the
    # recording does not separate the customer's channel.
    role: Literal["customer", "agent", "any"] = "customer"
    emotions: list[str] = Field(min_length=1)
    min_confidence: float = Field(0.7, ge=0, le=1)
    min_share: float = Field(0.0, ge=0, le=1)
    min_segments: int = Field(1, ge=1)

    @field_validator("emotions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if e not in EMOTIONS]
        if bad:
            raise ValueError(f"unknown emotion {bad[0]!r}; known: {', '.join(EMOTIONS)}")
        return v


class ActionSpec(_Strict):
    model_config = ConfigDict(extra="allow")  # sink-specific parameters, e.g. tag, template
    sink: str


class Rule(_Strict):
    name: str
    severity: Literal["info", "warning", "critical"] = "warning"
    when: Condition
    summary: str = ("{{ call.customer_id or 'unknown customer' }}: {{ alert.emotions | join('/') }} "
                    "in {{ (alert.share * 100) | round | int }}% of {{ alert.role }} speech")
    actions: list[ActionSpec] = Field(default_factory=list)

    @field_validator("summary")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            _templates.from_string(v)
        except TemplateError as exc:
            raise ValueError(f"bad template: {exc}") from None
        return v


class Match(_Strict):
    # Glob patterns (case-insensitive) over the helpdesk's queue/scenario hint.
    hints: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


class Scenario(_Strict):
    scenario: str
    description: str = ""
    default: bool = False  # used when no other scenario matches
    priority: int = 0  # higher wins when several match
    match: Match = Field(default_factory=Match)
    rules: list[Rule] = Field(default_factory=list)

    def matches(self, hint: str | None, source: str | None) -> bool:
        if not self.match.hints and not self.match.sources:
            return False
        if self.match.sources and source not in self.match.sources:
            return False
        if self.match.hints:
            h = (hint or "").lower()
            return any(fnmatch.fnmatch(h, p.lower()) for p in self.match.hints)
        return True


@dataclass
class RuleSet:
    scenarios: list[Scenario]
    path: Path | None = None

    def select(self, hint: str | None, source: str | None = None) -> Scenario | None:
        found = [s for s in self.scenarios if s.matches(hint, source)]
        if found:
            return max(found, key=lambda s: s.priority)
        defaults = [s for s in self.scenarios if s.default]
        return defaults[0] if defaults else None

    def sinks(self) -> set[str]:
        return {a.sink for s in self.scenarios for r in s.rules for a in r.actions}


def load_rules(path: str | Path) -> RuleSet:
    """Load every *.yaml / *.yml under ``path`` (a directory or one file)."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    elif path.is_file():
        files = [path]
    else:
        raise RulesError(f"{path}: rules path does not exist")
    if not files:
        raise RulesError(f"{path}: no scenario files (*.yaml)")
    scenarios: list[Scenario] = []
    seen: dict[str, Path] = {}
    for f in files:
        s = _load_file(f)
        if s.scenario in seen:
            raise RulesError(f"{f}: scenario {s.scenario!r} is already defined in {seen[s.scenario]}")
        names = [r.name for r in s.rules]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise RulesError(f"{f}: rule name {dup!r} is used twice")
        seen[s.scenario] = f
        scenarios.append(s)
    if sum(s.default for s in scenarios) > 1:
        raise RulesError(f"{path}: more than one scenario has default: true")
    return RuleSet(scenarios, path)


def _load_file(f: Path) -> Scenario:
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RulesError(f"{f}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise RulesError(f"{f}: cannot read: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{f}: expected a mapping with 'scenario' and 'rules'")
    data.setdefault("scenario", f.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        raise RulesError(f"{f}: {loc}: {msg}") from None


def _role_segments(analysis: CallAnalysis, role: str) -> list[SegmentResult]:
    if role == "any":
        return list(analysis.segments)
    own = [s for s in analysis.segments if s.role == role]
    if own or role != "customer":
        return own
    return [s for s in analysis.segments if s.role == "mixed"]


def evaluate(ruleset: RuleSet, analysis: CallAnalysis, call: dict[str, Any],
             scenario: Scenario | None = None) -> tuple[Scenario | None, list[Alert]]:
    """The scenario picked for the call and the alerts its rules fire."""
    scenario = scenario or ruleset.select(call.get("scenario_hint"), call.get("source"))
    if scenario is None:
        return None, []
    alerts = []
    for rule in scenario.rules:
        alert = _judge(rule, scenario, analysis, call)
        if alert:
            alerts.append(alert)
    return scenario, alerts


def _judge(rule: Rule, scenario: Scenario, analysis: CallAnalysis, call: dict) -> Alert | None:
    c = rule.when
    segs = _role_segments(analysis, c.role)
    if not segs:
        return None
    hits = [s for s in segs if s.label in c.emotions and s.confidence >= c.min_confidence]
    share = len(hits) / len(segs)
    if len(hits) < c.min_segments or share < c.min_share:
        return None
    role = segs[0].role if c.role == "customer" else c.role
    alert = Alert(
        rule=rule.name, scenario=scenario.scenario, severity=rule.severity, role=role,
        emotions=sorted({s.label for s in hits}), share=round(share, 4),
        confidence=round(sum(s.confidence for s in hits) / len(hits), 4),
        matched=[(round(s.start, 2), round(s.end, 2)) for s in hits], summary="",
        actions=[Action(a.sink, {k: v for k, v in a.model_dump().items() if k != "sink"})
                 for a in rule.actions],
    )
    summary = render(rule.summary, call=call, alert=alert_context(alert))
    return Alert(**{**alert.__dict__, "summary": summary})


def alert_context(alert: Alert) -> dict[str, Any]:
    return {k: v for k, v in alert.__dict__.items() if k != "actions"}


def render(template: str, **context: Any) -> str:
    return _templates.from_string(template).render(**context)
