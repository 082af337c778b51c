"""Who is asking: from ``Authorization: Bearer <API token>``, else the session cookie,
else (only for a view that allows it) a signed call link. The gate stores the answer in
``g.identity`` for the request; views and templates read it with ``current()``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import abort, g, request, session
from flask_login import UserMixin, current_user, logout_user

from plugin.core import roles
from plugin.store.tables import User
from plugin.web import proxy
from plugin.web.auth import sso
from plugin.web.auth.answers import unauthenticated
from plugin.web.services import get_services

LOGIN_AT = "login_at"  # when the session's login happened, by the one clock (ISO text)


@dataclass(frozen=True)
class Identity:
    via: str  # "token" | "session" | "link" (or "oidc" / "proxy" sessions)
    name: str
    role: str
    user_id: int | None = None
    token_id: int | None = None
    call_id: int | None = None  # the one call a link opens

    def may(self, role: str) -> bool:
        return roles.at_least(self.role, role)


def current() -> Identity | None:
    return g.get("identity")


def may(role: str) -> bool:
    ident = current()
    return ident is not None and ident.may(role)


class SessionUser(UserMixin):
    """A user as Flask-Login keeps them in the session: the id carries the user's session
    version, so a new password, a new role or a disable ends every older session."""

    def __init__(self, user: User):
        self.user_id, self.name, self.role = user.id, user.name, user.role
        self.version = user.session_version

    def get_id(self) -> str:
        return f"{self.user_id}:{self.version}"


def load_session_user(session_id: str) -> SessionUser | None:
    """Flask-Login's user loader: the session's user if the session is still theirs."""
    uid, _, version = session_id.partition(":")
    if not uid.isdigit() or not version.isdigit():
        return None
    user = get_services().accounts.user_by_id(int(uid))
    if user is None or user.disabled_at is not None or user.session_version != int(version):
        return None
    return SessionUser(user)


def from_token(strict: bool = True) -> Identity | None:
    """The API token in the Authorization header (None: no bearer token sent). A token
    that is not live answers 401 at once (``strict``), never falling back to the cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    row = get_services().accounts.find_token(value.strip())
    if row is None and not strict:
        return None
    if row is None:
        abort(unauthenticated("invalid, expired or revoked API token", bearer_error="invalid_token"))
    return Identity("token", row.name, row.role, token_id=row.id)


def from_proxy() -> Identity | None:
    """The user a trusted reverse proxy names in its headers (auth.proxy_header): believed
    only when enabled and only from the proxy's own addresses."""
    cfg = get_services().config.auth.proxy_header
    name = request.headers.get(cfg.user_header) if cfg.enabled else None
    if not name or not proxy.within(request.environ.get(proxy.PEER, request.remote_addr),
                                    proxy.parse(cfg.trusted_networks)):
        return None
    groups = request.headers.get(cfg.groups_header, "") if cfg.groups_header else ""
    try:
        user = sso.sign_in(get_services().accounts, name.strip(),
                           roles.from_groups(groups, cfg.roles, cfg.default_role), "proxy")
    except sso.Refused as exc:
        abort(403, str(exc))
    return Identity("proxy", user.name, user.role, user_id=user.id)


def from_session() -> Identity | None:
    if "_user_id" not in session:
        return None
    user = current_user
    svc = get_services()
    started = _login_time()
    lifetime = timedelta(hours=svc.config.auth.session_hours)
    if not user.is_authenticated or started is None or svc.clock.now() - started > lifetime:
        logout_user()  # stale: the password, role or key changed, the user left, or it expired
        session.clear()
        return None
    return Identity(session.get("via", "session"), user.name, user.role, user_id=user.user_id)


def _login_time() -> datetime | None:
    try:
        return datetime.fromisoformat(session[LOGIN_AT])
    except (KeyError, TypeError, ValueError):
        return None


def from_link(call_id: object) -> Identity | None:
    """A signed link to this call (?k=): a viewer of that call only."""
    token = request.args.get("k")
    if not token or not isinstance(call_id, int):
        return None
    if not get_services().link_signer.opens(token, call_id):
        abort(403, "This link has expired or is not valid. Log in to see the call.")
    return Identity("link", f"link:{call_id}", "viewer", call_id=call_id)
