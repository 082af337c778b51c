"""Alert routing and noise control (like Prometheus Alertmanager), configured by
``routing.yaml`` in the rules directory (see rules/scenarios/routing.yaml).

A rule's own ``actions:`` (a CRM tag, say) run for every alert. Supervisor notifications
go through routing instead:

- **routes** pick the receivers of an alert by scenario, severity, rule, role and labels
  (first match wins unless ``continue: true``);
- **grouping**: alerts of one group (by default: the same customer) waiting for the same
  receiver go out as one message (``group_wait``);
- **cooldown**: after a group was notified, later alerts of that group are suppressed for
  ``cooldown`` unless their severity is higher;
- **quiet hours**: alerts below ``min_severity`` wait for a digest sent when they end.

Pure: no database and no network. plugin/flow/notify/ applies this to stored alerts.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, time, timedelta, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, field_validator, model_validator

from plugin.core.data import SEVERITIES, Alert, Severity, severity_rank
from plugin.core.ids import user_id_problem
from rules.schema import MaybeStrings, Strict, Strings, matches_any, one_or_many
from rules.templates import trial_error
from rules.yamlfile import YamlFile, line_of, parse_duration, unknown_sink

__all__ = ["Routing", "RouteSpec", "ReceiverSpec", "RouteMatch", "QuietHours", "Defaults",
           "parse_routing", "group_key", "SEVERITIES", "severity_rank", "DIGEST_KEY"]

DIGEST_KEY = "digest"  # the group key of a receiver's quiet-hours digest

# What group_by may name: the call's fields, the alert's, or labels.X / metadata.X.
CALL_FIELDS = ("customer_id", "customer_phone", "agent_id", "queue", "source", "ticket_id",
               "customer_tier", "external_id")
ALERT_FIELDS = ("scenario", "rule", "severity", "role")
GROUP_KEY_MAX = 255  # Notification.group_key


def _duration(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a duration (e.g. 90s, 30m, 4h, 7d)")
    return parse_duration(v)


class RouteMatch(Strict):
    """Which alerts a route takes. Every key given must match; within a key any pattern may
    (glob patterns, case-insensitive). No key at all: every alert (a catch-all)."""

    scenario: Strings = Field(default_factory=list)
    severity: Annotated[list[Severity], BeforeValidator(one_or_many)] = Field(default_factory=list)
    min_severity: Severity | None = None
    rule: Strings = Field(default_factory=list)
    role: Strings = Field(default_factory=list)
    labels: dict[str, Strings] = Field(default_factory=dict)

    def matches(self, alert: Alert) -> bool:
        if self.scenario and not matches_any(alert.scenario, self.scenario):
            return False
        if self.severity and alert.severity not in self.severity:
            return False
        if self.min_severity and severity_rank(alert.severity) < severity_rank(self.min_severity):
            return False
        if self.rule and not matches_any(alert.rule, self.rule):
            return False
        if self.role and not matches_any(alert.role, self.role):
            return False
        for key, patterns in self.labels.items():
            if not matches_any((alert.labels or {}).get(key), patterns):
                return False
        return True


class _Grouping(Strict):
    group_by: MaybeStrings = None
    group_wait: float | None = None
    cooldown: float | None = None

    @field_validator("group_by")
    @classmethod
    def _group_fields(cls, v):
        for name in v or []:
            if name in CALL_FIELDS or name in ALERT_FIELDS:
                continue
            if (name.startswith("labels.") or name.startswith("metadata.")) and name.split(".", 1)[1]:
                continue
            raise ValueError(f"cannot group by {name!r}; use {', '.join(CALL_FIELDS + ALERT_FIELDS)}, "
                             f"labels.<name> or metadata.<field>")
        return v

    @field_validator("group_wait", "cooldown", mode="before")
    @classmethod
    def _durations(cls, v):
        return None if v is None else _duration(v)


class Defaults(_Grouping):
    group_by: MaybeStrings = Field(default_factory=lambda: ["customer_id"])
    group_wait: float | None = 0.0
    cooldown: float | None = 4 * 3600.0


class ReceiverSpec(Strict):
    """Who gets a notification: a sink (a name under ``sinks:`` in the config) and its
    parameters (WeCom user ids to @-mention; a template replacing the sink's own)."""

    sink: str = Field(min_length=1)
    mentions: MaybeStrings = None  # None: the sink's mentioned_list; [] mentions nobody
    template: str | None = None
    # A wecom_app sink's recipients for this receiver (None: the sink's own): WeCom user
    # ids, department ids, tag ids. Given any, they replace all three of the sink's.
    touser: MaybeStrings = None
    toparty: MaybeStrings = None
    totag: MaybeStrings = None
    _name: str = PrivateAttr("")

    @field_validator("mentions", "touser")
    @classmethod
    def _user_ids(cls, v):
        for u in v or []:
            problem = user_id_problem(u)
            if problem:
                raise ValueError(problem)
            if u.lower() == "@all":
                raise ValueError("'@all' is refused: name the people (a routing receiver pages them by name)")
        if v is not None and len(v) > 1000:
            raise ValueError(f"{len(v)} users; WeCom takes at most 1000 per message")
        return v

    @field_validator("toparty", "totag", mode="before")
    @classmethod
    def _ids_as_text(cls, v):  # YAML reads [2] as a number
        if isinstance(v, int) and not isinstance(v, bool):
            return [str(v)]
        if isinstance(v, list):
            return [str(i) if isinstance(i, int) and not isinstance(i, bool) else i for i in v]
        return v

    @field_validator("toparty", "totag")
    @classmethod
    def _numeric_ids(cls, v):
        for i in v or []:
            if not re.fullmatch(r"[0-9]{1,10}", i):
                raise ValueError(f"{i[:40]!r} is not a WeCom department or tag id (1 to 10 digits)")
        if v is not None and len(v) > 100:
            raise ValueError(f"{len(v)} ids; WeCom takes at most 100 per message")
        return v

    @property
    def name(self) -> str:
        return self._name

    def params(self) -> dict[str, Any]:
        """The ``action`` a sink renders the notification with."""
        out: dict[str, Any] = {}
        if self.mentions is not None:
            out["mentions"] = list(self.mentions)
        if self.template is not None:
            out["template"] = self.template
        for key in ("touser", "toparty", "totag"):
            if getattr(self, key) is not None:
                out[key] = list(getattr(self, key))
        return out


class RouteSpec(_Grouping):
    match: RouteMatch = Field(default_factory=RouteMatch)
    receiver: str
    continue_: bool = Field(False, alias="continue")  # keep looking for more routes after this one
    _index: int = PrivateAttr(0)

    @property
    def index(self) -> int:
        return self._index


class QuietHours(Strict):
    """Overnight (or any daily) hours when only alerts at ``min_severity`` or above are sent
    at once; the rest are collected into one digest per receiver, sent when they end."""

    timezone: str = "UTC"
    start: str
    end: str
    min_severity: Severity = "critical"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            # YAML 1.1 reads an unquoted 22:00 as the sexagesimal number 1320
            v = f"{v // 60:02d}:{v % 60:02d}"
        if not isinstance(v, str) or not re.fullmatch(r"\d{1,2}:\d{2}", v.strip()):
            raise ValueError(f"{v!r} is not a time of day \"HH:MM\" (e.g. \"22:00\")")
        h, m = (int(p) for p in v.strip().split(":"))
        if h > 23 or m > 59:
            raise ValueError(f"{v!r} is not a time of day \"HH:MM\" (00:00 to 23:59)")
        return f"{h:02d}:{m:02d}"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v):
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (e.g. Asia/Shanghai, UTC)") from None
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: quiet hours would be empty")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _t(self, hhmm: str) -> time:
        h, m = hhmm.split(":")
        return time(int(h), int(m))

    def local(self, now_utc: datetime) -> datetime:
        return now_utc.replace(tzinfo=timezone.utc).astimezone(self.zone)

    def contains(self, now_utc: datetime) -> bool:
        t = self.local(now_utc).time().replace(tzinfo=None)
        start, end = self._t(self.start), self._t(self.end)
        if start < end:
            return start <= t < end
        return t >= start or t < end  # overnight, e.g. 22:00-08:00

    def next_end(self, now_utc: datetime) -> datetime:
        """The first ``end`` after ``now_utc`` (naive UTC)."""
        local = self.local(now_utc)
        end = datetime.combine(local.date(), self._t(self.end), tzinfo=self.zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self._t(self.end), tzinfo=self.zone)
        return end.astimezone(timezone.utc).replace(tzinfo=None)


class Routing(Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    receivers: dict[str, ReceiverSpec] = Field(default_factory=dict)
    routes: list[RouteSpec] = Field(default_factory=list)
    quiet_hours: QuietHours | None = None

    @model_validator(mode="after")
    def _resolve(self) -> Routing:
        for name, receiver in self.receivers.items():
            receiver._name = name
        for i, route in enumerate(self.routes):
            route._index = i
            if route.group_by is None:
                route.group_by = list(self.defaults.group_by or [])
            if route.group_wait is None:
                route.group_wait = self.defaults.group_wait or 0.0
            if route.cooldown is None:
                route.cooldown = self.defaults.cooldown or 0.0
        return self

    def sinks(self) -> set[str]:
        return {r.sink for r in self.receivers.values()}

    def receivers_for(self, alert: Alert) -> list[tuple[RouteSpec, ReceiverSpec]]:
        """The (route, receiver) pairs an alert goes to, in route order; a receiver once."""
        out: list[tuple[RouteSpec, ReceiverSpec]] = []
        for route in self.routes:
            if not route.match.matches(alert):
                continue
            receiver = self.receivers.get(route.receiver)
            if receiver is not None and all(r.name != receiver.name for _, r in out):
                out.append((route, receiver))
            if not route.continue_:
                break
        return out

    def in_quiet_hours(self, now_utc: datetime) -> bool:
        return self.quiet_hours is not None and self.quiet_hours.contains(now_utc)

    def quiet_end(self, now_utc: datetime) -> datetime:
        """When the current (or next) quiet hours end, naive UTC: the digest goes out then."""
        if self.quiet_hours is None:
            return now_utc
        return self.quiet_hours.next_end(now_utc)

    def held_for_digest(self, severity: str, now_utc: datetime) -> bool:
        """Whether an alert of ``severity`` waits for the digest at ``now_utc``."""
        return (self.in_quiet_hours(now_utc)
                and severity_rank(severity) < severity_rank(self.quiet_hours.min_severity))

    def local_time(self, t_utc: datetime, fmt: str = "%m-%d %H:%M") -> str:
        """A time as supervisors read it: in the quiet-hours time zone, else UTC."""
        if self.quiet_hours is None:
            return t_utc.strftime(fmt) + "Z"
        return self.quiet_hours.local(t_utc).strftime(fmt)


def group_key(alert: Alert, call_ctx: dict[str, Any], group_by: list[str]) -> str:
    """The group an alert belongs to, e.g. "customer_id=c-9".

    When a field is empty for this call (no customer id, say) the call forms its own
    group, so alerts of unknown customers are never merged or suppressed together."""
    parts = []
    for name in group_by:
        value = _field(name, alert, call_ctx)
        if value is None or value == "" or value == []:
            return f"call={call_ctx.get('id')}"
        if isinstance(value, list):
            value = ",".join(sorted(str(v) for v in value))
        parts.append(f"{name}={value}")
    key = ";".join(parts) or "all"
    if len(key) > GROUP_KEY_MAX:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = key[:GROUP_KEY_MAX - 17] + "~" + digest
    return key


def _field(name: str, alert: Alert, call_ctx: dict[str, Any]) -> Any:
    if name in ALERT_FIELDS:
        return getattr(alert, name)
    if name.startswith("labels."):
        return (alert.labels or {}).get(name[len("labels."):])
    if name.startswith("metadata."):
        return (call_ctx.get("metadata") or {}).get(name[len("metadata."):])
    return call_ctx.get(name)


class _AnyLabels(dict):
    """Sample labels for trying a template: any label a route might match on exists."""

    def __missing__(self, key):
        return "label"


def parse_routing(src: YamlFile, known_sinks: set[str] | None) -> tuple[Routing | None, list[str]]:
    """The routing in ``src`` and every problem found ("file:line: key.path: message").

    With ``known_sinks`` (the config's sinks), a receiver naming another sink is a problem.
    The Routing is None when there is any problem."""
    data = src.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [src.problem((), "expected a mapping with 'receivers' and 'routes'")]
    routing, problems = None, []
    try:
        routing = Routing.model_validate(data)
    except ValidationError as err:
        problems = src.problems(err)
    # Names and templates are checked on the file as written, so one `rules check` run
    # lists them beside any schema errors.
    receivers = data.get("receivers") if isinstance(data.get("receivers"), dict) else {}
    for name, receiver in receivers.items():
        if not isinstance(receiver, dict):
            continue
        where = ("receivers", name)
        sink = receiver.get("sink")
        if known_sinks is not None and isinstance(sink, str) and sink and sink not in known_sinks:
            problems.append(src.problem(where + ("sink",), unknown_sink(sink, known_sinks)))
        template = receiver.get("template")
        if isinstance(template, str):
            params = {k: v for k, v in receiver.items() if k != "sink"}
            problem = trial_error(template, _AnyLabels(), params)
            if problem:
                problems.append(src.problem(where + ("template",), problem))
    routes = data.get("routes") if isinstance(data.get("routes"), list) else []
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        name = route.get("receiver")
        if isinstance(name, str) and name not in receivers:
            problems.append(src.problem(("routes", i, "receiver"),
                                        f"unknown receiver {name!r} (defined: "
                                        f"{', '.join(sorted(map(str, receivers))) or 'none'})"))
    problems = sorted(dict.fromkeys(problems), key=line_of)
    return (routing if not problems else None), problems

