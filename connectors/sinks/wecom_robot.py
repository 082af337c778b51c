"""Supervisor alerts through a WeCom (企业微信) group robot.

    POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY
    {"msgtype": "markdown", "markdown": {"content": "..."}}

The robot answers HTTP 200 with {"errcode": 0, "errmsg": "ok"} on success and a
non-zero errcode otherwise (45009: rate limited, 40058: content too long...).
Markdown content is capped at 4096 bytes of UTF-8; mentions are "<@userid>".
"""

from __future__ import annotations

from typing import Any

import requests

from connectors.sinks.base import SendResult, Sink, post_json
from rules.engine import render

MAX_BYTES = 4096

# Errors the same message can never get past (malformed body, content too long).
FINAL_ERRCODES = {40008, 40058, 44004}

SEVERITY_COLOR = {"critical": "warning", "warning": "warning", "info": "info"}

TEMPLATE = """\
### 客户情绪预警 / Customer emotion alert
> 级别 Severity: <font color="{{ color }}">{{ alert.severity }}</font>
> 场景 Scenario: {{ alert.scenario }} · 规则 Rule: {{ alert.rule }}
> 客户 Customer: {{ call.customer_id or '-' }}{% if call.customer_phone %} ({{ call.customer_phone }}){% endif %}
> 坐席 Agent: {{ call.agent_id or '-' }}{% if call.ticket_id %} · 工单 Ticket: {{ call.ticket_id }}{% endif %}
> 情绪 Emotion: **{{ alert.emotions | join('/') }}** · 置信度 Confidence: {{ '%.2f' | format(alert.confidence) }} · 占比 Share: {{ (alert.share * 100) | round | int }}% ({{ alert.role }})
> 时间点 In call: {{ times }}

{{ alert.summary }}

[查看通话 / Open the call]({{ link }}){{ mentions }}"""


def fmt_time(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"


def truncate_utf8(text: str, limit: int = MAX_BYTES) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = "\n…"
    cut = data[: limit - len(marker.encode("utf-8"))].decode("utf-8", errors="ignore")
    return cut + marker


class WeComRobotSink(Sink):
    kind = "wecom_robot"

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        alert = ctx["alert"]
        spans = [f"{fmt_time(a)}–{fmt_time(b)}" for a, b in alert["matched"]]
        times = ", ".join(spans[:12]) + (f" (+{len(spans) - 12})" if len(spans) > 12 else "")
        mentions = "".join(f" <@{u}>" for u in self.cfg.mentioned_list)
        mentions = ("\n" + mentions.strip()) if mentions else ""
        template = ctx.get("action", {}).get("template") or TEMPLATE
        content = render(template, color=SEVERITY_COLOR.get(alert["severity"], "comment"),
                         times=times or "-", mentions=mentions, **ctx)
        # The robot URL carries its key: it is read from config at send time, never stored.
        return {"body": {"msgtype": "markdown", "markdown": {"content": truncate_utf8(content)}}}

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
        return SendResult(False, resp.status_code, f"errcode {code}: {answer.get('errmsg', '')}"[:300],
                          retryable=code not in FINAL_ERRCODES)
