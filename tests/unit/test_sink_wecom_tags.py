"""The WeCom customer-tag sink against a stand-in for WeCom's server API (a real HTTP server
on 127.0.0.1): tag ids looked up by name in our own group and created when missing, cached
per process, recreated when deleted; the token refreshed when WeCom calls it expired; a
tag or group another app made refused with an explanation; frequency limits throttled;
hostile ids refused when the action is planned; no secret or token in what is stored."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import ValidationError

from connectors.sinks import wecom_api
from connectors.sinks.wecom_tags import WeComTagConfig, WeComTagSink, forget_tag_ids
from tests.helpers import FakeServer, Recorded, Reply, at_once, free_port

CORP = "ww0123456789abcdef"
SECRET = "S3cret-" + uuid.uuid4().hex  # unique, so that finding it anywhere means it leaked
GROUP = "CallMood 情绪"
CUSTOMER = "wmAJ2GCAAAd1NPGHKSD4wKmE8Aabj9AAA"
AGENT = "zhangsan"


class WeComStandIn:
    """WeCom's token, tag library and mark_tag endpoints, checking the documented body
    shapes and keeping state: tag groups (``created_by_app``: whether our app made them),
    the marks per (userid, external_userid), the members' contacts."""

    def __init__(self, server: FakeServer):
        self.server = server
        self.tokens: list[str] = []  # every token issued; only the last one is valid
        self.valid: set[str] = set()
        self.groups: list[dict] = []
        self.marks: dict[tuple[str, str], set[str]] = {}
        self.contacts = {(AGENT, CUSTOMER), ("lisi", CUSTOMER)}
        self.expire_once: set[str] = set()  # endpoints that answer 42001 once
        self.throttled: set[str] = set()  # endpoints that answer 45009
        self.foreign_mark = 40068  # what mark_tag answers for a tag our app did not create
        self._n = 0
        server.routes["/cgi-bin/gettoken"] = self.gettoken
        for name in ("get_corp_tag_list", "add_corp_tag", "mark_tag"):
            server.routes[f"/cgi-bin/externalcontact/{name}"] = self.endpoint(name)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"et{prefix}{self._n:04d}{uuid.uuid4().hex[:8]}"

    def seed(self, group_name: str, tags: list[str], created_by_app: bool) -> dict:
        group = {"group_id": self._id("G"), "group_name": group_name, "create_time": 1557838797, "order": 0,
                 "created_by_app": created_by_app,
                 "tag": [{"id": self._id("T"), "name": n, "create_time": 1557838797, "order": 0}
                         for n in tags]}
        self.groups.append(group)
        return group

    def tag(self, tag_id: str) -> tuple[dict | None, dict | None]:
        for g in self.groups:
            for t in g["tag"]:
                if t["id"] == tag_id:
                    return g, t
        return None, None

    def calls(self, name: str | None = None) -> list[Recorded]:
        return [r for r in self.server.requests if name is None or urlsplit(r.path).path.endswith("/" + name)]

    def names(self) -> list[str]:
        return [urlsplit(r.path).path.rsplit("/", 1)[1] for r in self.server.requests]

    # --- endpoints ---

    def gettoken(self, rec: Recorded) -> Reply:
        q = parse_qs(urlsplit(rec.path).query)
        if rec.method != "GET" or q.get("corpid") != [CORP] or q.get("corpsecret") != [SECRET]:
            return Reply(200, {"errcode": 40001, "errmsg": "invalid credential"})
        token = f"TOKEN-{len(self.tokens)}-{uuid.uuid4().hex}"
        self.tokens.append(token)
        self.valid = {token}
        return Reply(200, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def endpoint(self, name: str):
        def handle(rec: Recorded) -> Reply:
            token = parse_qs(urlsplit(rec.path).query).get("access_token", [None])[0]
            if rec.method != "POST":
                return Reply(200, {"errcode": 43002, "errmsg": "require POST method"})
            if token not in self.valid:
                return Reply(200, {"errcode": 40014, "errmsg": "invalid access_token"})
            if name in self.expire_once:
                self.expire_once.discard(name)
                self.valid = set()
                return Reply(200, {"errcode": 42001, "errmsg": "access_token expired"})
            if name in self.throttled:
                return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
            try:
                body = rec.json()
            except ValueError:
                return Reply(200, {"errcode": 47001, "errmsg": "data format error"})
            if not isinstance(body, dict):
                return Reply(200, {"errcode": 47001, "errmsg": "data format error"})
            answer = getattr(self, name)(body)
            return answer if isinstance(answer, Reply) else Reply(200, {"errcode": 0, "errmsg": "ok", **answer})
        return handle

    def get_corp_tag_list(self, body: dict) -> dict | Reply:
        if set(body) - {"tag_id", "group_id"} or not all(isinstance(body.get(k, []), list)
                                                          for k in ("tag_id", "group_id")):
            return Reply(200, {"errcode": 40058, "errmsg": "invalid parameter"})
        groups = [g for g in self.groups if not body.get("group_id") or g["group_id"] in body["group_id"]]
        return {"tag_group": [{k: v for k, v in g.items() if k != "created_by_app"}
                              | {"tag": [t for t in g["tag"] if not t.get("deleted")]}
                              for g in groups if not g.get("deleted")]}

    def add_corp_tag(self, body: dict) -> dict | Reply:
        tags = body.get("tag")
        if (not isinstance(tags, list) or not tags or set(body) - {"group_id", "group_name", "order", "tag"}
                or not all(isinstance(t, dict) and isinstance(t.get("name"), str) and 0 < len(t["name"]) <= 30
                           for t in tags)):
            return Reply(200, {"errcode": 40071, "errmsg": "invalid tag name"})
        if body.get("group_id"):
            group = next((g for g in self.groups if g["group_id"] == body["group_id"]), None)
            if group is None:
                return Reply(200, {"errcode": 40068, "errmsg": "invalid tagid"})
        else:
            name = body.get("group_name")
            if not isinstance(name, str) or not 0 < len(name) <= 30:
                return Reply(200, {"errcode": 40071, "errmsg": "invalid group name"})
            group = next((g for g in self.groups if g["group_name"] == name and not g.get("deleted")), None)
            if group is None:
                group = self.seed(name, [], created_by_app=True)
        if not group["created_by_app"]:
            return Reply(200, {"errcode": 301002, "errmsg": "not allow operate another agent with this accesstoken"})
        new = []
        for t in tags:
            if any(x["name"] == t["name"] and not x.get("deleted") for x in group["tag"]):
                continue  # "标签组内的标签不可同名，如果传入多个同名标签，则只会创建一个"
            tag = {"id": self._id("T"), "name": t["name"], "create_time": 1557838797, "order": 0}
            group["tag"].append(tag)
            new.append(tag)
        return {"tag_group": {k: v for k, v in group.items() if k not in ("created_by_app", "tag")} | {"tag": new}}

    def mark_tag(self, body: dict) -> dict | Reply:
        user, ext, add = body.get("userid"), body.get("external_userid"), body.get("add_tag")
        if (set(body) - {"userid", "external_userid", "add_tag", "remove_tag"} or not isinstance(user, str)
                or not isinstance(ext, str) or not isinstance(add, list) or not add):
            return Reply(200, {"errcode": 40058, "errmsg": "invalid parameter"})
        if (user, ext) not in self.contacts:
            return Reply(200, {"errcode": 84061, "errmsg": "not external contact"})
        for tag_id in add:
            group, tag = self.tag(tag_id)
            if tag is None or tag.get("deleted"):
                return Reply(200, {"errcode": 40068, "errmsg": "invalid tagid"})
            if not group["created_by_app"]:
                return Reply(200, {"errcode": self.foreign_mark, "errmsg": "invalid tagid"})
        self.marks.setdefault((user, ext), set()).update(add)  # adding a present tag is fine
        return {}


@pytest.fixture(autouse=True)
def _fresh_caches():
    wecom_api.forget_tokens()
    forget_tag_ids()
    yield
    wecom_api.forget_tokens()
    forget_tag_ids()


@pytest.fixture
def wecom():
    server = FakeServer()
    yield WeComStandIn(server)
    server.close()


@pytest.fixture
def http():
    with requests.Session() as s:
        s.trust_env = False  # no proxy from the environment between us and 127.0.0.1
        yield s


def make_sink(wecom: WeComStandIn, **kw) -> WeComTagSink:
    cfg = WeComTagConfig(**{"type": "wecom_customer_tag", "corpid": CORP, "secret": SECRET,
                            "api_base": wecom.server.url, **kw})
    return WeComTagSink("wecom_tags", cfg)


def ctx(action=None, severity="critical", **call):
    c = {"id": 7, "customer_id": CUSTOMER, "customer_phone": "+8613812345678", "agent_id": AGENT,
         "ticket_id": "T-9", "queue": "vip", "metadata": {"event": "call.ended"}}
    c.update(call)
    return {"call": c, "alert": {"rule": "angry_customer", "scenario": "general", "severity": severity},
            "action": action or {}, "link": "http://callmood.local/calls/7", "trial": False}


def send(sink, payload, http, timeout=5.0):
    return sink.send(payload, http, timeout, "callmood-delivery-1")


def ours(wecom: WeComStandIn, name: str = "情绪预警-严重") -> str:
    group = next(g for g in wecom.groups if g["group_name"] == GROUP and g["created_by_app"])
    return next(t["id"] for t in group["tag"] if t["name"] == name)


# --- sending --------------------------------------------------------------------------

def test_first_send_creates_our_group_and_tag_then_marks_the_customer(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    assert payload == {"userid": AGENT, "external_userid": CUSTOMER, "group": GROUP, "tags": ["情绪预警-严重"]}
    result = send(sink, payload, http)
    assert result.ok and result.error is None
    assert wecom.names() == ["gettoken", "get_corp_tag_list", "add_corp_tag", "mark_tag"]
    assert wecom.calls("get_corp_tag_list")[0].json() == {"tag_id": [], "group_id": []}
    assert wecom.calls("add_corp_tag")[0].json() == {"group_name": GROUP, "tag": [{"name": "情绪预警-严重"}]}
    assert wecom.calls("mark_tag")[0].json() == {"userid": AGENT, "external_userid": CUSTOMER,
                                                 "add_tag": [ours(wecom)]}
    assert [g["group_name"] for g in wecom.groups] == [GROUP] and wecom.groups[0]["created_by_app"]
    assert wecom.marks == {(AGENT, CUSTOMER): {ours(wecom)}}


def test_a_second_send_reuses_the_cached_id_and_repeats_are_harmless(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    assert send(sink, payload, http).ok
    n = len(wecom.server.requests)
    # The same payload again (a retry after a crash) and a new sink object of the same config:
    # only mark_tag, with the cached token and id; the customer still has the one tag.
    assert send(sink, payload, http).ok
    assert send(make_sink(wecom), payload, http).ok
    assert wecom.names()[n:] == ["mark_tag", "mark_tag"]
    assert wecom.marks == {(AGENT, CUSTOMER): {ours(wecom)}}


def test_with_cache_s_0_the_ids_are_looked_up_again_but_not_created_again(wecom, http):
    sink = make_sink(wecom, cache_s=0)
    payload = sink.render(ctx())
    assert send(sink, payload, http).ok and send(sink, payload, http).ok
    assert wecom.names() == ["gettoken", "get_corp_tag_list", "add_corp_tag", "mark_tag",
                             "get_corp_tag_list", "mark_tag"]


def test_tags_in_our_existing_group_are_used_and_missing_ones_added_to_it_by_id(wecom, http):
    group = wecom.seed(GROUP, ["情绪预警-严重"], created_by_app=True)
    sink = make_sink(wecom)
    assert send(sink, sink.render(ctx(action={"tags": ["情绪预警-严重", "需回访"]})), http).ok
    assert wecom.calls("add_corp_tag")[0].json() == {"group_id": group["group_id"], "tag": [{"name": "需回访"}]}
    assert wecom.marks[(AGENT, CUSTOMER)] == {ours(wecom), ours(wecom, "需回访")}
    assert len(wecom.groups) == 1


def test_a_same_named_tag_in_another_group_is_never_used(wecom, http):
    foreign = wecom.seed("客户分类", ["情绪预警-严重"], created_by_app=False)
    sink = make_sink(wecom)
    assert send(sink, sink.render(ctx()), http).ok
    marked = wecom.calls("mark_tag")[0].json()["add_tag"]
    assert marked == [ours(wecom)] and foreign["tag"][0]["id"] not in marked


def test_an_expired_token_is_fetched_again_and_the_call_repeated(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    assert send(sink, payload, http).ok
    wecom.expire_once.add("mark_tag")
    assert send(sink, payload, http).ok
    marks = wecom.calls("mark_tag")
    assert [r.path.split("access_token=")[1] for r in marks] == [wecom.tokens[0], wecom.tokens[0], wecom.tokens[1]]
    assert len(wecom.calls("gettoken")) == 2


def test_a_tag_deleted_in_the_admin_console_is_looked_up_and_created_again(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    assert send(sink, payload, http).ok
    old = ours(wecom)
    wecom.tag(old)[1]["deleted"] = True  # the cached id is now invalid: mark_tag says 40068
    n = len(wecom.server.requests)
    result = send(sink, payload, http)
    assert result.ok, result.error
    assert wecom.names()[n:] == ["mark_tag", "get_corp_tag_list", "add_corp_tag", "mark_tag"]
    new = wecom.calls("mark_tag")[-1].json()["add_tag"]
    assert new != [old] and wecom.marks[(AGENT, CUSTOMER)] == {old, new[0]}


@pytest.mark.parametrize("errcode", [40068, 301002])
def test_a_tag_of_our_name_made_by_another_app_kills_the_delivery_with_the_fix(wecom, http, errcode):
    wecom.foreign_mark = errcode
    wecom.seed(GROUP, ["情绪预警-严重"], created_by_app=False)  # made in the admin console
    sink = make_sink(wecom)
    result = send(sink, sink.render(ctx()), http)
    assert not result.ok and result.retryable is False
    assert "\n" not in result.error
    for needle in (f"errcode {errcode}", "'情绪预警-严重'", "only the customer tags it created",
                   "sinks.wecom_tags.group_name", "admin console (客户联系 > 客户标签)", "本应用创建"):
        assert needle in result.error, needle
    assert not wecom.marks and not wecom.calls("add_corp_tag")


def test_a_group_of_our_name_made_by_another_app_kills_the_delivery_with_the_fix(wecom, http):
    wecom.seed(GROUP, ["别的标签"], created_by_app=False)
    sink = make_sink(wecom)
    result = send(sink, sink.render(ctx()), http)
    assert not result.ok and result.retryable is False
    assert "errcode 301002" in result.error and f"tag group {GROUP!r}" in result.error
    assert "sinks.wecom_tags.group_name" in result.error and "delete that group" in result.error
    assert not wecom.marks


def test_wecom_frequency_limit_is_throttled_with_a_time_to_come_back(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    wecom.throttled.add("mark_tag")
    result = send(sink, payload, http)
    assert not result.ok and result.throttled and result.retryable and result.retry_after == 60
    assert "45009" in result.error


def test_a_customer_who_is_not_the_members_contact_is_final(wecom, http):
    sink = make_sink(wecom)
    result = send(sink, sink.render(ctx(agent_id="wangwu")), http)
    assert not result.ok and result.retryable is False
    assert "84061" in result.error and "not a contact of member wangwu" in result.error
    assert "userid_from" in result.error


def test_a_wrong_secret_is_retried_and_says_what_to_check(wecom, http):
    cfg = {"type": "wecom_customer_tag", "corpid": CORP, "secret": "wrong", "api_base": wecom.server.url}
    sink = WeComTagSink("wecom_tags", WeComTagConfig(**cfg))
    result = send(sink, sink.render(ctx()), http)
    assert not result.ok and result.retryable and "40001" in result.error
    assert "corpid and secret" in result.error


def test_concurrent_sends_in_one_process_create_the_tag_once(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    results, errors = at_once(6, lambda i: send(sink, payload, requests.Session()))
    assert not errors and len(results) == 6 and all(r.ok for r in results)
    assert len(wecom.calls("add_corp_tag")) == 1 and len(wecom.groups) == 1


def test_a_stored_payload_that_is_not_ours_is_refused_at_send(wecom, http):
    sink = make_sink(wecom)
    payload = {**sink.render(ctx()), "userid": "<@all>"}
    result = send(sink, payload, http)
    assert not result.ok and result.retryable is False and "stored payload" in result.error
    assert not wecom.server.requests


# --- secrets --------------------------------------------------------------------------

def test_the_secret_and_the_token_never_reach_the_payload_or_an_error(wecom, http):
    sink = make_sink(wecom)
    payload = sink.render(ctx())
    assert SECRET not in json.dumps(payload, ensure_ascii=False) and SECRET not in repr(sink.cfg)
    errors = []
    assert send(sink, payload, http).ok  # a token is cached now
    # WeCom's gateway failing with the request line in its page (the token in the query).
    wecom.server.routes["/cgi-bin/externalcontact/mark_tag"] = lambda rec: Reply(
        502, f"<h1>Bad gateway</h1> POST {rec.path} failed")
    errors.append(send(sink, payload, http).error)
    wecom.server.routes["/cgi-bin/externalcontact/mark_tag"] = lambda rec: Reply(
        200, {"errcode": 40058, "errmsg": f"invalid request {rec.path}"})
    errors.append(send(sink, payload, http).error)
    wecom.server.routes["/cgi-bin/externalcontact/mark_tag"] = Reply(200, {"errcode": 0}, delay_s=1.0)
    errors.append(send(sink, payload, http, timeout=0.2).error)
    # No token yet and nobody listening: the gettoken URL (with corpsecret=) in the exception.
    wecom_api.forget_tokens()
    dead = WeComTagSink("wecom_tags", WeComTagConfig(type="wecom_customer_tag", corpid=CORP, secret=SECRET,
                                                     api_base=f"http://127.0.0.1:{free_port()}"))
    errors.append(send(dead, payload, http).error)
    wecom.server.routes["/cgi-bin/gettoken"] = lambda rec: Reply(500, f"upstream error for {rec.path}")
    errors.append(send(sink, payload, http).error)
    assert all(errors) and "timed out" in errors[2] and "ConnectionError" in errors[3], errors
    for error in errors:
        assert SECRET not in error, error
        assert not any(t in error for t in wecom.tokens), error


# --- planning: what is stored ---------------------------------------------------------

@pytest.mark.parametrize("severity,tag", [("critical", "情绪预警-严重"), ("warning", "情绪预警-警告"),
                                          ("info", "情绪预警-提示"), ("custom", "情绪预警-custom")])
def test_the_default_tag_names_the_severity(wecom, severity, tag):
    assert make_sink(wecom).render(ctx(severity=severity))["tags"] == [tag]


@pytest.mark.parametrize("action,cfg_tags,expected", [
    ({"tag": "angry-customer"}, None, ["angry-customer"]),
    ({"tags": ["需回访", "投诉风险", "需回访"]}, None, ["需回访", "投诉风险"]),
    ({"tags": " 需回访, 投诉风险 ,"}, None, ["需回访", "投诉风险"]),
    ({}, ["客户情绪差"], ["客户情绪差"]),
    ({"tag": "angry-customer"}, ["客户情绪差"], ["angry-customer"]),
])
def test_tags_come_from_the_action_then_the_config(wecom, action, cfg_tags, expected):
    assert make_sink(wecom, tags=cfg_tags).render(ctx(action=action))["tags"] == expected


def test_the_action_may_name_the_group(wecom):
    assert make_sink(wecom).render(ctx(action={"tag": "x", "group": "质检"}))["group"] == "质检"
    assert make_sink(wecom, group_name="客服情绪").render(ctx(action={"group": ""}))["group"] == "客服情绪"


def test_ids_from_the_event_metadata_or_a_fixed_member(wecom):
    c = ctx(customer_id="crm-42", metadata={"wecom": {"external_userid": "wmXYZ_-1"}, "owner": "li.si@acme"})
    sink = make_sink(wecom, external_userid_from="metadata.wecom.external_userid", userid_from="metadata.owner")
    assert sink.render(c) | {"tags": None} == {"userid": "li.si@acme", "external_userid": "wmXYZ_-1",
                                               "group": GROUP, "tags": None}
    fixed = make_sink(wecom, userid="kefu01", external_userid_from="metadata.wecom.external_userid")
    assert fixed.render({**c, "call": {**c["call"], "agent_id": None}})["userid"] == "kefu01"
    assert make_sink(wecom, userid_from="metadata.n").render(ctx(metadata={"n": 1001}))["userid"] == "1001"


@pytest.mark.parametrize("call,match", [
    ({"customer_id": None}, "no external_userid in customer_id"),
    ({"customer_id": ""}, "no external_userid in customer_id"),
    ({"agent_id": None}, r"no userid \(the member who owns the contact\) in agent_id"),
    ({"customer_id": "../../cgi-bin/gettoken"}, "not a WeCom external_userid"),
    ({"customer_id": "wm 1"}, "not a WeCom external_userid"),
    ({"customer_id": "wm1\r\nX-Injected: 1"}, "not a WeCom external_userid"),
    ({"customer_id": "wm1&access_token=x"}, "not a WeCom external_userid"),
    ({"customer_id": "客户42"}, "not a WeCom external_userid"),
    ({"customer_id": "w" * 129}, "not a WeCom external_userid"),
    ({"customer_id": ["wm1"]}, "not a WeCom external_userid"),
    ({"agent_id": "<@all>"}, "not a user id"),
    ({"agent_id": "zhang san"}, "not a user id"),
    ({"agent_id": "zhang\nsan"}, "not a user id"),
    ({"agent_id": "a" * 65}, "not a user id"),
])
def test_hostile_or_missing_ids_are_refused_when_planned(wecom, call, match):
    with pytest.raises(ValueError, match=match):
        make_sink(wecom).render(ctx(**call))


@pytest.mark.parametrize("action,match", [
    ({"tag": "情" * 31}, "31 characters long; WeCom allows at most 30"),
    ({"tag": ""}, "must not be empty"),
    ({"tag": "bell\x07"}, "U\\+0007"),
    ({"tag": "evil\u202eflipped"}, "U\\+202E"),
    ({"tag": "two\nlines"}, "U\\+000A"),
    ({"tags": [f"t{i}" for i in range(21)]}, "21 tags; at most 20"),
    ({"tags": {"a": 1}}, "must be a list of tag names"),
    ({"tags": ["ok", 3]}, "must be text, not int"),
    ({"tag": "x", "group": "组" * 31}, "action.group: group name"),
])
def test_tag_names_wecom_cannot_take_are_refused_when_planned(wecom, action, match):
    with pytest.raises(ValueError, match=match):
        make_sink(wecom).render(ctx(action=action))


def test_calls_a_trial_model_analysed_are_not_tagged(wecom):
    with pytest.raises(ValueError, match="trial model, random weights"):
        make_sink(wecom).render({**ctx(), "trial": True})


@pytest.mark.parametrize("key,value,match", [
    ("external_userid_from", "call.customer_id", "customer_id, agent_id or metadata"),
    ("userid_from", "metadata.", "customer_id, agent_id or metadata"),
    ("userid", "<@all>", "not a user id"),
    ("group_name", "组" * 31, "at most 30"),
    ("group_name", " padded", "starts or ends with spaces"),
    ("tags", [], "at least one tag"),
    ("tags", ["a\tb"], "U\\+0009"),
    ("api_base", "https://qyapi.weixin.qq.com/?key=1", "plain base URL"),
    ("api_base", "qyapi.weixin.qq.com", "http:// or https://"),
    ("corpid", "ww 1", "企业ID"),
    ("secret", "", "not empty"),
    ("cache_s", -1, "greater than or equal"),
])
def test_config_mistakes_are_refused(key, value, match):
    cfg = {"type": "wecom_customer_tag", "corpid": CORP, "secret": SECRET, key: value}
    with pytest.raises(ValidationError, match=match):
        WeComTagConfig(**cfg)
