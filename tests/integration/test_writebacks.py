"""Write-backs where the people are (issue 13), on SQLite and PostgreSQL, against local
stand-ins over real HTTP, with a ManualClock stepping through outages and rate windows:

- one alert, one supervisor message: the shipped rules and routing with a CRM and a WeCom
  robot configured send one WeCom message; `rules check` refuses a rule action that
  messages people;
- the WeCom robot's 20 messages a minute, kept across workers, what overflows merged into
  one message; 45009 backs off and loses nothing;
- a CRM down for 10 minutes: every delivery made once, in order per customer; a worker
  killed mid-send repeats that one request, which the key makes harmless;
- `callmood deliveries list|retry` and /api/deliveries: a requeued delivery sends its
  stored body with its idempotency key.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from plugin.cli import _sink_names
from plugin.core.clock import ManualClock
from plugin.flow.outputs import customer_order_key
from plugin.services import build
from plugin.store.tables import Delivery, SinkSend
from rules.check import check_rules
from tests.conftest import ROUTE_ALL, authed, make_config
from tests.helpers import Reply, analyse, run_cli, wecom_robot

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "scenarios"
NOON = datetime(2026, 11, 24, 4, 0)  # 12:00 in Shanghai: outside the shipped quiet hours


@pytest.fixture
def made():
    svcs = []
    yield svcs
    for svc in svcs:
        svc.close()


def services(made, cfg, t: datetime = NOON):
    svc = build(cfg)
    svc.clock = ManualClock(t)
    made.append(svc)
    return svc


def drain(svc, owner: str = "sender", limit: int = 1000) -> int:
    with requests.Session() as http:
        http.trust_env = False
        return svc.outbox().drain(http, owner, limit=limit)


def statuses(svc) -> dict[int, str]:
    with svc.sessions() as s:
        return dict(s.execute(select(Delivery.id, Delivery.status)).all())


# --- one alert, one supervisor message --------------------------------------------------

def test_the_shipped_rules_and_routing_send_one_message_per_alert(tmp_path, db_url, made, crm, wecom):
    cfg = make_config(tmp_path, None, db_url, crm=crm, wecom=wecom, rules={"path": str(SHIPPED)})
    problems, summary = check_rules(SHIPPED, _sink_names(cfg))
    assert problems == [] and "OK" in summary
    svc = services(made, cfg)
    call_id = analyse(svc)
    drain(svc)
    with svc.sessions() as s:
        alerts = s.execute(select(func.count()).select_from(Delivery).where(Delivery.alert_id.isnot(None))).scalar()
    assert alerts >= 1  # the rules' CRM records
    assert len(crm.requests) == alerts and len(wecom.requests) == 1
    content = wecom.requests[0].json()["markdown"]["content"]
    assert "cust-42" in content and f"/calls/{call_id}" in content
    # The same customer angry again within the shipped 4 h cooldown: a CRM record, no message.
    svc.clock.t += timedelta(minutes=20)
    analyse(svc)
    drain(svc)
    assert len(wecom.requests) == 1 and len(crm.requests) == 2 * alerts


def test_rules_check_refuses_a_rule_action_that_messages_people(tmp_path, sqlite_url, crm, wecom):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "angry.yaml").write_text(
        "scenario: angry\ndefault: true\nrules:\n  - name: angry\n    when: {role: customer, emotions: [angry]}\n"
        "    actions:\n      - sink: crm\n      - sink: wecom\n", encoding="utf-8")
    cfg = make_config(tmp_path, None, sqlite_url, crm=crm, wecom=wecom)
    problems, _ = check_rules(rules, _sink_names(cfg))
    [problem] = problems
    assert problem.startswith(f"{rules / 'angry.yaml'}:8: rules.0.actions.1.sink: sink 'wecom' messages people")
    assert "routing.yaml" in problem and "\n" not in problem

    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url},
                                  "sinks": {"crm": {"type": "rest", "url": crm.url + "/x"},
                                            "wecom": {"type": "wecom_robot", "url": wecom.url + "/send?key=k"}}}))
    out = run_cli("rules", "check", str(rules), "--config", str(config))
    assert out.returncode != 0 and "messages people" in out.stderr and ":8:" in out.stderr


# --- the WeCom robot's limit ----------------------------------------------------------------

def robot_svc(made, tmp_path, db_url, wecom, crm=None):
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    always = (Path(__file__).parents[1] / "rules" / "always.yaml").read_text()
    if crm is None:  # the rule's CRM action needs a CRM
        always = always.split("    actions:")[0]
    (rules / "always.yaml").write_text(always, encoding="utf-8")
    (rules / "routing.yaml").write_text(ROUTE_ALL, encoding="utf-8")
    cfg = make_config(tmp_path, None, db_url, crm=crm, wecom=wecom,
                      rules={"path": str(rules), "reload_interval_s": 0},
                      deliveries={"max_attempts": 4, "backoff_base_s": 5, "backoff_max_s": 60})
    return services(made, cfg)


def test_the_robot_sends_20_a_minute_and_merges_the_rest(tmp_path, db_url, made, wecom):
    svc = robot_svc(made, tmp_path, db_url, wecom)
    customers = [f"cust-{i:02d}" for i in range(30)]
    for c in customers:  # 30 customers angry in the same minute: 30 notifications
        analyse(svc, customer=c)
    drain(svc)

    contents = [r.json()["markdown"]["content"] for r in wecom.requests]
    assert len(contents) == 20  # the robot's limit
    assert all(c in "".join(contents) for c in customers)  # nobody lost: the 20th carried the rest
    [merged] = [c for c in contents if "告警合并 / Alerts merged" in c]
    assert "11 alert(s) in one message" in merged
    assert set(statuses(svc).values()) == {"delivered"}
    with svc.sessions() as s:
        carried = s.execute(select(Delivery).where(Delivery.merged_into.isnot(None))).scalars().all()
        assert len(carried) == 10 and all("rate limit" in d.note for d in carried)
        assert s.execute(select(func.count()).select_from(SinkSend)).scalar() == 20

    # Within the minute nothing more goes out; the next minute does.
    analyse(svc, customer="cust-late")
    assert drain(svc) == 1 and len(wecom.requests) == 20
    [late] = [d for d, st in statuses(svc).items() if st == "pending"]
    svc.clock.t += timedelta(seconds=61)
    drain(svc)
    assert len(wecom.requests) == 21 and statuses(svc)[late] == "delivered"
    assert "cust-late" in wecom.requests[-1].json()["markdown"]["content"]


def test_two_workers_keep_the_robots_limit_together_and_lose_nothing(tmp_path, db_url, made, wecom):
    svc = robot_svc(made, tmp_path, db_url, wecom)
    customers = [f"cust-{i:02d}" for i in range(30)]
    for c in customers:
        analyse(svc, customer=c)
    threads = [threading.Thread(target=drain, args=(svc, f"worker-{i}")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    contents = [r.json()["markdown"]["content"] for r in wecom.requests]
    assert len(contents) == 20  # the robot's limit, kept across both workers
    assert len([c for c in contents if "告警合并 / Alerts merged" in c]) == 1
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(SinkSend)).scalar() == 20
        waiting = s.execute(select(Delivery).where(Delivery.status != "delivered")).scalars().all()
    # A delivery the other worker had claimed when the 20th message went out cannot ride in
    # it: it waits for the next minute, with the reason. Delayed, never lost.
    assert all("rate limit" in (d.last_error or "") for d in waiting)
    assert len([c for c in customers if c not in "".join(contents)]) == len(waiting)
    svc.clock.t += timedelta(seconds=61)
    drain(svc)
    assert set(statuses(svc).values()) == {"delivered"}
    assert all(c in "".join(r.json()["markdown"]["content"] for r in wecom.requests) for c in customers)


def test_the_robot_answering_45009_loses_no_alert(tmp_path, db_url, made, wecom):
    busy = {"left": 6}

    def robot(rec):
        if busy["left"] > 0:  # over the limit: another sender on the same robot
            busy["left"] -= 1
            return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
        return wecom_robot(rec)

    wecom.routes["/cgi-bin/webhook/send"] = robot
    svc = robot_svc(made, tmp_path, db_url, wecom)  # max_attempts 4: fewer than the 45009s
    for c in ("cust-a", "cust-b", "cust-c"):
        analyse(svc, customer=c)
    for _ in range(6):
        drain(svc)
        svc.clock.t += timedelta(seconds=61)  # 45009: back in a minute
    assert set(statuses(svc).values()) == {"delivered"}
    delivered = [r.json()["markdown"]["content"] for r in wecom.requests[6:]]
    assert len(delivered) == 3 and all(any(c in m for m in delivered) for c in ("cust-a", "cust-b", "cust-c"))
    with svc.sessions() as s:
        assert all(d.attempts <= 1 for d in s.execute(select(Delivery)).scalars())  # throttling is no attempt


# --- a CRM down for ten minutes ---------------------------------------------------------------

class Crm:
    """A CRM that honours Idempotency-Key: a request it already applied is answered again,
    not applied again. ``down_until``: 503 before that time (the test's clock)."""

    def __init__(self, server, clock: ManualClock, down_until: datetime):
        self.clock, self.down_until = clock, down_until
        self.applied: list[tuple[str, str]] = []  # (customer, idempotency key)
        self.seen_keys: list[str] = []
        self.lock = threading.Lock()
        server.default = self.answer

    def answer(self, rec):
        if self.clock.t < self.down_until:
            return Reply(503, "maintenance")
        key = rec.headers["Idempotency-Key"]
        customer = rec.path.split("/")[3]
        with self.lock:
            self.seen_keys.append(key)
            if key not in {k for _, k in self.applied}:
                self.applied.append((customer, key))
        return Reply(200, {"ok": True})


def test_a_crm_down_for_ten_minutes_gets_every_delivery_once_in_order(tmp_path, db_url, made, crm, clock):
    # The shipped retry policy (12 attempts, 5 s doubling): an outage of 10 minutes is survived.
    cfg = make_config(tmp_path, None, db_url, crm=crm,
                      deliveries={"max_attempts": 12, "backoff_base_s": 5, "backoff_max_s": 3600})
    svc = services(made, cfg, NOON)
    stand_in = Crm(crm, svc.clock, NOON + timedelta(minutes=10))
    planned: dict[str, list[int]] = {}
    for minute in range(3):  # three customers, three calls each, a minute apart, while it is down
        for c in ("cust-a", "cust-b", "cust-c"):
            call_id = analyse(svc, customer=c)
            with svc.sessions() as s:
                [d] = s.execute(select(Delivery.id).join(Delivery.alert).where(
                    Delivery.alert.has(call_id=call_id))).scalars().all()
            planned.setdefault(c, []).append(d)
            drain(svc)
        svc.clock.t += timedelta(minutes=1)
    end = NOON + timedelta(minutes=40)
    while svc.clock.t < end:
        drain(svc)
        svc.clock.t += timedelta(seconds=10)
    assert set(statuses(svc).values()) == {"delivered"}
    keys = [k for _, k in stand_in.applied]
    assert len(keys) == 9 and len(set(keys)) == 9  # each once
    for c, ids in planned.items():  # in the order planned, per customer
        assert [k for who, k in stand_in.applied if who == c] == [f"callmood-delivery-{i}" for i in ids]
    with svc.sessions() as s:
        assert all(d.order_key == customer_order_key("crm", {"customer_id": d.alert.customer_id})
                   for d in s.execute(select(Delivery)).scalars())


def test_a_worker_killed_mid_send_repeats_that_one_request_which_the_key_makes_harmless(
        tmp_path, db_url, made, crm):
    cfg = make_config(tmp_path, None, db_url, crm=crm, deliveries={"lease_s": 60})
    svc = services(made, cfg)
    stand_in = Crm(crm, svc.clock, NOON)
    analyse(svc)
    # The first worker claims the delivery, its request reaches the CRM, and it dies
    # before recording the answer.
    delivery_id = svc.deliveries.claim("doomed-worker")
    with svc.sessions() as s:
        d = s.get(Delivery, delivery_id)
        with requests.Session() as http:
            http.trust_env = False
            assert svc.sinks["crm"].send(d.payload, http, 5, f"callmood-delivery-{d.id}").ok
    assert drain(svc) == 0  # still leased
    svc.clock.t += timedelta(seconds=61)
    assert drain(svc) == 1
    assert stand_in.seen_keys == [f"callmood-delivery-{delivery_id}"] * 2  # the one request, repeated
    assert len(stand_in.applied) == 1 and statuses(svc)[delivery_id] == "delivered"


# --- delivery operations -------------------------------------------------------------------

def test_dead_deliveries_are_listed_and_requeued_with_their_body_and_key(tmp_path, db_url, made, crm, app_factory):
    crm.default = Reply(401, "token revoked")
    cfg = make_config(tmp_path, None, db_url, crm=crm, deliveries={"max_attempts": 1})
    svc, admin = app_factory(cfg, clock=ManualClock(NOON))
    for c in ("cust-a", "cust-b"):
        analyse(svc, customer=c)
    drain(svc)
    dead = sorted(i for i, st in statuses(svc).items() if st == "dead")
    assert len(dead) == 2
    first = [(r.headers["Idempotency-Key"], r.body) for r in crm.requests]

    listed = admin.get("/api/deliveries?status=dead").json["deliveries"]
    assert sorted(d["id"] for d in listed) == dead
    assert all(d["last_status_code"] == 401 and d["idempotency_key"] == f"callmood-delivery-{d['id']}"
               for d in listed)
    assert admin.get("/api/deliveries?status=lost").status_code == 400

    crm.default = Reply(200, {"ok": True})  # the admin fixed the token
    r = admin.post(f"/api/deliveries/{dead[0]}/retry", json={})
    assert r.status_code == 202 and r.json["outcome"] == "requeued"
    assert admin.post("/api/deliveries/999999/retry", json={}).status_code == 404
    drain(svc)
    again = crm.requests[-1]
    assert (again.headers["Idempotency-Key"], again.body) == first[0]  # the stored body, the same key
    r = admin.post("/api/deliveries/retry", json={"status": "dead", "since": "1d"})
    assert r.status_code == 200 and r.json["requeued"] == 1
    drain(svc)
    assert (crm.requests[-1].headers["Idempotency-Key"], crm.requests[-1].body) == first[1]
    assert set(statuses(svc).values()) == {"delivered"}

    viewer = authed(admin.application, "viewer")
    assert viewer.get("/api/deliveries").status_code == 403
    assert viewer.post(f"/api/deliveries/{dead[0]}/retry", json={}).status_code == 403


def test_the_deliveries_command_lists_and_retries(tmp_path, sqlite_url, made, crm):
    crm.default = Reply(503, "down")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url},
                                  "deliveries": {"max_attempts": 1},
                                  "rules": {"path": str(Path(__file__).parents[1] / "rules")},
                                  "sinks": {"crm": {"type": "rest", "url": crm.url + "/c/{{ call.customer_id }}"}}}))
    svc = services(made, make_config(tmp_path, None, sqlite_url, crm=crm, deliveries={"max_attempts": 1},
                                     sinks={"crm": {"url": crm.url + "/c/{{ call.customer_id }}"}}))
    analyse(svc)
    drain(svc)
    [dead] = [i for i, st in statuses(svc).items() if st == "dead"]

    out = run_cli("deliveries", "list", "--status", "dead", "--config", str(config))
    assert out.returncode == 0 and f"{dead:>7}  crm" in out.stdout and "HTTP 503" in out.stdout
    out = run_cli("deliveries", "retry", "--dead", "--since", "7d", "--config", str(config))
    assert out.returncode == 0 and f"delivery {dead}: requeued" in out.stdout
    assert statuses(svc)[dead] == "pending"
    out = run_cli("deliveries", "retry", "424242", "--config", str(config))
    assert out.returncode == 1 and "delivery 424242: not_found" in out.stdout
    out = run_cli("deliveries", "retry", "--config", str(config))
    assert out.returncode != 0 and "one or the other" in out.stderr


# --- a CRM that says when to come back ---------------------------------------------------------

def test_zendesk_saying_retry_after_is_waited_for_and_not_counted(tmp_path, db_url, made, fake):
    from tests.unit.test_sink_zendesk import EMAIL, TOKEN, ZendeskStandIn

    zd = ZendeskStandIn(fake())
    zd.ticket(42)
    zd.faults["show"] = [Reply(429, "Number of allowed API requests per minute exceeded", {"Retry-After": "120"})]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "angry.yaml").write_text("scenario: any\ndefault: true\nrules:\n  - name: angry_customer\n"
                                      "    when: {role: customer, emotions: [angry]}\n"
                                      "    actions: [{sink: zendesk, tag: angry-customer}]\n", encoding="utf-8")
    cfg = make_config(tmp_path, None, db_url, rules={"path": str(rules)}, deliveries={"max_attempts": 1},
                      sinks={"zendesk": {"type": "zendesk", "api_base": zd.server.url, "email": EMAIL,
                                         "api_token": TOKEN}})
    svc = services(made, cfg)
    analyse(svc, ticket="42")
    assert drain(svc) == 1
    with svc.sessions() as s:
        [d] = s.execute(select(Delivery)).scalars().all()
        assert (d.status, d.attempts, d.last_status_code) == ("pending", 0, 429)  # max_attempts 1: still alive
        assert d.next_attempt_at == NOON + timedelta(seconds=120)
    svc.clock.t += timedelta(seconds=119)
    assert drain(svc) == 0
    svc.clock.t += timedelta(seconds=2)
    assert drain(svc) == 1
    assert set(statuses(svc).values()) == {"delivered"}
    ticket = zd.tickets[42]
    assert "angry-customer" in ticket["tags"] and zd.users[9] >= {"angry-customer"}
    [note] = [c for c in ticket["comments"] if not c["public"]]
    assert "angry_customer" in note["body"] and "/calls/" in note["body"]


def test_a_dead_delivery_no_longer_holds_its_customers_later_ones(tmp_path, db_url, made, crm):
    answers = {"first": True}

    def crm_answer(rec):
        if answers["first"]:  # the first record can never be taken (a malformed request)
            answers["first"] = False
            return Reply(422, "unknown field")
        return Reply(200, {"ok": True})

    crm.default = crm_answer
    svc = services(made, make_config(tmp_path, None, db_url, crm=crm))
    analyse(svc)
    analyse(svc)
    drain(svc)
    assert sorted(statuses(svc).values()) == ["dead", "delivered"]
    assert len(crm.requests) == 2


def test_a_busy_crm_is_asked_again_when_it_says_and_a_bad_retry_after_is_no_time(tmp_path, db_url, made, crm):
    replies = [Reply(429, "slow down", {"Retry-After": "30"}), Reply(429, "slow down", {"Retry-After": "nan"}),
               Reply(429, "slow down", {"Retry-After": "1e400"}), Reply(429, "slow down", {"Retry-After": "999999999"}),
               Reply(200, {"ok": True})]
    crm.default = lambda rec: replies.pop(0)
    svc = services(made, make_config(tmp_path, None, db_url, crm=crm, deliveries={"max_attempts": 1}))
    analyse(svc)
    waits = []
    for _ in range(5):
        assert drain(svc) == 1
        with svc.sessions() as s:
            [d] = s.execute(select(Delivery)).scalars().all()
        if d.status == "delivered":
            break
        assert (d.status, d.attempts) == ("pending", 0)
        waits.append((d.next_attempt_at - svc.clock.t).total_seconds())
        svc.clock.t = d.next_attempt_at
    # As said; not a time (a minute); at most a day. Throttling counts no attempt (max_attempts 1).
    assert d.status == "delivered" and waits == [30.0, 60.0, 60.0, 86400.0]


def test_more_than_one_message_holds_waits_for_the_next_window_not_dropped(tmp_path, db_url, made, wecom):
    svc = robot_svc(made, tmp_path, db_url, wecom)
    customers = [f"cust-{i:03d}" for i in range(80)]
    for c in customers:
        analyse(svc, customer=c)
    minutes = 0
    while "pending" in statuses(svc).values():
        drain(svc)
        svc.clock.t += timedelta(seconds=61)
        minutes += 1
        assert minutes < 10
    contents = [r.json()["markdown"]["content"] for r in wecom.requests]
    assert all(any(c in m for m in contents) for c in customers)  # nobody lost
    assert not any("and " in m and " more" in m for m in contents)  # every alert carried whole
    assert len(contents) <= 20 * minutes and set(statuses(svc).values()) == {"delivered"}
