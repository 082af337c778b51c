"""Parse JSON from outside into values every later step can hold.

Python's json accepts what the next steps cannot: nesting deep enough to exhaust the
recursion of the parser (and of everything that walks the result afterwards), NaN and
Infinity (``1e999`` silently becomes inf), NUL characters and lone surrogates (PostgreSQL
refuses both in text, and Infinity in JSON, so they would fail later, in a worker).
Each is refused here with where it is.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but the brackets
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class UnsafeJson(ValueError):
    """``where`` (a dotted path, or "body") holds something refused; ``message`` says what."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def depth(raw: bytes) -> int:
    """How deeply the arrays and objects of ``raw`` nest, counted without parsing it."""
    structure = _STRING.sub(b"", raw).translate(None, _BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, structure)), default=0)


def loads(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``raw`` parsed, or UnsafeJson saying where and why not."""
    if depth(raw) > max_depth:
        raise UnsafeJson("body", f"nested more than {max_depth} levels deep")
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:  # unreachable after the depth check; kept as the last guard
        raise UnsafeJson("body", f"nested more than {max_depth} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsafeJson("body", f"not valid JSON ({exc})") from None
    _check_strings(data, "")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large for a finite float")
    return value


def _check_strings(value: Any, where: str) -> None:
    # Recursion is bounded: the depth was checked before parsing.
    if isinstance(value, str):
        _check_text(value, where or "body")
    elif isinstance(value, dict):
        for k, v in value.items():
            here = f"{where}.{k}" if where else str(k)
            _check_text(k, f"{here} (the key)")
            _check_strings(v, here)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_strings(v, f"{where}[{i}]")


def _check_text(s: str, where: str) -> None:
    if "\x00" in s:
        raise UnsafeJson(_printable(where), "contains a NUL character (\\u0000)")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeJson(_printable(where), "contains a lone surrogate (\\ud800-\\udfff), not text") from None


def _printable(where: str) -> str:
    return where.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")[:200]
