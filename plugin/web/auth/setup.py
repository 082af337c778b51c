"""Wires the closed-by-default web app together (called by the app factory)."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from plugin.services import Services
from plugin.web.auth import gate, identity, oidc, views


def init_app(app: Flask, services: Services) -> None:
    cfg = services.config
    app.secret_key = services.secret_key
    app.config.update(
        SESSION_COOKIE_NAME="callmood_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.server.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=cfg.auth.session_hours),
        # The gate decides which requests need a CSRF token (gate.py), not Flask-WTF.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A token lives as long as its session. Referer checking is off: Referrer-Policy
        # no-referrer (call links carry their key) means browsers send none.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,
    )
    csrf = CSRFProtect(app)
    logins = LoginManager(app)
    logins.user_loader(identity.load_session_user)
    logins.session_protection = "basic"
    app.before_request(lambda: gate.check(csrf))
    app.after_request(gate.secure_headers)
    sso_label = cfg.auth.oidc.label if cfg.auth.oidc else None
    app.context_processor(lambda: {"identity": identity.current(), "config_sso": sso_label})
    app.register_blueprint(views.bp)
    if cfg.auth.oidc is not None:
        oidc.init_app(app, cfg.auth.oidc)
