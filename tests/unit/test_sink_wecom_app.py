"""The WeCom application-message sink (connectors/sinks/wecom_app.py) against a WeCom
stand-in on a real local HTTP server (tests/wecom_standin.py): the documented
template_card / button_interaction shape, markdown for groups and digests, token expiry,
rate limits, recipients WeCom does not know, hostile call fields, rate-limit keys and
merging, and no secret or token in any payload or error."""

import json
import re

import pytest
import requests
from pydantic import ValidationError

from connectors.sinks import wecom_api
from connectors.sinks.base import Limit
from connectors.sinks.wecom_app import (
    MARKDOWN_BYTES,
    WeComAppConfig,
    WeComAppSink,
    parse_button_key,
    update_card_payload,
)
from connectors.wecom_crypto import WeComCrypto, parse_xml
from plugin.core import trial
from tests.helpers import FakeServer, Reply, free_port
from tests.wecom_standin import AES_KEY, SECRET, WeComStandIn

LINK = "http://callmood.local/calls/7"


@pytest.fixture(autouse=True)
def _fresh_tokens():
    wecom_api.forget_tokens()
    yield
    wecom_api.forget_tokens()


@pytest.fixture
def wecom():
    with WeComStandIn() as s:
        yield s


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


def make_sink(wecom: WeComStandIn | None = None, name: str = "app", **cfg) -> WeComAppSink:
    base = wecom.sink_config() if wecom is not None else {"corpid": "ww1", "agentid": 1000002, "secret": SECRET}
    cfg.setdefault("touser", ["boss", "lead01"])
    return WeComAppSink(name, WeComAppConfig(type="wecom_app", **{**base, **cfg}))


def alert(**kw):
    a = {"rule": "angry_customer", "scenario": "general", "severity": "critical", "role": "customer",
         "emotions": ["angry"], "share": 0.5, "confidence": 0.91, "matched": [[0.0, 3.0], [63.0, 66.0]],
         "summary": "客户很生气"}
    a.update(kw)
    return a


def call(**kw):
    c = {"customer_id": "c-1", "customer_phone": "+86 138", "agent_id": "a-1", "ticket_id": "T-9",
         "external_id": "call-77"}
    c.update(kw)
    return c


def ctx(n_alerts: int = 1, digest: bool = False, nid: int = 42, action=None, is_trial=False, **fields):
    """A routed notification's context, as plugin/flow/notify/flush.notification_context makes it."""
    items = [{"alert": alert(), "call": call(**fields), "link": LINK, "time": "10:02", "primary": True}]
    for i in range(1, n_alerts):
        items.append({"alert": alert(summary=f"又一次 {i}", rule=f"r{i}"), "call": call(**fields),
                      "link": f"http://callmood.local/calls/{7 + i}", "time": f"10:{i % 60:02d}", "primary": False})
    main = items[0]
    return {"alert": main["alert"], "call": main["call"], "link": main["link"], "alerts": items,
            "digest": digest, "count": len(items), "trial": is_trial, "action": action or {},
            "dashboard": "http://callmood.local/customers?flag=red",
            "notification": {"id": nid, "receiver": "supervisors", "group": "c-1",
                             "kind": "digest" if digest else "alert", "severity": "critical"}}


def send(sink, payload, http):
    return sink.send(payload, http, 5.0, "idem-1")


# --- the card ------------------------------------------------------------------------

def test_a_single_alert_is_a_button_interaction_card(wecom, http):
    sink = make_sink(wecom, toparty=[2, "3"], totag=["7"])
    payload = sink.render(ctx())
    body = payload["body"]
    assert payload["op"] == "send"
    assert list(body) == ["touser", "toparty", "totag", "msgtype", "agentid", "template_card",
                          "enable_duplicate_check", "duplicate_check_interval"]
    assert body["touser"] == "boss|lead01" and body["toparty"] == "2|3" and body["totag"] == "7"
    assert body["msgtype"] == "template_card" and body["agentid"] == wecom.agentid
    assert body["enable_duplicate_check"] == 1 and body["duplicate_check_interval"] == 1800
    card = body["template_card"]
    assert card["card_type"] == "button_interaction"
    assert card["source"] == {"desc": "CallMood", "desc_color": 0}
    assert card["main_title"]["title"] == "严重 critical · 客户 c-1"
    assert card["sub_title_text"] == "客户很生气"
    assert re.fullmatch(r"cm-n42-[0-9a-f]{8}", card["task_id"])
    assert card["card_action"] == {"type": 1, "url": LINK}
    assert card["button_list"] == [{"text": "确认 Correct", "style": 1, "key": "cm:correct:42"},
                                   {"text": "误报 False alarm", "style": 2, "key": "cm:false_alarm:42"}]
    rows = {r["keyname"]: r["value"] for r in card["horizontal_content_list"]}
    assert rows == {"场景": "general", "规则": "angry_customer", "坐席": "a-1", "情绪": "angry 0.91 · 50%",
                    "时间点": "00:00–00:03, 01:03–01:06", "工单": "T-9"}
    assert all(len(k) <= 5 for k in rows) and len(rows) <= 6
    text = json.dumps(payload, ensure_ascii=False)
    assert SECRET not in text and "access_token" not in text

    result = send(sink, payload, http)
    assert result.ok and result.note is None, result
    assert wecom.sent == [body] and card["task_id"] in wecom.cards
    assert wecom.cards[card["task_id"]].touser == ["boss", "lead01"]
    gettoken = [r for r in wecom.requests if r.path.startswith("/cgi-bin/gettoken")]
    assert len(gettoken) == 1 and f"corpid={wecom.corpid}" in gettoken[0].path
    sent = [r for r in wecom.requests if r.path.startswith("/cgi-bin/message/send")]
    assert len(sent) == 1 and "access_token=" in sent[0].path and sent[0].json() == body


def test_task_ids_are_unique_and_a_resend_is_the_same_message(wecom, http):
    sink = make_sink(wecom)
    first, second = sink.render(ctx()), sink.render(ctx())
    assert first["body"]["template_card"]["task_id"] != second["body"]["template_card"]["task_id"]
    assert send(sink, first, http).ok and send(sink, second, http).ok
    # A resend of a stored payload (a crash after WeCom's answer): WeCom's duplicate check drops it.
    assert send(sink, first, http).ok
    assert len(wecom.sent) == 2 and wecom.duplicates == [first["body"]]


def test_a_trial_models_card_says_so_first(wecom, http):
    card = make_sink(wecom).render(ctx(is_trial=True))["body"]["template_card"]
    assert card["source"] == {"desc": f"CallMood · {trial.LABEL}", "desc_color": 2}
    content = make_sink(wecom).render(ctx(n_alerts=2, is_trial=True))["body"]["markdown"]["content"]
    assert content.startswith(trial.LABEL + "\n### ")


def test_cards_off_or_no_notification_id_is_markdown(wecom, http):
    payload = make_sink(wecom, cards=False).render(ctx())
    assert payload["body"]["msgtype"] == "markdown" and "template_card" not in payload["body"]
    content = payload["body"]["markdown"]["content"]
    assert "**angry**" in content and content.endswith(f"[查看通话 / Open the call]({LINK})")
    assert "<@" not in content  # app markdown has no robot mentions
    c = ctx()
    del c["notification"]
    assert make_sink(wecom).render(c)["body"]["msgtype"] == "markdown"
    assert send(make_sink(wecom), payload, http).ok


# --- buttons: the callback's update ----------------------------------------------------

def test_update_card_greys_out_the_buttons_once(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    task_id = payload["body"]["template_card"]["task_id"]
    assert send(sink, payload, http).ok
    params, body = wecom.callback(task_id, "cm:correct:42", "zhangsan")
    event = parse_xml(wecom.crypto.decrypt_message(body, params["msg_signature"], params["timestamp"],
                                                   params["nonce"]))
    assert parse_button_key(event["EventKey"]) == ("correct", 42)
    update = update_card_payload(wecom.agentid, event["ResponseCode"], [event["FromUserName"]], "correct", "张三")
    assert update == {"op": "update_card", "body": {"userids": ["zhangsan"], "agentid": wecom.agentid,
                                                    "response_code": event["ResponseCode"],
                                                    "button": {"replace_name": "已确认 Correct · 张三"}}}
    assert sink.limits(update) == []
    assert send(sink, update, http).ok
    assert wecom.cards[task_id].replaced == {"zhangsan": "已确认 Correct · 张三"}
    again = send(sink, update, http)  # a response_code is good for one update
    assert not again.ok and not again.retryable and "40058" in again.error


def test_update_card_payload_checks_its_values():
    with pytest.raises(ValueError, match="verdict"):
        update_card_payload(1, "rc", ["u"], "maybe", "x")
    with pytest.raises(ValueError, match="is not a user id"):
        update_card_payload(1, "rc", ["a b"], "correct", "x")
    with pytest.raises(ValueError, match="user ids"):
        update_card_payload(1, "rc", [], "correct", "x")
    with pytest.raises(ValueError, match="response_code"):
        update_card_payload(1, "rc with space", ["u"], "correct", "x")
    p = update_card_payload(1, "rc", [], "false_alarm", "张\n三" + "长" * 50, atall=True)
    name = p["body"]["button"]["replace_name"]
    assert p["body"]["atall"] == 1 and "\n" not in name and name.startswith("已标为误报 False alarm · 张 三")
    assert len(name) <= 40


def test_parse_button_key():
    assert parse_button_key("cm:false_alarm:7") == ("false_alarm", 7)
    for bad in ("cm:correct:", "cm:correct:7x", "cm:other:7", None, "cm:correct:7\n"):
        assert parse_button_key(bad) is None


# --- WeCom's answers -----------------------------------------------------------------

def test_an_expired_token_is_refreshed_and_the_call_made_once_more(wecom, http):
    sink = make_sink(wecom)
    assert send(sink, sink.render(ctx()), http).ok
    wecom.expire_tokens()  # WeCom answers 42001 to the cached token
    assert send(sink, sink.render(ctx()), http).ok
    assert wecom.token_requests == 2 and len(wecom.sent) == 2
    wecom.fail_next(42001, path="send")
    assert send(sink, sink.render(ctx()), http).ok
    assert wecom.token_requests == 3 and len(wecom.sent) == 3


def test_45009_is_throttled(wecom, http):
    sink = make_sink(wecom)
    wecom.fail_next(45009)
    result = send(sink, sink.render(ctx()), http)
    assert not result.ok and result.throttled and result.retry_after == 60 and result.retryable
    assert "45009" in result.error and "rate limit" in result.error
    assert send(sink, sink.render(ctx()), http).ok  # the next one goes through


def test_http_429_is_throttled_too(http):
    fake = FakeServer()
    try:
        fake.routes["/cgi-bin/gettoken"] = Reply(200, {"errcode": 0, "access_token": "T0KEN-abc", "expires_in": 7200})
        fake.routes["/cgi-bin/message/send"] = Reply(429, b"slow down")
        sink = make_sink(None, api_base=fake.url)
        result = send(sink, sink.render(ctx()), http)
        assert result.throttled and result.retry_after == 60 and result.status_code == 429
    finally:
        fake.close()


@pytest.mark.parametrize("as_errcode", [True, False])
def test_no_valid_recipient_is_final(http, as_errcode):
    with WeComStandIn(all_invalid_errcode=as_errcode) as wecom:
        wecom.invalid_users = {"ghost1", "ghost2"}
        wecom.invalid_parties = {"9"}
        sink = make_sink(wecom, touser=["Ghost1", "ghost2"], toparty=[9])
        result = send(sink, sink.render(ctx()), http)
        assert not result.ok and not result.retryable and "ghost1" in result.error.lower()
        assert ("81013" in result.error) if as_errcode else ("messaged no one" in result.error
                                                            and "ghost1, ghost2" in result.error)


def test_some_invalid_recipients_is_sent_with_a_note(wecom, http):
    wecom.invalid_users = {"gone"}
    sink = make_sink(wecom, touser=["boss", "gone"])
    result = send(sink, sink.render(ctx()), http)
    assert result.ok and result.note == "not delivered to invalid user(s): gone"


def test_wrong_secret_or_ip_is_retryable_and_says_what_to_check(wecom, http):
    sink = make_sink(wecom, secret="not-the-Secret-42")
    result = send(sink, sink.render(ctx()), http)
    assert not result.ok and result.retryable and "40001" in result.error
    assert "sinks.app.corpid and secret" in result.error and "not-the-Secret-42" not in result.error
    wecom.fail_next(60020)
    result = send(make_sink(wecom), make_sink(wecom).render(ctx()), http)
    assert result.retryable and "trusted IPs" in result.error and "60020" in result.error


@pytest.mark.parametrize("errcode", [40008, 40058, 44004, 41004, 81013, 82001])
def test_a_malformed_message_is_final(wecom, http, errcode):
    wecom.fail_next(errcode)
    result = send(make_sink(wecom), make_sink(wecom).render(ctx()), http)
    assert not result.ok and not result.retryable and str(errcode) in result.error


def test_a_wrong_agentid_is_final(wecom, http):
    sink = make_sink(wecom, agentid=wecom.agentid + 1)
    result = send(sink, sink.render(ctx()), http)
    assert not result.retryable and "40056" in result.error


def test_other_errcodes_and_http_errors_are_retryable(wecom, http):
    wecom.fail_next(-1, errmsg="system busy")
    result = send(make_sink(wecom), make_sink(wecom).render(ctx()), http)
    assert result.retryable and not result.throttled and "-1" in result.error


def test_network_errors_are_retryable_and_never_show_the_secret(http):
    sink = make_sink(None, api_base=f"http://127.0.0.1:{free_port()}")
    result = send(sink, sink.render(ctx()), http)
    assert not result.ok and result.retryable and "ConnectionError" in result.error
    assert SECRET not in result.error and "corpsecret=***" in result.error


def test_an_answer_quoting_the_token_is_scrubbed(http):
    fake = FakeServer()
    try:
        fake.routes["/cgi-bin/gettoken"] = Reply(200, {"errcode": 0, "access_token": "T0KEN-abcdef",
                                                       "expires_in": 7200})
        fake.routes["/cgi-bin/message/send"] = lambda rec: Reply(502, f"bad gateway for {rec.path}")
        sink = make_sink(None, api_base=fake.url)
        result = send(sink, sink.render(ctx()), http)
        assert result.retryable and result.status_code == 502
        assert "T0KEN-abcdef" not in result.error and "access_token=***" in result.error
    finally:
        fake.close()


def test_unknown_op_is_final(wecom, http):
    result = send(make_sink(wecom), {"op": "recall", "body": {}}, http)
    assert not result.ok and not result.retryable


# --- markdown: groups, digests, hostile values ------------------------------------------

INJECTIONS = {
    "customer_id": "c-1\n### 假标题 Fake heading\r\n> 级别 Severity: critical",
    "agent_id": "[点击处理 / click](http://phish.example)",
    "ticket_id": "<@all> <font color=\"warning\">urgent</font>",
    "customer_phone": "**138** `code` # x\r\n<@boss>",
}


def test_a_group_is_markdown_with_the_others_listed(wecom, http):
    payload = make_sink(wecom).render(ctx(n_alerts=3))
    body = payload["body"]
    assert body["msgtype"] == "markdown" and list(body["markdown"]) == ["content"]
    content = body["markdown"]["content"]
    assert "另有 2 条告警" in content and "[查看 / Open](http://callmood.local/calls/8)" in content
    assert content.endswith(f"[查看通话 / Open the call]({LINK})")
    assert len(payload["lines"]) == 3
    assert send(make_sink(wecom), payload, http).ok


def test_a_digest_lists_every_alert(wecom, http):
    payload = make_sink(wecom).render(ctx(n_alerts=5, digest=True))
    content = payload["body"]["markdown"]["content"]
    assert content.startswith("### 夜间汇总") and content.count("\n- ") == 5
    assert content.endswith("[红色预警客户 / Flagged customers](http://callmood.local/customers?flag=red)")
    assert send(make_sink(wecom), payload, http).ok


def test_hostile_call_fields_stay_data_in_markdown(wecom, http):
    plain = make_sink(wecom).render(ctx(n_alerts=2))["body"]["markdown"]["content"]
    content = make_sink(wecom).render(ctx(n_alerts=2, **INJECTIONS))["body"]["markdown"]["content"]
    assert content.count("\n") == plain.count("\n")  # no value added a line
    assert not any(line.lstrip().startswith("#") for line in content.split("\n")[1:])
    assert "<@all>" not in content and "<font color=\"warning\">urgent" not in content
    assert "](http://phish.example)" not in content and "[点击处理" not in content
    assert "**138**" not in content and "`code`" not in content
    assert "＃＃＃ 假标题 Fake heading" in content and "［点击处理 / click］(http://phish.example)" in content
    digest = make_sink(wecom).render(ctx(n_alerts=2, digest=True, **INJECTIONS))["body"]["markdown"]["content"]
    assert "<@all>" not in digest and digest.count("\n- ") == 2 and "\n###" not in digest.split("\n", 1)[1]
    assert send(make_sink(wecom), make_sink(wecom).render(ctx(n_alerts=2, **INJECTIONS)), http).ok


def test_hostile_call_fields_stay_one_line_in_the_card(wecom, http):
    c = ctx(**INJECTIONS)
    c["alert"]["summary"] = "第一行\r\n第二行\x00\u2028" + "长" * 500
    c["alert"]["rule"] = "r\n# x" + "y" * 100
    c["alert"]["emotions"] = ["angry\n[x](http://phish.example)"]
    card = make_sink(wecom).render(c)["body"]["template_card"]

    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v
    assert all(s.isprintable() for s in strings(card))  # no CR, LF, NUL, U+2028...
    assert card["main_title"]["title"] == "严重 critical · 客户 c-1 ### 假标题 Fake heading > 级别 Severity: critical"
    assert card["sub_title_text"].startswith("第一行 第二行 ") and len(card["sub_title_text"]) == 160
    assert card["sub_title_text"].endswith("…")
    rows = {r["keyname"]: r["value"] for r in card["horizontal_content_list"]}
    assert rows["规则"].startswith("r # xyyy") and len(rows["规则"]) == 30
    assert rows["坐席"] == INJECTIONS["agent_id"]  # ids are never cut; a card shows text, not markdown
    assert send(make_sink(wecom), make_sink(wecom).render(c), http).ok


def test_a_long_message_stays_within_2048_bytes_and_keeps_its_link(wecom, http):
    c = ctx(n_alerts=40)
    c["alert"]["summary"] = "客" * 3000 + "<" * 50
    c["alert"]["matched"] = [[i * 3.0, i * 3.0 + 3] for i in range(500)]
    content = make_sink(wecom).render(c)["body"]["markdown"]["content"]
    assert len(content.encode("utf-8")) <= MARKDOWN_BYTES
    assert content.endswith(f"[查看通话 / Open the call]({LINK})") and "(+488)" in content
    assert "…" in content and "另有" in content
    assert send(make_sink(wecom), make_sink(wecom).render(c), http).ok
    digest = make_sink(wecom).render(ctx(n_alerts=200, digest=True))["body"]["markdown"]["content"]
    assert len(digest.encode("utf-8")) <= MARKDOWN_BYTES and re.search(r"and \d+ more", digest)
    assert digest.endswith("(http://callmood.local/customers?flag=red)")


def test_a_receiver_template_keeps_its_markdown(wecom):
    c = ctx(action={"template": "## {{ alert.rule }} for {{ call.customer_id }}\n[open]({{ link }})"}, **INJECTIONS)
    content = make_sink(wecom).render(c)["body"]["markdown"]["content"]
    assert content.split("\n")[0].startswith("## angry_customer for c-1 ＃＃＃ 假标题")
    assert content.split("\n")[1] == f"[open]({LINK})"


# --- recipients ----------------------------------------------------------------------

@pytest.mark.parametrize("action,expected", [
    ({"touser": "zhangsan|lisi"}, {"touser": "zhangsan|lisi"}),
    ({"touser": ["zhangsan", "lisi", "zhangsan"]}, {"touser": "zhangsan|lisi"}),
    ({"toparty": [4, "5"]}, {"toparty": "4|5"}),
    ({"totag": "8|9", "touser": ["a"]}, {"touser": "a", "totag": "8|9"}),
])
def test_a_receiver_names_its_own_recipients(action, expected):
    body = make_sink(None, toparty=[2]).render(ctx(action=action))["body"]
    assert {k: body[k] for k in ("touser", "toparty", "totag") if k in body} == expected


@pytest.mark.parametrize("action,match", [
    ({"touser": "ok|<@all>"}, "is not a user id"),
    ({"touser": ["a b"]}, "is not a user id"),
    ({"touser": "@all"}, "everyone"),
    ({"toparty": ["2; drop"]}, "department"),
    ({"totag": [True]}, "text or a number"),
    ({"touser": []}, "no recipient"),
])
def test_receiver_recipients_are_checked(action, match):
    with pytest.raises(ValueError, match=match):
        make_sink(None).render(ctx(action=action))


def test_a_sink_without_recipients_cannot_render():
    with pytest.raises(ValueError, match="no recipient"):
        make_sink(None, touser=[]).render(ctx())


# --- rate limits and merging ------------------------------------------------------------

def test_limits_count_every_member_department_and_tag():
    sink = make_sink(None, touser=["Boss", "lead01"], toparty=[2], totag=[7])
    assert sink.limits(sink.render(ctx())) == [
        Limit("user:boss", 60, 30), Limit("user:boss", 3600, 1000),
        Limit("user:lead01", 60, 30), Limit("user:lead01", 3600, 1000),
        Limit("party:2", 60, 30), Limit("party:2", 3600, 1000),
        Limit("tag:7", 60, 30), Limit("tag:7", 3600, 1000)]
    assert sink.limits(update_card_payload(1, "rc", ["boss"], "correct", "x")) == []


def test_merge_carries_the_alerts_of_as_many_messages_as_fit_whole(wecom, http):
    sink = make_sink(wecom)
    payloads = [sink.render(ctx(nid=i, customer_id=f"cust-{i}")) for i in range(150)]
    merged = sink.merge(payloads)
    body = merged["body"]
    assert merged["op"] == "send" and body["msgtype"] == "markdown" and body["touser"] == "boss|lead01"
    assert body["agentid"] == wecom.agentid and body["enable_duplicate_check"] == 1
    content = body["markdown"]["content"]
    assert len(content.encode("utf-8")) <= MARKDOWN_BYTES
    n = merged["merged"]  # the outbox keeps the other 150 - n for the next window
    assert 2 <= n < 150 and content.startswith(f"### 告警汇总 / {n} alerts") and "more" not in content
    assert all(f"cust-{i} " in content for i in range(n)) and f"cust-{n} " not in content
    assert sink.limits(merged) == sink.limits(payloads[0])
    assert send(sink, merged, http).ok
    small = sink.merge(payloads[:2])
    assert small["merged"] == 2 and "cust-0" in small["body"]["markdown"]["content"]
    with_trial = sink.merge([sink.render(ctx(n_alerts=3, is_trial=True)), *payloads[:2]])
    assert with_trial["body"]["markdown"]["content"].startswith(trial.LABEL + "\n### 告警汇总 / 5 alerts")


def test_merge_refuses_other_recipients_and_updates():
    sink = make_sink(None)
    a = sink.render(ctx())
    b = sink.render(ctx(action={"touser": ["someone"]}))
    assert sink.merge([a, b]) is None
    assert sink.merge([a, update_card_payload(1, "rc", ["boss"], "correct", "x")]) is None
    assert sink.merge([]) is None
    same = sink.render(ctx(action={"touser": "LEAD01|boss"}))  # the same people, other order and case
    assert sink.merge([a, same]) is not None


# --- config ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg,match", [
    ({"callback_token": "bad token!"}, "callback_token"),
    ({"callback_token": "x" * 33}, "callback_token"),
    ({"callback_aes_key": AES_KEY[:-1]}, "exactly 43 characters"),
    ({"callback_aes_key": AES_KEY[:-1] + "/"}, "only letters"),
    ({"toparty": ["sales"]}, "department"),
    ({"totag": ["1.5"]}, "tag"),
    ({"touser": ["@all"]}, "everyone"),
    ({"duplicate_check_interval": 4 * 3600 + 1}, "4 hours"),
    ({"api_base": "https://qyapi.weixin.qq.com/cgi-bin"}, "nothing after it"),
    ({"secret": "has space"}, "no spaces"),
    ({"agentid": 0}, "positive"),
    ({"corpid": "ww 1"}, "corpid"),
    ({"mentioned_list": ["a"]}, "Extra inputs|extra"),
])
def test_config_is_checked_when_loaded(cfg, match):
    base = {"type": "wecom_app", "corpid": "ww1", "agentid": 1000002, "secret": "s", **cfg}
    with pytest.raises(ValidationError, match=match):
        WeComAppConfig(**base)


def test_config_defaults_and_forms():
    cfg = WeComAppConfig(type="wecom_app", corpid="ww1", agentid=1000002, secret="s", toparty=[2, "3"],
                         callback_token="Tok3n", callback_aes_key=AES_KEY)
    assert cfg.api_base == "https://qyapi.weixin.qq.com" and cfg.cards and cfg.enable_duplicate_check
    assert cfg.duplicate_check_interval == 1800 and cfg.toparty == ["2", "3"] and cfg.touser == []
    off = make_sink(None, enable_duplicate_check=False).render(ctx())["body"]
    assert off["enable_duplicate_check"] == 0 and "duplicate_check_interval" not in off
    assert WeComAppSink.messaging is True and WeComAppSink.kind == "wecom_app"


# --- the stand-in itself (tests/wecom_standin.py) ----------------------------------------

def test_standin_url_verification_and_callback_are_what_wecom_sends(wecom):
    sink = make_sink(wecom)
    crypto = WeComCrypto(sink.cfg.callback_token, sink.cfg.callback_aes_key, sink.cfg.corpid)
    q = wecom.verify_url("5927782489442352469")
    assert set(q) == {"msg_signature", "timestamp", "nonce", "echostr"}
    assert crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]) == "5927782489442352469"
    params, body = wecom.callback("cm-n42-deadbeef", "cm:false_alarm:42", "lisi", "rc-fixed", create_time=1700000000)
    assert set(params) == {"msg_signature", "timestamp", "nonce"}
    outer = parse_xml(body)
    assert outer["ToUserName"] == wecom.corpid and outer["AgentID"] == str(wecom.agentid) and outer["Encrypt"]
    event = parse_xml(crypto.decrypt_message(body, params["msg_signature"], params["timestamp"], params["nonce"]))
    assert event == {"ToUserName": wecom.corpid, "FromUserName": "lisi", "CreateTime": "1700000000",
                     "MsgType": "event", "Event": "template_card_event", "EventKey": "cm:false_alarm:42",
                     "TaskId": "cm-n42-deadbeef", "CardType": "button_interaction", "ResponseCode": "rc-fixed",
                     "AgentID": str(wecom.agentid)}
    reply = crypto.encrypt_message("<xml><MsgType>text</MsgType></xml>", "n1")
    assert wecom.open_reply(reply) == "<xml><MsgType>text</MsgType></xml>"


@pytest.mark.parametrize("breakage", [
    lambda card: card.pop("button_list"),
    lambda card: card.update(task_id="has space"),
    lambda card: card["button_list"].append(dict(card["button_list"][0])),  # a key twice
    lambda card: card["main_title"].pop("title"),
    lambda card: card.update(horizontal_content_list=[{"keyname": "k", "value": "v"}] * 7),
    lambda card: card.update(card_action={"type": 1}),
])
def test_standin_refuses_cards_wecom_would_refuse(wecom, http, breakage):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    breakage(payload["body"]["template_card"])
    result = send(sink, payload, http)
    assert not result.ok and not result.retryable and "40058" in result.error
    assert wecom.sent == []
