"""The WeCom robot message: documented shape, within the 4096-byte limit."""

from connectors.sinks.rest import RestConfig, RestSink
from connectors.sinks.wecom_robot import MAX_BYTES, WeComRobotConfig, WeComRobotSink, truncate_utf8


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
