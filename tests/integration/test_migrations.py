"""Schema migrations keep the data of databases made by earlier versions."""

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text

from plugin.store import engine as db


def upgrade_to(engine, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_0003_renames_scenario_hint_to_queue_keeping_values(db_url):
    engine = db.make_engine(db_url)
    upgrade_to(engine, "0002")
    with engine.begin() as conn:  # a call stored by the previous version
        conn.execute(text("INSERT INTO calls (source, external_id, recording_url, scenario_hint, event, status, "
                          "received_at) VALUES ('generic', 'c-1', 'http://x', 'finance-complaints', '{}', "
                          "'received', '2026-11-24 10:00:00')"))
    db.upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("calls")}
    assert "queue" in columns and "scenario_hint" not in columns
    assert "ix_calls_analyzed_at" in {i["name"] for i in inspect(engine).get_indexes("calls")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT queue FROM calls WHERE external_id = 'c-1'")).scalar() == "finance-complaints"
    engine.dispose()
