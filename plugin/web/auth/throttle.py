"""Login throttling: after ``auth.login_max_failures`` failed logins for one account, or
from one address, within ``auth.login_window_s``, logins there wait. The failures are
rows in the database, so every web process counts the same ones."""

from __future__ import annotations

import math
from datetime import timedelta

from plugin.config import AuthConfig
from plugin.store.accounts import Accounts


def keys(name: str, address: str | None) -> list[str]:
    return [f"user:{name}", f"ip:{address or '-'}"]


def retry_after(accounts: Accounts, cfg: AuthConfig, name: str, address: str | None,
                counted: int = 0) -> int:
    """Seconds until a login for ``name`` from ``address`` is allowed again (0: now), with
    ``counted`` attempts of this very request already among the rows."""
    wait = 0.0
    allowed = cfg.login_max_failures + counted
    for key in keys(name, address):
        times, now = accounts.recent_failures(key, cfg.login_window_s)
        if len(times) >= allowed:
            # Allowed once enough of the failures have aged out of the window.
            frees = times[len(times) - allowed] + timedelta(seconds=cfg.login_window_s)
            wait = max(wait, (frees - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else 0


def attempt(accounts: Accounts, cfg: AuthConfig, name: str, address: str | None) -> tuple[list[int], int]:
    """Count this attempt first, then look: parallel guesses each see the others' rows, so
    no more than ``login_max_failures`` passwords are ever checked per window (checking
    first and counting after let 12 of 30 simultaneous guesses through). Returns the
    attempt's rows (forgotten if the password is right) and the wait (0: go ahead)."""
    ids = accounts.login_failed(keys(name, address), cfg.login_window_s)
    return ids, retry_after(accounts, cfg, name, address, counted=1)


def succeeded(accounts: Accounts, name: str, attempt_ids: list[int]) -> None:
    """A right password clears the account's failures (not the address's, but for the
    attempt itself)."""
    accounts.forget_attempt(attempt_ids)
    accounts.clear_failures(keys(name, None)[0])
