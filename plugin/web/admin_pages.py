"""Pages for admins (issue 14): the rules in force and a refused edit (/admin/rules), the
routing tree without secrets (/admin/routing), users and API tokens with their forms
(/admin/users). The outbox (/admin/deliveries) lives in dashboard.py.

Every route needs the admin role (marks.requires, checked by the gate before the view);
every form posts its CSRF token (the gate checks it). The data comes from the parts the
service already has: the rules holder, the config's sinks, the accounts store.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from plugin.core.passwords import MIN_LENGTH
from plugin.core.roles import ROLES
from plugin.web import admin_accounts, admin_routing_view, admin_rules_view
from plugin.web.admin_accounts import AdminActionRefused
from plugin.web.auth.identity import current
from plugin.web.auth.marks import requires
from plugin.web.services import get_services

bp = Blueprint("admin_pages", __name__, url_prefix="/admin")


@bp.get("/")
@requires("admin")
def index():
    return redirect(url_for("admin_pages.rules"))


@bp.get("/rules")
@requires("admin")
def rules():
    return render_template("admin_rules.html", rules=admin_rules_view.overview(get_services().rules_holder))


@bp.get("/routing")
@requires("admin")
def routing():
    svc = get_services()
    return render_template("admin_routing.html",
                           tree=admin_routing_view.overview(svc.rules.routing, svc.config.sinks, svc.sinks))


# --- users and API tokens ----------------------------------------------------------------

def _users_page(status: int = 200, error: str | None = None, new_token: dict | None = None):
    accounts = get_services().accounts
    return render_template("admin_users.html", users=accounts.users(), tokens=accounts.tokens(), roles=ROLES,
                           min_length=MIN_LENGTH, error=error, new_token=new_token), status


@bp.get("/users")
@requires("admin")
def users():
    return _users_page()


@bp.errorhandler(AdminActionRefused)
def _refused(exc: AdminActionRefused):
    """Every form's refusal: the users page again, saying why, with the status it gives."""
    return _users_page(exc.status, exc.message)


def _done(message: str):
    flash(message)
    return redirect(url_for("admin_pages.users"), 303)


def _form(key: str) -> str:
    return request.form.get(key, "")


@bp.post("/users/add")
@requires("admin")
def add_user():
    user = admin_accounts.add_user(get_services().accounts, current(), _form("name"), _form("role"),
                                   _form("password"), _form("password_again"))
    return _done(_("User %(name)s added (%(role)s).", name=user.name, role=user.role))


@bp.post("/users/role")
@requires("admin")
def set_role():
    user = admin_accounts.set_role(get_services().accounts, current(), _form("name"), _form("role"))
    return _done(_("%(name)s is now %(role)s; their sessions have ended.", name=user.name, role=user.role))


@bp.post("/users/disable")
@requires("admin")
def disable_user():
    user = admin_accounts.disable(get_services().accounts, current(), _form("name"))
    return _done(_("%(name)s is disabled: they can no longer log in.", name=user.name))


@bp.post("/users/enable")
@requires("admin")
def enable_user():
    user = admin_accounts.enable(get_services().accounts, current(), _form("name"))
    return _done(_("%(name)s is enabled again.", name=user.name))


@bp.post("/users/password")
@requires("admin")
def reset_password():
    user = admin_accounts.reset_password(get_services().accounts, current(), _form("name"),
                                         _form("password"), _form("password_again"))
    return _done(_("Password of %(name)s changed; their sessions have ended.", name=user.name))


@bp.post("/tokens/create")
@requires("admin")
def create_token():
    """The answer itself shows the token, once: it is not redirected (a flashed message
    would carry it in the session cookie) and never stored or logged here."""
    row, plaintext = admin_accounts.create_token(get_services().accounts, current(), _form("name"),
                                                 _form("role"), _form("expires_days"))
    return _users_page(201, new_token={"id": row.id, "name": row.name, "role": row.role,
                                       "expires_at": row.expires_at, "plaintext": plaintext})


@bp.post("/tokens/<id:token_id>/revoke")
@requires("admin")
def revoke_token(token_id: int):
    row = admin_accounts.revoke_token(get_services().accounts, current(), token_id)
    return _done(_("Token %(id)d (%(name)s) revoked.", id=row.id, name=row.name))
