"""The gate every request passes before its view: who is asking (identity.py), whether
they may (marks.py), a CSRF token on what a cookie authenticates, JSON on the JSON API;
and the security headers on every answer."""

from __future__ import annotations

from flask import Response, abort, current_app, g, request
from flask_wtf.csrf import CSRFProtect

from plugin.web.auth import identity
from plugin.web.auth.answers import unauthenticated
from plugin.web.auth.marks import BY_LINK, NO_CSRF, role_needed
from plugin.web.services import get_services

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Paths a config switch turns off (404 for everyone): server.<key> is False.
SWITCHES = {"/metrics": "metrics_enabled", "/predict": "predict_enabled"}

CSP = ("default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # A call link carries its key in ?k=: no Referer may take it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def check(csrf: CSRFProtect) -> Response | None:
    """Flask before_request: refuse what the asker may not do (None lets it through)."""
    g.identity = None
    _no_nul_in_fields()
    rule = request.url_rule
    if rule is None:  # 404, 405: routing answers those, and they show nothing
        return None
    switch = SWITCHES.get(rule.rule)
    if switch and not getattr(get_services().config.server, switch):
        abort(404, f"{rule.rule} is turned off (server.{switch})")
    if request.endpoint == "static":
        return None
    view = current_app.view_functions[request.endpoint]
    needed = role_needed(view)
    # A public view takes a stale token as no token (a helpdesk may send its own
    # Authorization header with its webhooks); elsewhere a token that is not live is a 401.
    g.identity = ident = (identity.from_token(strict=needed is not None) or identity.from_proxy()
                          or identity.from_session()
                          or (identity.from_link((request.view_args or {}).get("call_id"))
                              if getattr(view, BY_LINK, False) and request.method in SAFE_METHODS else None))
    if needed is not None:
        if ident is None:
            return unauthenticated()
        if not ident.may(needed):
            abort(403, f"needs the {needed} role (you are {ident.role})")
    if request.method not in SAFE_METHODS:
        # A browser sends the cookie with a request another site makes it send; a bearer
        # token it never sends on its own, and webhooks prove their origin by signature.
        if not (ident is not None and ident.via == "token") and not getattr(view, NO_CSRF, False):
            csrf.protect()
        if request.path.startswith("/api/") and not request.is_json:
            abort(415, "send the body as JSON with Content-Type: application/json")
    return None


FORM_MAX_BYTES = 1024 * 1024  # login forms, feedback, vendors' form-encoded webhooks (Twilio)


def _no_nul_in_fields() -> None:
    """A NUL in a query argument or a form field is a 400 here: PostgreSQL refuses NUL in
    text, so it would otherwise surface as a 500 wherever the value reaches a query."""
    fields = list(request.args.items(multi=True))
    if request.mimetype == "application/x-www-form-urlencoded":  # not uploads: /predict parses those itself
        if (request.content_length or 0) > FORM_MAX_BYTES:
            abort(413, f"a form body is at most {FORM_MAX_BYTES} bytes")
        # Kept, so a view can still read the bytes as they came (a signed webhook checks them).
        request.get_data(cache=True)
        fields += list(request.form.items(multi=True))
    for key, value in fields:
        if "\x00" in key or "\x00" in value:
            abort(400, f"{key.replace(chr(0), '?')[:40]!r}: NUL character (U+0000) is not allowed")


def secure_headers(resp: Response) -> Response:
    """Flask after_request: the security headers on every answer."""
    for name, value in HEADERS.items():
        resp.headers.setdefault(name, value)
    if get_services().config.server.public_url.startswith("https://"):
        resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static":
        # Calls, phone numbers, tokens: nothing a shared cache or the back button may keep.
        resp.headers["Cache-Control"] = "no-store"
    return resp
