"""Migration 0009 (who handles a red-flagged customer; the red-flag list's indexes) keeps
what earlier versions stored, and rolls back, on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import inspect, text

from plugin.store import engine as db


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_url")


def test_0009_adds_handling_and_the_lists_indexes_and_rolls_back(empty_db_url):
    engine = db.make_engine(empty_db_url)
    db.upgrade(engine, "0008")
    with engine.begin() as conn:  # a call with an alert, stored by the previous version
        conn.execute(text("INSERT INTO calls (id, source, external_id, recording_url, customer_id, customer_phone, "
                          "event, status, received_at) VALUES (1, 'generic', 'c-1', 'http://x', 'cust-1', "
                          "'+8613800000000', '{}', 'analyzed', '2026-11-24 10:00:00')"))
        conn.execute(text("INSERT INTO alerts (id, call_id, rule, scenario, severity, role, emotions, share, "
                          "confidence, matched, summary, customer_id, created_at, labels, details, routing) VALUES "
                          "(1, 1, 'r', 'general', 'warning', 'customer', '[]', 1, 0.9, '[]', 's', 'cust-1', "
                          "'2026-11-24 10:00:00', '{}', '{}', '[]')"))
    db.upgrade(engine)
    found = inspect(engine)
    assert {"customer_handling", "customer_handling_events"} <= set(found.get_table_names())
    assert {"ix_alerts_created_at", "ix_alerts_customer_recent"} <= {i["name"] for i in found.get_indexes("alerts")}
    assert "ix_calls_customer_phone" in {i["name"] for i in found.get_indexes("calls")}
    with engine.begin() as conn:
        assert conn.execute(text("SELECT customer_id FROM alerts")).scalar() == "cust-1"
        conn.execute(text("INSERT INTO customer_handling (customer_id, acknowledged_by, acknowledged_at, updated_at) "
                          "VALUES ('cust-1', 'sup', '2026-11-24 10:05:00', '2026-11-24 10:05:00')"))
        with pytest.raises(Exception):  # one current row per customer
            with conn.begin_nested():
                conn.execute(text("INSERT INTO customer_handling (customer_id, updated_at) "
                                  "VALUES ('cust-1', '2026-11-24 10:06:00')"))
    db.downgrade(engine, "0008")
    found = inspect(engine)
    assert "customer_handling" not in found.get_table_names()
    assert "ix_alerts_customer_recent" not in {i["name"] for i in found.get_indexes("alerts")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alerts")).scalar() == 1
    engine.dispose()
