"""The login page, logout, and the account endpoints: ``GET /api/me`` for everyone,
``GET /api/users`` and ``GET /api/tokens`` for admins (hashes never leave the database)."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_user, logout_user
from flask_wtf.csrf import generate_csrf

from plugin.core import passwords
from plugin.store.accounts import NAME
from plugin.store.tables import ApiToken, User
from plugin.web.auth import identity, throttle
from plugin.web.auth.answers import safe_next
from plugin.web.auth.marks import public, requires
from plugin.web.serializers import iso
from plugin.web.services import get_services

bp = Blueprint("auth", __name__)

WRONG = _l("Wrong name or password.")  # the page's language when it renders


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    target = safe_next(request.values.get("next"))
    if request.method in ("GET", "HEAD"):  # HEAD skips the CSRF check: it must never log in
        if identity.current() is not None and identity.current().via != "link":
            return redirect(target)
        return render_template("login.html", next=target, error=None)
    svc = get_services()
    cfg, accounts = svc.config.auth, svc.accounts
    name = request.form.get("name", "").strip()[:128]
    password = request.form.get("password", "")[:1024]
    attempt, wait = throttle.attempt(accounts, cfg, name, request.remote_addr)
    if wait:  # not a guess: nothing was checked, so it does not push the wait further out
        accounts.forget_attempt(attempt)
        minutes = -(-wait // 60)
        return (render_template("login.html", next=target, name=name,
                                error=_("Too many failed logins. Try again in %(n)d minute(s).", n=minutes)),
                429, {"Retry-After": str(wait)})
    user = accounts.user(name) if NAME.fullmatch(name or "-") else None
    live = user is not None and user.disabled_at is None
    if not passwords.verify(user.password_hash if live else None, password):
        return render_template("login.html", next=target, name=name, error=WRONG), 401  # attempt stays counted
    start_session(user, "session")
    throttle.succeeded(accounts, name, attempt)
    accounts.logged_in(user.id, passwords.hash_password(password)
                       if passwords.needs_rehash(user.password_hash) else None)
    return redirect(target)


def start_session(user: User, via: str) -> None:
    """Log ``user`` in: a fresh session (a new CSRF token), stamped by the one clock."""
    session.clear()
    login_user(identity.SessionUser(user))
    session.permanent = True
    session[identity.LOGIN_AT] = get_services().clock.now().isoformat()
    session["via"] = via


@bp.post("/logout")
@public
def logout():
    # The session cookie is signed, not stored: a copy of it (a shared PC, a proxy log)
    # would outlive a mere clear. Moving the user's session version on ends every copy,
    # and with them the user's other sessions (said on the login page and in the README).
    ident = identity.current()
    if ident is not None and ident.user_id is not None and ident.via != "link":
        user = get_services().accounts.user_by_id(ident.user_id)
        if user is not None:
            get_services().accounts.end_sessions(user.name)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/api/me")
def me():
    ident = identity.current()
    out = {"name": ident.name, "role": ident.role, "via": ident.via}
    if ident.via not in ("token", "link"):
        out["csrf_token"] = generate_csrf()  # for scripts in the page: send it as X-CSRFToken
    return jsonify(out)


@bp.get("/api/users")
@requires("admin")
def users():
    return jsonify(users=[user_json(u) for u in get_services().accounts.users()])


@bp.get("/api/tokens")
@requires("admin")
def tokens():
    return jsonify(tokens=[token_json(t) for t in get_services().accounts.tokens()])


def user_json(u: User) -> dict:
    return {"id": u.id, "name": u.name, "role": u.role, "origin": u.origin,
            "created_at": iso(u.created_at), "last_login_at": iso(u.last_login_at),
            "disabled_at": iso(u.disabled_at)}


def token_json(t: ApiToken) -> dict:
    return {"id": t.id, "name": t.name, "prefix": t.prefix, "role": t.role, "created_by": t.created_by,
            "created_at": iso(t.created_at), "expires_at": iso(t.expires_at),
            "last_used_at": iso(t.last_used_at), "revoked_at": iso(t.revoked_at)}
