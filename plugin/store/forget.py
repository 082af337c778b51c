"""`callmood forget --customer ID`: remove every trace of one customer.

The customer's calls (``Call.customer_id``) go, with everything hanging off them: jobs,
segments (with their transcripts), alerts (also any alert stored under the id; with them
the quotes of what was said), feedback, deliveries, the links of their alerts to
notifications, the recording copies ``worker.keep_recordings`` made and the copies of
their imported recordings (`callmood import`), and who handled them on the red-flag list
(customer_handling, its events and notes). A notification that holds only their alerts
goes with its delivery.

A notification shared with other customers' alerts (a quiet-hours digest, or routing
grouped by something other than the customer) stays for the others: it loses the links
to the customer's alerts, and its group key and its delivery's body are redacted: every
occurrence of the customer id, their phone numbers, their calls' external and ticket ids
and the words their alerts quote (of 4 characters or more) becomes ``[removed]`` (also
where a sink escaped or percent-encoded them, and what is left of a quote a message cut
short: the words before its "…").
A body that is still to be sent goes out redacted. The review report's stored WeCom messages
(plugin/flow/report/, deliveries keyed "report:...") name top customers: they are
redacted the same way.

Everything in the database happens in one transaction; a dry run rolls it back, so it
counts exactly what a real run removes. Not covered: log files (phone numbers are masked
there, customer ids are not) and copies outside CallMood (the CRM, WeCom, backups).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from plugin.core import files
from plugin.core.data import QUOTES_KEY
from plugin.core.lookalikes import markdown_safe
from plugin.core.quote_text import cut_forms, one_line
from plugin.store import handling, phone_lookups
from plugin.store.tables import AlertRow, Call, Delivery, Feedback, Job, Notification, NotificationAlert, Segment

REDACTED = "[removed]"

Sessions = sessionmaker[Session]

# The order `callmood forget` prints.
KINDS = ("calls", "jobs", "segments", "alerts", "feedback", "deliveries", "notifications",
         "shared notifications redacted", "reports redacted", "phone lookups", "handling", "recording copies")

# The review report's deliveries (plugin/flow/report/send.py dedupe_key).
REPORT_KEYS = "report:%"


def forget_customer(sessions: Sessions, data_dir: str | Path, customer_id: str,
                    dry_run: bool = False) -> Counter:
    """Remove (or, dry, count) everything of ``customer_id``; how many of each kind."""
    if not customer_id.strip():
        raise ValueError("the customer id is empty")
    with sessions() as s:
        # Their imported recordings (`callmood import`), named by content hash.
        hashes = s.execute(select(Call.external_id).where(Call.customer_id == customer_id,
                                                          Call.source == files.IMPORT_SOURCE)).scalars().all()
        removed, call_ids = _forget(s, customer_id)
        if dry_run:
            s.rollback()
        else:
            s.commit()
    copies = [p for i in call_ids for p in (files.recording_copy(data_dir, i), files.listening_copy(data_dir, i))
              if p.exists()]
    copies += [p for p in (files.imported_copy(data_dir, h) for h in hashes if files.is_sha256(h)) if p.exists()]
    if not dry_run:
        for p in copies:
            p.unlink(missing_ok=True)
    removed["recording copies"] = len(copies)
    return removed


def _forget(s: Session, customer_id: str) -> tuple[Counter, list[int]]:
    out: Counter = Counter()
    calls = s.execute(select(Call).where(Call.customer_id == customer_id)).scalars().all()
    call_ids = [c.id for c in calls]
    alerts = s.execute(select(AlertRow.id, AlertRow.details).where(
        or_(AlertRow.call_id.in_(call_ids), AlertRow.customer_id == customer_id))).all()
    alert_ids = [a.id for a in alerts]
    redact = Redactor([customer_id, *(v for c in calls for v in (c.customer_phone, c.external_id, c.ticket_id)),
                       *quoted_words([a.details for a in alerts])])

    linked = s.execute(select(NotificationAlert.notification_id)
                       .where(NotificationAlert.alert_id.in_(alert_ids)).distinct()).scalars().all()
    for n in s.execute(select(Notification).where(Notification.id.in_(linked))).scalars().all():
        others = s.execute(select(NotificationAlert.alert_id).where(
            NotificationAlert.notification_id == n.id, NotificationAlert.alert_id.not_in(alert_ids))).first()
        s.execute(delete(NotificationAlert).where(NotificationAlert.notification_id == n.id,
                                                  NotificationAlert.alert_id.in_(alert_ids)))
        d = s.execute(select(Delivery).where(Delivery.notification_id == n.id)).scalar()
        if others is None:  # only this customer's alerts: the notification goes
            if d is not None:
                s.delete(d)
                out["deliveries"] += 1
            s.delete(n)
            out["notifications"] += 1
            continue
        n.group_key = redact(n.group_key)
        if d is not None:
            d.payload = redact(d.payload)
            d.last_error = redact(d.last_error)
        out["shared notifications redacted"] += 1
    # Report bodies are small and few (two per robot a day): each is read and redacted where
    # it names the customer. The HTML page and CSV are computed anew and have nothing to forget.
    for d in s.execute(select(Delivery).where(Delivery.dedupe_key.like(REPORT_KEYS))).scalars():
        body, error = redact(d.payload), redact(d.last_error)
        if body != d.payload or error != d.last_error:
            d.payload, d.last_error = body, error
            out["reports redacted"] += 1
    s.flush()

    out["feedback"] += s.execute(delete(Feedback).where(Feedback.alert_id.in_(alert_ids))).rowcount
    out["deliveries"] += s.execute(delete(Delivery).where(Delivery.alert_id.in_(alert_ids))).rowcount
    out["alerts"] += s.execute(delete(AlertRow).where(AlertRow.id.in_(alert_ids))).rowcount
    out["segments"] += s.execute(delete(Segment).where(Segment.call_id.in_(call_ids))).rowcount
    out["jobs"] += s.execute(delete(Job).where(Job.call_id.in_(call_ids))).rowcount
    out["phone lookups"] += phone_lookups.forget(s, customer_id)  # the CRM's answer for their numbers
    handled = handling.forget(s, customer_id)  # who handled them on the red-flag list, and the notes
    if handled:  # (counted only when there was some: a Counter compares its zeros too)
        out["handling"] += handled
    out["calls"] += s.execute(delete(Call).where(Call.id.in_(call_ids))).rowcount
    return out, call_ids


# A quote shorter than this ("好的", "ok") names nobody, and removing it from a shared digest
# would cut the same words out of the other customers' quotes.
QUOTE_MIN_CHARS = 4


def quoted_words(details: list[object]) -> list[str]:
    """What the customer said, as their alerts quote it (``details["quotes"]``): the words
    to remove from messages shared with other customers (a digest quotes every alert).
    Each quote as said, on one line as messages carry it, and as each message cuts it
    (plugin/core/quote_text.py: the part before the "…")."""
    out = []
    for d in details:
        quotes = d.get(QUOTES_KEY) if isinstance(d, dict) else None
        for q in quotes if isinstance(quotes, list) else []:
            text = q.get("text") if isinstance(q, dict) else None
            if isinstance(text, str):
                for words in {text.strip(), one_line(text), *cut_forms(text)}:
                    if len(words) >= QUOTE_MIN_CHARS:
                        out.append(words)
    return out


class Redactor:
    """Replaces whole occurrences of some values in text and JSON with [removed]: as
    written, with a backslash before any punctuation (markdown escaping), with WeCom
    markdown's full-width look-alikes, and percent-encoded (URLs). A value counts only
    where no letter or digit touches it, so "cust-4" is not found inside "cust-42"."""

    def __init__(self, values: list[str | None]):
        variants = set()
        for v in values:
            if v and v.strip():
                variants.add(_escapable(v))
                variants.add(_escapable(markdown_safe(v)))  # as WeCom markdown carries it (＃ for #)
                encoded = quote(v, safe="")
                if encoded != v:
                    variants.add(re.escape(encoded))
        # Longest first: a phone number is replaced whole before a shorter id inside it.
        alts = sorted(variants, key=len, reverse=True)
        self.pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alts) + r")(?![A-Za-z0-9])") if alts else None

    def __call__(self, value: Any) -> Any:
        if self.pattern is None or value is None:
            return value
        if isinstance(value, str):
            return self.pattern.sub(REDACTED, value)
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


def _escapable(value: str) -> str:
    return "".join(re.escape(c) if c.isalnum() else r"\\?" + re.escape(c) for c in value)
