"""One way to say what is wrong with validated input: pydantic's errors as
("where", "what") pairs, worded for the person who wrote the config, the rules file
or the request body."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError

Loc = tuple[Any, ...]


def checked(problem: Callable[[Any], str | None]) -> Callable[[Any], Any]:
    """A pydantic field validator made of a function that says what is wrong with a value
    (None: nothing): ``field_validator("x")(checked(ids.id_problem))``. None passes."""
    def check(value: Any) -> Any:
        said = problem(value) if value is not None else None
        if said:
            raise ValueError(said)
        return value
    return check


def message(error: dict[str, Any]) -> str:
    """What is wrong, in words, for one of ``ValidationError.errors()``."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    return error["msg"].removeprefix("Value error, ")


def problems(err: ValidationError) -> list[tuple[Loc, str]]:
    """Every error as (location, message)."""
    return [(tuple(e["loc"]), message(e)) for e in err.errors()]


def dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def first_problem(err: ValidationError) -> tuple[str, str]:
    """The first error as ("a.b.c", "what"), for one-line answers."""
    loc, what = problems(err)[0]
    return dotted(loc), what


class StrictModel(BaseModel):
    """Config and rule files: a mistyped key is an error ("unknown key"), never silently ignored."""

    model_config = ConfigDict(extra="forbid")
