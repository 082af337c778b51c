"""HTML pages for support teams: red-flagged customers and one call's detail."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from plugin.store import queries
from plugin.web.auth import redact
from plugin.web.auth.identity import may
from plugin.web.auth.marks import opens_by_link
from plugin.web.loaders import call_or_404
from plugin.web.serializers import flagged_json
from plugin.web.services import get_services

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    return redirect(url_for("dashboard.flagged"))


@bp.get("/dashboard")
def flagged():
    rows = queries.flagged_customers(get_services().sessions)
    return render_template("flagged.html", customers=[redact.flagged(flagged_json(r), may("supervisor"))
                                                      for r in rows])


@bp.get("/calls/<id:call_id>")
@opens_by_link  # the link in an alert opens this page without a login, for link_days
def call(call_id: int):
    return render_template("call.html", call=redact.call(call_or_404(call_id), may("supervisor"), may("admin")))
