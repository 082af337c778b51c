"""The phone_lookups table: the CRM's answer per phone number (E.164), kept so that a
customer who calls ten times a day costs one CRM request, not ten.

customer_id None records "the CRM knows no such customer" (kept shorter: a new customer
is often created in the CRM during their first call). A failed lookup is never stored.
The rows are personal data: expired ones are removed by ``purge_expired`` and a
customer's by ``forget`` (`callmood forget`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from plugin.store.engine import INSERT_ON_CONFLICT
from plugin.store.tables import PhoneLookup


def get(s: Session, phone: str) -> PhoneLookup | None:
    return s.execute(select(PhoneLookup).where(PhoneLookup.phone == phone)).scalar()


def put(s: Session, phone: str, customer_id: str | None, now: datetime) -> None:
    """Store the answer for ``phone``, replacing an older one. An upsert: two workers that
    looked up the same number at once both succeed (the later answer stays)."""
    values = {"phone": phone, "customer_id": customer_id, "looked_up_at": now}
    insert = INSERT_ON_CONFLICT.get(s.get_bind().dialect.name)
    if insert is None:  # another database: not atomic, but correct for one worker
        s.merge(PhoneLookup(**values))
        return
    stmt = insert(PhoneLookup).values(**values)
    s.execute(stmt.on_conflict_do_update(index_elements=[PhoneLookup.phone],
                                         set_={"customer_id": customer_id, "looked_up_at": now}))


def purge_expired(s: Session, hits_before: datetime, misses_before: datetime) -> int:
    """Remove answers no lookup would use any more: ids looked up before ``hits_before``,
    misses before ``misses_before``. How many went."""
    gone = s.execute(delete(PhoneLookup).where(PhoneLookup.customer_id.is_not(None),
                                               PhoneLookup.looked_up_at < hits_before)).rowcount
    gone += s.execute(delete(PhoneLookup).where(PhoneLookup.customer_id.is_(None),
                                                PhoneLookup.looked_up_at < misses_before)).rowcount
    return gone


def forget(s: Session, customer_id: str) -> int:
    """Remove the numbers cached for ``customer_id``; how many."""
    return s.execute(delete(PhoneLookup).where(PhoneLookup.customer_id == customer_id)).rowcount
