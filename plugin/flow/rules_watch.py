"""Hot reload: the rules in force, replaced when their files change and only if valid.

An invalid edit is refused: the last good rules stay in force, the refusal is logged
once per edit, and /health shows it until the files are fixed (or reverted).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from plugin.core import metrics
from plugin.core.clock import utcnow
from rules.engine import RuleSet, load_rules, rule_files
from rules.yamlfile import RulesError

log = logging.getLogger(__name__)


def fingerprint(path: Path) -> str:
    """A hash over the names and bytes of every rules file under ``path``."""
    h = hashlib.sha256()
    for f in rule_files(path):
        h.update(f.name.encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError as exc:  # vanished mid-edit: the next poll sees the final state
            h.update(f"unreadable {exc.errno}".encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


@dataclass
class Refusal:
    version: str
    at: datetime
    problems: list[str]


@dataclass
class RulesHolder:
    path: Path
    known_sinks: set[str] | None
    current: RuleSet
    version: str
    loaded_at: datetime = field(default_factory=utcnow)
    refused: Refusal | None = None
    _seen: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | Path, known_sinks: set[str] | None = None) -> RulesHolder:
        """The first load: invalid rules raise RulesError (the service does not start)."""
        path = Path(path)
        version = fingerprint(path) if path.exists() else ""
        holder = cls(path, known_sinks, load_rules(path, known_sinks), version)
        holder._seen = version
        metrics.RULES_VERSION_INFO.info({"version": version, "path": str(path)})
        return holder

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; True when new rules are now in force."""
        with self._lock:
            version = fingerprint(self.path) if self.path.exists() else "missing"
            if version == self._seen:
                return False
            self._seen = version
            if version == self.version:  # reverted to the rules in force
                if self.refused:
                    log.info("rules at %s are back to version %s; the refused edit is gone",
                             self.path, version)
                self.refused = None
                return False
            try:
                rules = load_rules(self.path, self.known_sinks)
            except RulesError as exc:
                self.refused = Refusal(version, utcnow(), exc.problems)
                metrics.RULES_RELOADS.labels(outcome="refused").inc()
                log.error("rules at %s refused; version %s stays in force:\n  %s",
                          self.path, self.version, "\n  ".join(exc.problems))
                return False
            self.current, self.version, self.loaded_at, self.refused = rules, version, utcnow(), None
            metrics.RULES_RELOADS.labels(outcome="loaded").inc()
            metrics.RULES_VERSION_INFO.info({"version": version, "path": str(self.path)})
            log.info("rules reloaded from %s: version %s, %d scenario(s), %d rule(s)",
                     self.path, version, len(rules.scenarios), rules.rule_count())
            return True

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(self.path), "version": self.version,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds") + "Z",
            "scenarios": [s.scenario for s in self.current.scenarios],
            "routing": self.current.routing is not None,
            "status": "refused" if self.refused else "ok",
        }
        if self.refused:
            out["refused"] = {"version": self.refused.version,
                              "at": self.refused.at.isoformat(timespec="seconds") + "Z",
                              "problems": self.refused.problems}
        return out
