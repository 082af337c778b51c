"""Store what a source received: each call with its analysis job in one transaction, a
participant's recording added to its call, a vendor's push id remembered. Used by the
webhook (plugin/web/webhooks.py) and by reconciling (`callmood sync`), so a pushed call
and a listed one are the same call.

The same event twice makes one call; the same push twice (by its push id) is looked at
once; a participant's file pushed twice is one part. A call keeps at most MAX_PARTS
participants' files: an authenticated sender pushing part after part of one call must not
grow its row (rewritten whole at each part) without end, nor queue one analysis per part.
"""

from __future__ import annotations

import logging

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from connectors.sources.base import Accepted, Received
from plugin.core.data import MAX_PARTS, CallEvent
from plugin.store.engine import INSERT_ON_CONFLICT
from plugin.store.jobs import JobQueue
from plugin.store.tables import Call, Job, WebhookPush

log = logging.getLogger(__name__)

BOTH = {"agent", "customer"}


class Intake:
    def __init__(self, sessions: sessionmaker[Session], jobs: JobQueue):
        self.sessions = sessions
        self.jobs = jobs
        self.clock = jobs.clock

    def take(self, source: str, received: Received) -> list[Accepted] | None:
        """Store ``received``'s events; None when its push id was seen before."""
        for attempt in range(3):
            try:
                with self.sessions.begin() as s:
                    if received.push_id is not None and not self._first_push(s, source, received.push_id):
                        return None
                    return [self._one(s, event, received.assemble_s) for event in received.events]
            except IntegrityError:
                # Two deliveries of the same event (or of two parts of a new call) raced and the
                # other one won: once more, and it is found.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _first_push(self, s: Session, source: str, push_id: str) -> bool:
        seen = s.execute(select(WebhookPush.id).where(WebhookPush.source == source,
                                                      WebhookPush.push_id == push_id)).first()
        if seen:
            return False
        s.add(WebhookPush(source=source, push_id=push_id, received_at=self.clock.now(s)))
        s.flush()
        return True

    def _one(self, s: Session, event: CallEvent, assemble_s: float | None) -> Accepted:
        if assemble_s is not None and event.recordings:
            return self._part(s, event, assemble_s)
        # A prepared SELECT, then a prepared INSERT ... ON CONFLICT DO NOTHING: no ORM objects
        # on the webhook's path (their unit of work cost more than the database did). The
        # SELECT comes first so that a vendor's retry or a replayed event costs no id from
        # PostgreSQL's sequence (the insert takes one even when it does nothing). A twin that
        # commits between the two makes the insert do nothing: then it is found; a call
        # forgotten (`callmood forget`) between them is inserted again.
        now = self.clock.now(s)
        for _ in range(3):
            found = _existing(s, event)
            if found is not None:
                return Accepted(*found, duplicate=True)
            call_id = _insert_ignoring_twin(s, _call_values(event, now)).scalar()
            if call_id is not None:
                return Accepted(call_id, self.jobs.enqueue_id(s, call_id, now=now), duplicate=False)
        raise RuntimeError(f"call {event.call_id!r} of {event.source} kept appearing and vanishing")

    def _part(self, s: Session, event: CallEvent, assemble_s: float) -> Accepted:
        """One participant's recording: a new call waiting assemble_s for the others, or a
        part added to its call, which is then analysed at once when agent and customer are
        both there (again, when it was analysed with fewer)."""
        now = self.clock.now(s)
        row = s.execute(select(Call.id).where(Call.source == event.source,
                                              Call.external_id == event.call_id)).first()
        if row is None:
            call = _new_call(s, event, now)
            complete = BOTH <= {r["role"] for r in call.recordings}
            job = self.jobs.enqueue(s, call.id, delay_s=0 if complete else assemble_s)
            return Accepted(call.id, job.id, duplicate=False)

        # The row is locked before it is read (an UPDATE takes the lock on PostgreSQL and
        # SQLite's write lock alike), so two parts arriving together both land.
        s.execute(update(Call).where(Call.id == row[0]).values(recordings=Call.recordings))
        call = s.get(Call, row[0], populate_existing=True)
        if not call.recordings:  # stored as one file holding the whole call: that is what is analysed
            log.warning("call %s holds the whole call in one file; a participant's recording of it was not added",
                        call.id)
            return Accepted(call.id, _first_job(s, call.id), duplicate=True)
        parts = list(call.recordings)
        new = [_part_dict(r) for r in event.recordings
               if not any(_same_part(p, _part_dict(r)) for p in parts)]
        if new and len(parts) >= MAX_PARTS:
            log.warning("call %s already has %d participants' recordings (the most kept); a further one "
                        "was not added", call.id, len(parts))
            new = []
        if not new:
            return Accepted(call.id, _first_job(s, call.id), duplicate=True)
        call.recordings = parts + new[:MAX_PARTS - len(parts)]
        _fill_blanks(call, event)
        complete = BOTH <= {p["role"] for p in call.recordings}
        # Locked, and its status read again once locked (PostgreSQL re-checks the WHERE after a
        # wait): a worker claiming it right now (SKIP LOCKED) either skips it, or has it, and
        # then the call is queued once more -- the worker may have read the parts before ours.
        queued = s.execute(select(Job).where(Job.call_id == call.id, Job.status == "queued")
                           .order_by(Job.id).with_for_update()).scalars().first()
        if queued is not None:
            if complete:
                queued.run_after = now
            job_id = queued.id
        else:  # already analysed (or being analysed) with fewer parts: once more with all of them
            job_id = self.jobs.enqueue(s, call.id, delay_s=0 if complete else assemble_s).id
            log.info("call %s: a late participant's recording arrived; analysing again", call.id)
        return Accepted(call.id, job_id, duplicate=False)


def _call_values(event: CallEvent, now) -> dict:
    return dict(source=event.source, external_id=event.call_id,
                recording_url=event.recording_url, customer_id=event.customer_id,
                customer_phone=event.customer_phone, agent_id=event.agent_id,
                queue=event.queue, ticket_id=event.ticket_id,
                channel_roles={str(k): v for k, v in event.channel_roles.items()}
                if event.channel_roles else None,
                recordings=[_part_dict(r) for r in event.recordings[:MAX_PARTS]] or None,
                identity="given" if event.customer_id else None,
                event=event.raw, received_at=now, status="received")


def _new_call(s: Session, event: CallEvent, now) -> Call:
    call = Call(**_call_values(event, now))
    s.add(call)
    s.flush()
    return call


# Built once per database, given their values as parameters on the session's connection:
# building a 17-value statement per webhook (its cache key, the ORM's bulk layer) cost
# several times what SQLite spent storing it.
_INSERT_CALL = {name: insert(Call.__table__).on_conflict_do_nothing(index_elements=["source", "external_id"])
                .returning(Call.__table__.c.id) for name, insert in INSERT_ON_CONFLICT.items()}


def _insert_ignoring_twin(s: Session, values: dict):
    """INSERT INTO calls ... ON CONFLICT (source, external_id) DO NOTHING RETURNING id."""
    dialect = s.get_bind().dialect.name
    if dialect not in _INSERT_CALL:
        raise ValueError(f"database {dialect!r} is not supported (SQLite or PostgreSQL)")
    return s.connection().execute(_INSERT_CALL[dialect], values)


def _fill_blanks(call: Call, event: CallEvent) -> None:
    # A later part may know what the first did not (the agent's push names the agent).
    for name in ("customer_id", "customer_phone", "agent_id", "queue", "ticket_id"):
        if getattr(call, name) is None and getattr(event, name) is not None:
            setattr(call, name, getattr(event, name))
    if call.identity is None and call.customer_id:
        call.identity = "given"


def _part_dict(r) -> dict:
    return {"url": r.url, "role": r.role, "id": r.id}


def _same_part(a: dict, b: dict) -> bool:
    if a.get("id") and b.get("id"):
        return a["id"] == b["id"]
    return a["url"] == b["url"]


_EXISTING = (select(Call.id, Job.id).outerjoin(Job, Job.call_id == Call.id)
             .where(Call.source == bindparam("source"), Call.external_id == bindparam("external_id"))
             .order_by(Job.id).limit(1))


def _existing(s: Session, event: CallEvent) -> tuple[int, int | None] | None:
    """The stored call of ``event`` and its first job (None for a call that has none)."""
    row = s.connection().execute(_EXISTING, {"source": event.source, "external_id": event.call_id}).first()
    return (row[0], row[1]) if row else None


def _first_job(s: Session, call_id: int) -> int | None:
    return s.execute(select(Job.id).where(Job.call_id == call_id).order_by(Job.id).limit(1)).scalar()
