"""Alert routing and noise control: routes, grouping, cooldown (dedupe), quiet-hours digests.

Time is a controllable clock (``svc.clock``), so cooldown windows, group_wait and quiet
hours are stepped through exactly instead of slept through."""

from __future__ import annotations

import itertools
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from plugin import notify, outbox
from plugin.data import Alert
from plugin.models import AlertRow, Call, Delivery, Notification
from plugin.pipeline import plan_alert
from plugin.services import build, call_context
from rules.engine import load_rules
from rules.routing import Routing, group_key, parse_routing
from rules.source import read
from tests.conftest import HERE, event, make_config
from tests.helpers import make_audio, wait_until

SHIPPED = Path(__file__).resolve().parent.parent / "rules" / "scenarios"
ALWAYS = (HERE / "rules" / "always.yaml").read_text(encoding="utf-8")

ROUTING = """\
defaults:
  group_by: [customer_id]
  group_wait: 0s
  cooldown: 4h
receivers:
  supervisors:    {sink: wecom, mentions: [supervisor01]}
  finance_leads:  {sink: wecom, mentions: [lead01, lead02]}
  quality_review: {sink: wecom, mentions: []}
routes:
  - match: {scenario: [finance_complaint], severity: [critical]}
    receiver: finance_leads
    cooldown: 1h
  - match: {role: [agent]}
    receiver: quality_review
  - receiver: supervisors
"""

T0 = datetime(2026, 11, 24, 2, 2)  # 10:02 in Asia/Shanghai


class Clock:
    """A clock the test moves by hand (naive UTC, like utcnow)."""

    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw) -> datetime:
        self.t += timedelta(**kw)
        return self.t


def routing_of(text: str, tmp_path: Path, known_sinks=None) -> tuple[Routing | None, list[str]]:
    f = tmp_path / "routing.yaml"
    f.write_text(textwrap.dedent(text), encoding="utf-8")
    return parse_routing(read(f), known_sinks)


def make_alert(rule="angry_customer", severity="warning", scenario="general", role="customer",
               labels=None, summary=None) -> Alert:
    return Alert(rule=rule, scenario=scenario, severity=severity, role=role, emotions=["angry"], share=0.5,
                 confidence=0.9, matched=[(0.0, 3.0), (63.0, 66.0)],
                 summary=summary or f"{rule} ({severity})", labels=labels or {}, details={"share": 0.5})


# --- parsing ----------------------------------------------------------------------------

def test_every_problem_with_file_and_line(tmp_path):
    routing, problems = routing_of("""\
        defaults:
          cooldown: 4 hours
          group_by: [customer_id, mood]
        receivers:
          supervisors: {sink: wecom, mention: [boss]}
          finance: {sink: pager}
          custom: {sink: wecom, template: "{{ call.custmer_id }}"}
        routes:
          - match: {scenario: finance*, severity: [critical, fatal]}
            receiver: finance
            group_wait: soon
          - receiver: supervisor
        quiet_hours:
          timezone: Asia/Shanghia
          start: "22:00"
          end: "24:30"
        """, tmp_path, known_sinks={"wecom", "crm"})
    f = tmp_path / "routing.yaml"
    assert routing is None
    assert problems == [
        f"{f}:2: defaults.cooldown: '4 hours' is not a duration (e.g. 90s, 30m, 4h, 7d)",
        f"{f}:3: defaults.group_by: cannot group by 'mood'; use customer_id, customer_phone, agent_id, "
        f"queue, source, ticket_id, customer_tier, external_id, scenario, rule, severity, role, "
        f"labels.<name> or metadata.<field>",
        f"{f}:5: receivers.supervisors.mention: unknown key",
        f"{f}:6: receivers.finance.sink: unknown sink 'pager' (configured: crm, wecom)",
        f"{f}:7: receivers.custom.template: bad template: 'dict object' has no attribute 'custmer_id'",
        f"{f}:9: routes.0.match.severity.1: Input should be 'info', 'warning' or 'critical'",
        f"{f}:11: routes.0.group_wait: 'soon' is not a duration (e.g. 90s, 30m, 4h, 7d)",
        f"{f}:12: routes.1.receiver: unknown receiver 'supervisor' (defined: custom, finance, supervisors)",
        f"{f}:14: quiet_hours.timezone: unknown time zone 'Asia/Shanghia' (e.g. Asia/Shanghai, UTC)",
        f"{f}:16: quiet_hours.end: '24:30' is not a time of day \"HH:MM\" (00:00 to 23:59)",
    ]


def test_sinks_unchecked_without_config_and_yaml_times(tmp_path):
    routing, problems = routing_of("""\
        receivers: {r: {sink: anything}}
        routes: [{receiver: r}]
        quiet_hours: {start: 22:00, end: 07:30}   # unquoted: YAML 1.1 reads 22:00 as 1320
        """, tmp_path, known_sinks=None)
    assert problems == [] and routing.quiet_hours.start == "22:00" and routing.quiet_hours.end == "07:30"
    assert routing.sinks() == {"anything"}
    _, problems = routing_of("receivers: {r: {sink: x}}\nroutes: []\nquiet_hours: {start: '08:00', end: '08:00'}\n",
                             tmp_path)
    assert problems == [f"{tmp_path / 'routing.yaml'}:3: quiet_hours: start and end are both 08:00: "
                        f"quiet hours would be empty"]
    _, problems = routing_of("- receiver: x\n", tmp_path)
    assert problems == [f"{tmp_path / 'routing.yaml'}:1: expected a mapping with 'receivers' and 'routes'"]


def test_shipped_routing_loads_with_the_rules():
    rs = load_rules(SHIPPED, {"crm", "wecom"})
    routing = rs.routing
    assert set(routing.receivers) == {"supervisors", "finance_leads", "quality_review"}
    assert routing.sinks() == {"wecom"} and routing.defaults.cooldown == 4 * 3600
    assert routing.quiet_hours.min_severity == "critical"
    finance = make_alert("upset_finance_customer", "critical", "finance_complaint")
    assert [r.name for _, r in routing.receivers_for(finance)] == ["finance_leads"]
    assert [r.name for _, r in routing.receivers_for(make_alert())] == ["supervisors"]
    tone = make_alert("agent_tone_review", "info", role="agent", labels={"team": "quality"})
    [(route, receiver)] = routing.receivers_for(tone)
    assert receiver.name == "quality_review" and receiver.mentions == [] and route.group_by == ["agent_id"]


# --- pure routing helpers --------------------------------------------------------------

def test_route_matching(tmp_path):
    routing, problems = routing_of("""\
        receivers:
          a: {sink: wecom}
          b: {sink: wecom}
          c: {sink: wecom}
        routes:
          - match: {labels: {team: "qual*"}, min_severity: warning}
            receiver: a
            continue: true
          - match: {rule: [escalating_*, vip_*], severity: critical}
            receiver: b
          - match: {scenario: marketing}
            receiver: a
          - receiver: c
        """, tmp_path)
    assert problems == []

    def names(alert):
        return [r.name for _, r in routing.receivers_for(alert)]
    assert names(make_alert("escalating_customer", "critical")) == ["b"]
    assert names(make_alert("Escalating_Customer", "warning")) == ["c"]  # case-insensitive, wrong severity
    assert names(make_alert("x", "warning", labels={"team": "Quality"})) == ["a", "c"]  # continue: true
    assert names(make_alert("x", "info", labels={"team": "quality"})) == ["c"]  # below min_severity
    # a receiver is notified once even when two routes name it
    assert names(make_alert("x", "warning", "marketing", labels={"team": "quality"})) == ["a"]
    no_catch_all, _ = routing_of("receivers: {a: {sink: w}}\nroutes: [{match: {role: agent}, receiver: a}]\n",
                                 tmp_path)
    assert no_catch_all.receivers_for(make_alert()) == []
    assert [r.name for _, r in no_catch_all.receivers_for(make_alert(role="agent"))] == ["a"]


def test_group_keys():
    call = {"id": 7, "customer_id": "c-9", "agent_id": "a-1", "metadata": {"region": "north"}}
    alert = make_alert(labels={"team": "quality"})
    assert group_key(alert, call, ["customer_id"]) == "customer_id=c-9"
    assert group_key(alert, call, ["customer_id", "rule"]) == "customer_id=c-9;rule=angry_customer"
    assert group_key(alert, call, ["labels.team", "metadata.region"]) == "labels.team=quality;metadata.region=north"
    assert group_key(alert, call, []) == "all"
    # an unknown customer is a group of its own call: never merged with other unknowns
    assert group_key(alert, {**call, "customer_id": None}, ["customer_id"]) == "call=7"
    assert group_key(alert, {**call, "customer_id": ""}, ["customer_id", "agent_id"]) == "call=7"
    long = group_key(alert, {**call, "customer_id": "x" * 400}, ["customer_id"])
    assert len(long) == 255 and long != group_key(alert, {**call, "customer_id": "x" * 399 + "y"}, ["customer_id"])


def test_quiet_hours_times(tmp_path):
    routing, _ = routing_of("""\
        receivers: {r: {sink: w}}
        routes: [{receiver: r}]
        quiet_hours: {timezone: Asia/Shanghai, start: "22:00", end: "08:00", min_severity: critical}
        """, tmp_path)
    at = datetime  # naive UTC; Shanghai is UTC+8
    assert not routing.in_quiet_hours(at(2026, 11, 24, 13, 59))  # 21:59 local
    assert routing.in_quiet_hours(at(2026, 11, 24, 14, 0))  # 22:00
    assert routing.in_quiet_hours(at(2026, 11, 24, 23, 59))  # 07:59 next day
    assert not routing.in_quiet_hours(at(2026, 11, 25, 0, 0))  # 08:00
    assert routing.quiet_end(at(2026, 11, 24, 14, 30)) == at(2026, 11, 25, 0, 0)
    assert routing.quiet_end(at(2026, 11, 24, 18, 0)) == at(2026, 11, 25, 0, 0)  # 02:00 local
    assert routing.held_for_digest("warning", at(2026, 11, 24, 15, 0))
    assert not routing.held_for_digest("critical", at(2026, 11, 24, 15, 0))
    assert not routing.held_for_digest("warning", at(2026, 11, 24, 3, 0))
    day, _ = routing_of("receivers: {r: {sink: w}}\nroutes: []\n"
                        "quiet_hours: {timezone: Europe/Berlin, start: '12:00', end: '13:30'}\n", tmp_path)
    assert day.in_quiet_hours(at(2026, 7, 1, 10, 0)) and not day.in_quiet_hours(at(2026, 7, 1, 11, 30))  # CEST
    assert day.in_quiet_hours(at(2026, 12, 1, 11, 0))  # CET: 12:00 local
    assert day.quiet_end(at(2026, 12, 1, 11, 0)) == at(2026, 12, 1, 12, 30)


# --- routing stored alerts, with a controllable clock -----------------------------------

@pytest.fixture
def routed(tmp_path, wecom, crm):
    """A factory: Services with ``routing`` in its rules, a wecom sink at the fake robot and
    a clock at T0."""
    made = []

    def make(routing_yaml: str = ROUTING, db_url: str | None = None, sinks: bool = True):
        rules = tmp_path / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "always.yaml").write_text(ALWAYS.replace("      - sink: wecom\n", ""), encoding="utf-8")
        (rules / "routing.yaml").write_text(textwrap.dedent(routing_yaml), encoding="utf-8")
        cfg = make_config(tmp_path, None, db_url or f"sqlite:///{tmp_path / 'callmood.db'}",
                          crm=crm if sinks else None, wecom=wecom if sinks else None, rules={"path": str(rules), "reload_interval_s": 0})
        svc = build(cfg)
        svc.clock = Clock(T0)
        made.append(svc)
        return svc
    yield make
    for svc in made:
        svc.close()


_numbers = itertools.count(1)


def fire(svc, customer: str | None, *alerts: Alert) -> list[dict]:
    """Store a call and its alerts as the pipeline does, route them; each alert's routing."""
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=f"c-{next(_numbers)}", recording_url="http://pbx/r.wav",
                    customer_id=customer, agent_id="agent-7", event={}, status="analyzed",
                    received_at=svc.clock())
        s.add(call)
        s.flush()
        ctx = call_context(call)
        planned = [(a, plan_alert(svc, s, call, ctx, a)) for a in alerts]
        notify.route_alerts(svc, s, call, ctx, planned, svc.clock())
        return [list(row.routing) for _, row in planned]


def outcome(routing: list[dict]) -> list[tuple[str, str]]:
    return [(r["receiver"], r["outcome"]) for r in routing]


def deliveries(svc) -> list[Delivery]:
    with svc.sessions() as s:
        return s.execute(select(Delivery).order_by(Delivery.id)).scalars().all()


def content(d: Delivery) -> str:
    return d.payload["body"]["markdown"]["content"]


def send_all(svc) -> int:
    with requests.Session() as http:
        http.trust_env = False
        return outbox.drain(svc, http, "test")


def test_cooldown_per_customer_with_a_controllable_clock(db_url, routed, wecom):
    svc = routed(db_url=db_url)
    clock = svc.clock

    [first] = fire(svc, "cust-9", make_alert(severity="warning"))
    assert outcome(first) == [("supervisors", "notified")] and first[0]["group"] == "customer_id=cust-9"
    assert len(deliveries(svc)) == 1  # group_wait 0: sent in the same transaction

    clock.advance(hours=1)
    [again] = fire(svc, "cust-9", make_alert(severity="warning"))
    assert outcome(again) == [("supervisors", "suppressed")]
    assert again[0]["reason"] == ("cooldown: cust-9 was alerted at 2026-11-24 02:02Z (warning); "
                                  "next after 06:02Z unless more severe")
    assert again[0]["notification_id"] == first[0]["notification_id"]
    [other] = fire(svc, "cust-10", make_alert(severity="warning"))  # another customer is not held back
    assert outcome(other) == [("supervisors", "notified")]

    clock.advance(minutes=30)
    [worse] = fire(svc, "cust-9", make_alert("escalating_customer", severity="critical"))
    assert outcome(worse) == [("supervisors", "notified")]  # severity rose: sent despite the cooldown
    clock.advance(hours=3, minutes=59)  # 4h29m after the first, 3h59m after the critical one
    [info] = fire(svc, "cust-9", make_alert(severity="warning"))
    assert outcome(info) == [("supervisors", "suppressed")] and "(critical)" in info[0]["reason"]
    assert "at 2026-11-24 03:32Z (critical); next after 07:32Z" in info[0]["reason"]

    clock.advance(minutes=2)  # the cooldown of the critical one is over
    [later] = fire(svc, "cust-9", make_alert(severity="warning"))
    assert outcome(later) == [("supervisors", "notified")]
    assert len(deliveries(svc)) == 4

    assert send_all(svc) == 4
    assert len(wecom.requests) == 4
    for r in wecom.requests:
        assert r.json()["msgtype"] == "markdown" and "<@supervisor01>" in r.json()["markdown"]["content"]
    with svc.sessions() as s:
        assert {d.status for d in s.execute(select(Delivery)).scalars()} == {"delivered"}


def test_routes_pick_receivers_and_their_mentions(db_url, routed, wecom):
    svc = routed(db_url=db_url)
    [fin, tone] = fire(svc, "cust-1", make_alert("upset_finance_customer", "critical", "finance_complaint"),
                       make_alert("agent_tone_review", "info", role="agent"))
    assert outcome(fin) == [("finance_leads", "notified")] and outcome(tone) == [("quality_review", "notified")]
    # one message per receiver; each receiver's own mentions
    assert send_all(svc) == 2
    texts = sorted((r.json()["markdown"]["content"] for r in wecom.requests), key=lambda c: "lead01" in c)
    assert "<@" not in texts[0] and "agent_tone_review" in texts[0]  # mentions: [] mentions nobody
    assert texts[1].endswith("<@lead01> <@lead02>") and "upset_finance_customer" in texts[1]
    assert "supervisor01" not in texts[1]  # the receiver's list replaces the sink's mentioned_list

    # per route cooldown: finance leads hear again after 1h, not 4h
    svc.clock.advance(minutes=59)
    [fin2] = fire(svc, "cust-1", make_alert("upset_finance_customer", "critical", "finance_complaint"))
    assert outcome(fin2) == [("finance_leads", "suppressed")]
    svc.clock.advance(minutes=2)
    [fin3] = fire(svc, "cust-1", make_alert("upset_finance_customer", "critical", "finance_complaint"))
    assert outcome(fin3) == [("finance_leads", "notified")]


def test_grouping_within_group_wait(db_url, routed, wecom):
    svc = routed(ROUTING.replace("group_wait: 0s", "group_wait: 5m"), db_url=db_url)
    clock = svc.clock
    [a] = fire(svc, "cust-9", make_alert("angry_customer", "warning", summary="first call: angry"))
    assert outcome(a) == [("supervisors", "notified")] and deliveries(svc) == []  # waiting out group_wait
    clock.advance(minutes=2)
    [b, c] = fire(svc, "cust-9", make_alert("angry_customer", "warning", summary="second call: angry"),
                  make_alert("escalating_customer", "critical", summary="second call: escalating"))
    assert outcome(b) == outcome(c) == [("supervisors", "grouped")]
    assert b[0]["notification_id"] == c[0]["notification_id"] == a[0]["notification_id"]
    [other] = fire(svc, "cust-10", make_alert())  # another customer: its own notification
    assert other[0]["notification_id"] != a[0]["notification_id"]

    clock.advance(minutes=2, seconds=59)
    with svc.sessions.begin() as s:
        assert notify.flush_due(svc, s) == 0
    clock.advance(seconds=1)  # 5 minutes after the first alert
    with svc.sessions.begin() as s:
        assert notify.flush_due(svc, s) == 1
        n = s.get(Notification, a[0]["notification_id"])
        assert n.status == "flushed" and n.severity == "critical"  # raised by the grouped alert
    [d] = deliveries(svc)
    text = content(d)
    # the worst alert leads; the others are listed under it
    assert "escalating_customer" in text and "second call: escalating" in text
    assert "该客户另有 2 条告警 / 2 more alert(s) for this customer" in text
    assert "first call: angry" in text and "second call: angry" in text
    assert len(text.encode()) <= 4096 and text.endswith("<@supervisor01>")

    clock.advance(minutes=1)
    [late] = fire(svc, "cust-9", make_alert("escalating_customer", "critical"))
    assert outcome(late) == [("supervisors", "suppressed")]  # the group was just notified at critical
    assert notify.flush_pending(svc) == 0
    clock.advance(minutes=1)  # 5 minutes after cust-10's alert
    assert notify.flush_pending(svc) == 1
    assert send_all(svc) == 2 and len(wecom.requests) == 2


def test_alerts_of_one_call_make_one_message(routed):
    svc = routed()
    routings = fire(svc, "cust-3", make_alert("angry_customer", "warning"),
                    make_alert("escalating_customer", "critical"))
    assert [outcome(r) for r in routings] == [[("supervisors", "notified")], [("supervisors", "grouped")]]
    [d] = deliveries(svc)
    assert d.alert_id is None and d.notification_id == routings[0][0]["notification_id"]
    assert "1 more alert(s) for this customer" in content(d)


def test_quiet_hours_hold_alerts_for_one_digest(db_url, routed, wecom):
    svc = routed(ROUTING + textwrap.dedent("""\
        quiet_hours:
          timezone: Asia/Shanghai
          start: "22:00"
          end: "08:00"
          min_severity: critical
        """), db_url=db_url)
    clock = svc.clock
    clock.t = datetime(2026, 11, 24, 15, 0)  # 23:00 in Shanghai
    [a] = fire(svc, "cust-1", make_alert("angry_customer", "warning", summary="cust-1 was angry"))
    clock.advance(hours=2)
    [b] = fire(svc, None, make_alert("angry_customer", "warning", summary="someone was angry"))
    [page] = fire(svc, "cust-2", make_alert("escalating_customer", "critical"))  # still pages at night
    assert outcome(a) == outcome(b) == [("supervisors", "digest")]
    assert a[0]["notification_id"] == b[0]["notification_id"]
    assert a[0]["reason"] == "quiet hours: in the digest sent at 00:00Z"
    assert outcome(page) == [("supervisors", "notified")]
    assert len(deliveries(svc)) == 1  # the critical one

    clock.t = datetime(2026, 11, 24, 23, 59)  # 07:59
    assert notify.flush_pending(svc) == 0
    clock.t = datetime(2026, 11, 25, 0, 0)  # 08:00: quiet hours are over
    assert notify.flush_pending(svc) == 1
    digest = deliveries(svc)[1]
    text = content(digest)
    assert text.startswith("### 夜间汇总 / Quiet-hours digest")
    assert "2 alert(s) held during quiet hours" in text
    assert "11-24 23:00 · cust-1 · general" in text and "11-25 01:00 · - · general" in text
    assert "cust-1 was angry" in text and "someone was angry" in text and "/calls/" in text
    assert text.endswith("<@supervisor01>")

    # a digest starts no cooldown: the morning's first alert for cust-1 is sent
    [morning] = fire(svc, "cust-1", make_alert("angry_customer", "warning"))
    assert outcome(morning) == [("supervisors", "notified")]
    assert send_all(svc) == 3 and len(wecom.requests) == 3


def test_unknown_customers_are_never_merged(db_url, routed):
    svc = routed(ROUTING.replace("group_wait: 0s", "group_wait: 1m"), db_url=db_url)
    [a] = fire(svc, None, make_alert())
    [b] = fire(svc, None, make_alert())
    assert outcome(a) == outcome(b) == [("supervisors", "notified")]
    assert a[0]["group"] != b[0]["group"] and a[0]["group"].startswith("call=")
    svc.clock.advance(minutes=1)
    assert notify.flush_pending(svc) == 2
    svc.clock.advance(minutes=1)
    [c] = fire(svc, None, make_alert())  # no cooldown shared between unknown customers either
    assert outcome(c) == [("supervisors", "notified")]


def test_concurrent_workers_notify_a_customer_once(db_url, routed):
    """Eight workers store alerts for one customer at the same moment: one notification,
    seven suppressions (PostgreSQL: the per-group advisory lock; SQLite: one writer)."""
    import threading

    svc = routed(db_url=db_url)
    barrier = threading.Barrier(8)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(fire(svc, "cust-race", make_alert())[0][0]["outcome"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(results) == ["notified"] + ["suppressed"] * 7
    assert len(deliveries(svc)) == 1


def test_rerun_is_not_routed_twice(routed):
    svc = routed()
    fire(svc, "cust-5", make_alert())
    with svc.sessions.begin() as s:
        row = s.execute(select(AlertRow)).scalar()
        call = s.get(Call, row.call_id)
        ctx = call_context(call)
        again = plan_alert(svc, s, call, ctx, make_alert())
        notify.route_alerts(svc, s, call, ctx, [(make_alert(), again)], svc.clock())
        assert again.id == row.id and outcome(again.routing) == [("supervisors", "notified")]
    assert len(deliveries(svc)) == 1


def test_without_routing_or_sink_nothing_is_notified(tmp_path, routed):
    svc = routed(sinks=False)  # the receivers' sink is not configured
    [r] = fire(svc, "cust-1", make_alert())
    assert outcome(r) == [("supervisors", "skipped")] and r[0]["reason"] == "sink 'wecom' is not configured"
    svc.rules.routing = None  # no routing.yaml
    [r] = fire(svc, "cust-1", make_alert())
    assert r == [] and deliveries(svc) == []


def test_a_template_that_fails_at_send_time_is_a_dead_delivery(routed):
    svc = routed(ROUTING.replace("supervisors:    {sink: wecom, mentions: [supervisor01]}",
                                 "supervisors:    {sink: wecom, template: '{{ call.tags[0] }} {{ alert.summary }}'}"))
    [r] = fire(svc, "cust-1", make_alert())  # the call has no tags
    assert outcome(r) == [("supervisors", "notified")]
    [d] = deliveries(svc)
    assert d.status == "dead" and "cannot render payload" in d.last_error


def test_through_the_running_service(tmp_path, model_dir, service_factory, recordings, wecom, crm):
    """Webhook -> worker -> rules -> routing -> scheduler flush -> fake WeCom robot; the
    second call of the same customer within the cooldown is suppressed."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "always.yaml").write_text(ALWAYS.replace("      - sink: wecom\n", ""), encoding="utf-8")
    (rules / "routing.yaml").write_text(ROUTING.replace("group_wait: 0s", "group_wait: 1s"), encoding="utf-8")
    cfg = make_config(tmp_path, model_dir, f"sqlite:///{tmp_path / 'svc.db'}", crm=crm, wecom=wecom,
                      rules={"path": str(rules)})
    svc = service_factory(cfg)
    url = recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 4.0))

    first = svc.post_event(event("route-1", url)).json()["call_id"]
    svc.wait_call(first)

    def sent():
        ns = svc.http.get(f"{svc.url}/api/notifications").json()["notifications"]
        return ns and ns[0]["delivery"] and ns[0]["delivery"]["status"] == "delivered" and ns
    [n] = wait_until(sent, 30)
    assert n["receiver"] == "supervisors" and n["group"] == "customer_id=cust-42" and n["status"] == "flushed"
    assert [a["call_id"] for a in n["alerts"]] == [first]
    [robot] = wecom.requests
    assert "<@supervisor01>" in robot.json()["markdown"]["content"]

    second = svc.post_event(event("route-2", url)).json()["call_id"]
    call = svc.wait_call(second)
    [alert] = call["alerts"]
    [r] = alert["routing"]
    assert r["outcome"] == "suppressed" and r["reason"].startswith("cooldown: cust-42 was alerted at ")
    assert [d["sink"] for d in alert["deliveries"]] == ["crm"]  # the rule's own action still runs
    first_call = svc.call(first)
    assert first_call["alerts"][0]["routing"][0]["notification_status"] == "delivered"
    page = svc.http.get(f"{svc.url}/calls/{second}").text
    assert "suppressed" in page and "cooldown: cust-42" in page
    assert len(wecom.requests) == 1
    one = svc.http.get(f"{svc.url}/api/notifications/{n['id']}").json()
    assert one["id"] == n["id"] and svc.http.get(f"{svc.url}/api/notifications/999").status_code == 404


# --- the WeCom message of a notification ------------------------------------------------

def _item(i: int, severity="warning", customer="cust-1", primary=False) -> dict:
    a = {**make_alert("angry_customer", severity, summary=f"客户 {customer} 很生气 / angry #{i} " + "x" * 80).__dict__}
    a.pop("actions")
    return {"alert": a, "call": {"customer_id": customer, "agent_id": f"agent-{i}", "customer_phone": None,
                                 "ticket_id": None}, "link": f"http://callmood.local/calls/{i}",
            "time": f"11-24 {i % 24:02d}:00", "primary": primary}


def _sink(mentions=("boss",)):
    from connectors.sinks.wecom_robot import WeComRobotSink
    from plugin.config import SinkConfig
    return WeComRobotSink("wecom", SinkConfig(type="wecom_robot", url="http://w", mentioned_list=list(mentions)))


def test_one_routed_alert_renders_like_a_rule_action():
    item = _item(1, primary=True)
    plain = {"alert": item["alert"], "call": item["call"], "link": item["link"], "action": {}}
    routed = {**plain, "alerts": [item], "digest": False, "count": 1, "action": {"mentions": ["boss"]}}
    assert _sink().render(routed) == _sink().render(plain)
    assert _sink().render({**routed, "action": {"mentions": []}})["body"]["markdown"]["content"].endswith(
        "(http://callmood.local/calls/1)")


@pytest.mark.parametrize("digest", [False, True])
def test_long_groups_and_digests_stay_under_the_cap_with_link_and_mentions(digest):
    items = [_item(i, primary=(i == 0)) for i in range(200)]
    ctx = {"alert": items[0]["alert"], "call": items[0]["call"], "link": items[0]["link"], "alerts": items,
           "digest": digest, "count": len(items), "action": {"mentions": ["lead01"]},
           "dashboard": "http://callmood.local/dashboard"}
    text = _sink().render(ctx)["body"]["markdown"]["content"]
    assert len(text.encode("utf-8")) <= 4096 and text.endswith("<@lead01>")
    listed = sum(f"/calls/{i})" in text for i in range(200))
    assert 10 < listed < 200
    if digest:
        assert text.startswith("### 夜间汇总 / Quiet-hours digest") and "200 alert(s) held" in text
        assert f"and {200 - listed} more" in text and "(http://callmood.local/dashboard)" in text
    else:
        assert "199 more alert(s) for this customer" in text and f"and {200 - listed} more" in text
        assert "[查看通话 / Open the call](http://callmood.local/calls/0)" in text
