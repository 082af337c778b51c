"""The OAuth2 access tokens CallMood issues TCCC (client credentials, RFC 6749 4.4), kept
nowhere: a token is ``v1.<payload>.<mac>``, the payload naming the client and when the
token expires, the mac an HMAC-SHA256 under a key derived from the client secret. So a
token checks out without a table, and changing the secret revokes every earlier token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets

from connectors.sources.base import same_secret

TOKEN_MAX = 512
_PURPOSE = b"callmood/tccc/access-token/v1"  # the key is for these tokens and nothing else


def make_token(client_id: str, client_secret: str, ttl_s: int, now: float) -> str:
    """A token for ``client_id``, good for ``ttl_s`` seconds from ``now`` (unix seconds)."""
    claims = {"c": client_id, "e": int(now) + ttl_s, "n": secrets.token_urlsafe(6)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"v1.{payload}.{_mac(client_secret, payload)}"


def token_problem(token: str, client_id: str, client_secret: str, now: float) -> str | None:
    """Why ``token`` is not one issued to ``client_id`` with this secret and still good at
    ``now``, or None. Worded for a log line; never repeats the token."""
    parts = token.split(".")
    if len(token) > TOKEN_MAX or len(parts) != 3 or parts[0] != "v1" or not token.isascii():
        return "is not a token this service issued"
    # The signature before anything else: an unsigned payload says nothing.
    if not same_secret(parts[2], _mac(client_secret, parts[1])):
        return "has a wrong signature (issued with another client secret?)"
    try:
        claims = json.loads(_unb64(parts[1]))
        client, expires = claims["c"], int(claims["e"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return "is not a token this service issued"
    if not isinstance(client, str) or not same_secret(client, client_id):
        return "was issued to another client"
    if now >= expires:
        return f"expired {int(now - expires)}s ago"
    return None


def _mac(client_secret: str, payload: str) -> str:
    key = hmac.new(client_secret.encode(), _PURPOSE, hashlib.sha256).digest()
    return _b64(hmac.new(key, f"v1.{payload}".encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
