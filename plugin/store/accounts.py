"""Who may use the web app: users (local passwords or single sign-on), API tokens for
machines, and failed logins (counted here, so every web process throttles the same ones).

Times come from the one clock, asked with the transaction's session. Passwords arrive
here already hashed (plugin/core/passwords.py); tokens are stored as their SHA-256 only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from plugin.core import roles
from plugin.core.clock import Clock
from plugin.store.tables import ApiToken, LoginFailure, User

TOKEN_PREFIX = "cm_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}")
# last_used_at is a hint for people cleaning up tokens: not worth a write on every request.
LAST_USED_EVERY = timedelta(minutes=1)


class AccountError(ValueError):
    """A user or token that cannot be made or changed as asked (message says why)."""


class LastAdminError(AccountError):
    """The change would leave no enabled admin."""


def check_name(name: str, what: str = "user name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise AccountError(f"{what} {name!r}: use 1-128 letters, digits and . _ @ + - "
                           "(starting with a letter or digit)")
    return name


def _role(role: str) -> str:
    try:
        return roles.check(role)
    except ValueError as exc:
        raise AccountError(str(exc)) from None


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


class Accounts:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock):
        self.sessions, self.clock = sessions, clock

    # --- users ---------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str | None = None,
                 origin: str = "local") -> User:
        check_name(name)
        try:
            with self.sessions.begin() as s:
                user = User(name=name, role=_role(role), password_hash=password_hash, origin=origin,
                            session_version=0, created_at=self.clock.now(s))
                s.add(user)
        except IntegrityError:
            raise AccountError(f"user {name!r} already exists") from None
        return user

    def user(self, name: str) -> User | None:
        with self.sessions() as s:
            return s.execute(select(User).where(User.name == name)).scalar()

    def user_by_id(self, user_id: int) -> User | None:
        with self.sessions() as s:
            return s.get(User, user_id)

    def users(self) -> list[User]:
        with self.sessions() as s:
            return list(s.execute(select(User).order_by(User.name)).scalars())

    def has_users(self) -> bool:
        with self.sessions() as s:
            return s.execute(select(func.count(User.id))).scalar_one() > 0

    def set_password(self, name: str, password_hash: str) -> User:
        """A new password; every session of the user ends."""
        return self._change(name, password_hash=password_hash)

    def set_role(self, name: str, role: str, keep_an_admin: bool = False) -> User:
        """``keep_an_admin``: refuse (LastAdminError) if no enabled admin would be left."""
        return self._change(name, keep_an_admin=keep_an_admin, role=_role(role))

    def disable(self, name: str, keep_an_admin: bool = False) -> User:
        """The user can no longer log in; their sessions end."""
        return self._change(name, disabled=True, keep_an_admin=keep_an_admin)

    def enable(self, name: str) -> User:
        return self._change(name, disabled=False)

    def end_sessions(self, name: str) -> User:
        """Log the user out everywhere."""
        return self._change(name)

    def _change(self, name: str, disabled: bool | None = None, keep_an_admin: bool = False, **fields) -> User:
        with self.sessions.begin() as s:
            admins = []
            if keep_an_admin:  # two admins demoting each other at once must not both pass
                enabled_admins = (User.role == "admin", User.disabled_at.is_(None))
                # A write first: it locks the admins' rows (PostgreSQL) or the database (SQLite,
                # whose driver begins the transaction only at the first write, so a read before
                # it could be stale by the time the change is written).
                s.execute(update(User).where(*enabled_admins).values(session_version=User.session_version)
                          .execution_options(synchronize_session=False))
                admins = list(s.execute(select(User).where(*enabled_admins).order_by(User.id)).scalars())
            user = s.execute(select(User).where(User.name == name).with_for_update()).scalar()
            if user is None:
                raise AccountError(f"no user {name!r}")
            for key, value in fields.items():
                setattr(user, key, value)
            if disabled is not None:
                user.disabled_at = self.clock.now(s) if disabled else None
            if keep_an_admin and admins and not any(u.role == "admin" and u.disabled_at is None for u in admins):
                raise LastAdminError(f"{name} is the last enabled admin")
            user.session_version += 1
        return user

    def logged_in(self, user_id: int, password_hash: str | None = None) -> None:
        """Note a login (and store a stronger hash of the password just checked)."""
        with self.sessions.begin() as s:
            values = {"last_login_at": self.clock.now(s)}
            if password_hash:
                values["password_hash"] = password_hash
            s.execute(update(User).where(User.id == user_id).values(**values))

    # --- API tokens -------------------------------------------------------------------

    def create_token(self, name: str, role: str, created_by: str | None = None,
                     expires_days: float | None = None) -> tuple[ApiToken, str]:
        """A new token and its plaintext, which is not kept: show it once."""
        check_name(name, "token name")
        if expires_days is not None and expires_days <= 0:
            raise AccountError(f"expires in {expires_days} days: must be more than 0")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            row = ApiToken(name=name, token_hash=token_hash(plaintext), prefix=plaintext[:10],
                           role=_role(role), created_by=created_by, created_at=now,
                           expires_at=now + timedelta(days=expires_days) if expires_days else None)
            s.add(row)
        return row, plaintext

    def find_token(self, plaintext: str) -> ApiToken | None:
        """The live token (not revoked, not expired) whose plaintext this is, or None."""
        if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 100:
            return None
        digest = token_hash(plaintext)
        with self.sessions.begin() as s:
            row = s.execute(select(ApiToken).where(ApiToken.token_hash == digest)).scalar()
            # The lookup is by a hash of the secret, so its timing tells nothing of the
            # stored tokens; the comparison is constant-time all the same.
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            now = self.clock.now(s)
            if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                return None
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
                row.last_used_at = now
        return row

    def tokens(self) -> list[ApiToken]:
        with self.sessions() as s:
            return list(s.execute(select(ApiToken).order_by(ApiToken.id)).scalars())

    def revoke_token(self, token_id: int) -> ApiToken:
        with self.sessions.begin() as s:
            row = s.get(ApiToken, token_id, with_for_update=True)
            if row is None:
                raise AccountError(f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = self.clock.now(s)
        return row

    # --- failed logins ------------------------------------------------------------------

    def login_failed(self, keys: list[str], window_s: float) -> list[int]:
        """Count a failed login (or an attempt not yet judged) against each key
        ("user:<name>", "ip:<address>"), forget failures older than the window; the new
        rows' ids, for ``forget_attempt``."""
        with self.sessions.begin() as s:
            now = self.clock.now(s)
            s.execute(delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=window_s)))
            rows = [LoginFailure(key=k[:255], at=now) for k in keys]
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

    def forget_attempt(self, ids: list[int]) -> None:
        """An attempt counted before its password was checked turned out right."""
        with self.sessions.begin() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.id.in_(ids)))

    def recent_failures(self, key: str, window_s: float) -> tuple[list[datetime], datetime]:
        """The times of ``key``'s failures within the window, oldest first, and now."""
        with self.sessions() as s:
            now = self.clock.now(s)
            times = s.execute(select(LoginFailure.at)
                              .where(LoginFailure.key == key[:255],
                                     LoginFailure.at > now - timedelta(seconds=window_s))
                              .order_by(LoginFailure.at)).scalars().all()
        return list(times), now

    def clear_failures(self, key: str) -> None:
        with self.sessions.begin() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.key == key[:255]))
