"""What the pages' buttons say they did (the flash line on the next page), in the page's
language. The CLI and the API keep their own English lines (plugin/flow/rerun.py,
plugin/flow/delivery_ops.py): these are the same outcomes, told to a person."""

from __future__ import annotations

from flask_babel import gettext as _

from plugin.flow.delivery_ops import Requeued
from plugin.flow.rerun import Rerun
from plugin.web.terms import VERDICTS, name


def verdict_saved(alert_id: int, verdict: str) -> str:
    return _("Alert %(id)d marked: %(verdict)s", id=alert_id, verdict=name(VERDICTS, verdict))


def rerun_said(done: Rerun) -> str:
    """A re-run's outcome for one call (not_found is a 404 before it gets here)."""
    if done.outcome == "queued":
        return _("Call %(id)d queued for analysis again (job %(job)d).", id=done.call_id, job=done.job_id)
    if done.outcome == "already_queued":
        return _("Call %(id)d is already queued (job %(job)d): not queued twice.", id=done.call_id, job=done.job_id)
    if done.outcome == "already_running":
        return _("Call %(id)d is being analysed now (job %(job)d): not queued twice.", id=done.call_id,
                 job=done.job_id)
    if done.outcome == "purged":
        return _("Call %(id)d was not re-run: the retention policy removed its raw event and its recording "
                 "link's query, so it cannot be fetched again as it came.", id=done.call_id)
    return _("Call %(id)d: %(outcome)s", id=done.call_id, outcome=done.outcome)


def requeue_said(done: Requeued) -> str:
    """One delivery requeued from the outbox page, or why not."""
    if done.outcome == "requeued":
        return _("Delivery %(id)d requeued.", id=done.id)
    if done.outcome == "sending":
        return _("Delivery %(id)d was not requeued: it is being sent right now.", id=done.id)
    if done.outcome == "no_body":
        return _("Delivery %(id)d was not requeued: it has no stored body to send (its template failed when it "
                 "was planned, or the retention policy cleared the body).", id=done.id)
    return _("Delivery %(id)d: %(outcome)s", id=done.id, outcome=done.outcome)


def requeued_dead(done: list[Requeued]) -> str:
    """The outbox page's "requeue every dead delivery of the last day"."""
    if not done:
        return _("No dead delivery in the last day.")
    return _("%(n)d dead delivery(ies) requeued.", n=sum(r.outcome == "requeued" for r in done))
