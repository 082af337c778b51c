"""No change made with keep_an_admin leaves the service without an enabled admin, also
when two admins demote each other at the same moment (PostgreSQL: the admins' rows are
locked before the change is checked)."""

from __future__ import annotations

import threading

import pytest

from plugin.core import passwords
from plugin.store.accounts import LastAdminError
from tests.conftest import make_config

HASH = passwords.hash_password("correct horse battery")


@pytest.fixture
def accounts(tmp_path, db_url, app_factory):
    svc, _client = app_factory(make_config(tmp_path, None, db_url), role=None)
    for name in ("ann", "bob"):
        svc.accounts.add_user(name, "admin", HASH)
    return svc.accounts


def test_the_last_enabled_admin_stays(accounts):
    accounts.set_role("ann", "viewer", keep_an_admin=True)
    with pytest.raises(LastAdminError):
        accounts.set_role("bob", "supervisor", keep_an_admin=True)
    with pytest.raises(LastAdminError):
        accounts.disable("bob", keep_an_admin=True)
    bob = accounts.user("bob")
    assert bob.role == "admin" and bob.disabled_at is None
    accounts.disable("bob")  # the CLI's way (no guard): whoever holds the server may
    assert accounts.user("bob").disabled_at is not None


def test_two_admins_demoting_each_other_at_once_leave_one(accounts):
    barrier, outcomes = threading.Barrier(2), []

    def demote(name):
        barrier.wait()
        try:
            accounts.set_role(name, "viewer", keep_an_admin=True)
            outcomes.append("done")
        except LastAdminError:
            outcomes.append("refused")
        except Exception as exc:  # SQLite may refuse the second writer outright: also no change
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=demote, args=(n,)) for n in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("done") == 1, outcomes
    assert [u.name for u in accounts.users() if u.role == "admin" and u.disabled_at is None] != []
