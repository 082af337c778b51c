"""The answers to someone who is not (or no longer) authenticated."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, jsonify, redirect, request, url_for

from plugin.web.paths import is_page

ASK = "authentication required: log in, or send Authorization: Bearer <API token>"


def unauthenticated(message: str = ASK, bearer_error: str | None = None) -> Response:
    """Pages send people to the login page (and back afterwards); programs get a 401 that
    says how to authenticate."""
    if bearer_error is None and is_page(request.path) and request.method in ("GET", "HEAD"):
        return redirect(url_for("auth.login", next=safe_next(request.full_path)))
    resp = jsonify(error=message, status=401)
    resp.status_code = 401
    challenge = 'Bearer realm="callmood"'
    if bearer_error:
        challenge += f', error="{bearer_error}"'
    resp.headers["WWW-Authenticate"] = challenge
    return resp


def safe_next(target: str | None, default: str = "/dashboard") -> str:
    """``target`` if it is a path on this site, else ``default``: a login must not send
    people on to another site (an open redirect)."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return default
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target.rstrip("?") or default
