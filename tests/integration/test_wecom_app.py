"""Alerts as WeCom application cards, and verdicts from inside WeCom (issue 13), on SQLite
and PostgreSQL. A local stand-in plays WeCom (tests/wecom_standin.py): it issues tokens,
takes message/send and update_template_card as documented, and encrypts and signs the
callbacks of a pressed button exactly as WeCom does (connectors/wecom_crypto.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from connectors.sinks.wecom_api import forget_tokens
from plugin.core.clock import ManualClock, utcnow
from plugin.store.tables import AlertRow, Feedback, WeComCallback
from tests.conftest import make_config
from tests.helpers import analyse, at_once
from tests.wecom_standin import WeComStandIn

NOW = utcnow().replace(microsecond=0)  # WeCom's callbacks carry the real time (CreateTime)
ROUTING = ("defaults: {cooldown: 0s}\nreceivers: {supervisors: {sink: app, touser: [boss]}}\n"
           "routes: [{receiver: supervisors}]\n")


@pytest.fixture
def wecom_app():
    forget_tokens()
    with WeComStandIn() as stand_in:
        yield stand_in
    forget_tokens()


@pytest.fixture
def served(tmp_path, db_url, app_factory, wecom_app):
    """(services, admin client, anonymous client) with the test rule routed to the app."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "angry.yaml").write_text("scenario: any\ndefault: true\nrules:\n  - name: angry_customer\n"
                                      "    when: {role: customer, emotions: [angry], min_share: 0.1}\n",
                                      encoding="utf-8")
    (rules / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    cfg = make_config(tmp_path, None, db_url, rules={"path": str(rules), "reload_interval_s": 0},
                      sinks={"app": {"type": "wecom_app", **wecom_app.sink_config(), "touser": ["boss"]}})
    svc, admin = app_factory(cfg, clock=ManualClock(NOW))
    return svc, admin, admin.application.test_client()


def drain(svc) -> int:
    with requests.Session() as http:
        http.trust_env = False
        return svc.outbox().drain(http, "sender")


def press(anon, stand_in, task_id, key, who="zhangsan", **kw):
    params, body = stand_in.callback(task_id, key, who, **kw)
    return anon.post("/wecom/callback/app", query_string=params, data=body, content_type="text/xml"), (params, body)


def test_a_card_with_verdict_buttons_and_a_verdict_given_in_wecom(served, wecom_app):
    svc, admin, anon = served
    call_id = analyse(svc)
    assert drain(svc) == 1
    [sent] = wecom_app.sent
    assert sent["msgtype"] == "template_card" and sent["touser"] == "boss"
    card = sent["template_card"]
    assert card["card_type"] == "button_interaction"
    [alert] = admin.get(f"/api/calls/{call_id}").json["alerts"]
    nid = alert["routing"][0]["notification_id"]
    assert [b["key"] for b in card["button_list"]] == [f"cm:correct:{nid}", f"cm:false_alarm:{nid}"]

    # WeCom checks the callback URL first.
    r = anon.get("/wecom/callback/app", query_string=wecom_app.verify_url("echo-1234"))
    assert r.status_code == 200 and r.text == "echo-1234"

    # The supervisor presses "误报 False alarm"; WeCom retries the callback: stored once.
    r, (params, body) = press(anon, wecom_app, card["task_id"], f"cm:false_alarm:{nid}")
    assert r.status_code == 200 and r.text == ""
    again = anon.post("/wecom/callback/app", query_string=params, data=body, content_type="text/xml")
    assert again.status_code == 200
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(WeComCallback)).scalar() == 1
    got = admin.get(f"/api/alerts/{alert['id']}").json["feedback"]
    assert (got["verdict"], got["by"]) == ("false_alarm", "wecom:zhangsan")  # the store the backtest reads

    # Afterwards the delivery loop updates the card: the verdict and who gave it.
    assert drain(svc) == 1
    [update] = wecom_app.updates
    assert update["agentid"] == wecom_app.agentid and update["response_code"]
    assert "误报" in update["button"]["replace_name"] and "zhangsan" in update["button"]["replace_name"]

    # Changed their mind: "确认 Correct" replaces the verdict (a new press, a new callback).
    r, _ = press(anon, wecom_app, card["task_id"], f"cm:correct:{nid}", create_time=int(time.time()) + 5)
    assert r.status_code == 200
    assert admin.get(f"/api/alerts/{alert['id']}").json["feedback"]["verdict"] == "correct"


def test_callbacks_that_are_not_wecom_change_nothing(served, wecom_app):
    svc, admin, anon = served
    call_id = analyse(svc)
    drain(svc)
    card = wecom_app.sent[0]["template_card"]
    [alert] = admin.get(f"/api/calls/{call_id}").json["alerts"]
    nid = alert["routing"][0]["notification_id"]

    params, body = wecom_app.callback(card["task_id"], f"cm:correct:{nid}", "mallory")
    forged = anon.post("/wecom/callback/app", query_string={**params, "msg_signature": "0" * 40}, data=body,
                       content_type="text/xml")
    assert forged.status_code == 403
    stranger = WeComStandIn(aes_key="B" * 43)  # someone else's key and token
    try:
        p2, b2 = stranger.callback(card["task_id"], f"cm:correct:{nid}", "mallory")
        assert anon.post("/wecom/callback/app", query_string=p2, data=b2, content_type="text/xml").status_code == 403
    finally:
        stranger.close()
    assert anon.get("/wecom/callback/app", query_string={**wecom_app.verify_url("x"), "msg_signature": "1" * 40}
                    ).status_code == 403
    assert anon.post("/wecom/callback/nosuch", query_string=params, data=body).status_code == 404
    assert anon.post("/wecom/callback/app", data=body).status_code == 400  # no signature at all

    # Signed by WeCom, but naming a card this notification never had, or not our button.
    r, _ = press(anon, wecom_app, "cm-n999-deadbeef", f"cm:correct:{nid}")
    assert r.status_code == 200
    r, _ = press(anon, wecom_app, card["task_id"], "somebody-elses-button")
    assert r.status_code == 200
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 0
        outcomes = s.execute(select(WeComCallback.outcome)).scalars().all()
    assert len(outcomes) == 1 and outcomes[0].startswith("ignored: card")
    assert drain(svc) == 0 and wecom_app.updates == []


def test_the_apps_per_member_limit_queues_and_merges(served, wecom_app):
    svc, _, _ = served
    for i in range(35):  # 35 customers angry within one minute, every message to "boss"
        analyse(svc, customer=f"cust-{i:02d}")
    drain(svc)
    assert len(wecom_app.sent) == 30  # WeCom's 30 a minute per member: more would be dropped silently
    merged = wecom_app.sent[-1]
    assert merged["msgtype"] == "markdown" and "cust-34" in merged["markdown"]["content"]
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(AlertRow)).scalar() == 35
    svc.clock.t += timedelta(minutes=1)
    analyse(svc, customer="cust-next")
    drain(svc)
    assert len(wecom_app.sent) == 31 and wecom_app.sent[-1]["msgtype"] == "template_card"


def test_an_expired_token_is_fetched_again(served, wecom_app):
    svc, _, _ = served
    analyse(svc, customer="cust-1")
    drain(svc)
    wecom_app.expire_tokens()
    analyse(svc, customer="cust-2")
    drain(svc)
    assert len(wecom_app.sent) == 2 and wecom_app.token_requests == 2


def test_a_callback_retried_at_the_same_moment_is_recorded_once(served, wecom_app):
    svc, admin, anon = served
    call_id = analyse(svc)
    drain(svc)
    card = wecom_app.sent[0]["template_card"]
    nid = admin.get(f"/api/calls/{call_id}").json["alerts"][0]["routing"][0]["notification_id"]
    params, body = wecom_app.callback(card["task_id"], f"cm:correct:{nid}", "zhangsan")
    app = anon.application

    def post(_):
        return app.test_client().post("/wecom/callback/app", query_string=params, data=body,
                                      content_type="text/xml").status_code
    codes, errors = at_once(4, post)
    assert errors == [] and codes == [200] * 4
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(WeComCallback)).scalar() == 1
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 1
    assert drain(svc) == 1 and len(wecom_app.updates) == 1  # one card update


def test_an_old_callback_played_again_changes_nothing(served, wecom_app):
    svc, admin, anon = served
    call_id = analyse(svc)
    drain(svc)
    card = wecom_app.sent[0]["template_card"]
    [alert] = admin.get(f"/api/calls/{call_id}").json["alerts"]
    nid = alert["routing"][0]["notification_id"]
    four_days_ago = int(time.time()) - 4 * 86400
    r, _ = press(anon, wecom_app, card["task_id"], f"cm:false_alarm:{nid}", create_time=four_days_ago)
    assert r.status_code == 200  # answered (WeCom would retry otherwise), and ignored
    assert admin.get(f"/api/alerts/{alert['id']}").json["feedback"] is None
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(WeComCallback)).scalar() == 0
