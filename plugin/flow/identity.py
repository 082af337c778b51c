"""Which CRM customer a call is with, when the contact center sent only a phone number.

Run at the start of each analysis (plugin/flow/pipeline.py), so that rules, alerts and
CRM write-backs see the customer id. It sets ``calls.identity``:

- ``given``: the event carried a customer id (kept as it is);
- ``matched``: the lookup (``identity.lookup``) found the number's customer id, now
  ``calls.customer_id``;
- ``unmatched``: no usable number, no lookup configured, or the lookup knows no such
  customer; the call is analysed all the same;
- ``lookup_failed``: the lookup could not answer (the CRM down, slow, or answering
  something that is not an id). Not "unmatched": that would tell the operator the CRM has
  no such customer when it was never asked, and the call would never be looked at again.
  Nothing is cached, a warning is logged, and the call is analysed without a customer id;
  a re-analysis asks again, and ``GET /api/calls?identity=lookup_failed`` lists them.

REST answers are cached in ``phone_lookups``: an id for ``cache_s``, "no such customer"
for ``miss_cache_s`` (a new customer is often created in the CRM during their first call).
A CSV file is not cached there: it is read from memory, re-read when it changes, so an
edit applies at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from plugin.config import CsvLookupConfig, IdentityConfig, RestLookupConfig
from plugin.core import scrub
from plugin.core.clock import Clock
from plugin.core.phones import e164
from plugin.flow.lookups import LookupFailed, PhoneBook, PhoneBooks, RestLookup
from plugin.store import phone_lookups
from plugin.store.tables import Call

log = logging.getLogger(__name__)

GIVEN, MATCHED, UNMATCHED, LOOKUP_FAILED = "given", "matched", "unmatched", "lookup_failed"
IDENTITIES = (GIVEN, MATCHED, UNMATCHED, LOOKUP_FAILED)


class CustomerIdentity:
    def __init__(self, cfg: IdentityConfig, sessions: sessionmaker[Session], clock: Clock,
                 books: PhoneBooks | None = None):
        """``books``: the process's parsed CSV files (Services keeps one), so a CSV is not
        parsed again for every call."""
        self.cfg = cfg
        self.sessions = sessions
        self.clock = clock
        self.rest: RestLookup | None = None
        self.book: PhoneBook | None = None
        if isinstance(cfg.lookup, RestLookupConfig):
            self.rest = RestLookup(cfg.lookup)
        elif isinstance(cfg.lookup, CsvLookupConfig):
            self.book = (books or PhoneBooks()).get(cfg.lookup.path, cfg.default_region)

    def resolve(self, call_id: int, http: requests.Session) -> str | None:
        """Set the call's identity (and its customer id when found); which one it is now.
        Never raises for a lookup that fails: the call is analysed all the same."""
        with self.sessions() as s:
            call = s.get(Call, call_id)
            if call is None:
                return None
            given, phone, identity = call.customer_id, call.customer_phone, call.identity
        if given:
            if identity is None:
                self._set(call_id, Call.identity.is_(None), identity=GIVEN)
            return identity or GIVEN
        number = e164(phone, self.cfg.default_region)  # also a number a source kept as written
        if number is None or (self.rest is None and self.book is None):
            return self._set(call_id, Call.customer_id.is_(None), identity=UNMATCHED)
        try:
            found = self._find(number, http)
        except LookupFailed as exc:
            log.warning("call %s: customer lookup for %s failed: %s; analysed without a customer id "
                        "(identity %s, asked again at the next analysis)", call_id, scrub.phone(number),
                        scrub.phones(scrub.text(exc)), LOOKUP_FAILED)
            return self._set(call_id, Call.customer_id.is_(None), identity=LOOKUP_FAILED)
        if found is None:
            return self._set(call_id, Call.customer_id.is_(None), identity=UNMATCHED)
        log.info("call %s: customer %s found by phone number", call_id, found)
        return self._set(call_id, Call.customer_id.is_(None), identity=MATCHED, customer_id=found)

    def _find(self, number: str, http: requests.Session) -> str | None:
        if self.book is not None:
            return self.book.find(number)
        with self.sessions() as s:
            row = phone_lookups.get(s, number)
            if row is not None and self._fresh(row.customer_id, row.looked_up_at, self.clock.now(s)):
                return row.customer_id
        found = self.rest.find(number, http)  # outside any transaction: the CRM may be slow
        if self._keep_s(found) > 0:
            with self.sessions.begin() as s:
                phone_lookups.put(s, number, found, self.clock.now(s))
        return found

    def _keep_s(self, customer_id: str | None) -> float:
        return self.cfg.cache_s if customer_id is not None else self.cfg.miss_cache_s

    def _fresh(self, customer_id, looked_up_at, now) -> bool:
        return now - looked_up_at < timedelta(seconds=self._keep_s(customer_id))

    def _set(self, call_id: int, unless_changed, **values) -> str:
        # Only while the call is as we read it (no customer id yet / no identity yet): an
        # event stored meanwhile with the customer's id wins over a lookup.
        with self.sessions.begin() as s:
            s.execute(update(Call).where(Call.id == call_id, unless_changed).values(**values))
        return values["identity"]

    def purge_expired(self) -> int:
        """Remove cached answers no lookup would use any more (phone numbers are personal
        data); how many. For the retention purge."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            return phone_lookups.purge_expired(s, now - timedelta(seconds=self.cfg.cache_s),
                                               now - timedelta(seconds=self.cfg.miss_cache_s))
