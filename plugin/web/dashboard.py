"""HTML pages for support teams: red-flagged customers (filtered, exported as CSV), every
call with its status, one call's detail, and the outbox for admins."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _

from plugin.flow import listen
from plugin.flow.delivery_ops import retry_ids, retry_status
from plugin.flow.rerun import rerun_calls
from plugin.store import queries
from plugin.store.feedback import set_feedback
from plugin.store.tables import AlertRow
from plugin.web import flagged_view, flash_words, terms, timeline
from plugin.web.auth import redact
from plugin.web.auth.identity import current, may
from plugin.web.auth.marks import opens_by_link, requires
from plugin.web.loaders import call_or_404
from plugin.web.serializers import call_json, delivery_json
from plugin.web.services import get_services

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__)
VERDICTS = terms.VERDICTS  # correct | false_alarm, with their names in the page's language

CALL_STATES = ("received", "analyzing", "retrying", "analyzed", "failed")
DELIVERY_STATES = ("pending", "sending", "delivered", "dead")


@bp.get("/")
def index():
    return redirect(url_for("dashboard.flagged"))


# The red-flag list: filters, sort, pages, CSV and who is handling each customer
# (plugin/web/flagged_view.py, plugin/store/flagged.py).

@bp.get("/dashboard")
def flagged():
    return flagged_view.page()


@bp.get("/dashboard.csv")
def flagged_csv():
    return flagged_view.csv_export()


@bp.post("/dashboard/handling")
@requires("supervisor")
def handle_customer():
    """Acknowledge, assign or release a customer from the list (a form with its CSRF token)."""
    return flagged_view.handle_form()


@bp.get("/customers")
def customer():
    """One customer: every call, with the share of their speech that was negative over time
    (``?id=``: a customer id may hold any character, so it is a query value, not a path)."""
    customer_id = (request.args.get("id") or "").strip()
    if not customer_id or len(customer_id) > 255:
        abort(400, _("?id= must name a customer (at most 255 characters)."))
    svc = get_services()
    rows = queries.customer_calls(svc.sessions, customer_id, svc.config.reports.negative_emotions)
    if not rows:
        abort(404, _("No calls of customer %(customer)s.", customer=customer_id[:80]))
    return render_template("customer.html", customer_id=customer_id, calls=rows, chart=timeline.trend(rows),
                           negative=svc.config.reports.negative_emotions)


@bp.get("/calls")
def calls():
    """Every call with its status, newest first, so a failure is never invisible."""
    status = request.args.get("status")
    status = status if status in CALL_STATES else None
    # "retrying" is no stored status: a call (received, or analysed and re-run) whose last attempt failed.
    stored = None if status in ("retrying", "analyzed") else status
    rows = queries.calls(get_services().sessions, stored, 500 if stored is None and status else 200)
    out = []
    for c in rows:
        j = redact.call(call_json(c, segments=False), may("supervisor"), may("admin"))
        j["state"] = "retrying" if j.get("retry") else j["status"]
        if status is None or j["state"] == status:
            out.append(j)
    return render_template("calls.html", calls=out[:200], status=status, states=CALL_STATES)


@bp.get("/calls/<id:call_id>")
@opens_by_link  # the link in an alert opens this page without a login, for link_days
def call(call_id: int):
    shown = redact.call(call_or_404(call_id), may("supervisor"), may("admin"))
    return render_template("call.html", call=shown, timeline=timeline.lanes(shown), clock=timeline.clock,
                           link_key=request.args.get("k"), verdicts=VERDICTS)


@bp.get("/calls/<id:call_id>/audio")
@opens_by_link
def audio(call_id: int):
    """The recording, for the page's player: HTTP range requests answered (206), so a
    browser seeks without downloading it all. From the kept copy while retention keeps
    it, else fetched from the source now (plugin/flow/listen.py)."""
    svc = get_services()
    try:
        path = listen.listening_copy(call_id, svc.config, svc.sessions)
    except listen.PreparingElsewhere as exc:
        return Response(str(exc), 503, {"Retry-After": "5"}, mimetype="text/plain")
    except listen.NotPlayable as exc:
        log.info("call %s: recording not playable: %s", call_id, exc)
        # A vendor's error may quote a phone number: viewers and link holders see it masked.
        abort(404, str(exc) if may("supervisor") else redact.mask_text(str(exc)))
    return send_file(path, mimetype="audio/wav", conditional=True, max_age=0)


@bp.post("/calls/<id:call_id>/alerts/<id:alert_id>/feedback")
@requires("supervisor")
def feedback(call_id: int, alert_id: int):
    """The call page's verdict buttons (a form with its CSRF token): the same feedback the
    API and WeCom's buttons store."""
    verdict = request.form.get("verdict")
    note = (request.form.get("note") or "").strip()
    if verdict not in VERDICTS or len(note) > 4000 or "\x00" in note:
        abort(400, _("The verdict must be correct or false_alarm, and the note at most 4000 characters."))
    svc = get_services()
    with svc.sessions() as s:
        alert = s.get(AlertRow, alert_id)
        if alert is None or alert.call_id != call_id:
            abort(404, _("No alert %(alert)d on call %(call)d.", alert=alert_id, call=call_id))
    ident = current()
    set_feedback(svc.sessions, svc.clock, alert_id, {"verdict": verdict, "by": ident.name, "note": note or None})
    log.info("alert %s marked %s by %s (%s, call page)", alert_id, verdict, ident.name, ident.role)
    flash(flash_words.verdict_saved(alert_id, verdict))
    return redirect(url_for("dashboard.call", call_id=call_id) + f"#alert-{alert_id}")


@bp.post("/calls/<id:call_id>/rerun")
@requires("supervisor")
def rerun(call_id: int):
    svc = get_services()
    [done] = rerun_calls(svc.sessions, svc.jobs, [call_id], _who())
    if done.outcome == "not_found":
        abort(404, _("No call %(id)d.", id=call_id))
    flash(flash_words.rerun_said(done))
    return redirect(url_for("dashboard.call", call_id=call_id))


# --- the outbox, for admins (plugin/flow/delivery_ops.py) ----------------------------------

@bp.get("/admin/deliveries")
@requires("admin")
def deliveries():
    status = request.args.get("status")
    status = status if status in DELIVERY_STATES else None
    rows = get_services().deliveries.listing(status, None, None, 200)
    return render_template("deliveries.html", deliveries=[delivery_json(d) for d in rows], status=status,
                           states=DELIVERY_STATES)


@bp.post("/admin/deliveries/<id:delivery_id>/retry")
@requires("admin")
def retry_delivery(delivery_id: int):
    [done] = retry_ids(get_services().deliveries, [delivery_id], _who())
    if done.outcome == "not_found":
        abort(404, _("No delivery %(id)d.", id=delivery_id))
    flash(flash_words.requeue_said(done))
    return redirect(url_for("dashboard.deliveries", status=request.args.get("status")))


@bp.post("/admin/deliveries/retry-dead")
@requires("admin")
def retry_dead():
    svc = get_services()
    done = retry_status(svc.deliveries, svc.clock, "dead", 86400, _who())
    flash(flash_words.requeued_dead(done))
    return redirect(url_for("dashboard.deliveries", status="dead"))


def _who() -> str:
    ident = current()
    return f"{ident.name} ({ident.role}, {ident.via}, dashboard)"
