"""Keep secrets and personal data out of what is stored, shown and logged.

One place that knows what a secret looks like in text: query strings with keys or tokens
(the WeCom robot's ``?key=``, signed recording URLs), credentials in URLs, Authorization
headers and bearer tokens, passwords in database URLs. Use ``text()`` wherever an error
message or URL is recorded (delivery and job errors, log lines), ``url()`` wherever a URL
is shown, and ``phone()`` wherever a viewer or a log should not see a whole number.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"

# Query parameters whose value is a credential (case-insensitive, by substring of the name).
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[^=&#\s]*?(?:key|token|secret|sig|signature|password|passwd|pwd|auth|credential|"
    r"access|session|code)[^=&#\s]*)=)[^&#\s\"'<>]*")
# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/@\s:]*)(:[^/@\s]*)?@")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|cookie)"
                          r"(\s*[:=]\s*)([^\r\n,;}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")


def text(value: object) -> str:
    """``value`` as a string with every credential it carries replaced by ***."""
    s = str(value)
    s = _URL_USERINFO.sub(lambda m: m.group(1) + (m.group(2) + ":" + HIDDEN if m.group(3) else HIDDEN) + "@", s)
    s = _SECRET_PARAM.sub(lambda m: m.group(1) + HIDDEN, s)
    s = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + HIDDEN, s)
    s = _BEARER.sub(lambda m: m.group(1) + " " + HIDDEN, s)
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
