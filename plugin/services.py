"""The composition root: everything the web app, the worker and the delivery loop share,
built once from the config. Other modules take the parts they use, not this container."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from connectors.sinks import Sink, build_sinks
from plugin.config import Config, ConfigError
from plugin.core import keys
from plugin.core.clock import Clock, DatabaseClock
from plugin.core.signing import CallLinkSigner
from plugin.flow import notify
from plugin.flow.context import Links
from plugin.flow.identity import CustomerIdentity
from plugin.flow.lookups import PhoneBooks
from plugin.flow.intake import Intake
from plugin.flow.outbox import Outbox
from plugin.flow.outputs import Outputs
from plugin.flow.pipeline import Pipeline
from plugin.flow.rules_watch import RulesHolder
from plugin.flow.runtime import Runtime
from plugin.model.loading import ModelService
from plugin.store import engine as db
from plugin.store import retention
from plugin.store.accounts import Accounts
from plugin.store.deliveries import DeliveryQueue
from plugin.store.forget import forget_customer
from plugin.store.jobs import JobQueue
from rules.engine import RuleSet

log = logging.getLogger(__name__)


@dataclass
class Services:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock  # the one clock (the database's on PostgreSQL); tests put a ManualClock here
    model: ModelService
    rules_holder: RulesHolder
    sinks: dict[str, Sink]
    # auth.secret_key, or the one kept in data_dir (plugin/core/keys.py); build() sets it.
    secret_key: str = field(repr=False)
    # identity.lookup's CSV files as parsed (re-read when they change), shared by every CustomerIdentity.
    phone_books: PhoneBooks = field(default_factory=PhoneBooks, repr=False)

    @property
    def rules(self) -> RuleSet:
        """The rules in force now (hot-reloaded: read it once per call, not once per process)."""
        return self.rules_holder.current

    @property
    def links(self) -> Links:
        return Links(self.config.server.public_url, self.link_signer)

    @property
    def link_signer(self) -> CallLinkSigner:
        auth = self.config.auth
        return CallLinkSigner(auth.link_key or self.secret_key, auth.link_days, self.clock.now)

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.sessions, self.clock)

    # The parts are built on each use from the fields above (they hold no state of their
    # own), so a part built after a test swaps the clock uses the new one; a Runtime keeps
    # the parts it was built with.

    @property
    def jobs(self) -> JobQueue:
        return JobQueue(self.sessions, self.clock, self.config.worker.lease_s, self.config.worker.retry_policy())

    @property
    def deliveries(self) -> DeliveryQueue:
        cfg = self.config.deliveries
        return DeliveryQueue(self.sessions, self.clock, cfg.lease_s, cfg.retry_policy())

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.sinks, self.deliveries, self.links)

    @property
    def identity(self) -> CustomerIdentity:
        """Customer ids for calls that came with a phone number only (plugin/flow/identity.py)."""
        return CustomerIdentity(self.config.identity, self.sessions, self.clock, self.phone_books)

    def outbox(self) -> Outbox:
        return Outbox(self.deliveries, self.sinks, self.config.deliveries.timeout_s)

    def pipeline(self) -> Pipeline:
        return Pipeline(config=self.config, sessions=self.sessions, clock=self.clock, jobs=self.jobs,
                        model=self.model, rules=lambda: self.rules_holder.current, outputs=self.outputs,
                        identity=self.identity)

    def flush_notifications(self) -> int:
        """Notifications due now (group_wait passed, quiet hours over) become deliveries."""
        return notify.flush_pending(self.sessions, self.clock, self.rules.routing, self.outputs)

    def purge(self, dry_run: bool = False, stop=None) -> list[retention.Purged]:
        """Remove what the retention policy no longer keeps (`retention:` in the config)."""
        policy = retention.Policy(**self.config.retention.model_dump(exclude={"interval_s"}))
        ident = self.config.identity
        return retention.purge(self.sessions, self.clock, policy, self.config.data_dir, dry_run, stop,
                               lookups_s=(ident.cache_s, ident.miss_cache_s))

    def forget(self, customer_id: str, dry_run: bool = False):
        """Remove every trace of one customer (plugin/store/forget.py); counts per kind."""
        return forget_customer(self.sessions, self.config.data_dir, customer_id, dry_run)

    def runtime(self, worker: bool = True, deliveries: bool = True) -> Runtime:
        """The process's background work (not started). Planning and sending alerts (the
        worker renders their URLs, deliveries send them) and looking customers up (the
        worker), like fetching recordings from the enabled sources (the worker), need their
        secrets now: an unset ${NAME} in them raises ConfigError here, before anything runs."""
        self.config.require_env(*(["sinks"] if worker or deliveries else []),
                                *(["identity.lookup", *self.config.enabled_sources()] if worker else []))
        return Runtime(config=self.config, model=self.model, rules=self.rules_holder, jobs=self.jobs,
                       pipeline=self.pipeline(), outbox=self.outbox(), flush_notifications=self.flush_notifications,
                       purge=self.purge, worker=worker, deliveries=deliveries, intake=self.intake())

    def intake(self) -> Intake:
        """Stores what sources receive (webhooks, `callmood sync`)."""
        return Intake(self.sessions, self.jobs)

    def close(self) -> None:
        self.engine.dispose()


def build(config: Config, migrate: bool = True) -> Services:
    """Connect the database (migrating it), load rules and sinks. Raises on bad rules."""
    try:
        secret = keys.secret_key(config.auth.secret_key, config.data_dir)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"auth.secret_key: {exc}") from None
    engine = db.make_engine(config.database_url, echo=config.database.echo)
    if migrate:
        db.upgrade(engine)
    sinks = build_sinks(config.sinks)
    # With sinks configured, a rule naming another one is a typo and is refused. With none
    # (the embedded defaults) alerts are stored and shown, and their actions skipped.
    rules = RulesHolder.load(config.rules_path, {name: sink.messaging for name, sink in sinks.items()} or None)
    for name in sorted(rules.current.sinks() - set(sinks)):
        log.warning("rules use sink %r but config has no sinks.%s: those actions are skipped",
                    name, name)
    return Services(config, engine, db.make_sessionmaker(engine), DatabaseClock(),
                    ModelService(config.model, config.asr), rules, sinks, secret_key=secret)
