"""What was said when an alert fired (``alert["quotes"]``, plugin.core.data.Alert.quotes), as
the lines messages and notes carry: "02:13 客户: 我要退款，不然我打12315".

The lines are plain text, one line each (line breaks and control characters are spaces)
and cut to a length; each sink then escapes them for where they land: WeCom markdown
(wecom_robot.md), a WeCom card's plain fields, HubSpot's rich text (HTML). A quote is
words a caller spoke: data, never markup and never a template.
"""

from __future__ import annotations

import math
from typing import Any

from plugin.core.quote_text import clip, one_line, quotes_of
from plugin.core.transcript import quote_time

# one_line, clip and quotes_of live in plugin/core/quote_text.py, where `callmood forget`
# finds a cut quote the way these cut it; the sinks take them from here as before.
__all__ = ["ROLES_EN", "ROLES_ZH", "QUOTE_CHARS", "clip", "one_line", "quotes_of", "quote_line", "quote_lines",
           "quotes_json"]

# The speaker, as WeCom messages name them (their language is Chinese), and as the CRM
# notes do (theirs is English).
ROLES_ZH = {"customer": "客户", "agent": "坐席", "mixed": "通话"}
ROLES_EN = {"customer": "customer", "agent": "agent", "mixed": "call"}
QUOTE_CHARS = 80  # of one quote's words in a message
ROLE_CHARS = 20  # a role we do not know is shown as it is, this long at most


def quote_line(quote: dict[str, Any], roles: dict[str, str] = ROLES_ZH, chars: int = QUOTE_CHARS) -> str:
    """One quote as plain text on one line: its time in the call, who spoke, the words cut
    to ``chars`` characters ("…" marks a cut)."""
    role = quote.get("role")
    who = roles.get(role) if isinstance(role, str) else None
    who = who or clip(one_line(role if role is not None else "-"), ROLE_CHARS)
    return f"{quote_time(quote.get('start'))} {who}: {clip(one_line(quote.get('text') or ''), chars)}"


def quote_lines(alert: dict[str, Any], roles: dict[str, str] = ROLES_ZH, chars: int = QUOTE_CHARS) -> list[str]:
    return [quote_line(q, roles, chars) for q in quotes_of(alert)]


def quotes_json(alert: dict[str, Any], chars: int = 500) -> list[dict[str, Any]]:
    """The quotes as plain data for a JSON body: start, end, role and the words (one line,
    cut to ``chars``)."""
    out = []
    for q in quotes_of(alert):
        start = q.get("start")
        out.append({"start": _seconds(start), "end": _seconds(q.get("end")), "time": quote_time(start),
                    "role": one_line(q.get("role") or "")[:ROLE_CHARS],
                    "text": clip(one_line(q["text"]), chars)})
    return out


def _seconds(value: object) -> float | None:
    # A JSON column takes no NaN or infinity (PostgreSQL refuses them): those are None.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), 3)
