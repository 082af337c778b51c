"""Honest trials: what a trial model (random weights, `callmood make-random-model`) makes
says so, in the same words everywhere: /health, every page, `callmood analyze`, every CRM
and WeCom message.

Whether a call was analysed by a trial model is recorded with its results
(``calls.summary["model"]["trial"]``, written by the pipeline from the model that analysed
it), so a message says so because of the model that made the call's labels, not because
of whatever model is loaded when the message is sent.
"""

from __future__ import annotations

from typing import Any

TEXT = "trial model, random weights"
# Where people of either language read it first: the WeCom alert, the CRM note, the banner.
LABEL = f"试用模型（随机权重）{TEXT}"


def recorded(summary: Any) -> bool:
    """Whether a call's stored summary says a trial model analysed it."""
    model = summary.get("model") if isinstance(summary, dict) else None
    return isinstance(model, dict) and model.get("trial") is True
