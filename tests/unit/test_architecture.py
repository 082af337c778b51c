"""The house's rules, checked on the source: no import cycle anywhere, and each layer
imports only the layers below it (docs/architecture.md draws them).

Every import counts, at the top of a module or inside a function: a lazy import is
where a cycle hides."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("plugin", "connectors", "rules")

# Who may import whom (by module prefix). A module may always import its own package.
ALLOWED: dict[str, tuple[str, ...]] = {
    "plugin": (),  # the package itself: plugin/__init__.py is empty, anyone may pass through it
    "plugin.core": (),
    "connectors": ("plugin.core",),
    "rules": ("plugin.core",),
    "plugin.config": ("plugin.core", "connectors"),
    "plugin.audio": ("plugin.core", "plugin.config"),
    "plugin.model": ("plugin.core", "plugin.config"),
    "plugin.store": ("plugin.core",),
    "plugin.flow": ("plugin.core", "plugin.config", "plugin.audio", "plugin.model", "plugin.store",
                    "rules", "connectors"),
    "plugin.services": ("plugin.core", "plugin.config", "plugin.model", "plugin.store", "plugin.flow",
                        "rules", "connectors"),
    "plugin.web": ("plugin.core", "plugin.config", "plugin.audio", "plugin.model", "plugin.store",
                   "plugin.flow", "plugin.services", "connectors", "rules"),
    "plugin.cli": ("plugin.core", "plugin.config", "plugin.audio", "plugin.model", "plugin.store",
                   "plugin.flow", "plugin.services", "plugin.web", "rules", "connectors", "plugin.commands"),
    # Groups of the command, each a module (plugin/cli.py adds them).
    "plugin.commands": ("plugin.core", "plugin.config", "plugin.audio", "plugin.model", "plugin.store",
                        "plugin.flow", "plugin.services", "plugin.web", "rules", "connectors"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" not in path.parts:
                out[module_name(path)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports (``from a import b`` counts a.b when a.b is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "plugin.core.data.EMOTIONS" -> "plugin.core.data"
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = our_modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def layer_of(name: str) -> str:
    return max((p for p in ALLOWED if name == p or name.startswith(p + ".")), key=len)


def test_the_graph_is_read_right():
    g = graph()
    assert "plugin.core.data" in g["rules.engine"]
    assert "plugin.store.jobs" in g["plugin.flow.pipeline"]
    assert "plugin.flow.notify.stages" in g["plugin.flow.notify"]  # re-exports count
    assert "plugin.web.services" in g["plugin.web.api"]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_a_cycle_would_be_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_layer_imports_only_the_layers_below():
    wrong = []
    for name, deps in sorted(graph().items()):
        layer = layer_of(name)
        for dep in sorted(deps):
            if dep == "plugin" or layer_of(dep) == layer:
                continue
            if not any(dep == a or dep.startswith(a + ".") for a in ALLOWED[layer]):
                wrong.append(f"{name} imports {dep}")
    assert wrong == []


def test_connectors_and_rules_touch_no_database_and_no_web_app():
    banned = ("sqlalchemy", "flask", "werkzeug", "alembic")
    found = []
    for name, path in our_modules().items():
        if not name.startswith(("connectors", "rules", "plugin.core")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{name} imports {m}" for m in mods if m.split(".")[0] in banned]
    # The one clock reads the database's time from the session it is given (plugin/core/clock.py).
    assert found == ["plugin.core.clock imports sqlalchemy", "plugin.core.clock imports sqlalchemy.orm"]


def test_one_name_per_class():
    """Two classes of one name (two Sources, two Windows...) make every reader check which."""
    seen: dict[str, list[str]] = {}
    for name, path in our_modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(name)
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}
