"""Single sign-on with OpenID Connect, through Authlib's Flask client: the authorization
code flow with PKCE, a nonce, and the ID token's signature (the provider's JWKS), issuer,
audience and expiry checked. The user is made here on first sign-in (origin "oidc"),
with the role their groups give (auth.oidc.roles) each time."""

from __future__ import annotations

import logging

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, current_app, redirect, render_template, request, session
from flask_babel import gettext as _
from joserfc.errors import JoseError

from plugin.config import OidcConfig
from plugin.core import roles, scrub
from plugin.web.auth import sso
from plugin.web.auth.answers import safe_next
from plugin.web.auth.marks import public
from plugin.web.auth.views import start_session
from plugin.web.services import get_services

log = logging.getLogger(__name__)
bp = Blueprint("oidc", __name__)
NEXT = "oidc_next"
# What can go wrong talking to the provider or checking its answer: all of it is a
# refused sign-in, never a 500.
FAILURES = (OAuthError, JoseError, requests.RequestException, ValueError, KeyError, RuntimeError)


def init_app(app: Flask, cfg: OidcConfig) -> None:
    oauth = OAuth(app)
    oauth.register("oidc", client_id=cfg.client_id, client_secret=cfg.client_secret,
                   server_metadata_url=cfg.metadata_url,
                   client_kwargs={"scope": " ".join(cfg.scopes), "code_challenge_method": "S256",
                                  "default_timeout": cfg.timeout_s})
    app.register_blueprint(bp)


def _client():
    return current_app.extensions["authlib.integrations.flask_client"].oidc


def _redirect_uri() -> str:
    # Registered at the provider: the public address, not whatever Host this request has.
    return get_services().config.server.public_url.rstrip("/") + "/login/oidc/callback"


def _refused(message: str, status: int):
    return render_template("login.html", next="/dashboard", error=message), status


@bp.get("/login/oidc")
@public
def start():
    session[NEXT] = safe_next(request.args.get("next"))
    try:
        return _client().authorize_redirect(_redirect_uri())
    except FAILURES as exc:
        log.warning("single sign-on: cannot reach the identity provider: %s", scrub.text(exc))
        return _refused(_("Single sign-on is not available now (the identity provider does not answer)."), 502)


@bp.get("/login/oidc/callback")
@public
def callback():
    svc = get_services()
    cfg = svc.config.auth.oidc
    try:
        token = _client().authorize_access_token()
    except FAILURES as exc:
        log.warning("single sign-on refused: %s: %s", exc.__class__.__name__, scrub.text(exc))
        return _refused(_("Single sign-on failed. Try again."), 401)
    claims = token.get("userinfo") or {}
    role = roles.from_groups(claims.get(cfg.role_claim) if cfg.role_claim else None, cfg.roles, cfg.default_role)
    try:
        user = sso.sign_in(svc.accounts, claims.get(cfg.name_claim), role, "oidc")
    except sso.Refused as exc:
        log.warning("single sign-on refused: %s", exc)
        return _refused(_("Signed in, but no entry: %(reason)s.", reason=exc), 403)
    target = session.get(NEXT, "/dashboard")
    start_session(user, "oidc")
    svc.accounts.logged_in(user.id)
    return redirect(safe_next(target))
