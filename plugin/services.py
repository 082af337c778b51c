"""Everything the web app, the worker and the delivery loop share, built once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from connectors.sinks import Sink, build_sinks
from plugin import db
from plugin.config import Config
from plugin.inference import ModelService
from plugin.models import Call, utcnow
from plugin.rules_watch import RulesHolder
from rules.engine import RuleSet

log = logging.getLogger(__name__)


@dataclass
class Services:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    model: ModelService
    rules_holder: RulesHolder
    sinks: dict[str, Sink]
    # Naive-UTC "now" for cooldowns, grouping and quiet hours; tests substitute their own clock.
    clock: Callable[[], datetime] = field(default=utcnow)

    @property
    def rules(self) -> RuleSet:
        """The rules in force now (hot-reloaded: read it once per call, not once per process)."""
        return self.rules_holder.current

    def call_link(self, call_id: int) -> str:
        return f"{self.config.server.public_url.rstrip('/')}/calls/{call_id}"

    def close(self) -> None:
        self.engine.dispose()


def build(config: Config, migrate: bool = True) -> Services:
    """Connect the database (migrating it), load rules and sinks. Raises on bad rules."""
    engine = db.make_engine(config.database_url, echo=config.database.echo)
    if migrate:
        db.upgrade(engine)
    sinks = build_sinks(config.sinks)
    # With sinks configured, a rule naming another one is a typo and is refused. With none
    # (the embedded defaults) alerts are stored and shown, and their actions skipped.
    rules = RulesHolder.load(config.rules_path, set(sinks) or None)
    for name in sorted(rules.current.sinks() - set(sinks)):
        log.warning("rules use sink %r but config has no sinks.%s: those actions are skipped",
                    name, name)
    return Services(config, engine, db.make_sessionmaker(engine), ModelService(config.model),
                    rules, sinks)


def call_context(call: Call) -> dict[str, Any]:
    """What templates and rules see of a call.

    ``tags`` and ``customer_tier`` come from the event's fields of those names when the
    helpdesk sends them; ``metadata`` is the whole event as received."""
    event = call.event if isinstance(call.event, dict) else {}
    tags = event.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    return {
        "id": call.id, "source": call.source, "external_id": call.external_id,
        "customer_id": call.customer_id, "customer_phone": call.customer_phone,
        "agent_id": call.agent_id, "ticket_id": call.ticket_id,
        "scenario_hint": call.scenario_hint, "queue": call.scenario_hint,
        "recording_url": call.recording_url, "duration_s": call.duration_s,
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "customer_tier": event.get("customer_tier"),
        "metadata": event,
    }
