"""Engine, sessions and schema migrations (Alembic)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from plugin.core import files

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# The INSERT with ON CONFLICT of each database CallMood runs on, by dialect name.
INSERT_ON_CONFLICT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _private_sqlite_file(Path(url[len("sqlite:///"):]))
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL lets the web receiver write while a worker reads; busy_timeout waits out
            # the short write locks instead of failing.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def _private_sqlite_file(path: Path) -> None:
    """The database file (and the -wal and -shm files SQLite makes with the same mode as
    the database) readable by this user only; its folder 0700 when we create it."""
    if not path.parent.exists():
        files.private_dir(path.parent)
    else:
        files.warn_if_open(path.parent)
    files.private_file(path)  # SQLite takes an empty file for a new database
    for extra in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + extra)
        if side.exists():
            files.private_file(side)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, by default the newest (safe to run at every start)."""
    from alembic import command

    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (rolling back a release)."""
    from alembic import command

    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step, revision: str) -> None:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        step(cfg, revision)
