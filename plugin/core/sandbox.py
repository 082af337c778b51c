"""Operators' Jinja2 templates (rule summaries, action parameters, sink bodies and
messages), rendered in a sandbox with strict undefined names.

Only operators' files are templates. Event data (customer ids, phone numbers...) is a
value templates see, never a template itself; a sink that puts values into a URL or
markdown escapes every inserted value (``render_escaped``), while the operator's own
template text keeps its meaning.

The sandbox is immutable (a template cannot change the call or the alert it is shown:
``call.update(...)``, ``list.append`` are refused) and bounded: one render writes at most
OUTPUT_MAX characters, runs at most LOOP_MAX loop iterations in all, and cannot build a
huge string or number on the way (``'x' * 10**8``, ``'x'|center(10**8)``, ``2 ** 10**9``).
Hitting a bound fails the render with TemplateLimit, saying which bound.
"""

from __future__ import annotations

import contextvars
import functools
import re
from typing import Any, Callable, Iterable

from jinja2 import StrictUndefined, TemplateError, nodes, pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg
from jinja2.visitor import NodeTransformer

OUTPUT_MAX = 64 * 1024  # characters one render may write (and any string or argument it builds)
LOOP_MAX = 10_000  # loop iterations of one render, all loops together
INT_BITS_MAX = 4096  # integers a template computes stay below 2**4096
# A printf width or precision from an argument (*) or of 6+ digits; a str.format spec with
# a field inside it (a width from an argument) or a number of 6+ digits.
_WIDE_PERCENT = re.compile(r"%[-#0 +]*(\*|\d{6,})|%[-#0 +]*\d*\.(\*|\d{6,})")
_WIDE_BRACES = re.compile(r"\{[^{}]*:[^{}]*(\{|\d{6,})")


class TemplateLimit(SecurityError):
    """A template went past one of the sandbox's bounds."""


class Raw(str):
    """Text the code built itself (a link, a mention it checked): ``render_escaped`` inserts
    it as it is, where any other value is escaped."""


class _Budget:
    __slots__ = ("loops", "written")

    def __init__(self) -> None:
        self.loops = 0
        self.written = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)


def _too_big(n: int, what: str) -> None:
    if n > OUTPUT_MAX:
        raise TemplateLimit(f"template {what} {n} characters, over the {OUTPUT_MAX}-character limit")


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(n, int):
                    _too_big(size * n, "would build a value of")
            if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > INT_BITS_MAX:
                raise TemplateLimit(f"template would compute a number over {INT_BITS_MAX} bits")
        elif operator == "**":
            if _is_int(left) and _is_int(right) and right > 0 and \
                    (left.bit_length() - 1) * right > INT_BITS_MAX:
                raise TemplateLimit(f"template would compute a number over {INT_BITS_MAX} bits")
        elif operator == "+":
            if _sized(left) is not None and _sized(right) is not None:
                _too_big(_sized(left) + _sized(right), "would build a value of")
        elif operator == "%" and isinstance(left, str) and _WIDE_PERCENT.search(left):
            raise TemplateLimit("template formats with a width or precision over 99999 or taken from an argument")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # jinja's own signature
        # str.format arrives wrapped by the sandbox (its __wrapped__ is the bound method).
        method = getattr(__obj, "__wrapped__", __obj)
        owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
        if isinstance(owner, str):
            if name in _WIDTH_METHODS:
                _check_widths(name, args, kwargs)
            elif name in ("format", "format_map") and _WIDE_BRACES.search(owner):
                raise TemplateLimit("template formats with a width or precision over 99999 or taken from an argument")
            elif name == "join" and args:
                return _join(args[0], owner)
            elif name == "replace" and len(args) >= 2:
                return _replace(owner, *args[:3])
        return super().call(__context, __obj, *args, **kwargs)


# What takes a width or a count, and so lets a short template ask for a huge string or list.
_WIDTH_METHODS = frozenset(["ljust", "rjust", "center", "zfill", "expandtabs"])
_WIDTH_FILTERS = frozenset(["center", "indent", "wordwrap", "batch", "slice", "truncate"])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_widths(name: str, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    for v in (*args, *kwargs.values()):
        if _is_int(v) and abs(v) > OUTPUT_MAX:
            raise TemplateLimit(f"template passes {v} to {name}; widths and counts are limited to {OUTPUT_MAX}")


def _bounded_filter(name: str, f: Callable) -> Callable:
    skip = 2 if _PassArg.from_obj(f) else 1  # the context or environment, then the value

    @functools.wraps(f)  # keeps jinja's pass_context / pass_environment marks
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_widths(name, args[skip:], kwargs)
        return f(*args, **kwargs)
    return wrapper


@pass_environment
def _join_filter(env, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(make_attrgetter(env, attribute), items))
    return _join(items, d)


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """jinja's ``format`` filter (printf-style), held to the same widths and size as ``%``."""
    if isinstance(value, str) and _WIDE_PERCENT.search(value):
        raise TemplateLimit("template formats with a width or precision over 99999 or taken from an argument")
    out = str(value) % (kwargs or args)
    _too_big(len(out), "would format")
    return out


def _concat_guard(parts: list[Any]) -> str:
    parts = [str(p) for p in parts]
    _too_big(sum(map(len, parts)), "would concatenate into")
    return "".join(parts)


def _join(items: Iterable[Any], d: Any = "") -> str:
    parts, d = [str(i) for i in items], str(d)
    _too_big(sum(map(len, parts)) + len(d) * max(len(parts) - 1, 0), "would join into")
    return d.join(parts)


def _replace(s: Any, old: Any, new: Any, count: int | None = None) -> str:
    s, old, new = str(s), str(old), str(new)
    n = s.count(old) if count is None or count < 0 else min(count, s.count(old))
    _too_big(len(s) + n * max(len(new) - len(old), 0), "would replace into")
    return s.replace(old, new, -1 if count is None else count)


class _Namespace(Namespace):
    def __setitem__(self, name: str, value: Any) -> None:
        size = _sized(value)
        if size is not None:
            _too_big(size, "would store a value of")
        if _is_int(value) and value.bit_length() > INT_BITS_MAX:
            raise TemplateLimit(f"template would store a number over {INT_BITS_MAX} bits")
        super().__setitem__(name, value)


def _loop_guard(iterable: Any) -> Iterable[Any]:
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.loops += 1
            if budget.loops > LOOP_MAX:
                raise TemplateLimit(f"template loops more than {LOOP_MAX} times")
        yield item


def _capped_concat(parts: Iterable[str]) -> str:
    out, n = [], 0
    for p in parts:
        n += len(p)
        _too_big(n, "would write")
        out.append(p)
    return "".join(out)


def _make_env(escape: Callable[[str], str] | None) -> _Env:
    def finalize(value: Any) -> Any:
        if escape is not None and not isinstance(value, Raw):
            value = escape("" if value is None else str(value))
        budget = _budget.get()
        if budget is not None:
            budget.written += len(str(value))
            _too_big(budget.written, "would write")
        return value

    env = _Env(undefined=StrictUndefined, autoescape=False, finalize=finalize)
    env.concat = _capped_concat  # every buffered part (set blocks, macros, filter blocks) is capped
    env.filters.update({k: _bounded_filter(k, env.filters[k]) for k in _WIDTH_FILTERS})
    env.filters.update(join=_join_filter, replace=_replace)
    env.globals.update(namespace=_Namespace, _loop_guard=_loop_guard, _concat_guard=_concat_guard)
    env.globals.pop("lipsum", None)  # placeholder text of any length: nothing a message needs
    env.filters["format"] = _format_filter
    return env


_env = _make_env(None)
_escaping_envs: dict[Callable[[str], str], _Env] = {}


def _env_for(escape: Callable[[str], str] | None) -> _Env:
    if escape is None:
        return _env
    env = _escaping_envs.get(escape)
    if env is None:
        env = _escaping_envs[escape] = _make_env(escape)
    return env


@functools.lru_cache(maxsize=512)
class _GuardConcat(NodeTransformer):
    """``a ~ b`` is no binop the sandbox intercepts: it becomes a call that sizes first."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        parts = [self.visit(n) for n in node.nodes]
        return nodes.Call(nodes.Name("_concat_guard", "load"), [nodes.List(parts)], [], None, None)


def _compile(env: _Env, template: str):
    ast = _GuardConcat().visit(env.parse(template))
    for loop in ast.find_all(nodes.For):  # every loop draws on the render's budget
        loop.iter = nodes.Call(nodes.Name("_loop_guard", "load"), [loop.iter], [], None, None)
    return env.from_string(ast)


def render(template: str, **context: Any) -> str:
    """``template`` rendered with ``context``, within the sandbox's bounds."""
    return _render(_env, template, context)


def render_escaped(escape: Callable[[str], str], template: str, /, **context: Any) -> str:
    """``template`` rendered with every inserted value passed through ``escape`` (but
    ``Raw`` values), for output where data must stay data (URLs, markdown)."""
    return _render(_env_for(escape), template, context)


def _render(env: _Env, template: str, context: dict[str, Any]) -> str:
    token = _budget.set(_Budget())
    try:
        out, n = [], 0
        for chunk in _compile(env, template).generate(**context):
            n += len(chunk)
            _too_big(n, "would write")
            out.append(chunk)
        return "".join(out)
    finally:
        _budget.reset(token)


def compile_error(template: str) -> str | None:
    """Why ``template`` does not compile, or None."""
    try:
        _compile(_env, template)
    except TemplateError as exc:
        return f"bad template: {exc}"
    return None
