"""Supervisor alerts through a WeCom (企业微信) group robot.

    POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY
    {"msgtype": "markdown", "markdown": {"content": "..."}}

The robot answers HTTP 200 with {"errcode": 0, "errmsg": "ok"} on success and a
non-zero errcode otherwise (45009: rate limited, 40058: content too long...).
Markdown content is capped at 4096 bytes of UTF-8; mentions are "<@userid>".

One alert renders as TEMPLATE. A routed notification (plugin/flow/notify/) may carry several
alerts of one group (``alerts``: the worst one is ``alert``, the others are listed briefly
under it) or be a quiet-hours digest (``digest``: every alert, one line each). Lists stop
before the byte cap, so the link and the mentions always make it. ``action.mentions``
(a routing receiver's list) replaces the sink's ``mentioned_list``.

What was said in the segments that fired (``alert.quotes``, with transcripts on) is quoted
under the summary, one line each: "> 02:13 客户: 我要退款…" (``quotes_block``: each cut to 80
characters, as many as fit before the others' list). An operator's template gets that
block as ``{{ quotes }}``, or ``alert.quotes`` itself, escaped like any value.

Every value put into a message (call fields, the rule's summary, labels, quotes...) is data, never
markdown: WeCom markdown has no escape character, so the characters that start a heading,
a link, a tag or a mention (``# [ ] < > * ` &``) become their full-width look-alikes and
line breaks become spaces (``md``). The operator's own template text keeps its markdown.
Mentions must be user ids (letters, digits, ``_ . - @``).

A message about calls a trial model analysed (``ctx["trial"]``: random weights) starts
with the line "试用模型（随机权重）trial model, random weights", whatever the template.

The daily and weekly review report is two messages (``report_messages``): its markdown,
and its chart as an ``image`` message (the PNG in base64 with its md5, at most 2 MB).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Literal

import requests
from pydantic import Field, field_validator

from connectors.sinks.base import Limit, SendResult, Sink, SinkConfig, post_json, whole_payloads
from connectors.sinks.quotes import quote_lines
from plugin.core import trial
from plugin.core.ids import user_id_problem
from plugin.core.lookalikes import markdown_safe
from plugin.core.sandbox import Raw, render_escaped
from plugin.core.transcript import quote_time  # "1:02:13" past an hour, as the quotes

MAX_BYTES = 4096
MAX_IMAGE_BYTES = 2 * 1024 * 1024  # an image message's PNG or JPG, before base64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Errors the same message can never get past (malformed body, content too long).
FINAL_ERRCODES = {40008, 40058, 44004}
RATE_ERRCODE = 45009  # "api freq out of limit": the robot's 20 a minute, counted by WeCom
# WeCom: "每个机器人发送的消息不能超过20条/分钟". Kept by the outbox across every worker
# (plugin/store/sink_limits.py); what would overflow is merged into one message.
PER_MINUTE = 20

SEVERITY_COLOR = {"critical": "warning", "warning": "warning", "info": "info"}

TEMPLATE = """\
### 客户情绪预警 / Customer emotion alert
> 级别 Severity: <font color="{{ color }}">{{ alert.severity }}</font>
> 场景 Scenario: {{ alert.scenario }} · 规则 Rule: {{ alert.rule }}
> 客户 Customer: {{ call.customer_id or '-' }}{% if call.customer_phone %} ({{ call.customer_phone }}){% endif %}
> 坐席 Agent: {{ call.agent_id or '-' }}{% if call.ticket_id %} · 工单 Ticket: {{ call.ticket_id }}{% endif %}
> 情绪 Emotion: **{{ alert.emotions | join('/') }}** · 置信度 Confidence: {{ '%.2f' | format(alert.confidence) }} · 占比 Share: {{ (alert.share * 100) | round | int }}% ({{ alert.role }})
> 时间点 In call: {{ times }}

{{ alert.summary }}{{ quotes }}{{ more }}

[查看通话 / Open the call]({{ link }}){{ mentions }}"""

DIGEST_HEADER = """\
### 夜间汇总 / Quiet-hours digest
> 免打扰时段内的 {n} 条告警 / {n} alert(s) held during quiet hours
"""

SUMMARY_CHARS = 100  # of each alert's summary in a list

QUOTES_HEADER = "\n\n**原话 / What was said:**"
# What the group's other alerts may need of a message when quotes come first.
OTHERS_RESERVE = 800

MERGED_HEADER = ("### 告警合并 / Alerts merged\n> 机器人每分钟最多 {per} 条，以下 {n} 条告警合并发送 / "
                 "the robot takes {per} messages a minute: {n} alert(s) in one message\n")




def md(value: object) -> str:
    """``value`` as text that WeCom markdown shows as it is, on the line it was put on."""
    text = markdown_safe(str(value))  # full-width look-alikes: reads the same, parses as nothing
    # Any line break or control character (\r, \n, \v, \f, U+0085, U+2028...) is a space.
    return "".join(c if c.isprintable() else " " for c in text)


def _render(template: str, **ctx: Any) -> str:
    return render_escaped(md, template, **ctx)


def mention_line(users: list[str]) -> str:
    for u in users:
        problem = user_id_problem(u)
        if problem:
            raise ValueError(f"cannot mention {problem}")
    return ("\n" + " ".join(f"<@{u}>" for u in users)) if users else ""


def truncate_utf8(text: str, limit: int = MAX_BYTES) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = "\n…"
    cut = data[: limit - len(marker.encode("utf-8"))].decode("utf-8", errors="ignore")
    return cut + marker


def _clip(text: str, chars: int = SUMMARY_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _fit(lines: list[str], budget: int) -> list[str]:
    """As many of ``lines`` as fit in ``budget`` bytes (newlines included), then a count."""
    out, used = [], 0
    for i, line in enumerate(lines):
        rest = len(lines) - i - 1
        size = len(line.encode("utf-8")) + 1
        reserve = 48 if rest else 0  # room for the "… and N more" line
        if used + size + reserve > budget:
            out.append(f"- … 另有 {len(lines) - i} 条 / and {len(lines) - i} more")
            return out
        out.append(line)
        used += size
    return out


def _more(ctx: dict[str, Any], others: list[dict[str, Any]], budget: int) -> str:
    """The group's other alerts, one line each, under the main one."""
    customers = {(i["call"] or {}).get("customer_id") for i in others} | {(ctx.get("call") or {}).get("customer_id")}
    n = len(others)
    if len(customers) == 1 and None not in customers:
        head = f"\n\n**该客户另有 {n} 条告警 / {n} more alert(s) for this customer:**"
    else:
        head = f"\n\n**另有 {n} 条告警 / {n} more alert(s):**"
    lines = []
    for item in others:
        a, c = item["alert"], item["call"]
        agent = f" · 坐席 Agent {md(c['agent_id'])}" if c.get("agent_id") else ""
        lines.append(f"- {md(item.get('time') or '-')} · {md(a['severity'])} · {md(a['rule'])}{agent} · "
                     f"{md(_clip(a['summary']))} [查看 / Open]({item['link']})")
    room = budget - len(head.encode("utf-8")) - 1
    if room < 48:  # the main alert alone fills the message
        return ""
    return head + "\n" + "\n".join(_fit(lines, room))


def quotes_block(alert: dict[str, Any], budget: int) -> str:
    """The alert's quotes as markdown to put under its summary: a heading, then one quoted
    line each ("> 02:13 客户: 我要退款…"), every quote escaped by ``md``; as many as fit in
    ``budget`` bytes of UTF-8, "" when none does (or the alert has none)."""
    out = QUOTES_HEADER
    for line in quote_lines(alert):
        candidate = f"{out}\n> {md(line)}"
        if len(candidate.encode("utf-8")) > budget:
            break
        out = candidate
    return "" if out == QUOTES_HEADER else out


def report_messages(content: str, png: bytes | None) -> list[dict[str, Any]]:
    """The review report (plugin/flow/report/) as the robot's messages, each a payload for
    ``send``: the markdown (cut to MAX_BYTES; its maker escaped the data in it with ``md``),
    then the chart as an ``image`` message: the PNG's base64 and the md5 of its raw bytes
    (hex), as the robot checks them; at most 2 MB before encoding."""
    out: list[dict[str, Any]] = [{"body": {"msgtype": "markdown", "markdown": {"content": truncate_utf8(content)}}}]
    if png is not None:
        if not png.startswith(PNG_SIGNATURE):
            raise ValueError("the chart is not a PNG")
        if len(png) > MAX_IMAGE_BYTES:
            raise ValueError(f"the chart is {len(png)} bytes; the robot takes at most {MAX_IMAGE_BYTES}")
        out.append({"body": {"msgtype": "image", "image": {"base64": base64.b64encode(png).decode("ascii"),
                                                           "md5": hashlib.md5(png).hexdigest()}}})
    return out


class WeComRobotConfig(SinkConfig):
    type: Literal["wecom_robot"]
    url: str  # https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=... (the key is a secret)
    # WeCom user ids to @-mention in the alert ("<@userid>" in the markdown).
    mentioned_list: list[str] = Field(default_factory=list)

    @field_validator("mentioned_list")
    @classmethod
    def _user_ids(cls, v: list[str]) -> list[str]:
        for u in v:
            problem = user_id_problem(u)
            if problem:
                raise ValueError(problem)
        return v


class WeComRobotSink(Sink):
    kind = "wecom_robot"
    Config = WeComRobotConfig
    cfg: WeComRobotConfig
    messaging = True

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        alert = ctx["alert"]
        action = ctx.get("action") or {}
        spans = [f"{quote_time(a)}–{quote_time(b)}" for a, b in alert["matched"]]
        times = ", ".join(spans[:12]) + (f" (+{len(spans) - 12})" if len(spans) > 12 else "")
        users = action.get("mentions")
        if users is None:
            users = self.cfg.mentioned_list
        elif isinstance(users, str):
            users = [u.strip() for u in users.split(",") if u.strip()]
        mentions = Raw(mention_line(list(users)))
        # What the code built (and escaped where it holds data) goes in as it is.
        extras = {"color": Raw(SEVERITY_COLOR.get(alert["severity"], "comment")), "times": Raw(times or "-"),
                  "mentions": mentions, "quotes": Raw("")}
        ctx = {**ctx, "link": Raw(ctx.get("link") or "")}
        others = [i for i in ctx.get("alerts") or [] if not i.get("primary")]
        # Random weights: said first, and the rest fits in what the line leaves.
        head = f"{trial.LABEL}\n" if ctx.get("trial") else ""
        limit = MAX_BYTES - len(head.encode("utf-8"))
        if action.get("template"):
            extras["quotes"] = Raw(quotes_block(alert, limit // 2))
            content = _render(action["template"], more="", **extras, **ctx)
        elif ctx.get("digest"):
            content = self._digest(ctx, mentions, limit)
        else:
            content = _render(TEMPLATE, more="", **extras, **ctx)
            room = limit - len(content.encode("utf-8")) - (OTHERS_RESERVE if others else 0)
            extras["quotes"] = Raw(quotes_block(alert, room))
            content = _render(TEMPLATE, more="", **extras, **ctx)
            if others:
                more = _more(ctx, others, limit - len(content.encode("utf-8")))
                content = _render(TEMPLATE, more=Raw(more), **extras, **ctx)
        # The robot URL carries its key: it is read from config at send time, never stored.
        return {"body": {"msgtype": "markdown", "markdown": {"content": head + truncate_utf8(content, limit)}},
                "lines": self._lines(ctx), "trial": bool(ctx.get("trial")), "mentions": list(users)}

    @staticmethod
    def _lines(ctx: dict[str, Any]) -> list[str]:
        """This message's alerts one line each: a digest's body, and what a message merging
        several (``merge``) carries."""
        items = ctx.get("alerts") or [{"alert": ctx["alert"], "call": ctx["call"], "link": ctx.get("link") or "",
                                       "time": None}]
        out = []
        for item in items:
            a, c = item["alert"], item["call"] or {}
            out.append(f"- {md(item.get('time') or '-')} · {md(c.get('customer_id') or '-')} · {md(a['scenario'])} · "
                       f"<font color=\"{SEVERITY_COLOR.get(a['severity'], 'comment')}\">{md(a['severity'])}</font>"
                       f" · {md(_clip(a['summary']))} [查看 / Open]({item['link']})")
        return out

    def limits(self, payload: dict[str, Any]) -> list[Limit]:
        return [Limit("robot", 60.0, PER_MINUTE)]

    def merge(self, payloads: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Alert messages held back by the robot's limit, as one message: every alert one
        line, oldest first, as many messages' alerts as fit whole in 4096 bytes (``merged``:
        how many; the rest wait for the next window), mentioning everyone they would have.
        Not the review report's messages (an image cannot be merged): None."""
        if any(not isinstance(p.get("lines"), list) for p in payloads):
            return None
        mentioned = list(dict.fromkeys(u for p in payloads for u in p.get("mentions", self.cfg.mentioned_list)))
        mentions = mention_line(mentioned)
        room = MAX_BYTES - len((f"{trial.LABEL}\n" + MERGED_HEADER.format(per=PER_MINUTE, n=99999) + "\n"
                                + mentions).encode("utf-8"))
        n = whole_payloads(payloads, room)
        carried = payloads[:n]
        trial_head = f"{trial.LABEL}\n" if any(p.get("trial") for p in carried) else ""
        lines = [line for p in carried for line in p["lines"]]
        head = trial_head + MERGED_HEADER.format(per=PER_MINUTE, n=len(lines))
        body = _fit(lines, MAX_BYTES - len((head + "\n" + mentions).encode("utf-8")))
        return {"body": {"msgtype": "markdown", "markdown": {"content": head + "\n" + "\n".join(body) + mentions}},
                "merged": n}

    def _digest(self, ctx: dict[str, Any], mentions: str, limit: int = MAX_BYTES) -> str:
        lines = self._lines(ctx)  # one per alert, as a merged message has them
        head = DIGEST_HEADER.format(n=len(lines))
        tail = mentions
        if ctx.get("dashboard"):
            tail = f"\n\n[红色预警客户 / Flagged customers]({ctx['dashboard']})" + tail
        body = _fit(lines, limit - len((head + "\n" + tail).encode("utf-8")))
        return head + "\n" + "\n".join(body) + tail

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        resp = post_json(http, "POST", self.cfg.url, payload["body"],
                         self.headers(idempotency_key), timeout)
        if isinstance(resp, SendResult):
            return resp
        if resp.status_code != 200:
            return SendResult(False, resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            answer = resp.json()
        except ValueError:
            return SendResult(False, resp.status_code, f"not JSON: {resp.text[:200]}")
        code = answer.get("errcode")
        if code == 0:
            return SendResult(True, resp.status_code)
        error = f"errcode {code}: {answer.get('errmsg', '')}"[:300]
        if code == RATE_ERRCODE:  # over the robot's limit (another sender on the same robot?): after a minute
            return SendResult(False, resp.status_code, error, throttled=True, retry_after=60.0)
        return SendResult(False, resp.status_code, error, retryable=code not in FINAL_ERRCODES)
