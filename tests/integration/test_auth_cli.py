"""`callmood users` and `callmood tokens` as an operator runs them, against SQLite and
PostgreSQL; the first-admin hint of `callmood serve`; the secret key file."""

from __future__ import annotations

import json
import os
import stat

import pytest

from plugin.core import keys, passwords
from plugin.services import build
from plugin.web.app import create_app
from tests.conftest import make_config
from tests.helpers import run_cli

PASSWORD = "correct horse battery"


@pytest.fixture
def cfg(tmp_path, db_url):
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {tmp_path / 'var'}\ndatabase: {{url: {json.dumps(db_url)}}}\n")
    return p


def users(cfg) -> dict[str, list[str]]:
    r = run_cli("users", "list", "-c", cfg)
    assert r.returncode == 0, r.stderr
    return {line.split("\t")[0]: line.split("\t")[1:] for line in r.stdout.splitlines()}


def test_users(cfg, tmp_path, db_url):
    r = run_cli("users", "add", "boss", "--role", "admin", "-c", cfg, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.returncode == 0 and r.stdout.strip() == "user boss added (admin)", r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    r = run_cli("users", "add", "eve", "--role", "viewer", "--password-stdin", "-c", cfg, input="short\n")
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == "Error: password too short: at least 10 characters"
    r = run_cli("users", "add", "evelyn.wong", "--role", "viewer", "--password-stdin", "-c", cfg,
                input="Evelyn.Wong\n")
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == "Error: password must not be the user name"
    r = run_cli("users", "add", "eve", "--role", "viewer", "-c", cfg, input=f"{PASSWORD}\nsomething else!\n")
    assert r.returncode == 1 and "eve" not in users(cfg)
    r = run_cli("users", "add", "boss", "--role", "viewer", "--password-stdin", "-c", cfg, input=f"{PASSWORD}\n")
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == "Error: user 'boss' already exists"
    r = run_cli("users", "add", "bad name", "--role", "viewer", "--password-stdin", "-c", cfg, input=f"{PASSWORD}\n")
    assert r.returncode == 1 and "user name 'bad name'" in r.stderr
    r = run_cli("users", "add", "x", "--role", "root", "--password-stdin", "-c", cfg, input=f"{PASSWORD}\n")
    assert r.returncode == 2 and "'root' is not one of 'viewer', 'supervisor', 'admin'" in r.stderr

    assert run_cli("users", "add", "sup", "--role", "viewer", "--password-stdin", "-c", cfg,
                   input=f"{PASSWORD}\n").returncode == 0
    assert users(cfg)["sup"][:3] == ["viewer", "local", "active"]
    assert run_cli("users", "set-role", "sup", "supervisor", "-c", cfg).returncode == 0
    assert users(cfg)["sup"][0] == "supervisor"
    r = run_cli("users", "passwd", "sup", "--password-stdin", "-c", cfg, input="a new password 2\n")
    assert r.returncode == 0 and "sessions have ended" in r.stdout
    assert run_cli("users", "disable", "sup", "-c", cfg).returncode == 0
    assert users(cfg)["sup"][2].startswith("disabled ")
    assert run_cli("users", "disable", "nobody", "-c", cfg).stderr.splitlines()[-1] == "Error: no user 'nobody'"

    svc = build(make_config(tmp_path, None, db_url))
    try:
        stored = svc.accounts.user("sup")
        assert stored.password_hash.startswith("$argon2id$") and stored.session_version == 3
        assert passwords.verify(stored.password_hash, "a new password 2")
        assert passwords.verify(svc.accounts.user("boss").password_hash, PASSWORD)
    finally:
        svc.close()


def test_tokens(cfg, tmp_path, db_url):
    r = run_cli("tokens", "create", "scraper", "--role", "viewer", "--expires-days", "30", "-c", cfg)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("cm_") and "\n" not in token and "shown only now" in r.stderr
    listed = run_cli("tokens", "list", "-c", cfg).stdout
    assert token not in listed and f"\tscraper\tviewer\t{token[:10]}…\texpires " in listed

    svc = build(make_config(tmp_path, None, db_url))
    try:
        client = create_app(services=svc).test_client()
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/calls", headers=auth).status_code == 200
        assert client.get("/api/users", headers=auth).status_code == 403
        token_id = listed.split("\t")[0]
        r = run_cli("tokens", "revoke", token_id, "-c", cfg)
        assert r.returncode == 0 and r.stdout.strip() == f"token {token_id} 'scraper' revoked"
        assert client.get("/api/calls", headers=auth).status_code == 401
        assert "\trevoked " in run_cli("tokens", "list", "-c", cfg).stdout
    finally:
        svc.close()
    assert run_cli("tokens", "revoke", "999", "-c", cfg).stderr.splitlines()[-1] == "Error: no token 999"
    r = run_cli("tokens", "create", "x", "--role", "viewer", "--expires-days", "0", "-c", cfg)
    assert r.returncode == 2


def test_the_secret_key_is_made_once_readable_by_its_owner_only(tmp_path):
    data = tmp_path / "var"
    key = keys.secret_key(None, data)
    path = data / "secret_key"
    assert len(key) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keys.secret_key(None, data) == key and keys.secret_key("x" * 40, data) == "x" * 40
    assert [p.name for p in data.iterdir()] == ["secret_key"]
    path.write_text("short\n")
    with pytest.raises(ValueError, match="secret key shorter than 32 characters"):
        keys.secret_key(None, data)


def test_a_bad_secret_key_is_one_clear_line(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {tmp_path / 'var'}\nauth: {{secret_key: too-short}}\n")
    r = run_cli("migrate", "-c", p)
    assert r.returncode == 1 and "auth.secret_key: String should have at least 32 characters" in r.stderr
    (tmp_path / "var2").mkdir()
    (tmp_path / "var2" / "secret_key").write_text("short")
    p.write_text(f"data_dir: {tmp_path / 'var2'}\n")
    r = run_cli("serve", "-c", p)
    assert r.returncode == 1 and r.stderr.strip().endswith("delete the file to make a new one")
