"""HTML pages for support teams: red-flagged customers and one call's detail."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from plugin.api import call_json, flagged_customers, load_call, with_notification_status

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    return redirect(url_for("dashboard.flagged"))


@bp.get("/dashboard")
def flagged():
    return render_template("flagged.html", customers=flagged_customers())


@bp.get("/calls/<int:call_id>")
def call(call_id: int):
    return render_template("call.html", call=with_notification_status(call_json(load_call(call_id))))
