"""What templates and rules see of stored calls and alerts, and the links put in messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugin.core.data import QUOTES_KEY, Alert
from plugin.core.signing import CallLinkSigner
from plugin.store.tables import AlertRow, Call


@dataclass(frozen=True)
class Links:
    """Links to this CallMood for people reading a WeCom alert or a CRM note."""

    public_url: str  # server.public_url
    # Signs call links so they open that one call without a login (plugin/core/signing.py).
    signer: CallLinkSigner | None = None

    def call(self, call_id: int) -> str:
        url = f"{self.public_url.rstrip('/')}/calls/{call_id}"
        return f"{url}?k={self.signer.token(call_id)}" if self.signer else url

    @property
    def dashboard(self) -> str:
        return f"{self.public_url.rstrip('/')}/dashboard"


def call_context(call: Call) -> dict[str, Any]:
    """What templates and rules see of a call.

    ``tags`` and ``customer_tier`` come from the event's fields of those names when the
    helpdesk sends them; ``metadata`` is the whole event as received."""
    event = call.event if isinstance(call.event, dict) else {}
    tags = event.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    return {
        "id": call.id, "source": call.source, "external_id": call.external_id,
        "customer_id": call.customer_id, "customer_phone": call.customer_phone,
        "agent_id": call.agent_id, "ticket_id": call.ticket_id, "queue": call.queue,
        "scenario_hint": call.queue,  # the older name of queue, kept for existing templates
        "recording_url": call.recording_url, "duration_s": call.duration_s,
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "customer_tier": event.get("customer_tier"),
        "metadata": event,
    }


def stored_alert_context(row: AlertRow) -> dict[str, Any]:
    """A stored alert as templates see it (the keys of rules.engine.alert_context, plus ids)."""
    details, quotes = split_quotes(row.details)
    return {"rule": row.rule, "scenario": row.scenario, "severity": row.severity, "role": row.role,
            "emotions": list(row.emotions or []), "share": row.share, "confidence": row.confidence,
            "matched": [tuple(m) for m in row.matched or []], "summary": row.summary,
            "labels": dict(row.labels or {}), "details": details, "quotes": quotes,
            "id": row.id, "call_id": row.call_id}



def stored_details(alert: Alert) -> dict[str, Any]:
    """What an alert's row keeps as ``details``: its measures, and its quotes when it has any."""
    details = {k: v for k, v in alert.details.items() if k != QUOTES_KEY}
    if alert.quotes:
        details[QUOTES_KEY] = [dict(q) for q in alert.quotes]
    return details


def split_quotes(details: object) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A row's stored details as (the measures, the quotes): the quotes a list of dicts,
    empty when the alert has none (no transcripts, or stored before them)."""
    details = dict(details) if isinstance(details, dict) else {}
    quotes = details.pop(QUOTES_KEY, None)
    return details, [dict(q) for q in quotes if isinstance(q, dict)] if isinstance(quotes, list) else []
