"""Hostile values on their way out (SQLite and PostgreSQL): call fields that try to move a
CRM request, inject headers or WeCom markdown, templates that try to change data or build
huge strings, and a robot key that must never be stored, shown or logged.

Calls are stored directly, as another source (or a row from before the door checked ids)
would leave them, so each defence is tested on its own; alerts are planned as the
pipeline does (plugin/flow/results.py) and the outbox sends them to real local servers."""

import dataclasses
import logging
import socket

import pytest
import requests
from sqlalchemy import select

from plugin.core.data import Action
from plugin.flow.context import call_context
from plugin.flow.results import plan_alert
from rules.engine import alert_context
from plugin.store.tables import Call, Delivery
from tests.conftest import T0, event, make_config, signed
from tests.helpers import make_alert

ATTACK = "../../../admin/users/1/delete?confirm=yes#"
BOTH = [Action("crm", {"tag": "angry"}), Action("wecom", {})]


def store_call(svc, **fields) -> int:
    values = dict(source="generic", external_id="c-1", recording_url="http://pbx/r.wav", customer_id="cust-42",
                  agent_id="agent-7", ticket_id="T-1", event={}, status="analyzed", received_at=T0)
    values.update(fields)
    with svc.sessions.begin() as s:
        call = Call(**values)
        s.add(call)
        s.flush()
        return call.id


def plan(svc, call_id: int, alert=None) -> None:
    """The alert's CRM action as the pipeline plans it; its WeCom message as routing renders
    a notification of that one alert (rule actions message no one: plan_alert skips them)."""
    alert = alert or dataclasses.replace(make_alert(), actions=BOTH)
    with svc.sessions.begin() as s:
        call = s.get(Call, call_id)
        ctx = call_context(call)
        row = plan_alert(s, call, ctx, alert, svc.outputs, svc.clock.now(s))
        for action in alert.actions:
            sink = svc.outputs.sinks.get(action.sink)
            if sink is not None and sink.messaging:
                svc.outputs.plan(s, sink, {"call": ctx, "alert": alert_context(alert), "action": action.params,
                                           "link": svc.outputs.links.call(call.id)}, alert_id=row.id)


def drain(svc) -> None:
    with requests.Session() as http:
        http.trust_env = False
        svc.outbox().drain(http, "sender")


def deliveries(svc) -> dict[str, Delivery]:
    with svc.sessions() as s:
        return {d.sink: d for d in s.execute(select(Delivery)).scalars()}


def test_a_customer_id_cannot_move_the_crm_request_to_another_path(tmp_path, db_url, app_factory, crm, wecom):
    svc, _ = app_factory(make_config(tmp_path, None, db_url, crm=crm, wecom=wecom))
    plan(svc, store_call(svc, customer_id=ATTACK))
    drain(svc)
    [req] = crm.requests
    assert req.path == "/api/customers/..%2F..%2F..%2Fadmin%2Fusers%2F1%2Fdelete%3Fconfirm%3Dyes%23/tags"
    assert req.headers["Authorization"] == "Bearer crm-token" and req.json()["customer_id"] == ATTACK
    assert not any(r.path.startswith("/admin") for r in crm.requests + wecom.requests)
    assert deliveries(svc)["crm"].status == "delivered"


def test_a_dot_segment_customer_id_kills_the_crm_delivery_only(tmp_path, db_url, app_factory, crm, wecom):
    svc, _ = app_factory(make_config(tmp_path, None, db_url, crm=crm, wecom=wecom))
    plan(svc, store_call(svc, customer_id=".."))
    drain(svc)
    got = deliveries(svc)
    assert got["crm"].status == "dead" and "'..' cannot be a URL path segment" in got["crm"].last_error
    assert got["wecom"].status == "delivered" and crm.requests == []


def test_cr_lf_in_a_templated_header_kills_the_delivery_at_planning(tmp_path, db_url, app_factory, crm, wecom):
    cfg = make_config(tmp_path, None, db_url, crm=crm, wecom=wecom,
                      sinks={"crm": {"headers": {"X-Note": "{{ call.metadata.note }}"}}})
    svc, client = app_factory(cfg)
    # Free-form event fields pass the door; the header is where CR/LF would do harm.
    r = client.post("/webhooks/generic", **signed(event("crlf-1", "http://127.0.0.1:9/r.wav",
                                                        note="hi\r\nX-Admin: yes")))
    assert r.status_code == 202
    plan(svc, r.json["call_id"])
    drain(svc)
    got = deliveries(svc)
    assert got["crm"].status == "dead" and got["crm"].attempts == 0
    assert got["crm"].last_error == ("cannot render payload: ValueError: header X-Note: value contains a "
                                     "carriage return (CR), which an HTTP header cannot carry")
    assert got["wecom"].status == "delivered" and crm.requests == []


@pytest.mark.parametrize("value,what", [("a\nX-Admin: yes", "a line feed (LF)"), ("a\x00", "a NUL"),
                                        ("客户", "the character U+5BA2")])
def test_a_stored_payload_with_a_bad_header_dies_at_send_without_retries(tmp_path, db_url, app_factory, crm,
                                                                       wecom, value, what):
    svc, _ = app_factory(make_config(tmp_path, None, db_url, crm=crm, wecom=wecom))
    with svc.sessions.begin() as s:  # a payload stored before headers were checked at planning
        svc.deliveries.add(s, "crm", {"method": "POST", "url": crm.url + "/api/x",
                                      "headers": {"X-Note": value}, "body": {}})
    drain(svc)
    d = deliveries(svc)["crm"]
    assert (d.status, d.attempts) == ("dead", 1)
    assert d.last_error == f"header X-Note: value contains {what}, which an HTTP header cannot carry"
    assert crm.requests == []


def test_the_robot_key_is_never_stored_shown_or_logged(tmp_path, db_url, app_factory, crm, wecom, caplog,
                                                      request):
    key = "ROBOT-KEY-7f3a9c"  # the robot's URL points to a closed port: a connection error quotes it
    closed = socket.socket()  # bound, never listening: the port refuses, and no other test can take it
    closed.bind(("127.0.0.1", 0))
    request.addfinalizer(closed.close)
    # A retry an hour away: one drain makes one attempt however slow the machine is (with
    # the tests' 0.05 s backoff a slow run saw the retry fall due within the same drain).
    cfg = make_config(tmp_path, None, db_url, crm=crm, wecom=wecom, sinks={"wecom": {
        "url": f"http://127.0.0.1:{closed.getsockname()[1]}/cgi-bin/webhook/send?key={key}"}},
        deliveries={"backoff_base_s": 3600, "backoff_max_s": 3600})
    svc, client = app_factory(cfg)
    call_id = store_call(svc)
    plan(svc, call_id, dataclasses.replace(make_alert(), actions=[Action("wecom", {})]))
    with caplog.at_level(logging.DEBUG):
        drain(svc)
    d = deliveries(svc)["wecom"]
    assert d.status == "pending" and d.attempts == 1
    assert "ConnectionError" in d.last_error and "key=***" in d.last_error and key not in d.last_error
    assert key not in str(d.payload)
    api = client.get(f"/api/calls/{call_id}")
    assert api.status_code == 200 and "ConnectionError" in api.text and key not in api.text
    page = client.get(f"/calls/{call_id}")
    assert page.status_code == 200 and key not in page.text
    assert "failed (attempt 1)" in caplog.text and key not in caplog.text


INJECTED = {"customer_id": "c-1\n### 假标题 Fake heading\n> 级别 Severity: critical",
            "agent_id": "[点击处理 / click](http://phish.example)",
            "ticket_id": "<@all> <font color=\"warning\">urgent</font>",
            "customer_phone": "**138** `x`\r\n<@boss>"}


def test_wecom_fields_and_summaries_arrive_as_text(tmp_path, db_url, app_factory, crm, wecom):
    svc, _ = app_factory(make_config(tmp_path, None, db_url, crm=crm, wecom=wecom))
    benign = store_call(svc, external_id="c-0")
    hostile = store_call(svc, external_id="c-1", **INJECTED)
    for call_id, fields in ((benign, {}), (hostile, INJECTED)):
        summary = f"金融投诉客户 {fields.get('customer_id', 'cust-42')} 情绪负面"  # as the shipped summaries put it
        plan(svc, call_id, dataclasses.replace(make_alert(summary=summary), actions=[Action("wecom", {})]))
    drain(svc)
    plain, content = (r.json()["markdown"]["content"] for r in wecom.requests)
    assert content.count("\n") == plain.count("\n")  # no field added a line
    assert content.count("###") == 1 and "<@all>" not in content and "<font color=\"warning\">urgent" not in content
    assert "](http://phish.example)" not in content and "**138**" not in content
    assert content.count("<@supervisor01>") == 1  # the configured mention only
    assert "＜@all＞" in content and "＃＃＃ 假标题 Fake heading" in content  # shown, not obeyed


def test_templates_that_change_data_or_build_huge_strings_are_dead_deliveries(tmp_path, db_url, app_factory,
                                                                              crm, wecom):
    cfg = make_config(tmp_path, None, db_url, crm=crm, wecom=wecom,
                      sinks={"crm": {"body": {"note": "{{ 'x' * 10**8 }}"}}})
    svc, _ = app_factory(cfg)
    call_id = store_call(svc)
    mutate = Action("wecom", {"template": "{{ call.update({'customer_id': 'hijacked'}) }}{{ call.customer_id }}"})
    plan(svc, call_id, dataclasses.replace(make_alert(), actions=[Action("crm", {}), mutate]))
    drain(svc)
    got = deliveries(svc)
    assert got["crm"].status == "dead" and "template would build a value of 100000000 characters" in got["crm"].last_error
    assert got["wecom"].status == "dead" and "access to attribute 'update' of 'dict' object is unsafe" in \
        got["wecom"].last_error
    assert crm.requests == [] and wecom.requests == []
    with svc.sessions() as s:
        assert s.get(Call, call_id).customer_id == "cust-42"


HOSTILE_QUOTES = [{"start": 133.2, "end": 136.2, "role": "customer",
                   "text": "我要退款\n### 假标题 Fake heading\n<@all> [点击](http://phish.example) **粗** "
                           + "长" * 300},
                  {"start": 140.0, "end": 143.0, "role": "agent", "text": "<font color=\"warning\">urgent</font>\r\n"}]


def test_quotes_arrive_as_text_in_wecom_and_as_data_in_the_crm(tmp_path, db_url, app_factory, crm, wecom):
    svc, _ = app_factory(make_config(tmp_path, None, db_url, crm=crm, wecom=wecom))
    plain_id, quoted_id = store_call(svc, external_id="c-0"), store_call(svc, external_id="c-1")
    plan(svc, plain_id)
    plan(svc, quoted_id, dataclasses.replace(make_alert(), actions=BOTH, quotes=HOSTILE_QUOTES))
    drain(svc)
    plain, content = (r.json()["markdown"]["content"] for r in wecom.requests)
    assert content.count("\n") == plain.count("\n") + 4  # a blank line, the heading and one line a quote
    assert content.count("###") == 1 and "<@all>" not in content and "](http://phish.example)" not in content
    assert "<font color=\"warning\">urgent" not in content and "**粗**" not in content
    assert "> 02:13 客户: 我要退款 ＃＃＃ 假标题 Fake heading ＜@all＞" in content and "> 02:20 坐席: " in content
    assert content.count("<@supervisor01>") == 1 and len(content.encode()) <= 4096
    note = crm.requests[1].json()["note"]
    assert note.split("\n")[1].startswith("02:13 customer: 我要退款 ### 假标题") and note.count("\n") == 2
    assert crm.requests[1].json()["quotes"][1]["text"] == "<font color=\"warning\">urgent</font>"
