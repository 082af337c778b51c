"""What an identifier from outside may look like: call, customer, agent and ticket ids,
queue names, phone numbers, chat user ids.

These values travel into URLs, HTTP headers, chat markdown, log lines and file names.
Each of those places escapes them too; a small character set at the door means a value
that slipped past one escape still cannot become a path, a header, a heading or a mention.
"""

from __future__ import annotations

import re
import unicodedata

ID_MAX = 128
# Besides letters and digits (any script): what real helpdesk ids and queue names use.
ID_PUNCTUATION = frozenset("._-:@+#")
PHONE_MAX = 32
_PHONE = re.compile(r"\+?[0-9 ()\-]+")
PHONE_DIGITS = (3, 20)
# A chat user id as WeCom and similar tools issue them (the "<@userid>" of a mention).
USER_ID = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")


def id_problem(value: str, max_length: int = ID_MAX) -> str | None:
    """Why ``value`` is not a safe identifier, or None."""
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"is {len(value)} characters long; at most {max_length}"
    if not value.strip("."):  # "." and ".." name directories wherever a path is built
        return "must not be only dots"
    for ch in value:
        if ch in ID_PUNCTUATION:
            continue
        # L*: letters of any script, N*: digits, M*: the accents of decomposed letters.
        if unicodedata.category(ch)[0] not in "LNM":
            return (f"contains {_show(ch)}; allowed are letters, digits and "
                    f"{' '.join(sorted(ID_PUNCTUATION))}")
    return None


def phone_problem(value: str) -> str | None:
    """Why ``value`` is not a phone number as helpdesks write them, or None."""
    if len(value) > PHONE_MAX:
        return f"is {len(value)} characters long; at most {PHONE_MAX}"
    if not _PHONE.fullmatch(value):
        bad = next((c for c in value if not (c.isascii() and (c.isdigit() or c in "+ ()-"))), None)
        what = _show(bad) if bad else "'+' after the start"
        return f"contains {what}; a phone number has digits, a leading +, spaces, dashes and parentheses"
    digits = sum(c.isdigit() for c in value)
    if not PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]:
        return f"has {digits} digits; a phone number has {PHONE_DIGITS[0]} to {PHONE_DIGITS[1]}"
    return None


def user_id_problem(value: object) -> str | None:
    """Why ``value`` is not a chat user id (letters, digits, _ . - @; up to 64), or None."""
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        return f"{str(value)[:80]!r} is not a user id (letters, digits, _ . - @; up to 64 characters)"
    return None


def _show(ch: str) -> str:
    """A character named so that a log line or an error shows it, whatever it is."""
    if ch.isprintable() and not ch.isspace():
        return f"{ch!r}"
    return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'a control character').lower()})"
