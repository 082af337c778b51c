"""`callmood sync SOURCE --since ...`: reconciling missed pushes from the command line, with
one clear line for what it did or why it could not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import yaml
from sqlalchemy import select

from plugin.store import engine as db
from plugin.store.tables import Call
from tests.helpers import run_cli
from tests.integration.test_src_twilio import ACCOUNT, TOKEN, TwilioApi, listed, rec_sid


def write_config(tmp_path, db_url, **sources) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), "database": {"url": db_url},
                                    "sources": sources}), encoding="utf-8")
    return str(path)


def stored(db_url) -> set[str]:
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as c:
            return set(c.execute(select(Call.external_id)).scalars())
    finally:
        engine.dispose()


def test_sync_stores_what_is_missing_and_says_how_many(tmp_path, sqlite_url, fake):
    api = TwilioApi(fake())
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    api.list_recordings([listed(rec_sid(1), created=now - timedelta(hours=2)),
                         listed(rec_sid(2), created=now - timedelta(hours=1), status="absent")])
    cfg = write_config(tmp_path, sqlite_url,
                       twilio={"account_sid": ACCOUNT, "auth_token": TOKEN, "api_url": api.url})
    r = run_cli("sync", "twilio", "--since", "1d", "-c", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("; 1 new, 0 already here, 1 ignored"), r.stdout
    assert stored(sqlite_url) == {rec_sid(1)}
    again = run_cli("sync", "twilio", "--since", "1d", "-c", cfg)
    assert again.returncode == 0 and "0 new, 1 already here" in again.stdout
    assert TOKEN not in r.stdout + r.stderr + again.stdout + again.stderr


def test_sync_says_in_one_line_why_it_cannot(tmp_path, sqlite_url, fake):
    api = TwilioApi(fake())
    api.list_recordings([])
    cfg = write_config(tmp_path, sqlite_url, twilio={"account_sid": ACCOUNT, "auth_token": "wrong-token-123",
                                                     "api_url": api.url})
    cases = {
        ("sync", "nosuch"): "unknown source 'nosuch'; sources: aircall, alibaba, generic, tccc, twilio, zendesk",
        ("sync", "generic"): "source 'generic' cannot list its recordings; these can: tccc, twilio",
        ("sync", "twilio", "--since", "soon"): "--since",
        ("sync", "twilio"): "HTTP 401",
    }
    for args, expected in cases.items():
        r = run_cli(*args, "-c", cfg)
        assert r.returncode != 0, args
        assert expected in r.stderr, (args, r.stderr)
        assert "wrong-token-123" not in r.stderr


def test_a_sync_schedule_on_a_source_that_cannot_sync_is_refused_at_load(tmp_path):
    from plugin import config as config_mod

    for key, value in (("sync_interval_s", 60), ("sync_schedule", "0 2 * * *")):
        try:
            config_mod.load(None, overrides={"sources": {"aircall": {key: value}}})
        except config_mod.ConfigError as exc:
            assert "sources.aircall: aircall cannot list its recordings" in str(exc)
            assert "these can: tccc, twilio" in str(exc)
        else:
            raise AssertionError(f"{key} accepted on aircall")
    config_mod.load(None, overrides={"sources": {"twilio": {"sync_schedule": "0 2 * * *"}}})
