"""What /admin/rules shows: the rules in force, read from the rules holder (never by
parsing the YAML again), their files as they are on disk now, and the refused edit.

Plain dicts and lists for the template (admin_rules.html); the wording is the template's.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from plugin.core import scrub
from plugin.flow.rules_watch import RulesHolder
from rules.conditions import THRESHOLDS, Condition
from rules.engine import ROUTING_FILES, Rule, Scenario, rule_files

# A problem as rules/yamlfile.py writes it: "file:LINE: where: what" (or "file: what").
_PROBLEM = re.compile(r"(?P<file>[^\n]*?):(?:(?P<line>\d+):)? (?P<what>.*)", re.DOTALL)


def overview(holder: RulesHolder) -> dict[str, Any]:
    rules = holder.current  # one read: a reload replaces the whole RuleSet, never part of it
    loaded_at = holder.loaded_at
    return {
        "path": str(holder.path),
        "version": holder.version,
        "loaded_at": loaded_at,
        "files": files(holder.path, rules.files, loaded_at),
        "scenarios": [scenario(s) for s in rules.scenarios],
        "routing": rules.routing is not None,
        "refused": refusal(holder),
    }


def files(path: Path, loaded: list[Path], loaded_at: datetime) -> list[dict[str, Any]]:
    """The files of the rules in force, and any file in the directory now that is not one
    of them (added since: part of a refused edit, or not yet seen by the reloader). Each
    with its size and modification time as the disk says now."""
    in_force = [Path(f) for f in loaded]
    try:
        now = [f for f in rule_files(path) if f not in in_force] if path.exists() else []
    except OSError:
        now = []
    out = []
    for f, used in [(f, True) for f in in_force] + [(f, False) for f in now]:
        row: dict[str, Any] = {"name": f.name, "path": str(f), "in_force": used,
                               "kind": "routing" if f.name in ROUTING_FILES else "scenario",
                               "size": None, "modified": None, "changed": False, "missing": False}
        try:
            st = f.stat()
        except OSError:
            row["missing"] = True
        else:
            modified = datetime.fromtimestamp(st.st_mtime, timezone.utc).replace(tzinfo=None)
            row.update(size=st.st_size, modified=modified, changed=used and modified > loaded_at)
        out.append(row)
    return out


def refusal(holder: RulesHolder) -> dict[str, Any] | None:
    refused = holder.refused
    if refused is None:
        return None
    return {"version": refused.version, "at": refused.at,
            "problems": [problem(p, holder.path) for p in refused.problems]}


def problem(text: str, base: Path) -> dict[str, Any]:
    """One problem split into its file, line and message (the whole text as the message
    when it names no file)."""
    m = _PROBLEM.fullmatch(text)
    if not m or not m.group("file"):
        return {"file": None, "name": None, "line": None, "what": text}
    name = m.group("file")
    try:
        name = str(Path(name).relative_to(base)) if base.is_dir() else Path(name).name
    except ValueError:
        pass
    line = m.group("line")
    return {"file": m.group("file"), "name": name, "line": int(line) if line else None, "what": m.group("what")}


def scenario(s: Scenario) -> dict[str, Any]:
    return {"name": s.scenario, "description": s.description, "default": s.default, "priority": s.priority,
            "match": s.match.criteria(), "rules": [rule(r) for r in s.rules]}


def rule(r: Rule) -> dict[str, Any]:
    actions = []
    for a in r.actions:
        params = {k: v for k, v in a.model_dump().items() if k != "sink"}
        # Rule files hold no secrets by design; a pasted one is hidden all the same.
        actions.append({"sink": a.sink, "params": [(k, scrub.text(v)) for k, v in sorted(params.items())]})
    return {"name": r.name, "severity": r.severity, "labels": sorted(r.labels.items()),
            "when": condition(r.when), "summary": r.summary, "actions": actions}


def condition(c: Condition) -> dict[str, Any]:
    """A condition as a tree: {"combinator": "all"|"any"|"none", "parts": [...]} or one
    clause with its role, emotions, what it listens for (keywords and patterns as written in
    the rule: text for the template to escape), SenseVoice's tags, window and the thresholds
    given."""
    if c.combinator:
        return {"combinator": c.combinator,
                "parts": [condition(p) for p in (c.all_ or c.any_ or c.none_ or [])]}
    window = None
    if c.window is not None:
        w = c.window
        window = ({"kind": "first", "s": w.first_s} if w.first_s is not None
                  else {"kind": "last", "s": w.last_s} if w.last_s is not None
                  else {"kind": "range", "from": w.from_s or 0.0, "to": w.to_s})
    return {"combinator": None, "role": c.role, "emotions": list(c.emotions or []),
            "min_confidence": c.min_confidence, "window": window,
            "says": list(c.says or []), "says_regex": list(c.says_regex or []),
            "tag_emotions": list(c.tag_emotions or []), "events": list(c.events or []),
            "needs_transcript": c.needs_transcript,
            # emotions, the words (says: or says_regex:, any term), tag_emotions, events:
            # each given must hold for the same segment
            "criteria": sum(map(bool, (c.emotions, c.listens, c.tag_emotions, c.events))),
            "thresholds": [(k, getattr(c, k)) for k in THRESHOLDS if getattr(c, k) is not None]}
