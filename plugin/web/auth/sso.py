"""Users who log in elsewhere (OpenID Connect, a trusted proxy): made here on their first
sign-in, with the role their groups give them each time."""

from __future__ import annotations

from plugin.store.accounts import AccountError, Accounts, check_name
from plugin.store.tables import User


class Refused(Exception):
    """Single sign-on worked, but this person may not in (the message says why)."""


def sign_in(accounts: Accounts, name: object, role: str | None, origin: str) -> User:
    if not isinstance(name, str) or not name:
        raise Refused("the identity provider sent no user name")
    try:
        check_name(name)
    except AccountError as exc:
        raise Refused(str(exc)) from None
    if role is None:
        raise Refused(f"{name} is in no group that has a role here")
    user = accounts.user(name)
    if user is None:
        try:
            return accounts.add_user(name, role, None, origin=origin)
        except AccountError:  # made by a sign-in at the same moment
            user = accounts.user(name)
    # A local account is never taken over by an outside sign-in of the same name.
    if user.origin != origin:
        raise Refused(f"{name} is a {user.origin} account here, not one of {origin}")
    if user.disabled_at is not None:
        raise Refused(f"{name} is disabled here")
    if user.role != role:
        user = accounts.set_role(name, role)
    return user
