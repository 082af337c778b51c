"""The benchmarks' databases: an SQLite file in the run's folder, or a PostgreSQL database
of their own, created for the run and dropped after it (never anyone else's data)."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

_COUNTER = itertools.count(1)


@contextlib.contextmanager
def database(admin_url: str | None, tmp: str | Path, prefix: str = "callmood_bench"):
    """Yields the URL to use: SQLite under ``tmp`` when ``admin_url`` is None."""
    if admin_url is None:
        yield f"sqlite:///{Path(tmp) / 'var' / 'callmood.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{os.getpid()}_{next(_COUNTER)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def postgres_problem(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else the first line of why not."""
    from sqlalchemy import create_engine, text

    try:
        eng = create_engine(url)
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]
