"""Schema migrations keep the data of databases made by earlier versions."""

import pytest
from sqlalchemy import inspect, text

from plugin.store import engine as db


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request, tmp_path) -> str:
    """A database with no schema at all (db_url's SQLite files come migrated already)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_url")


def test_0003_renames_scenario_hint_to_queue_keeping_values(empty_db_url):
    engine = db.make_engine(empty_db_url)  # on SQLite with foreign keys on, as the service runs it
    db.upgrade(engine, "0002")
    with engine.begin() as conn:  # an analysed call stored by the previous version, with what points at it
        conn.execute(text("INSERT INTO calls (id, source, external_id, recording_url, scenario_hint, event, status, "
                          "received_at) VALUES (1, 'generic', 'c-1', 'http://x', 'finance-complaints', '{}', "
                          "'analyzed', '2026-11-24 10:00:00')"))
        conn.execute(text("INSERT INTO jobs (id, call_id, kind, status, attempts, run_after, created_at) "
                          "VALUES (1, 1, 'analyze', 'done', 1, '2026-11-24 10:00:00', '2026-11-24 10:00:00')"))
        conn.execute(text("INSERT INTO segments (call_id, channel, role, start, \"end\", label, confidence, scores) "
                          "VALUES (1, 1, 'customer', 0, 3, 'angry', 0.9, '{}')"))
        conn.execute(text("INSERT INTO alerts (id, call_id, rule, scenario, severity, role, emotions, share, "
                          "confidence, matched, summary, created_at, labels, details, routing) VALUES (1, 1, 'r', "
                          "'general', 'warning', 'customer', '[]', 1, 0.9, '[]', 's', '2026-11-24 10:00:00', '{}', "
                          "'{}', '[]')"))
        conn.execute(text("INSERT INTO deliveries (alert_id, sink, payload, status, attempts, next_attempt_at, "
                          "created_at) VALUES (1, 'crm', '{}', 'delivered', 1, '2026-11-24 10:00:00', "
                          "'2026-11-24 10:00:00')"))
    db.upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("calls")}
    assert "queue" in columns and "scenario_hint" not in columns
    assert "ix_calls_analyzed_at" in {i["name"] for i in inspect(engine).get_indexes("calls")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT queue FROM calls WHERE external_id = 'c-1'")).scalar() == "finance-complaints"
        for table in ("jobs", "segments", "alerts", "deliveries"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 1
    db.downgrade(engine, "0002")  # and back, for an operator who has to roll back
    with engine.connect() as conn:
        assert conn.execute(text("SELECT scenario_hint FROM calls")).scalar() == "finance-complaints"
    engine.dispose()


def test_the_migrations_make_the_schema_the_tables_describe(empty_db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from plugin.store.tables import Base

    engine = db.make_engine(empty_db_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
