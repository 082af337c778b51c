"""Routing stored alerts through the notification stages: grouping, cooldown (dedupe),
quiet-hours digests, each receiver's message, concurrent workers.

Time is a ManualClock (``svc.clock``), so cooldown windows, group_wait and quiet hours
are stepped through exactly instead of slept through."""

from __future__ import annotations

import dataclasses
import itertools
import textwrap
from datetime import datetime

import pytest
import requests
from sqlalchemy import select

from plugin.core.clock import ManualClock
from plugin.core.data import Action, Alert
from plugin.flow import notify
from plugin.flow.context import call_context, stored_alert_context
from plugin.flow.results import plan_alert
from plugin.services import build
from plugin.store.tables import AlertRow, Call, Delivery, Notification
from tests.conftest import ALWAYS, T0, make_config
from tests.helpers import ROUTING, at_once, make_alert

# --- routing stored alerts, with a controllable clock -----------------------------------


@pytest.fixture
def routed(request, tmp_path, wecom, crm):
    """A factory: Services with ``routing`` in its rules, a wecom sink at the fake robot and
    a clock at T0."""
    made = []

    def make(routing_yaml: str = ROUTING, db_url: str | None = None, sinks: bool = True):
        rules = tmp_path / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "always.yaml").write_text(ALWAYS.replace("      - sink: wecom\n", ""), encoding="utf-8")
        (rules / "routing.yaml").write_text(textwrap.dedent(routing_yaml), encoding="utf-8")
        cfg = make_config(tmp_path, None, db_url or request.getfixturevalue("sqlite_url"),
                          crm=crm if sinks else None, wecom=wecom if sinks else None, rules={"path": str(rules), "reload_interval_s": 0})
        svc = build(cfg)
        svc.clock = ManualClock(T0)
        made.append(svc)
        return svc
    yield make
    for svc in made:
        svc.close()


_numbers = itertools.count(1)


def fire(svc, customer: str | None, *alerts: Alert) -> list[dict]:
    """Store a call and its alerts as the pipeline does (plugin/flow/results.py), route
    them and flush what is due; each alert's routing."""
    with svc.sessions.begin() as s:
        now = svc.clock.now(s)
        call = Call(source="generic", external_id=f"c-{next(_numbers)}", recording_url="http://pbx/r.wav",
                    customer_id=customer, agent_id="agent-7", event={}, status="analyzed", received_at=now)
        s.add(call)
        s.flush()
        ctx = call_context(call)
        planned = [(a, plan_alert(s, call, ctx, a, svc.outputs, now)) for a in alerts]
        notify.route_alerts(s, ctx, planned, svc.rules.routing, now, svc.sinks.keys())
        notify.flush_due(s, now, svc.rules.routing, svc.outputs)
        return [list(row.routing) for _, row in planned]


def flush(svc, s) -> int:
    """The notifications due by the clock's now, flushed in the transaction ``s``."""
    return notify.flush_due(s, svc.clock.now(s), svc.rules.routing, svc.outputs)


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
        return svc.outbox().drain(http, "test")


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
        assert flush(svc, s) == 0
    clock.advance(seconds=1)  # 5 minutes after the first alert
    with svc.sessions.begin() as s:
        assert flush(svc, s) == 1
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
    assert svc.flush_notifications() == 0
    clock.advance(minutes=1)  # 5 minutes after cust-10's alert
    assert svc.flush_notifications() == 1
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
    assert svc.flush_notifications() == 0
    clock.t = datetime(2026, 11, 25, 0, 0)  # 08:00: quiet hours are over
    assert svc.flush_notifications() == 1
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
    assert svc.flush_notifications() == 2
    svc.clock.advance(minutes=1)
    [c] = fire(svc, None, make_alert())  # no cooldown shared between unknown customers either
    assert outcome(c) == [("supervisors", "notified")]


def test_concurrent_workers_notify_a_customer_once(db_url, routed):
    """Eight workers store alerts for one customer at the same moment: one notification,
    seven suppressions (PostgreSQL: the per-group advisory lock; SQLite: one writer)."""
    svc = routed(db_url=db_url)
    results, errors = at_once(8, lambda _: fire(svc, "cust-race", make_alert())[0][0]["outcome"])
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
        now = svc.clock.now(s)
        again = plan_alert(s, call, ctx, make_alert(), svc.outputs, now)
        notify.route_alerts(s, ctx, [(make_alert(), again)], svc.rules.routing, now, svc.sinks.keys())
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



QUOTES = [{"start": 133.2, "end": 136.2, "role": "customer", "text": "我要退款，不然我打12315"},
          {"start": 140.0, "end": 143.0, "role": "customer", "text": "### 假标题\n<@all> [点击](http://phish.example)"}]


def test_quotes_are_kept_with_the_alert_and_reach_every_message(db_url, routed, wecom, crm):
    """Stored in the row's details (no column of their own), read back for routed messages
    (one alert, and a group of several), and in a rule action's context."""
    svc = routed(ROUTING.replace("group_wait: 0s", "group_wait: 5m"), db_url=db_url)
    quoted = dataclasses.replace(make_alert("escalating_customer", "critical"), quotes=QUOTES,
                                 actions=[Action("crm", {})])
    [a, b] = fire(svc, "cust-9", quoted, make_alert("angry_customer", "warning"))
    with svc.sessions() as s:
        rows = {r.rule: r for r in s.execute(select(AlertRow)).scalars()}
        assert rows["escalating_customer"].details == {"share": 0.5, "quotes": QUOTES}
        assert rows["angry_customer"].details == {"share": 0.5}  # none: details as before
        stored = stored_alert_context(rows["escalating_customer"])
        assert stored["quotes"] == QUOTES and stored["details"] == {"share": 0.5}
        assert stored_alert_context(rows["angry_customer"])["quotes"] == []
    [action] = deliveries(svc)  # the rule's action, planned at once
    assert action.payload["body"]["quotes"][0]["text"] == "我要退款，不然我打12315"
    svc.clock.advance(minutes=5)
    assert svc.flush_notifications() == 1
    text = content(deliveries(svc)[-1])  # the group's message, rendered from the stored rows
    assert ("**原话 / What was said:**\n> 02:13 客户: 我要退款，不然我打12315\n"
            "> 02:20 客户: ＃＃＃ 假标题 ＜@all＞") in text
    assert "<@all>" not in text and "](http://phish.example)" not in text and text.count("###") == 1
    assert "1 more alert(s) for this customer" in text and text.endswith("<@supervisor01>")
    assert send_all(svc) == 2 and len(wecom.requests) == 1 and len(crm.requests) == 1
