"""Jinja2 templates in rules and sinks: sandboxed, strict, and tried before they go live.

A template that names something that does not exist (``{{ call.custmer_id }}``) fails
when the rules are loaded, not at 3 a.m. when the alert is sent.
"""

from __future__ import annotations

from jinja2 import TemplateError

from plugin.core.sandbox import compile_error, render
from rules.conditions import MEASURES, WORD_MEASURES

SAMPLE_CALL = {
    "id": 1, "source": "generic", "external_id": "c-1", "customer_id": "cust-1",
    "customer_phone": "+8613800000000", "agent_id": "agent-1", "ticket_id": "T-1",
    "scenario_hint": "support", "queue": "support", "recording_url": "https://pbx.example/c-1.wav",
    "duration_s": 120.0, "tags": ["vip"], "customer_tier": "gold", "metadata": {},
}
SAMPLE_ALERT = {
    "rule": "r", "scenario": "s", "severity": "warning", "role": "customer",
    "emotions": ["angry"], "share": 0.5, "confidence": 0.8, "matched": [(0.0, 3.0)],
    "summary": "summary", "labels": {}, "details": {**{m: 1 for m in MEASURES}, "conditions": [],
                                                    "mentions": 1, "keywords": ["投诉"]},
    "quotes": [{"start": 0.0, "end": 3.0, "role": "customer", "text": "我要投诉"}],
}
# What a sink adds when it renders an action (see connectors/sinks).
SINK_EXTRAS = {"color": "warning", "times": "00:00–00:03", "mentions": "", "link": "http://x/calls/1",
               "digest": False, "count": 1, "alerts": []}


def trial_error(template: str, labels: dict[str, str], action: dict | None = None,
                listens: bool = False) -> str | None:
    """Render ``template`` once with a sample call and alert; the error, or None. The
    alert's details have mentions and keywords only when its rule ``listens`` (says:)."""
    problem = compile_error(template)
    if problem:
        return problem
    details = {k: v for k, v in SAMPLE_ALERT["details"].items() if listens or k not in WORD_MEASURES}
    alert = {**SAMPLE_ALERT, "labels": labels, "details": details}
    try:
        render(template, call=SAMPLE_CALL, alert=alert, action=action or {}, **SINK_EXTRAS)
    except TemplateError as exc:
        return f"bad template: {exc}"
    except Exception as exc:  # e.g. a filter applied to the wrong type
        return f"bad template: {exc.__class__.__name__}: {exc}"
    return None
