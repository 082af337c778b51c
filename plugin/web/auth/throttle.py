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


def retry_after(accounts: Accounts, cfg: AuthConfig, name: str, address: str | None) -> int:
    """Seconds until a login for ``name`` from ``address`` is allowed again (0: now)."""
    wait = 0.0
    for key in keys(name, address):
        times, now = accounts.recent_failures(key, cfg.login_window_s)
        if len(times) >= cfg.login_max_failures:
            # Allowed once enough of the failures have aged out of the window.
            frees = times[len(times) - cfg.login_max_failures] + timedelta(seconds=cfg.login_window_s)
            wait = max(wait, (frees - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else 0


def failed(accounts: Accounts, cfg: AuthConfig, name: str, address: str | None) -> None:
    accounts.login_failed(keys(name, address), cfg.login_window_s)


def succeeded(accounts: Accounts, name: str) -> None:
    """A right password clears the account's failures (not the address's)."""
    accounts.clear_failures(keys(name, None)[0])
