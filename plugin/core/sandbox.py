"""Operators' Jinja2 templates (rule summaries, action parameters, sink bodies and
messages), rendered in a sandbox with strict undefined names.

Only operators' files are templates. Event data (customer ids, phone numbers...) is a
value templates see, never a template itself.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def render(template: str, **context: Any) -> str:
    return _env.from_string(template).render(**context)


def compile_error(template: str) -> str | None:
    """Why ``template`` does not compile, or None."""
    try:
        _env.from_string(template)
    except TemplateError as exc:
        return f"bad template: {exc}"
    return None
