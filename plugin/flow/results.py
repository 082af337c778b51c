"""The second half of a job: one transaction stores a call's results and verdict, its
alerts and every delivery they plan (rule actions and routed notifications).

Idempotent: a re-run rewrites the same segment rows and adds no second alert (one per
call and rule), no second delivery (one per alert and sink) and no second routing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from plugin.core import trial
from plugin.core.data import QUOTES_KEY, Alert, CallAnalysis
from plugin.flow import notify
from plugin.flow.context import stored_details
from plugin.flow.outputs import Outputs, customer_order_key
from plugin.store.tables import AlertRow, Call, Delivery, Segment
from rules.engine import RuleSet, Scenario, alert_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """What the rules made of a call's analysis."""

    scenario: Scenario | None
    alerts: list[Alert]
    rules: RuleSet  # the version that judged it: routing uses the same one


def store_results(s: Session, call: Call, ctx: dict[str, Any], analysis: CallAnalysis, notes: dict[str, Any],
                  judged: Judgement, outputs: Outputs, now: datetime) -> None:
    """Store the call's segments, summary and alerts; plan their deliveries and notifications.

    ``now``: the clock's time for this transaction (the database's on PostgreSQL)."""
    s.execute(delete(Segment).where(Segment.call_id == call.id))
    s.add_all(Segment(call_id=call.id, channel=r.channel, role=r.role, start=r.start, end=r.end,
                      label=r.label, confidence=r.confidence, scores=r.scores, text=r.text,
                      language=r.language, tag_emotion=r.tag_emotion,
                      events=list(r.events) if r.text is not None else None, normalized=r.normalized)
              for r in analysis.segments)
    call.status, call.error = "analyzed", None
    call.analyzed_at = now
    call.duration_s = round(analysis.duration, 3)
    call.scenario = judged.scenario.scenario if judged.scenario else None
    call.emotion, call.confidence = analysis.emotion, analysis.confidence
    call.summary = {**analysis.summary(), **notes}
    planned = [(alert, plan_alert(s, call, ctx, alert, outputs, now)) for alert in judged.alerts]
    # Supervisor notifications (routing.yaml: grouping, cooldown, quiet hours); those due
    # at once (group_wait 0) become deliveries in this same transaction.
    if judged.rules.routing is not None:
        notify.route_alerts(s, ctx, planned, judged.rules.routing, now, outputs.sinks.keys())
        notify.flush_due(s, now, judged.rules.routing, outputs)


def plan_alert(s: Session, call: Call, ctx: dict[str, Any], alert: Alert, outputs: Outputs,
               now: datetime) -> AlertRow:
    """Store the alert (once per call and rule), or give the stored one the re-run's quotes,
    and one delivery per action (once per sink)."""
    row = s.execute(select(AlertRow).where(AlertRow.call_id == call.id, AlertRow.rule == alert.rule)).scalar()
    if row is None:
        row = AlertRow(call_id=call.id, rule=alert.rule, scenario=alert.scenario,
                       severity=alert.severity, role=alert.role, emotions=alert.emotions,
                       share=alert.share, confidence=alert.confidence,
                       matched=[list(m) for m in alert.matched], summary=alert.summary,
                       customer_id=call.customer_id, labels=dict(alert.labels),
                       details=stored_details(alert), routing=[], created_at=now)
        s.add(row)
        s.flush()
    elif alert.quotes:
        # A re-run with words (the first run had no recognizer, or a purge took the segments'
        # words) gives the alert it keeps its quotes; the rest of the row stays as first stored.
        details = dict(row.details) if isinstance(row.details, dict) else {}
        row.details = {**details, QUOTES_KEY: stored_details(alert)[QUOTES_KEY]}
    have = {d.sink for d in s.execute(select(Delivery).where(Delivery.alert_id == row.id)).scalars()}
    for action in alert.actions:
        if action.sink in have:
            continue
        sink = outputs.sinks.get(action.sink)
        if sink is None:
            log.warning("alert %s: sink %r is not configured; action skipped", row.id, action.sink)
            continue
        if sink.messaging:  # `rules check` refuses this; rules loaded without the config's sinks may not
            log.warning("alert %s: rule %s: sink %r messages people, which only routing.yaml does "
                        "(cooldown, grouping, quiet hours); action skipped", row.id, alert.rule, action.sink)
            continue
        # trial: the model that analysed this call had random weights (its summary says so,
        # see store_results); the sink puts "trial model, random weights" in the message.
        outputs.plan(s, sink, {"call": ctx, "alert": alert_context(alert), "action": action.params,
                               "link": outputs.links.call(call.id), "trial": trial.recorded(call.summary)},
                     alert_id=row.id, order_key=customer_order_key(sink.name, ctx))
        have.add(action.sink)
    return row
