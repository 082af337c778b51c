"""Building blocks shared by the schemas of scenario files and routing.yaml."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict

from plugin.core.validation import StrictModel


class Strict(StrictModel):
    """A mistyped key is an error ("unknown key"), not silently ignored; ``all``/``any``/
    ``none`` and ``continue`` are read into fields of other names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


# A list that admins may also write as one string: `queue: support` or `queue: [a, b]`.
Strings = Annotated[list[str], BeforeValidator(one_or_many)]
# The same where None means "not given" (pydantic runs no validator inside `Strings | None`).
MaybeStrings = Annotated[list[str] | None, BeforeValidator(one_or_many)]


def matches_any(value: Any, patterns: list[str]) -> bool:
    """Whether ``value`` (or any item of a list value) matches one of the glob patterns,
    case-insensitively. None never matches."""
    values = value if isinstance(value, list) else [value]
    values = [str(v).lower() for v in values if v is not None]
    return any(fnmatch.fnmatchcase(v, p.lower()) for v in values for p in patterns)
