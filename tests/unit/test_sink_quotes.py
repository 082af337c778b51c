"""What was said when an alert fired (``alert["quotes"]``), in every sink: the WeCom robot's
and app's markdown (escaped like any call text, within the byte caps), the app's card
(``quote_area``, plain text), Zendesk's and HubSpot's notes (plain lines; HTML-escaped for
HubSpot) and the REST sink's default body. Quotes are built by hand: hostile words
(markdown, HTML, mentions, control characters, formula starts) and very long ones."""

import pytest

from connectors.sinks.hubspot import note_html
from connectors.sinks.quotes import QUOTE_CHARS, quote_line, quote_lines, quotes_json, quotes_of
from connectors.sinks.rest import RestConfig, RestSink
from connectors.sinks.wecom_app import CARD_QUOTE_CHARS, CARD_QUOTES, MARKDOWN_BYTES, QUOTE_TITLE
from connectors.sinks.wecom_robot import MAX_BYTES, WeComRobotConfig, WeComRobotSink, quotes_block
from connectors.sinks.zendesk import ZendeskSink, ZendeskSinkConfig
from plugin.core.data import MAX_QUOTES
from tests.unit.test_sink_wecom_app import ctx as app_ctx
from tests.unit.test_sink_wecom_app import make_sink as make_app
from tests.unit.test_sinks import ctx as robot_ctx

REFUND = {"start": 133.2, "end": 136.2, "role": "customer", "text": "我要退款，不然我打12315"}
HOSTILE = [
    REFUND,
    {"start": 140.0, "end": 143.0, "role": "agent",
     "text": "好的\n### 假标题 Fake heading\n> 级别 Severity: critical <@all> [点击](http://phish.example)"},
    {"start": 150.0, "end": 153.0, "role": "customer",
     "text": "<font color=\"warning\">urgent</font> **粗** `code` &amp; <script>alert(1)</script>\r\x00\u2028\u202e"},
    {"start": 3725.0, "end": 3728.0, "role": "mixed", "text": "=HYPERLINK(\"http://x\")" + "长" * 300},
]


def with_quotes(c: dict, quotes) -> dict:
    c["alert"]["quotes"] = quotes
    for item in c.get("alerts") or []:
        if item.get("primary"):
            item["alert"] = c["alert"]
    return c


def robot(c: dict, **cfg) -> str:
    sink = WeComRobotSink("wecom", WeComRobotConfig(type="wecom_robot", url="http://w/send?key=k", **cfg))
    return sink.render(c)["body"]["markdown"]["content"]


# --- the lines ----------------------------------------------------------------------------

def test_a_quote_is_its_time_its_speaker_in_chinese_and_its_words():
    assert quote_line(REFUND) == "02:13 客户: 我要退款，不然我打12315"
    assert quote_line({**REFUND, "role": "agent", "start": 3725}) == "1:02:05 坐席: 我要退款，不然我打12315"
    assert quote_line({**REFUND, "role": "mixed"}).startswith("02:13 通话: ")
    assert quote_line({**REFUND, "role": "other\nrole"}).startswith("02:13 other role: ")


def test_quote_lines_are_one_line_each_and_cut():
    lines = quote_lines({"quotes": HOSTILE})
    assert len(lines) == len(HOSTILE) and not any("\n" in ln or "\r" in ln or "\x00" in ln for ln in lines)
    assert "\u202e" not in lines[2] and "\u2028" not in lines[2]
    assert lines[3].endswith("…") and len(lines[3].split(": ", 1)[1]) == QUOTE_CHARS


@pytest.mark.parametrize("quotes", [None, "text", [None, 3, {"text": None}, {"text": "  "}], {"text": "x"}])
def test_malformed_or_empty_quotes_are_none(quotes):
    assert quotes_of({"quotes": quotes}) == [] and quote_lines({"quotes": quotes}) == []
    assert quotes_of({}) == []


def test_at_most_max_quotes():
    assert len(quotes_of({"quotes": [REFUND] * (MAX_QUOTES + 3)})) == MAX_QUOTES


def test_quotes_as_json_data_have_no_nan():
    [q] = quotes_json({"quotes": [{**REFUND, "start": float("nan"), "end": float("inf")}]})
    assert q == {"start": None, "end": None, "time": "00:00", "role": "customer", "text": REFUND["text"]}


# --- the WeCom robot ----------------------------------------------------------------------

def test_the_robot_quotes_what_was_said_under_the_summary():
    content = robot(with_quotes(robot_ctx(), [REFUND]), mentioned_list=["boss"])
    assert "客户很生气\n\n**原话 / What was said:**\n> 02:13 客户: 我要退款，不然我打12315\n\n[查看通话" in content
    assert robot(robot_ctx()) == robot(with_quotes(robot_ctx(), []))  # none: the message as before


def test_robot_quotes_are_escaped_like_any_call_text():
    plain = robot(with_quotes(robot_ctx(), [REFUND] * 4), mentioned_list=["boss"])
    content = robot(with_quotes(robot_ctx(), HOSTILE), mentioned_list=["boss"])
    assert content.count("\n") == plain.count("\n")  # one line a quote, whatever the words hold
    assert content.count("###") == 1 and "<@all>" not in content and "<font color=\"warning\">urgent" not in content
    assert "](http://phish.example)" not in content and "**粗**" not in content and "`code`" not in content
    assert "<script>" not in content and "\x00" not in content and "\r" not in content
    assert "＃＃＃ 假标题 Fake heading ＞ 级别 Severity: critical ＜@all＞" in content  # shown, not obeyed
    assert content.count("<@boss>") == 1 and content.endswith("<@boss>")


@pytest.mark.parametrize("summary_chars,shown", [(600, MAX_QUOTES), (1000, 2), (1200, 0)])
def test_robot_quotes_take_what_the_summary_leaves_and_never_the_link(summary_chars, shown):
    c = with_quotes(robot_ctx(summary="生" * summary_chars), [{**REFUND, "text": "长" * 500}] * MAX_QUOTES)
    content = robot(c, mentioned_list=["boss"])
    assert len(content.encode("utf-8")) <= MAX_BYTES
    assert content.count("\n> 02:13 客户: ") == shown
    assert content.endswith("[查看通话 / Open the call](http://callmood.local/calls/7)\n<@boss>")


def test_quotes_block_takes_only_what_fits():
    alert = {"quotes": [REFUND] * 3}
    whole = quotes_block(alert, 10_000)
    assert whole.count("\n> ") == 3
    two = quotes_block(alert, len(whole.encode("utf-8")) - 1)
    assert two.count("\n> ") == 2 and whole.startswith(two)
    assert quotes_block(alert, 10) == "" and quotes_block({}, 10_000) == ""


def test_a_group_keeps_its_others_listed_after_the_quotes():
    c = app_ctx(n_alerts=3)
    c = with_quotes(c, [{**REFUND, "text": "长" * 200}] * MAX_QUOTES)
    content = robot(c)
    assert "原话 / What was said" in content and content.index("原话") < content.index("另有 2 条告警")
    assert "[查看 / Open](http://callmood.local/calls/9)" in content


def test_a_receiver_template_gets_the_quotes_block_or_the_quotes_escaped():
    c = with_quotes(robot_ctx(), HOSTILE[:2])
    c["action"] = {"template": "## {{ alert.rule }}{{ quotes }}\n"
                               "{% for q in alert.quotes %}- {{ q.text }}\n{% endfor %}"}
    content = robot(c)
    assert content.startswith("## angry_customer\n\n**原话 / What was said:**\n> 02:13 客户: 我要退款")
    assert "<@all>" not in content and "\n### " not in content and "＜@all＞" in content
    assert "- 好的 ＃＃＃ 假标题 Fake heading ＞ 级别" in content  # a value: its line breaks are spaces


def test_a_digest_lists_alerts_not_quotes():
    c = with_quotes(app_ctx(n_alerts=2, digest=True), HOSTILE)
    content = robot(c)
    assert "原话" not in content and "<@all>" not in content


# --- the WeCom app ------------------------------------------------------------------------

def test_the_card_quotes_what_was_said_in_its_quote_area():
    card = make_app().render(with_quotes(app_ctx(), [REFUND]))["body"]["template_card"]
    assert card["quote_area"] == {"type": 0, "title": QUOTE_TITLE, "quote_text": "02:13 客户: 我要退款，不然我打12315"}
    assert len(card["horizontal_content_list"]) <= 6  # the rows as before
    assert "quote_area" not in make_app().render(app_ctx())["body"]["template_card"]


def test_the_card_quotes_are_plain_short_lines_and_say_how_many_more():
    card = make_app().render(with_quotes(app_ctx(), HOSTILE))["body"]["template_card"]
    lines = card["quote_area"]["quote_text"].split("\n")
    assert len(lines) == CARD_QUOTES + 1 and lines[-1] == "… 另有 1 句 / 1 more"
    assert all(c.isprintable() for ln in lines for c in ln)  # no value adds a line or a control
    assert lines[1].startswith("02:20 坐席: 好的 ### 假标题")  # plain text: nothing to escape but breaks
    assert all(len(ln.split(": ", 1)[1]) <= CARD_QUOTE_CHARS for ln in lines[:-1])


def test_app_markdown_quotes_are_escaped_and_within_2048_bytes():
    sink = make_app(cards=False)
    content = sink.render(with_quotes(app_ctx(), HOSTILE))["body"]["markdown"]["content"]
    assert "**原话 / What was said:**" in content and "<@all>" not in content
    assert "<font color=\"warning\">u" not in content
    assert "](http://phish.example)" not in content and content.count("###") == 1
    long = with_quotes(app_ctx(n_alerts=4), [{**REFUND, "text": "长" * 500}] * MAX_QUOTES)
    long["alert"]["summary"] = "生气" * 900
    content = sink.render(long)["body"]["markdown"]["content"]
    assert len(content.encode("utf-8")) <= MARKDOWN_BYTES
    assert content.endswith("[查看通话 / Open the call](http://callmood.local/calls/7)")
    assert "原话" in content and "生气生气" in content  # both the quotes and some of the summary


# --- CRM notes ----------------------------------------------------------------------------

def zendesk_note(c: dict) -> str:
    sink = ZendeskSink("zd", ZendeskSinkConfig(type="zendesk", subdomain="acme", email="a@b.c", api_token="t"))
    return sink.render({**c, "call": {**c["call"], "ticket_id": "9"}})["note"]


def test_the_zendesk_note_carries_the_quotes_as_plain_lines():
    note = zendesk_note(with_quotes(robot_ctx(), HOSTILE))
    lines = note.split("\n")
    start = lines.index("What was said:")
    assert lines[start + 1] == "- 02:13 customer: 我要退款，不然我打12315"
    assert lines[start + 2].startswith("- 02:20 agent: 好的 ### 假标题 Fake heading > 级别")
    assert len(lines) == len(zendesk_note(robot_ctx()).split("\n")) + 1 + len(HOSTILE)  # one line a quote
    assert not any(c in note for c in "\r\x00\u2028\u202e")
    assert lines[-1] == "Call: http://callmood.local/calls/7"  # a caller's words cannot end the note


def test_the_hubspot_note_escapes_the_quotes_as_html():
    body = note_html(with_quotes(robot_ctx(), HOSTILE))
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<font" not in body and "&lt;@all&gt;" in body and "&amp;amp;" in body
    assert "<br>- 02:13 customer: 我要退款，不然我打12315<br>" in body


def test_the_rest_default_body_carries_the_quotes():
    sink = RestSink("crm", RestConfig(type="rest", url="http://crm/{{ call.customer_id }}/tags"))
    body = sink.render(with_quotes(robot_ctx(), HOSTILE))["body"]
    assert body["note"].split("\n")[:2] == ["客户很生气", "02:13 customer: 我要退款，不然我打12315"]
    assert [q["time"] for q in body["quotes"]] == ["02:13", "02:20", "02:30", "1:02:05"]
    assert body["quotes"][1]["text"].startswith("好的 ### 假标题") and "\n" not in body["quotes"][1]["text"]
    plain = sink.render(robot_ctx())["body"]
    assert plain["note"] == "客户很生气" and plain["quotes"] == []


def test_a_rest_template_reaches_the_quotes():
    said = "{% for q in alert.quotes %}{{ q.role }}: {{ q.text }};{% endfor %}"
    sink = RestSink("crm", RestConfig(type="rest", url="http://crm/notes", body={"said": said}))
    assert sink.render(with_quotes(robot_ctx(), [REFUND]))["body"] == {"said": "customer: 我要退款，不然我打12315;"}
