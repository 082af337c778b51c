"""YAML files whose errors can name a line: the parsed data plus where each key sits.

pydantic reports an error at a path such as ``rules.0.when.all.1.emotions``; the line
map turns that path into the line an admin has to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from plugin.core.validation import Loc, dotted, problems


class RulesError(Exception):
    """A rules file is invalid. ``problems`` lists every error as "file:line: where: what"."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        more = f" (and {len(self.problems) - 1} more; run `callmood rules check`)" if len(self.problems) > 1 else ""
        super().__init__(self.problems[0] + more)


@dataclass
class YamlFile:
    """One parsed YAML file and the line of every mapping key and list item in it."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest parent that is in the file."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Loc, message: str) -> str:
        where = dotted(loc)
        return f"{self.path}:{self.line(loc)}: {where + ': ' if where else ''}{message}"

    def problems(self, err: ValidationError, prefix: Loc = ()) -> list[str]:
        return [self.problem(prefix + loc, what) for loc, what in problems(err)]


def read(path: Path) -> YamlFile:
    """Parse ``path``; raises RulesError naming the line of a YAML syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not UTF-8 text") from None
    loader = _Loader(text)
    try:
        # One parse gives both the node tree (for the lines) and the data built from it.
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RulesError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    src = YamlFile(path, data)
    if node is not None:
        budget = [MAX_NODES]
        try:
            _walk(node, (), src.lines, budget)
        except RecursionError:
            budget[0] = -1
        if budget[0] < 0:
            raise RulesError(f"{path}: more than {MAX_NODES} values once aliases are expanded, or nested "
                             f"too deep (a YAML alias bomb?)")
    return src


class IntText(int):
    """An integer as YAML read it, with its text as written: ``says: [0755]`` means the
    words "0755", which YAML 1.1 reads as the octal 493."""

    text: str

    def __new__(cls, value: int, text: str) -> IntText:
        self = super().__new__(cls, value)
        self.text = text
        return self


class _Loader(yaml.SafeLoader):
    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:  # type: ignore[override]
        return IntText(super().construct_yaml_int(node), node.value)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


# Aliases make a small file stand for a huge tree ("billion laughs"): every later step
# (validation, this line map) walks the expanded tree, so its size is capped here.
MAX_NODES = 50_000


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        return
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = loc + (key.value,)
            lines[here] = key.start_mark.line + 1
            _walk(value, here, lines, budget)
            if budget[0] < 0:
                return
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), lines, budget)
            if budget[0] < 0:
                return


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | int | float) -> float:
    """Seconds in "90s", "30m", "4h", "7d", "1w", "1h30m" (a bare number is seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text!r} is negative")
        return float(text)
    s = str(text).strip().lower()
    total, num = 0.0, ""
    for ch in s:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in _UNITS and num:
            total += float(num) * _UNITS[ch]
            num = ""
        else:
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 4h, 7d)")
    if num:
        if total:
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 4h, 7d)")
        total = float(num)
    if not s:
        raise ValueError("empty duration")
    return total


def line_of(problem: str) -> int:
    """The line in a "file:LINE: ..." problem (0 when it has none), to sort problems by."""
    try:
        return int(problem.split(":", 2)[1])
    except (IndexError, ValueError):
        return 0


def unknown_sink(name: str, known: set[str]) -> str:
    return f"unknown sink {name!r} (configured: {', '.join(sorted(known)) or 'none'})"
