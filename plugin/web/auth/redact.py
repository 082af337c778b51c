"""What each role may see of a call, an alert or a notification (their JSON, as the API
answers it and the pages render it).

- everyone: recording URLs without their query (where storage puts access tokens)
- below supervisor: phone numbers masked, also inside alert summaries and routing notes, and
  in what was said (segments' text, alerts' quotes: ``mask_words``). A transcript is stored
  with the numbers asr.mask_numbers names masked already; for a viewer every number a caller
  may read out is masked (phone, ID card, bank card: plugin/core/transcript.mask_numbers,
  which finds them beside Chinese characters and in Chinese digits), then the logs' phone
  finder runs as over any text. The words themselves stay: a viewer reviews calls, and the
  words are what the emotion is about.
- below admin: no delivery payloads (what was sent to the CRM or WeCom, links included)
"""

from __future__ import annotations

import re

from plugin.core import scrub
from plugin.core.transcript import mask_numbers

def mask_text(value: object) -> object:
    """Phone numbers inside free text masked (a rule's summary may print the phone, a CRM's
    error may quote the body it was sent): the same finder the logs use."""
    if not isinstance(value, str):
        return value
    return scrub.phones(value)


def mask_words(value: object) -> object:
    """What a caller said, as a viewer sees it: every phone, ID-card and bank-card number in
    it masked but for its last digits. The logs' phone finder first, so a phone reads as it
    does everywhere else (+86138****5678); then the transcript masker, which also finds
    numbers beside Chinese characters, in Chinese digits, and ID and card numbers."""
    if not isinstance(value, str):
        return value
    return mask_numbers(scrub.phones(value))


def _masked(d: object, keys: tuple[str, ...]) -> object:
    if not isinstance(d, dict):
        return d
    return {k: mask_text(v) if k in keys else v for k, v in d.items()}


def call(c: dict, phones: bool, payloads: bool) -> dict:
    c = dict(c)
    c["recording_url"] = scrub.url(c.get("recording_url"))
    parts = [{**r, "url": scrub.url(r.get("url"))} for r in c.get("recordings") or []]
    if not phones:
        c["customer_phone"] = scrub.phone(c.get("customer_phone"))
        c["recording_url"] = mask_text(c["recording_url"])  # a file named after the caller
        parts = [{**r, "url": mask_text(r["url"])} for r in parts]
        if "error" in c:
            c["error"] = mask_text(c["error"])
        # A fetch error quotes the recording's URL, which may be named after the caller.
        if "jobs" in c:
            c["jobs"] = [{**j, "last_error": mask_text(j.get("last_error"))} for j in c["jobs"]]
        if c.get("retry"):
            c["retry"] = {**c["retry"], "last_error": mask_text(c["retry"].get("last_error"))}
    if "recordings" in c:
        c["recordings"] = parts or None
    if not phones and c.get("segments"):
        c["segments"] = [{**s, "text": mask_words(s.get("text"))} for s in c["segments"]]
    c["alerts"] = [alert(a, phones, payloads) for a in c.get("alerts", [])]
    return c


def alert(a: dict, phones: bool, payloads: bool) -> dict:
    a = dict(a)
    a["deliveries"] = [delivery(d, payloads, phones) for d in a.get("deliveries", [])]
    if not phones:
        a["summary"] = mask_words(a.get("summary"))  # a summary template may print alert.quotes
        a["quotes"] = [{**q, "text": mask_words(q.get("text"))} for q in a.get("quotes") or []]
        a["routing"] = [_masked(r, ("reason", "group")) for r in a.get("routing") or []]
        if "feedback" in a:
            a["feedback"] = _masked(a["feedback"], ("note",))
    return a


def delivery(d: dict | None, payloads: bool, phones: bool = True) -> dict | None:
    if d is None:
        return d
    if not payloads:
        d = {k: v for k, v in d.items() if k != "payload"}
    if not phones and "last_error" in d:  # a CRM's error may quote the body it was sent, phone and all
        d = {**d, "last_error": mask_text(d["last_error"])}
    return d


def notification(n: dict, phones: bool, payloads: bool) -> dict:
    n = dict(n)
    n["delivery"] = delivery(n.get("delivery"), payloads, phones)
    if not phones:
        n["group"] = mask_text(n.get("group"))
    return n


# Seven digits with at most four of " ()-" between each two: what every phone number
# scrub.phones masks has (it masks from 7 digits on); text without it is left as it is
# without running the finder (the CSV of the red-flag list masks thousands of summaries).
_SEVEN_DIGITS = re.compile(r"\d(?:[ ()\-]{0,4}\d){6}")  # \d as scrub._PHONE: any script's digits


def _mask_some(value: object) -> object:
    if isinstance(value, str) and not _SEVEN_DIGITS.search(value):
        return value
    return mask_text(value)


def flagged(row: dict, phones: bool) -> dict:
    """A row of the red-flag list: its phone, the summary, the quote and the handling note masked."""
    if phones:
        return row
    h, q = row.get("handling"), row.get("last_quote")
    return {**row, "last_summary": _mask_some(row.get("last_summary")), "phone": scrub.phone(row.get("phone")),
            "handling": {**h, "note": _mask_some(h.get("note"))} if h else h,
            "last_quote": {**q, "text": mask_words(q.get("text"))} if isinstance(q, dict) else q}


def handling(d: dict, phones: bool) -> dict:
    """A customer's handling and its history (the notes people typed may quote a phone)."""
    if phones:
        return d
    h = d.get("handling")
    return {**d, "handling": {**h, "note": mask_text(h.get("note"))} if h else h,
            "history": [{**e, "note": mask_text(e.get("note"))} for e in d.get("history") or []]}
