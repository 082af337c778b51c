"""`callmood rules check`: every problem in a rules directory, or a one-line summary."""

from __future__ import annotations

from pathlib import Path

from rules.engine import RuleSet, load_rules
from rules.yamlfile import RulesError


def check_rules(path: str | Path, known_sinks: set[str] | None) -> tuple[list[str], str]:
    """(problems, summary): problems are "file:line: where: what", one per line."""
    try:
        rs = load_rules(path, known_sinks)
    except RulesError as exc:
        return exc.problems, ""
    return [], describe(rs, known_sinks)


def describe(rs: RuleSet, known_sinks: set[str] | None = None) -> str:
    parts = [f"{rs.path}: OK", f"{len(rs.scenarios)} scenario(s)", f"{rs.rule_count()} rule(s)"]
    words = sum(any(c.needs_transcript for c in r.when.clauses()) for s in rs.scenarios for r in s.rules)
    if words:
        parts.append(f"{words} of them listen to the words (says:, tag_emotions:, events:) and fire only "
                     f"on transcribed calls (asr:)")
    if rs.routing is not None:
        parts.append(f"routing: {len(rs.routing.receivers)} receiver(s), {len(rs.routing.routes)} route(s)")
    else:
        parts.append("no routing.yaml (alerts run their rules' actions only)")
    if known_sinks is None and rs.sinks():
        parts.append(f"sinks {', '.join(sorted(rs.sinks()))} not checked: the config defines no sinks")
    return "; ".join(parts)
