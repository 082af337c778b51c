"""What was said, as one line of plain text cut to a length: the rule every message, note,
terminal line and card field cuts a quote by (connectors/sinks/quotes.py, wecom_app,
plugin/flow/segment_rows.py), and what `callmood forget` looks for in the messages it
redacts (plugin/store/forget.py). Here, below both, so the sinks and the store cut alike.
"""

from __future__ import annotations

from typing import Any

from plugin.core.data import MAX_QUOTES, QUOTES_KEY

CUT_MARK = "…"  # ends a cut text

# The lengths messages cut one quote's words to: a WeCom app card's field (connectors/sinks/
# wecom_app.CARD_QUOTE_CHARS), a WeCom robot's message (sinks/quotes.QUOTE_CHARS), a CRM's
# note (zendesk.QUOTE_CHARS, the REST sink's note), the REST body's quotes (sinks/quotes.quotes_json).
QUOTE_CUTS = (60, 80, 200, 500)


def one_line(value: object) -> str:
    """``value`` as text on one line: line breaks and other controls become spaces, so no
    value can add a line of its own to a note (a Zendesk note's marker line included)."""
    return " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())


def clip(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, the cut marked with "…"."""
    return text if len(text) <= chars else text[: max(chars - 1, 0)] + CUT_MARK


def cut_forms(text: str, cuts: tuple[int, ...] = QUOTE_CUTS) -> list[str]:
    """What of ``text`` a message cut to each of ``cuts`` still carries (one line, without
    the "…"): the words to look for where the whole text is not."""
    words = one_line(text)
    return [clip(words, n)[:-1] for n in cuts if len(words) > n]


def quotes_of(alert: object) -> list[dict[str, Any]]:
    """The quotes that have words in an alert, its template context or its row's details
    (``QUOTES_KEY``), in call order, at most MAX_QUOTES; whatever they hold (a missing key,
    a value of another shape)."""
    given = alert.get(QUOTES_KEY) if isinstance(alert, dict) else None
    if not isinstance(given, (list, tuple)):
        return []
    out = [q for q in given if isinstance(q, dict) and isinstance(q.get("text"), str) and q["text"].strip()]
    return out[:MAX_QUOTES]


def first_quote(alert: object) -> dict[str, Any] | None:
    """The first thing said in the segments that fired (quotes_of's first), or None: what
    the red-flag list and the review report show of a customer's latest alert."""
    quotes = quotes_of(alert)
    return quotes[0] if quotes else None
