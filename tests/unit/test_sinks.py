"""Sink payloads: the WeCom robot message (documented shape, within the 4096-byte limit,
every inserted value escaped) and the REST request (values encoded into their URL segment,
headers HTTP can carry)."""

import re

import pytest
from pydantic import ValidationError

from connectors.sinks.base import header_problem
from connectors.sinks.rest import RestConfig, RestSink
from connectors.sinks.wecom_robot import MAX_BYTES, WeComRobotConfig, WeComRobotSink, md, truncate_utf8


def ctx(summary="客户很生气", matched=((0.0, 3.0), (63.0, 66.0))):
    return {"call": {"customer_id": "c-1", "customer_phone": "+86 138", "agent_id": "a-1", "ticket_id": "T-9",
                     "external_id": "call-77"},
            "alert": {"rule": "angry_customer", "scenario": "general", "severity": "critical", "role": "customer",
                      "emotions": ["angry"], "share": 0.5, "confidence": 0.91, "matched": [list(m) for m in matched],
                      "summary": summary},
            "action": {}, "link": "http://callmood.local/calls/7"}


def test_markdown_body():
    cfg = WeComRobotConfig(type="wecom_robot", url="http://w/send?key=k", mentioned_list=["boss"])
    sink = WeComRobotSink("wecom", cfg)
    payload = sink.render(ctx())
    assert "url" not in payload  # the robot key stays in the config
    body = payload["body"]
    assert body["msgtype"] == "markdown" and list(body["markdown"]) == ["content"]
    content = body["markdown"]["content"]
    for needle in ("c-1", "+86 138", "a-1", "T-9", "**angry**", "0.91", "50%", "00:00–00:03", "01:03–01:06",
                   "[查看通话 / Open the call](http://callmood.local/calls/7)", "<@boss>", "客户很生气"):
        assert needle in content, needle


def test_long_content_is_cut_at_4096_bytes_without_breaking_characters():
    sink = WeComRobotSink("wecom", WeComRobotConfig(type="wecom_robot", url="http://w"))
    content = sink.render(ctx(summary="生气" * 3000, matched=[(i * 3.0, i * 3.0 + 3) for i in range(500)]))[
        "body"]["markdown"]["content"]
    data = content.encode("utf-8")
    assert len(data) <= MAX_BYTES and content.endswith("…")
    assert "(+488)" in content  # times beyond the first 12 are counted, not listed
    assert truncate_utf8("短" * 10, 12) == "短" * 2 + "\n…"


def test_rest_default_body_without_a_tag():
    sink = RestSink("crm", RestConfig(type="rest", url="http://crm/{{ call.customer_id }}/tags"))
    payload = sink.render(ctx())
    assert payload["url"] == "http://crm/c-1/tags" and payload["method"] == "POST"
    assert payload["body"]["tags"] == ["callmood-angry_customer"]
    assert sink.render({**ctx(), "action": {"tag": "vip-angry"}})["body"]["tags"] == ["vip-angry"]


def test_rest_body_template_from_config():
    sink = RestSink("crm", RestConfig(type="rest", url="http://crm/notes", method="put",
                                      headers={"X-Ticket": "{{ call.ticket_id }}"}, auth_header="Bearer s3cret",
                                      body={"ref": "{{ call.ticket_id }}", "items": ["{{ alert.severity }}", 3]}))
    payload = sink.render(ctx())
    assert payload == {"method": "PUT", "url": "http://crm/notes", "headers": {"X-Ticket": "T-9"},
                       "body": {"ref": "T-9", "items": ["critical", 3]}}
    assert "s3cret" not in str(payload)


# --- hostile values in URLs, headers and markdown ----------------------------------------

ATTACK = "../../../admin/users/1/delete?confirm=yes#"


def hostile(**call):
    c = ctx()
    c["call"].update(call)
    return c


@pytest.mark.parametrize("template,value,expected", [
    ("http://crm/api/customers/{{ call.customer_id }}/tags", ATTACK,
     "http://crm/api/customers/..%2F..%2F..%2Fadmin%2Fusers%2F1%2Fdelete%3Fconfirm%3Dyes%23/tags"),
    ("http://crm/api/tags?customer={{ call.customer_id }}&src=callmood", "a&src=evil#x",
     "http://crm/api/tags?customer=a%26src%3Devil%23x&src=callmood"),
    ("http://crm/c/{{ call.customer_id }}", "客户 42", "http://crm/c/%E5%AE%A2%E6%88%B7%2042"),
    ("http://crm/c/{{ call.customer_id }}", "%2e%2e", "http://crm/c/%252e%252e"),
    ("http://crm/c/{{ call.customer_id }}", "a\r\nHost: evil", "http://crm/c/a%0D%0AHost%3A%20evil"),
    ("https://crm:8443/c/{{ call.customer_id }}", "@evil.example", "https://crm:8443/c/%40evil.example"),
])
def test_values_in_a_url_template_stay_inside_their_segment(template, value, expected):
    sink = RestSink("crm", RestConfig(type="rest", url=template))
    assert sink.render(hostile(customer_id=value))["url"] == expected


@pytest.mark.parametrize("value", ["..", "."])
def test_a_value_that_is_a_dot_segment_kills_the_delivery(value):
    sink = RestSink("crm", RestConfig(type="rest", url="http://crm/api/customers/{{ call.customer_id }}/tags"))
    with pytest.raises(ValueError, match="cannot be a URL path segment"):
        sink.render(hostile(customer_id=value))


@pytest.mark.parametrize("url,match", [
    ("{{ call.metadata.callback }}", "must start with http:// or https:// and a host"),
    ("http://{{ call.customer_id }}.crm.example/x", "and a host written out"),
    ("http://crm.example{{ call.customer_id }}/x", "host must be written out"),
    ("http://crm.example:{{ action.port }}/x", "host must be written out"),
    ("ftp://crm.example/{{ call.customer_id }}", "must start with http"),
    ("http://user:pw@crm.example/x", "credentials in the URL"),
])
def test_the_url_template_must_write_out_where_it_goes(url, match):
    with pytest.raises(ValidationError, match=match):
        RestConfig(type="rest", url=url)


@pytest.mark.parametrize("value,match", [
    ("T-9\r\nX-Injected: 1", "carriage return"),
    ("T-9\nX-Injected: 1", "line feed"),
    ("T-9\x00", "NUL"),
    ("T-9\x1b[31m", "U+001B"),
    ("T-9\x7f", "U+007F"),
    ("T-9\x85", "U+0085"),
    ("客户", "U+5BA2"),
])
def test_a_header_http_cannot_carry_kills_the_delivery_at_planning(value, match):
    sink = RestSink("crm", RestConfig(type="rest", url="http://crm/notes", headers={"X-Ticket": "{{ call.ticket_id }}"}))
    with pytest.raises(ValueError, match=f"header X-Ticket: value contains .*{re.escape(match)}"):
        sink.render(hostile(ticket_id=value))


def test_header_values_http_can_carry():
    assert header_problem("X-Ticket", "T-9 \tcafé ok") is None
    assert "not a valid HTTP header name" in header_problem("X Bad", "v")
    assert "not a valid HTTP header name" in header_problem("X-Bad\r\n", "v")


@pytest.mark.parametrize("cfg,match", [
    ({"headers": {"Bad Name": "x"}}, "not a valid HTTP header name"),
    ({"headers": {"X-A:": "x"}}, "not a valid HTTP header name"),
    ({"auth_header": "Bearer abc\r\nX-Admin: 1"}, "auth_header\n.*the value contains a carriage return"),
])
def test_header_config_is_checked_when_loaded(cfg, match):
    with pytest.raises(ValidationError, match=match):
        RestConfig(type="rest", url="http://crm/x", **cfg)


INJECTIONS = {
    "customer_id": "c-1\n### 假标题 Fake heading\n> 级别 Severity: critical",
    "agent_id": "[点击处理 / click](http://phish.example)",
    "ticket_id": "<@all> <font color=\"warning\">urgent</font>",
    "customer_phone": "**138** `code` # x\r\n<@boss>",
}


def wecom_content(c, **cfg):
    sink = WeComRobotSink("wecom", WeComRobotConfig(type="wecom_robot", url="http://w/send?key=k", **cfg))
    return sink.render(c)["body"]["markdown"]["content"]


def assert_no_markup_from_data(content: str, template_lines: int):
    lines = content.split("\n")
    assert len(lines) == template_lines, content  # no value added a line
    assert not any(ln.lstrip().startswith("#") for ln in lines[1:])  # one heading: the template's
    assert "<@all>" not in content and "<font color=\"warning\">urgent" not in content
    assert "](http://phish.example)" not in content and "[点击处理" not in content
    assert "**138**" not in content and "`code`" not in content


def test_wecom_fields_cannot_add_lines_headings_links_fonts_mentions_or_bold():
    plain = wecom_content(ctx(), mentioned_list=["boss"])
    content = wecom_content(hostile(**INJECTIONS), mentioned_list=["boss"])
    assert_no_markup_from_data(content, plain.count("\n") + 1)
    assert "＃＃＃ 假标题 Fake heading ＞ 级别 Severity: critical" in content  # still readable
    assert "＜@all＞" in content and "［点击处理 / click］(http://phish.example)" in content
    assert content.count("<@boss>") == 1 and content.endswith("<@boss>")  # only the configured mention
    assert "### 客户情绪预警" in content and "**angry**" in content  # the template's own markdown


def test_wecom_summary_and_labels_are_data_too():
    # The shipped summaries carry customer_id, rendered by the rules engine before the sink sees them.
    c = hostile(**INJECTIONS)
    c["alert"]["summary"] = f"金融投诉客户 {INJECTIONS['customer_id']} 情绪负面 {INJECTIONS['ticket_id']}"
    c["alert"]["rule"] = "r\n# x"
    plain = wecom_content(ctx())
    assert_no_markup_from_data(wecom_content(c), plain.count("\n") + 1)


def test_a_rule_or_receiver_template_keeps_its_markdown_and_escapes_values():
    c = hostile(**INJECTIONS)
    c["action"] = {"template": "## {{ alert.rule }} for {{ call.customer_id }}\n**{{ call.agent_id }}**\n"
                               "[open]({{ link }}){{ mentions }}", "mentions": ["lead01"]}
    content = wecom_content(c)
    assert content.split("\n")[0].startswith("## angry_customer for c-1 ＃＃＃ 假标题")
    assert content.split("\n")[1] == "**［点击处理 / click］(http://phish.example)**"
    assert content.split("\n")[2:] == ["[open](http://callmood.local/calls/7)", "<@lead01>"]


def test_grouped_and_digest_messages_escape_every_listed_field():
    c = hostile(**INJECTIONS)
    other = {"alert": {**c["alert"], "summary": "s\n### x <@all>", "rule": "r[1]"},
             "call": dict(c["call"]), "link": "http://callmood.local/calls/8", "time": "10:02"}
    c["alerts"] = [{"alert": c["alert"], "call": c["call"], "link": c["link"], "primary": True}, other]
    grouped = wecom_content(c)
    assert "<@all>" not in grouped and "\n###" not in grouped.split("\n", 1)[1]
    assert "r［1］" in grouped and "[查看 / Open](http://callmood.local/calls/8)" in grouped
    c["digest"] = True
    digest = wecom_content(c)
    assert "<@all>" not in digest and digest.count("\n- ") == 2 and "\n### " not in digest.split("\n", 1)[1]


@pytest.mark.parametrize("mentions", [["ok", "x> <@all"], ["a b"], ["evil\n### h"], "ok,<@all>"])
def test_mentions_must_be_user_ids(mentions):
    with pytest.raises(ValueError, match="is not a user id"):
        WeComRobotSink("wecom", WeComRobotConfig(type="wecom_robot", url="http://w")).render(
            {**ctx(), "action": {"mentions": mentions}})
    if isinstance(mentions, list):
        with pytest.raises(ValidationError, match="is not a user id"):
            WeComRobotConfig(type="wecom_robot", url="http://w", mentioned_list=mentions)


def test_md_makes_any_line_break_a_space():
    assert md("a\rb\nc\vd\fe\x85f\u2028g\u2029h\x00i\tj") == "a b c d e f g h i j"
    assert md("<>[]#*`&") == "＜＞［］＃＊｀＆"


@pytest.mark.parametrize("limit", range(4, 40))
def test_cutting_by_bytes_never_breaks_a_character(limit):
    text = "客户很生气😡 angry 坐席" * 3
    cut = truncate_utf8(text, limit)
    data = cut.encode("utf-8")
    assert len(data) <= limit and cut.endswith("\n…")
    assert text.startswith(cut[:-2])


def test_a_long_chinese_message_is_cut_at_the_byte_cap_on_a_character_boundary():
    c = ctx(summary="客" * 1400 + "<" * 10)  # full-width escapes are 3 bytes each too
    content = wecom_content(c)
    assert len(content.encode("utf-8")) <= MAX_BYTES and content.endswith("…")
    content.encode("utf-8").decode("utf-8")  # valid UTF-8


def test_the_shipped_rule_summaries_carry_call_fields_as_data():
    from pathlib import Path

    from rules.engine import load_rules, render
    from rules.templates import SAMPLE_ALERT, SAMPLE_CALL

    shipped = load_rules(Path(__file__).resolve().parents[2] / "rules" / "scenarios")
    call = {**SAMPLE_CALL, **INJECTIONS}
    plain = wecom_content(ctx())
    rules = [r for sc in shipped.scenarios for r in sc.rules]
    assert any("customer_id" in r.summary for r in rules)
    for rule in rules:
        summary = render(rule.summary, call=call, alert=SAMPLE_ALERT)
        c = hostile(**INJECTIONS)
        c["alert"]["summary"] = summary
        assert_no_markup_from_data(wecom_content(c), plain.count("\n") + 1)
