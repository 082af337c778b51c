"""Query-string arguments every list endpoint reads the same way."""

from __future__ import annotations

from flask import request


def limit(default: int, most: int) -> int:
    """``?limit=``: a positive count, at most ``most`` (a bad value falls back to ``default``)."""
    n = request.args.get("limit", default, type=int)
    return max(1, min(n, most))
