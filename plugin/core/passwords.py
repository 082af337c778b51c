"""Password hashing with Argon2id (memory-hard), through argon2-cffi's defaults (RFC 9106's
low-memory profile), and the one rule a new password must pass."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
_hasher = PasswordHasher()
# Verified when the account does not exist, so an unknown name costs as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


def weakness(password: str, name: str = "") -> str | None:
    """Why ``password`` may not be set (None when it may)."""
    if len(password) < MIN_LENGTH:
        return f"password too short: at least {MIN_LENGTH} characters"
    if name and password.strip().lower() == name.strip().lower():
        return "password must not be the user name"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (None: no password, as for single sign-on
    accounts; the same work is done, and the answer is no)."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with weaker parameters than today's (rehash at login)."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return False
