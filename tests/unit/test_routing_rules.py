"""routing.yaml as rules admins write it: every problem with its line, route matching,
group keys, quiet hours, and the WeCom message a notification renders to. Pure: no database."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from connectors.sinks.wecom_robot import WeComRobotConfig, WeComRobotSink
from rules.engine import load_rules
from rules.routing import Routing, group_key, parse_routing
from rules.yamlfile import read
from tests.helpers import make_alert

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "scenarios"


def routing_of(text: str, tmp_path: Path, known_sinks=None) -> tuple[Routing | None, list[str]]:
    f = tmp_path / "routing.yaml"
    f.write_text(textwrap.dedent(text), encoding="utf-8")
    return parse_routing(read(f), known_sinks)


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


# --- the WeCom message of a notification ------------------------------------------------

def _item(i: int, severity="warning", customer="cust-1", primary=False) -> dict:
    a = {**make_alert("angry_customer", severity, summary=f"客户 {customer} 很生气 / angry #{i} " + "x" * 80).__dict__}
    a.pop("actions")
    return {"alert": a, "call": {"customer_id": customer, "agent_id": f"agent-{i}", "customer_phone": None,
                                 "ticket_id": None}, "link": f"http://callmood.local/calls/{i}",
            "time": f"11-24 {i % 24:02d}:00", "primary": primary}


def _sink(mentions=("boss",)):
    return WeComRobotSink("wecom", WeComRobotConfig(type="wecom_robot", url="http://w", mentioned_list=list(mentions)))


def test_one_routed_alert_renders_like_a_rule_action():
    item = _item(1, primary=True)
    plain = {"alert": item["alert"], "call": item["call"], "link": item["link"], "action": {}}
    routed = {**plain, "alerts": [item], "digest": False, "count": 1, "action": {"mentions": ["boss"]}}
    assert _sink().render(routed)["body"] == _sink().render(plain)["body"]
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


def test_receiver_mentions_must_be_user_ids(tmp_path):
    routing, problems = routing_of("""\
        receivers:
          supervisors: {sink: wecom, mentions: [boss01, "<@all>"]}
          leads: {sink: wecom, mentions: "lead01\\n### fake"}
        routes:
          - receiver: supervisors
        """, tmp_path)
    f = tmp_path / "routing.yaml"
    assert routing is None
    assert problems == [
        f"{f}:2: receivers.supervisors.mentions: '<@all>' is not a user id (letters, digits, _ . - @; up to 64 characters)",
        f"{f}:3: receivers.leads.mentions: 'lead01\\n### fake' is not a user id (letters, digits, _ . - @; up to 64 characters)",
    ]
