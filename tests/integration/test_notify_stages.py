"""Each notification stage on its own (plugin/flow/notify/stages.py): given one alert on
its way to one receiver, does the stage settle it, and how. A fresh SQLite database holds
the notifications the stages look up; the time is fixed."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from plugin.flow.notify import stages
from plugin.flow.notify.stages import Candidate, Step
from plugin.store import engine as db
from plugin.store.tables import AlertRow, Call, Notification, NotificationAlert
from rules.routing import parse_routing
from rules.yamlfile import read
from tests.conftest import T0
from tests.helpers import make_alert

ROUTING = """\
receivers:
  supervisors: {sink: wecom}
routes:
  - receiver: supervisors
    group_wait: 5m
    cooldown: 4h
quiet_hours: {timezone: UTC, start: "22:00", end: "06:00", min_severity: critical}
"""


@pytest.fixture
def session(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'stages.db'}")
    db.upgrade(engine)
    with db.make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def routing(tmp_path):
    f = tmp_path / "routing.yaml"
    f.write_text(textwrap.dedent(ROUTING), encoding="utf-8")
    routing, problems = parse_routing(read(f), None)
    assert problems == []
    return routing


def candidate(s, routing, severity="warning", held=False) -> Candidate:
    call = Call(source="generic", external_id=f"c-{severity}-{held}", recording_url="http://x", event={},
                received_at=T0)
    s.add(call)
    s.flush()
    alert = make_alert(severity=severity)
    row = AlertRow(call_id=call.id, rule=alert.rule, scenario=alert.scenario, severity=severity, role="customer",
                   emotions=["angry"], share=0.5, confidence=0.9, matched=[], summary="s", routing=[],
                   created_at=T0)
    s.add(row)
    s.flush()
    [(route, receiver)] = routing.receivers_for(alert)
    return Candidate(alert, row, route, receiver, "customer_id=cust-9", held)


def notification(s, status="open", kind="alert", severity="warning", flushed_at=None, key="customer_id=cust-9"):
    n = Notification(receiver="supervisors", sink="wecom", group_key=key, kind=kind, status=status,
                     severity=severity, flush_at=T0 + timedelta(minutes=5), created_at=T0, flushed_at=flushed_at)
    s.add(n)
    s.flush()
    return n


def step(s, routing, sinks=("wecom",), now=T0) -> Step:
    return Step(s, routing, now, set(sinks))


def members(s, n) -> set[int]:
    return {na.alert_id for na in s.query(NotificationAlert).filter_by(notification_id=n.id)}


def test_stages_run_in_alertmanagers_order():
    assert [f.__name__ for f in stages.STAGES] == ["check_sink", "group", "cooldown", "quiet_hours", "send"]


def test_check_sink(session, routing):
    c = candidate(session, routing)
    assert stages.check_sink(step(session, routing), c) is None
    out = stages.check_sink(step(session, routing, sinks=()), c)
    assert (out.outcome, out.reason) == ("skipped", "sink 'wecom' is not configured")


def test_group_joins_an_open_notification_and_raises_its_severity(session, routing):
    c = candidate(session, routing, severity="critical")
    assert stages.group(step(session, routing), c) is None  # nothing open: pass on
    n = notification(session)
    out = stages.group(step(session, routing), c)
    assert (out.outcome, out.notification_id) == ("grouped", n.id)
    assert out.reason == f"joined notification {n.id}, sent at 02:07Z"
    assert members(session, n) == {c.row.id} and n.severity == "critical"


def test_cooldown_suppresses_within_the_window_unless_more_severe(session, routing):
    c = candidate(session, routing)
    assert stages.cooldown(step(session, routing), c) is None  # never notified
    sent = notification(session, status="flushed", flushed_at=T0 - timedelta(hours=1))
    out = stages.cooldown(step(session, routing), c)
    assert (out.outcome, out.notification_id) == ("suppressed", sent.id)
    assert out.reason == ("cooldown: cust-9 was alerted at 2026-11-24 01:02Z (warning); "
                          "next after 05:02Z unless more severe")
    assert stages.cooldown(step(session, routing), candidate(session, routing, "critical")) is None
    assert stages.cooldown(step(session, routing, now=T0 + timedelta(hours=3, minutes=1)), c) is None


def test_a_digest_starts_no_cooldown(session, routing):
    notification(session, status="flushed", kind="digest", key="customer_id=cust-9",
                 flushed_at=T0 - timedelta(minutes=1))
    assert stages.cooldown(step(session, routing), candidate(session, routing)) is None


def test_quiet_hours_hold_for_one_digest_per_receiver(session, routing):
    night = T0.replace(hour=23)
    assert stages.quiet_hours(step(session, routing, now=night), candidate(session, routing)) is None  # not held
    first = stages.quiet_hours(step(session, routing, now=night), a := candidate(session, routing, held=True))
    second = stages.quiet_hours(step(session, routing, now=night), b := candidate(session, routing, "info", True))
    assert first.outcome == second.outcome == "digest" and first.notification_id == second.notification_id
    assert first.reason == "quiet hours: in the digest sent at 06:00Z"
    digest = session.get(Notification, first.notification_id)
    assert digest.kind == "digest" and digest.group_key == "digest" and members(session, digest) == {a.row.id, b.row.id}


def test_send_starts_a_notification_after_group_wait(session, routing):
    c = candidate(session, routing, severity="critical")
    out = stages.send(step(session, routing), c)
    n = session.get(Notification, out.notification_id)
    assert out.outcome == "notified" and out.reason == "sent at 02:07Z with the group's other alerts"
    assert (n.status, n.kind, n.severity, n.flush_at) == ("open", "alert", "critical", T0 + timedelta(minutes=5))
    assert members(session, n) == {c.row.id}


def test_quiet_hours_are_decided_once_per_alert(routing):
    night = T0.replace(hour=23)
    [c] = stages.candidates(routing, make_alert(severity="warning"), None, {"id": 1, "customer_id": "x"}, night)
    [d] = stages.candidates(routing, make_alert(severity="critical"), None, {"id": 1, "customer_id": "x"}, night)
    assert c.held and not d.held and c.group == "customer_id=x"
