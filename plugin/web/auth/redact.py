"""What each role may see of a call, an alert or a notification (their JSON, as the API
answers it and the pages render it).

- everyone: recording URLs without their query (where storage puts access tokens)
- below supervisor: phone numbers masked, also inside alert summaries and routing notes
- below admin: no delivery payloads (what was sent to the CRM or WeCom, links included)
"""

from __future__ import annotations

import re

from plugin.core import scrub

# Something that looks like a phone number inside free text (a rule's summary template
# may print call.customer_phone): 7 or more digits, maybe with +, spaces or dashes.
_PHONE_IN_TEXT = re.compile(r"\+?\d[\d \-]{5,}\d")


def mask_text(value: object) -> object:
    if not isinstance(value, str):
        return value
    return _PHONE_IN_TEXT.sub(lambda m: scrub.phone(m.group(0)), value)


def _masked(d: object, keys: tuple[str, ...]) -> object:
    if not isinstance(d, dict):
        return d
    return {k: mask_text(v) if k in keys else v for k, v in d.items()}


def call(c: dict, phones: bool, payloads: bool) -> dict:
    c = dict(c)
    c["recording_url"] = scrub.url(c.get("recording_url"))
    if not phones:
        c["customer_phone"] = scrub.phone(c.get("customer_phone"))
    c["alerts"] = [alert(a, phones, payloads) for a in c.get("alerts", [])]
    return c


def alert(a: dict, phones: bool, payloads: bool) -> dict:
    a = dict(a)
    a["deliveries"] = [delivery(d, payloads) for d in a.get("deliveries", [])]
    if not phones:
        a["summary"] = mask_text(a.get("summary"))
        a["routing"] = [_masked(r, ("reason", "group")) for r in a.get("routing") or []]
    return a


def delivery(d: dict | None, payloads: bool) -> dict | None:
    if d is None or payloads:
        return d
    return {k: v for k, v in d.items() if k != "payload"}


def notification(n: dict, phones: bool, payloads: bool) -> dict:
    n = dict(n)
    n["delivery"] = delivery(n.get("delivery"), payloads)
    if not phones:
        n["group"] = mask_text(n.get("group"))
    return n


def flagged(row: dict, phones: bool) -> dict:
    return row if phones else {**row, "last_summary": mask_text(row.get("last_summary"))}
