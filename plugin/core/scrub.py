"""Keep secrets and personal data out of what is stored, shown and logged.

One place that knows what a secret looks like in text: query strings with keys or tokens
(the WeCom robot's ``?key=``, signed recording URLs), credentials in URLs, Authorization
headers and bearer tokens, passwords in database URLs. Use ``text()`` wherever an error
message or URL is recorded (delivery and job errors, log lines), ``url()`` wherever a URL
is shown, and ``phone()`` wherever a viewer or a log should not see a whole number.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"

_SECRET_NAME = r"(?:key|token|secret|sig|signature|password|passwd|pwd|auth|credential|access|session|code)"
# Query parameters whose value is a credential (case-insensitive, by substring of the name),
# also inside a percent-encoded URL (a URL carried in another URL's query).
_SECRET_PARAM = re.compile(
    # "k" alone is the call link's key (plugin/core/signing.py); "jwt" a bearer token by another name.
    r"(?i)((?:[?&;]|%3F|%26)(?:k|jwt|[^=&#%\s]*?" + _SECRET_NAME + r"[^=&#%\s]*)(?:=|%3D))"
    r"(?:(?!%26|%23)[^&#\s\"'<>])*")
# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
# (the password runs to the last @ before the path: passwords may hold an @)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/@\s:]*)(:[^/\s]*)?@")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|cookie)"
                          r"(\s*[:=]\s*)([^\r\n,;}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")
# libpq and similar "key=value" settings: password=... in a DSN or an error that quotes one.
_SETTING = re.compile(r"(?i)(?<![?&;%\w])((?:password|passwd|pwd|secret|api_key|apikey|token)\s*=\s*)"
                      r"('[^']*'|\"[^\"]*\"|[^\s,;&]+)")
# "token": "...", 'password': '...' in JSON or a Python dict's text (an answer quoted in an error).
_QUOTED = re.compile(r"""(?i)(["'][^"'\s]*""" + _SECRET_NAME + r"""[^"'\s]*["']\s*:\s*)("[^"]*"|'[^']*')""")


def text(value: object) -> str:
    """``value`` as a string with every credential it carries replaced by ***."""
    s = str(value)
    s = _URL_USERINFO.sub(lambda m: m.group(1) + (m.group(2) + ":" + HIDDEN if m.group(3) else HIDDEN) + "@", s)
    s = _SECRET_PARAM.sub(lambda m: m.group(1) + HIDDEN, s)
    s = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + HIDDEN, s)
    s = _BEARER.sub(lambda m: m.group(1) + " " + HIDDEN, s)
    s = _SETTING.sub(lambda m: m.group(1) + HIDDEN, s)
    s = _QUOTED.sub(lambda m: m.group(1) + m.group(2)[0] + HIDDEN + m.group(2)[0], s)
    return s


def url(value: str | None) -> str | None:
    """A URL fit to show: no credentials, no query string, no fragment (a recording URL's
    query is where signed storage and helpdesks put their access tokens)."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return HIDDEN
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if ":" in (parts.hostname or "") and not host.startswith("["):
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    query = HIDDEN if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def phone(value: str | None) -> str | None:
    """+8613812345678 -> +86138****5678: enough to tell numbers apart, not to call one."""
    if not value:
        return value
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(value)
    keep_head = 3 if len(digits) >= 10 else 1
    hide = set(digits[keep_head + (2 if value.startswith("+") and len(digits) >= 12 else 0):-4])
    return "".join("*" if i in hide else c for i, c in enumerate(value))


class LogFilter(logging.Filter):
    """Scrubs every record a handler writes: its message with the arguments filled in, and
    the traceback, so a library's exception text (a URL with its ?key=) is never logged."""

    @staticmethod
    def rewrite(value: str) -> str:
        return text(value)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as it would
            return True
        record.msg, record.args = self.rewrite(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.rewrite(record.exc_text)
        if record.stack_info:
            record.stack_info = self.rewrite(record.stack_info)
        return True


# A phone number inside free text: a + (or %2B, URL-encoded) and 7 to 15 digits, or 10 to
# 15 digits without it (shorter runs are ids, counts and times), with single spaces, dashes
# or brackets between the groups, not glued to a word or a decimal point.
_PHONE = re.compile(r"(?<![\w.])(?:\+|%2[Bb])?\(?\d(?:[ \-]?[()]{0,2}[ \-]?\d)+(?![\w]|\.\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def phones(value: object) -> str:
    """``value`` as a string with every whole phone number in it masked by ``phone()``:
    "GET /rec/+8613812345678.wav" -> "GET /rec/+86138****5678.wav"."""
    return _PHONE.sub(_mask_found, str(value))


def _mask_found(m: re.Match) -> str:
    found = m.group()
    encoded = found[:3].lower() == "%2b"
    plus = encoded or found.startswith("+")
    digits = sum(c.isdigit() for c in found) - (1 if encoded else 0)  # the 2 of %2B
    date = _DATE.match(found)
    if date:  # a log line's time is no phone number; what follows it may be
        return date.group() + phones(found[date.end():])
    if not (7 if plus else 10) <= digits <= 15:
        return found
    return "%2B" + phone("+" + found[3:])[1:] if encoded else phone(found)


class PhoneFilter(LogFilter):
    """Masks phone numbers in every record a handler writes (its message with the
    arguments filled in, and the traceback): a recording URL named after the caller, a
    CRM's answer that quotes the number, a webhook's refused field."""

    @staticmethod
    def rewrite(value: str) -> str:
        return phones(value)
