"""HTML pages for support teams: red-flagged customers and one call's detail."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from plugin.store import queries
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
    return render_template("flagged.html", customers=[flagged_json(r) for r in rows])


@bp.get("/calls/<int:call_id>")
def call(call_id: int):
    return render_template("call.html", call=call_or_404(call_id))
