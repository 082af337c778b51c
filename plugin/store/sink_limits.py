"""Rate limits of the APIs sinks talk to, kept in the database (``sink_sends``) so that
they hold across every worker process: the WeCom robot's 20 messages a minute, the WeCom
app's 30 a minute and 1,000 an hour per member (connectors/sinks: ``Sink.limits``).

A send takes its slot before it goes out: its rows are inserted first, then the window is
counted with them in. On SQLite the insert takes the database's write lock, so two
workers count one after the other; on PostgreSQL a transaction-scoped advisory lock per
sink does the same. A send that does not fit takes nothing and learns how long
until the oldest counted send leaves the window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from plugin.core.clock import Clock
from plugin.store.tables import SinkSend

MARGIN_S = 0.5  # after the window frees a slot, so that clocks rounding differently agree


class LimitLike(Protocol):  # connectors.sinks.base.Limit
    key: str
    per_s: float
    max: int


@dataclass(frozen=True)
class Slot:
    ok: bool  # the send may go out now (its slot is taken)
    wait_s: float = 0.0  # not ok: when to try again
    left: int = 0  # ok: sends left in the tightest window after this one (0: this was the last)
    why: str = ""  # not ok: which limit, for the delivery's record


class SinkLimiter:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock):
        self.sessions = sessions
        self.clock = clock

    def take(self, sink: str, limits: list[LimitLike], delivery_id: int | None = None) -> Slot:
        keys = sorted({lim.key for lim in limits})
        longest = max(lim.per_s for lim in limits)
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            if s.get_bind().dialect.name == "postgresql":
                # One lock per sink (not per key: a message to a thousand members would take a
                # thousand locks): its senders take turns, each for a few statements.
                h = hashlib.blake2b(f"callmood-limit\0{sink}".encode(), digest_size=8).digest()
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(h, "big", signed=True)})
            s.execute(delete(SinkSend).where(SinkSend.sink == sink, SinkSend.key.in_(keys),
                                             SinkSend.at < now - timedelta(seconds=longest)))
            mine = [SinkSend(sink=sink, key=key, at=now, delivery_id=delivery_id) for key in keys]
            s.add_all(mine)
            s.flush()
            mine_ids = [m.id for m in mine]
            # Every key's count in each window length, ours included, in one query per length.
            counts: dict[tuple[str, float], int] = {}
            for per_s in sorted({lim.per_s for lim in limits}):
                since = now - timedelta(seconds=per_s)
                rows = s.execute(select(SinkSend.key, func.count()).where(
                    SinkSend.sink == sink, SinkSend.key.in_(keys), SinkSend.at > since)
                    .group_by(SinkSend.key)).all()
                counts.update({(key, per_s): n for key, n in rows})
            wait, left, why = 0.0, None, ""
            for lim in limits:
                n = counts.get((lim.key, lim.per_s), 0)
                if n > lim.max:
                    # The sends that must leave the window before this one fits (ours excluded).
                    since = now - timedelta(seconds=lim.per_s)
                    times = s.execute(select(SinkSend.at).where(
                        SinkSend.sink == sink, SinkSend.key == lim.key, SinkSend.at > since,
                        SinkSend.id.notin_(mine_ids)).order_by(SinkSend.at)
                        .limit(n - lim.max)).scalars().all()
                    free_at = times[-1] + timedelta(seconds=lim.per_s) if times else now
                    w = max((free_at - now).total_seconds(), 0.0) + MARGIN_S
                    if w > wait:
                        wait, why = w, f"{lim.max} per {lim.per_s:g}s for {lim.key}"
                else:
                    left = lim.max - n if left is None else min(left, lim.max - n)
            if wait:
                s.execute(delete(SinkSend).where(SinkSend.id.in_(mine_ids)))
                return Slot(False, wait_s=wait, why=why)
            return Slot(True, left=left or 0)
