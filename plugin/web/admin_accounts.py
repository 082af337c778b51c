"""What the forms of /admin/users do: users and API tokens, with the checks `callmood
users` and `callmood tokens` make (the same functions: accounts.check_name, the store's
role check, passwords.weakness and hash_password), and two more than the CLI makes:

- no change leaves the service without an enabled admin (the CLI is the way back in for
  whoever holds the server, so it keeps no such guard);
- an admin does not disable or demote themselves here (another admin does it), so no
  one locks themselves out of this page by a slip of the mouse.

Every function raises AdminActionRefused with a message fit to show (and an HTTP status).
Nothing here logs or returns a password; a token's plaintext is returned once, by
create_token, for the page that shows it.
"""

from __future__ import annotations

import logging
import math

from flask_babel import gettext as _

from plugin.core import passwords
from plugin.core.roles import ROLES
from plugin.store.accounts import NAME, AccountError, Accounts, LastAdminError, check_name
from plugin.store.tables import ApiToken, User
from plugin.web.auth.identity import Identity

log = logging.getLogger(__name__)
PASSWORD_MAX = 1024  # the login form reads no more
EXPIRES_DAYS_MAX = 3650


class AdminActionRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _name(value: object, what: str = "user name") -> str:
    text = value if isinstance(value, str) else ""
    try:
        return check_name(text.strip()[:200], what)
    except AccountError as exc:
        raise AdminActionRefused(_("Refused: %(why)s", why=str(exc))) from None


def _role(value: object) -> str:
    if value not in ROLES:
        raise AdminActionRefused(_("Pick a role: viewer, supervisor or admin."))
    return value


def _password(password: object, again: object, name: str) -> str:
    """The Argon2 hash of a new password that passes the CLI's rule."""
    if not isinstance(password, str) or len(password) > PASSWORD_MAX:
        raise AdminActionRefused(_("The password is at most %(n)d characters.", n=PASSWORD_MAX))
    if password != again:
        raise AdminActionRefused(_("The two passwords differ."))
    problem = passwords.weakness(password, name)
    if problem:  # the CLI's English, said in the page's language
        if len(password) < passwords.MIN_LENGTH:
            raise AdminActionRefused(_("The password is too short: at least %(n)d characters.", n=passwords.MIN_LENGTH))
        if "user name" in problem:
            raise AdminActionRefused(_("The password must not be the user name."))
        raise AdminActionRefused(_("Refused: %(why)s", why=problem))
    return passwords.hash_password(password)


def _user(accounts: Accounts, name: object) -> User:
    text = name if isinstance(name, str) else ""
    user = accounts.user(text) if NAME.fullmatch(text) else None
    if user is None:
        raise AdminActionRefused(_("No such user."), 404)
    return user


def _last_admin(user: User) -> AdminActionRefused:
    """The change would leave no enabled admin (the store checks it with the admins locked)."""
    return AdminActionRefused(_("%(name)s is the last enabled admin: make another admin first.", name=user.name), 409)


def _not_self(actor: Identity, user: User) -> None:
    if actor.user_id is not None and actor.user_id == user.id:
        raise AdminActionRefused(_("You cannot disable or demote yourself here: ask another admin."), 409)


def add_user(accounts: Accounts, actor: Identity, name: object, role: object, password: object,
             again: object) -> User:
    name, role = _name(name), _role(role)
    if accounts.user(name) is not None:
        raise AdminActionRefused(_("User %(name)s already exists.", name=name), 409)
    hashed = _password(password, again, name)
    try:
        user = accounts.add_user(name, role, hashed)
    except AccountError:  # added by someone else meanwhile
        raise AdminActionRefused(_("User %(name)s already exists.", name=name), 409) from None
    log.info("user %s added (%s) by %s", user.name, user.role, who(actor))
    return user


def set_role(accounts: Accounts, actor: Identity, name: object, role: object) -> User:
    user, role = _user(accounts, name), _role(role)
    if role == user.role:  # nothing to change: their sessions stay
        return user
    if role != "admin":
        _not_self(actor, user)
    try:
        user = accounts.set_role(user.name, role, keep_an_admin=True)
    except LastAdminError:
        raise _last_admin(user) from None
    log.info("user %s is now %s (set by %s)", user.name, user.role, who(actor))
    return user


def disable(accounts: Accounts, actor: Identity, name: object) -> User:
    user = _user(accounts, name)
    _not_self(actor, user)
    try:
        user = accounts.disable(user.name, keep_an_admin=True)
    except LastAdminError:
        raise _last_admin(user) from None
    log.info("user %s disabled by %s", user.name, who(actor))
    return user


def enable(accounts: Accounts, actor: Identity, name: object) -> User:
    user = accounts.enable(_user(accounts, name).name)
    log.info("user %s enabled by %s", user.name, who(actor))
    return user


def reset_password(accounts: Accounts, actor: Identity, name: object, password: object, again: object) -> User:
    user = _user(accounts, name)
    if user.origin != "local":  # they sign in elsewhere: a password here would be a second way in
        raise AdminActionRefused(_("%(name)s signs in through %(origin)s and has no password here.",
                                   name=user.name, origin=user.origin), 409)
    user = accounts.set_password(user.name, _password(password, again, user.name))
    log.info("password of %s reset by %s; their sessions have ended", user.name, who(actor))
    return user


def expires_days(value: object) -> float | None:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and 0 < days <= EXPIRES_DAYS_MAX):
        raise AdminActionRefused(_("Expires in: a number of days above 0 and at most %(n)d, or empty for never.",
                                   n=EXPIRES_DAYS_MAX))
    return days


def create_token(accounts: Accounts, actor: Identity, name: object, role: object,
                 expires: object) -> tuple[ApiToken, str]:
    """The new token and its plaintext: show it once, keep it nowhere."""
    name, role, days = _name(name, "token name"), _role(role), expires_days(expires)
    try:
        row, plaintext = accounts.create_token(name, role, created_by=f"{actor.name} (admin page)",
                                               expires_days=days)
    except AccountError as exc:
        raise AdminActionRefused(_("Refused: %(why)s", why=str(exc))) from None
    log.info("token %s %r (%s) created by %s", row.id, row.name, row.role, who(actor))
    return row, plaintext


def revoke_token(accounts: Accounts, actor: Identity, token_id: int) -> ApiToken:
    try:
        row = accounts.revoke_token(token_id)
    except AccountError:
        raise AdminActionRefused(_("No such token."), 404) from None
    log.info("token %s %r revoked by %s", row.id, row.name, who(actor))
    return row


def who(actor: Identity) -> str:
    return f"{actor.name} ({actor.role}, {actor.via}, admin page)"
