"""The status banner on every page: what is wrong now, for the people looking at calls.

The model not loaded (and why), an edit of the rules refused, calls that failed or
deliveries that died in the last 24 hours (a random-weight trial model has its own banner,
base.html's). Only for someone signed in or holding a call link. Pages render it
from ``problems()`` (base.html), in the page's language; a database that cannot answer is
itself the problem."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _

from plugin.store import failures
from plugin.web.auth.identity import current
from plugin.web.services import get_services

WINDOW_S = 24 * 3600


@dataclass(frozen=True)
class Problem:
    text: str
    link: str | None = None  # where to look (a page), if there is one
    level: str = "warning"  # warning | error


def problems() -> list[Problem]:
    svc = get_services()
    out: list[Problem] = []
    if current() is None:  # the login page: nothing of the service's state for strangers
        return out
    if not svc.model.ready:  # (a trial model has its own banner in base.html, for anyone)
        out.append(Problem(_("Model not loaded: %(reason)s", reason=svc.model.reason), level="error"))
    speech = svc.model.speech
    if svc.model.ready and svc.config.asr.wanted and not speech.ready and speech.attempts:
        if svc.config.asr.enabled is True:
            out.append(Problem(_("Speech model not loaded, calls wait for it (asr.enabled: true): %(reason)s",
                                 reason=speech.reason), level="error"))
        else:
            out.append(Problem(_("Speech model not loaded, calls are analysed without their words: %(reason)s",
                                 reason=speech.reason)))
    rules = svc.rules_holder.status()
    if rules.get("status") == "refused":
        first = (rules.get("refused") or {}).get("problems") or ["?"]
        out.append(Problem(_("An edit of the rules was refused (the last good rules are in force): %(problem)s",
                             problem=first[0])))
    try:
        recent = failures.recent(svc.sessions, svc.clock, WINDOW_S)
    except Exception as exc:  # the page itself may still render from what it has
        out.append(Problem(_("Database unavailable: %(error)s", error=exc.__class__.__name__), level="error"))
        return out
    if recent.calls_failed:
        out.append(Problem(_("%(n)d call(s) failed in the last 24 h", n=recent.calls_failed),
                           "/calls?status=failed"))
    if recent.deliveries_dead:
        out.append(Problem(_("%(n)d delivery(ies) died in the last 24 h", n=recent.deliveries_dead),
                           "/admin/deliveries?status=dead"))
    return out
