"""The status banner on every page: what is wrong now, for the people looking at calls.

The model not loaded (and why), an edit of the rules refused, calls that failed or
deliveries that died in the last 24 hours (a random-weight trial model has its own banner,
base.html's). Only for someone signed in or holding a call link. Pages render it
from ``problems()`` (base.html); a database that cannot answer is itself the problem."""

from __future__ import annotations

from dataclasses import dataclass

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
        out.append(Problem(f"模型未加载 Model not loaded: {svc.model.reason}", level="error"))
    rules = svc.rules_holder.status()
    if rules.get("status") == "refused":
        first = (rules.get("refused") or {}).get("problems") or ["?"]
        out.append(Problem(f"规则修改被拒绝 An edit of the rules was refused (the last good rules are in force): "
                           f"{first[0]}"))
    try:
        recent = failures.recent(svc.sessions, svc.clock, WINDOW_S)
    except Exception as exc:  # the page itself may still render from what it has
        out.append(Problem(f"数据库不可用 Database unavailable: {exc.__class__.__name__}", level="error"))
        return out
    if recent.calls_failed:
        out.append(Problem(f"{recent.calls_failed} 通通话分析失败 call(s) failed in the last 24 h",
                           "/calls?status=failed"))
    if recent.deliveries_dead:
        out.append(Problem(f"{recent.deliveries_dead} 条推送失败 delivery(ies) died in the last 24 h",
                           "/admin/deliveries?status=dead"))
    return out
