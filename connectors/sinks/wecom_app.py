"""Supervisor alerts as WeCom (企业微信) application messages, with 确认 / 误报 buttons.

    POST {api_base}/cgi-bin/message/send?access_token=TOKEN
    {"touser": "a|b", "toparty": "2|3", "totag": "7", "msgtype": "template_card", "agentid": 1000002,
     "template_card": {...}, "enable_duplicate_check": 1, "duplicate_check_interval": 1800}
    -> {"errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "", "invalidtag": "",
        "unlicenseduser": "", "msgid": "...", "response_code": "..."}

    POST {api_base}/cgi-bin/message/update_template_card?access_token=TOKEN
    {"userids": ["zhangsan"], "agentid": 1000002, "response_code": "...", "button": {"replace_name": "..."}}

Documented at https://developer.work.weixin.qq.com/document/path/90372 (发送应用消息, its
模板卡片消息 fields and limits; the internal-app copy is .../path/90236),
https://developer.work.weixin.qq.com/document/path/94945 (更新模版卡片消息, "更新按钮为不可点击状态";
internal copy .../path/94888: a response_code updates a card once, within 72 hours) and
https://developer.work.weixin.qq.com/document/path/90376 (事件格式: 模板卡片事件推送).

One alert, ``cards: true``: a ``button_interaction`` template card: source "CallMood",
main title (severity and customer), sub title (the rule's summary), up to six key/value
rows (scenario, rule, agent, emotion and confidence, times in the call, ticket), a tap on
the card opens the call, what was said in the segments that fired (``quote_area``: "原话
What was said", up to CARD_QUOTES lines "02:13 客户: 我要退款…"), and two buttons whose keys
say the verdict and the notification ("cm:correct:42", "cm:false_alarm:42";
``parse_button_key``). WeCom calls the app's callback URL with the key and a response_code
(connectors/wecom_crypto.py decrypts it); the handler then greys the button out with
``update_card_payload`` sent through this sink.

Several alerts of one group, a quiet-hours digest, a receiver's ``template`` or ``cards:
false``: a markdown message, rendered with the group robot's template and helpers
(connectors/sinks/wecom_robot.py: every value from a call is data, escaped by ``md``) and
cut to 2,048 bytes (the app markdown limit) with the link kept. Card fields are plain text
(no id translation is asked for): line breaks and control characters become spaces and
free text is cut to the lengths WeCom suggests; ids are never cut (a cut id would survive
``callmood forget``).

Recipients: the sink's ``touser`` / ``toparty`` / ``totag``, or, when a routing receiver
names any of them (``touser: [a, b]`` or ``"a|b"``), the receiver's alone. "@all" is
refused: it messages everyone who can see the app.

Limits (https://developer.work.weixin.qq.com/document/path/90454, 访问频率限制; internal copy
.../path/90312): an app may message one member at most 30 times a minute and
1,000 times an hour, and WeCom silently drops the rest, so ``limits`` counts every user,
department and tag and the outbox merges what would overflow (``merge``: one markdown
list). ``enable_duplicate_check`` makes WeCom drop the same message to the same people
within ``duplicate_check_interval`` seconds (at most 4 hours): a resend after a crash
between WeCom's answer and our record of it does not reach anyone twice.

The app secret stays in the config and is used at send time only (connectors/sinks/
wecom_api.py fetches and caches the access token); no payload holds it.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

import requests
from pydantic import Field, field_validator

from connectors.sinks.base import Limit, SendResult, Sink, SinkConfig, whole_payloads
from connectors.sinks.quotes import quote_lines, quotes_of
from connectors.sinks.wecom_api import CREDENTIAL_ERRCODES, DEFAULT_BASE, TOKEN_ERRCODES, WeComApi, WeComError
from connectors.sinks.wecom_robot import (
    DIGEST_HEADER,
    OTHERS_RESERVE,
    SEVERITY_COLOR,
    TEMPLATE,
    _clip,
    _fit,
    _more,
    _render,
    md,
    quotes_block,
    truncate_utf8,
)
from connectors.wecom_crypto import aes_key_problem
from plugin.core import scrub, trial
from plugin.core.ids import user_id_problem
from plugin.core.quote_text import clip, one_line
from plugin.core.sandbox import Raw
from plugin.core.transcript import quote_time

SEND = "cgi-bin/message/send"
UPDATE_CARD = "cgi-bin/message/update_template_card"
MARKDOWN_BYTES = 2048  # app markdown content: "最长不超过2048个字节"
MAX_USERS, MAX_PARTIES, MAX_TAGS = 1000, 100, 100  # per message, as documented
PER_MINUTE, PER_HOUR = 30, 1000  # messages per member per app; WeCom drops the rest silently
DUPLICATE_CHECK_MAX_S = 4 * 3600
THROTTLE_WAIT_S = 60.0  # WeCom's minute windows: a throttled send comes back after one

# Suggested lengths of the card's fields (characters, "建议不超过"); WeCom cuts what is longer
# on screen. The main title carries the customer id whole (ids are never cut), so it may pass 36.
TITLE_CHARS, SUBTITLE_CHARS, KEYNAME_CHARS, VALUE_CHARS = 36, 160, 5, 30
ID_CHARS = 128  # ids are never cut below this (plugin.core.ids.ID_MAX)
TIMES_SHOWN = 12
TASK_ID = re.compile(r"[A-Za-z0-9_\-@]{1,128}")  # "只能由数字、字母和“_-@”组成，最长128字节"
BUTTON_KEY = re.compile(r"cm:(correct|false_alarm):([0-9]{1,18})")
# verdict: (button text, the button's text once answered, button style 1-4)
VERDICTS = {"correct": ("确认 Correct", "已确认 Correct", 1),
            "false_alarm": ("误报 False alarm", "已标为误报 False alarm", 2)}
REPLACE_NAME_CHARS = 40
# The card's quote_area: its quote_text has no documented length, and a card is read on a
# phone: a few short lines, the call page has the rest.
CARD_QUOTES, CARD_QUOTE_CHARS = 3, 60
QUOTE_TITLE = "原话 What was said"
SUMMARY_RESERVE = 300  # bytes of markdown the summary keeps when quotes are long
RESPONSE_CODE = re.compile(r"[\x21-\x7e]{1,1024}")  # printable ASCII, no spaces

# Errcodes the same request can never get past: a malformed body (40008 bad message type,
# 40058 a parameter out of range or missing, 44004 empty content, 41xxx a missing parameter),
# an unknown app (40056 agentid), every recipient invalid or out of the app's visible range
# (81013), no recipient at all (82001).
FINAL_ERRCODES = {40008, 40058, 44004, 40056, 81013, 82001}
HTTP_THROTTLED = 429

SEVERITY_LABEL = {"critical": "严重 critical", "warning": "警告 warning", "info": "提示 info"}
MERGE_HEADER = "### 告警汇总 / {n} alerts\n> 发送频率受限，合并发送 / merged to stay within WeCom's rate limits\n"

_DIGITS = re.compile(r"[0-9]{1,10}")
_CORPID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9]{1,32}")


# --- values ---------------------------------------------------------------------------

def plain(value: object, limit: int | None = None) -> str:
    """``value`` as one line of plain text for a card field: every line break and control
    character a space, cut to ``limit`` characters ("…" marks a cut)."""
    text = one_line(value)
    return text if limit is None else clip(text, limit)


def _split(value: object) -> list[str]:
    """A list, a single value or an "a|b" string as a list of stripped, non-empty strings."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ValueError(f"recipient {str(item)[:80]!r} must be text or a number")
        out += [p.strip() for p in str(item).split("|") if p.strip()]
    return out


def user_ids(value: object) -> list[str]:
    users = _split(value)
    for u in users:
        if u.lower() == "@all":
            raise ValueError("touser '@all' would message everyone who can see the app; list user ids, "
                             "a department (toparty) or a tag (totag)")
        problem = user_id_problem(u)
        if problem:
            raise ValueError(f"touser: {problem}")
    if len(users) > MAX_USERS:
        raise ValueError(f"touser has {len(users)} user ids; WeCom takes at most {MAX_USERS} per message")
    return list(dict.fromkeys(users))


def numeric_ids(value: object, what: str, most: int) -> list[str]:
    ids = _split(value)
    for i in ids:
        if not _DIGITS.fullmatch(i):
            raise ValueError(f"{what}: {i[:80]!r} is not a WeCom {'department' if what == 'toparty' else 'tag'} "
                             f"id (digits)")
    if len(ids) > most:
        raise ValueError(f"{what} has {len(ids)} ids; WeCom takes at most {most} per message")
    return list(dict.fromkeys(str(int(i)) for i in ids))


def parse_button_key(key: object) -> tuple[str, int] | None:
    """("correct" | "false_alarm", notification id) of a card button's EventKey, or None."""
    m = BUTTON_KEY.fullmatch(key) if isinstance(key, str) else None
    return (m.group(1), int(m.group(2))) if m else None


def update_card_payload(agentid: int, response_code: str, userids: list[str], verdict: str, by: str,
                        *, atall: bool = False) -> dict[str, Any]:
    """The payload that greys out a card's buttons for ``userids`` (or for everyone the card
    went to: ``atall``) with "已确认 Correct · 张三" / "已标为误报 False alarm · 张三".
    ``response_code`` is the callback's (one use, 72 hours); ``by`` who answered (data)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {str(verdict)[:40]!r}")
    if isinstance(agentid, bool) or not isinstance(agentid, int) or agentid <= 0:
        raise ValueError("agentid must be a positive integer")
    if not isinstance(response_code, str) or not RESPONSE_CODE.fullmatch(response_code):
        raise ValueError("response_code must be 1 to 1024 printable characters without spaces")
    users = user_ids(userids)
    if not users and not atall:
        raise ValueError("update_card needs the user ids whose card to update (or atall)")
    who = plain(by or "", 16)
    name = VERDICTS[verdict][1] + (f" · {who}" if who else "")
    body: dict[str, Any] = {"userids": users, "agentid": agentid, "response_code": response_code,
                            "button": {"replace_name": plain(name, REPLACE_NAME_CHARS)}}
    if atall:
        body["atall"] = 1
    return {"op": "update_card", "body": body}


def card_quotes(alert: dict[str, Any]) -> str:
    """The card's quote_text: the first CARD_QUOTES quotes, one plain line each (a card field
    is plain text, nothing to escape but line breaks), and how many more there are."""
    lines = [plain(line) for line in quote_lines(alert, chars=CARD_QUOTE_CHARS)[:CARD_QUOTES]]
    more = len(quotes_of(alert)) - len(lines)
    if lines and more > 0:
        lines.append(f"… 另有 {more} 句 / {more} more")
    return "\n".join(lines)


def _http_url(value: object) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s<>()\[\]\"']+", value) and len(value) <= 2048:
        return value
    return None


def _times(matched: list, chars: int = VALUE_CHARS) -> str:
    spans = [f"{quote_time(a)}–{quote_time(b)}" for a, b in matched]
    out = ""
    for i, span in enumerate(spans):
        more = f" (+{len(spans) - i})"
        candidate = f"{out}, {span}" if out else span
        if len(candidate) + (len(more) if i < len(spans) - 1 else 0) > chars and out:
            return out + more
        out = candidate
    return out or "-"


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` within ``limit`` bytes of UTF-8, "…" marking a cut."""
    if len(text.encode("utf-8")) <= limit:
        return text
    if limit < 3:
        return ""
    return text.encode("utf-8")[: limit - 3].decode("utf-8", errors="ignore") + "…"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


# --- config ---------------------------------------------------------------------------

class WeComAppConfig(SinkConfig):
    type: Literal["wecom_app"]
    corpid: str  # 我的企业 > 企业信息 > 企业ID
    agentid: int  # the self-built app's AgentId (应用管理 > 应用)
    secret: str  # the app's Secret: used at send time only, never stored with a message
    api_base: str = DEFAULT_BASE
    touser: list[str | int] = Field(default_factory=list)  # WeCom user ids (a routing receiver may override)
    toparty: list[str | int] = Field(default_factory=list)  # department ids
    totag: list[str | int] = Field(default_factory=list)  # tag ids
    # The app's callback settings (接收消息: Token, EncodingAESKey), for the button callback URL.
    callback_token: str | None = None
    callback_aes_key: str | None = None
    cards: bool = True  # False: plain markdown messages, no buttons
    enable_duplicate_check: bool = True
    duplicate_check_interval: int = 1800

    @field_validator("corpid")
    @classmethod
    def _corpid(cls, v: str) -> str:
        if not _CORPID.fullmatch(v):
            raise ValueError("corpid must be the corp's id (letters and digits, e.g. ww0123456789abcdef)")
        return v

    @field_validator("agentid")
    @classmethod
    def _agentid(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("agentid must be the app's positive AgentId")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError("secret must be the app's Secret: not empty, no spaces")
        return v

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?/?", v):
            raise ValueError("api_base must be http(s)://host[:port] with nothing after it")
        return v.rstrip("/")

    @field_validator("touser")
    @classmethod
    def _touser(cls, v: list) -> list[str]:
        return user_ids(v)

    @field_validator("toparty")
    @classmethod
    def _toparty(cls, v: list) -> list[str]:
        return numeric_ids(v, "toparty", MAX_PARTIES)

    @field_validator("totag")
    @classmethod
    def _totag(cls, v: list) -> list[str]:
        return numeric_ids(v, "totag", MAX_TAGS)

    @field_validator("callback_token")
    @classmethod
    def _callback_token(cls, v: str | None) -> str | None:
        if v is not None and not _CALLBACK_TOKEN.fullmatch(v):
            raise ValueError("callback_token must be 1 to 32 letters and digits (the callback settings' Token)")
        return v

    @field_validator("callback_aes_key")
    @classmethod
    def _callback_aes_key(cls, v: str | None) -> str | None:
        problem = aes_key_problem(v) if v is not None else None
        if problem:
            raise ValueError(f"callback_aes_key: {problem}")
        return v

    @field_validator("duplicate_check_interval")
    @classmethod
    def _interval(cls, v: int) -> int:
        if not 1 <= v <= DUPLICATE_CHECK_MAX_S:
            raise ValueError(f"duplicate_check_interval must be 1 to {DUPLICATE_CHECK_MAX_S} seconds (4 hours)")
        return v


# --- the sink -------------------------------------------------------------------------

class WeComAppSink(Sink):
    kind = "wecom_app"
    Config = WeComAppConfig
    cfg: WeComAppConfig
    messaging = True

    # --- render ---

    def recipients(self, action: dict[str, Any]) -> dict[str, list[str]]:
        """touser / toparty / totag: the receiver's when it names any, else the sink's."""
        if any(action.get(k) is not None for k in ("touser", "toparty", "totag")):
            to = {"touser": user_ids(action.get("touser")),
                  "toparty": numeric_ids(action.get("toparty"), "toparty", MAX_PARTIES),
                  "totag": numeric_ids(action.get("totag"), "totag", MAX_TAGS)}
        else:
            to = {"touser": [str(u) for u in self.cfg.touser], "toparty": [str(p) for p in self.cfg.toparty],
                  "totag": [str(t) for t in self.cfg.totag]}
        if not any(to.values()):
            raise ValueError(f"sink {self.name!r} has no recipient: set touser, toparty or totag on the sink "
                             "or on the routing receiver")
        return to

    def _envelope(self, to: dict[str, list[str]], message: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {k: "|".join(v) for k, v in to.items() if v}
        body.update(message)
        if self.cfg.enable_duplicate_check:
            body["enable_duplicate_check"] = 1
            body["duplicate_check_interval"] = self.cfg.duplicate_check_interval
        else:
            body["enable_duplicate_check"] = 0
        return body

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        action = ctx.get("action") or {}
        to = self.recipients(action)
        items = ctx.get("alerts") or [{"alert": ctx["alert"], "call": ctx["call"], "link": ctx.get("link") or "",
                                       "primary": True}]
        nid = (ctx.get("notification") or {}).get("id")
        single = len(items) <= 1 and not ctx.get("digest") and not action.get("template")
        if self.cfg.cards and single and isinstance(nid, int) and not isinstance(nid, bool):
            message = {"msgtype": "template_card", "agentid": self.cfg.agentid, "template_card": self.card(ctx, nid)}
        else:
            message = {"msgtype": "markdown", "agentid": self.cfg.agentid,
                       "markdown": {"content": self.markdown(ctx)}}
        # "lines": each alert in one markdown line, for merge(); never sent.
        return {"op": "send", "body": self._envelope(to, message), "lines": [self._line(i) for i in items],
                "trial": bool(ctx.get("trial"))}

    def card(self, ctx: dict[str, Any], nid: int) -> dict[str, Any]:
        """The button_interaction template card for one alert."""
        a, c = ctx["alert"], ctx["call"] or {}
        severity = plain(a.get("severity") or "-", 20)
        label = SEVERITY_LABEL.get(severity, severity)
        source = {"desc": "CallMood", "desc_color": 0}
        if ctx.get("trial"):  # said first, in red: the labels came from random weights
            source = {"desc": f"CallMood · {trial.LABEL}", "desc_color": 2}
        customer = plain(c.get("customer_id") or "-", ID_CHARS)
        emotions = "/".join(plain(e, 20) for e in a.get("emotions") or []) or "-"
        try:
            emotion = f"{emotions} {float(a.get('confidence') or 0):.2f} · {round(float(a.get('share') or 0) * 100)}%"
        except (TypeError, ValueError):
            emotion = emotions
        rows = [("场景", plain(a.get("scenario") or "-", VALUE_CHARS)),
                ("规则", plain(a.get("rule") or "-", VALUE_CHARS)),
                ("坐席", plain(c.get("agent_id") or "-", ID_CHARS)),
                ("情绪", plain(emotion, VALUE_CHARS)),
                ("时间点", _times(a.get("matched") or []))]
        if c.get("ticket_id"):
            rows.append(("工单", plain(c["ticket_id"], ID_CHARS)))
        task_id = f"cm-n{nid}-{secrets.token_hex(4)}"
        if not TASK_ID.fullmatch(task_id):
            raise ValueError(f"notification id {nid} makes no valid task_id")
        card: dict[str, Any] = {
            "card_type": "button_interaction",
            "source": source,
            "main_title": {"title": plain(f"{label} · 客户 {customer}", TITLE_CHARS + ID_CHARS),
                           "desc": "客户情绪预警 Customer emotion alert"},
            "sub_title_text": plain(a.get("summary") or "", SUBTITLE_CHARS),
            "horizontal_content_list": [{"keyname": k[:KEYNAME_CHARS], "value": v or "-"} for k, v in rows[:6]],
            "task_id": task_id,
            "button_list": [{"text": text, "style": style, "key": f"cm:{verdict}:{nid}"}
                            for verdict, (text, _done, style) in VERDICTS.items()],
        }
        link = _http_url(ctx.get("link"))
        if link:
            card["card_action"] = {"type": 1, "url": link}
        said = card_quotes(a)
        if said:
            card["quote_area"] = {"type": 0, "title": QUOTE_TITLE, "quote_text": said}
        if not card["sub_title_text"]:
            del card["sub_title_text"]
        return card

    def markdown(self, ctx: dict[str, Any]) -> str:
        """The markdown message (several alerts, a digest, a receiver's template, cards off)."""
        action = ctx.get("action") or {}
        head = f"{trial.LABEL}\n" if ctx.get("trial") else ""
        limit = MARKDOWN_BYTES - _size(head)
        alert = ctx["alert"]
        spans = [f"{quote_time(a)}–{quote_time(b)}" for a, b in alert.get("matched") or []]
        times = ", ".join(spans[:TIMES_SHOWN]) + (f" (+{len(spans) - TIMES_SHOWN})" if len(spans) > TIMES_SHOWN else "")
        # App markdown has no "<@userid>" mentions: the recipients are the people messaged.
        extras = {"color": Raw(SEVERITY_COLOR.get(alert.get("severity"), "comment")), "times": Raw(times or "-"),
                  "mentions": Raw(""), "quotes": Raw("")}
        link = Raw(_http_url(ctx.get("link")) or "")
        ctx = {**ctx, "link": link}
        if action.get("template"):
            extras["quotes"] = Raw(quotes_block(alert, limit // 2))
            content = _render(action["template"], more="", **extras, **ctx)
        elif ctx.get("digest"):
            content = self._digest(ctx, limit)
        else:
            others = [i for i in ctx.get("alerts") or [] if not i.get("primary")]
            # The quotes, then the summary, get what the template leaves (and room for the
            # others' list), so the link at the end is never cut off.
            bare = _render(TEMPLATE, more="", **extras, **{**ctx, "alert": {**alert, "summary": Raw("")}})
            left = limit - _size(bare) - (min(OTHERS_RESERVE, limit // 3) if others else 0)
            summary_bytes = min(_size(md(alert.get("summary") or "")), SUMMARY_RESERVE)
            extras["quotes"] = Raw(quotes_block(alert, left - summary_bytes))
            room = left - _size(extras["quotes"])
            summary = Raw(_cut_bytes(md(alert.get("summary") or ""), max(room, 0)))
            ctx = {**ctx, "alert": {**alert, "summary": summary}}
            content = _render(TEMPLATE, more="", **extras, **ctx)
            if others:
                more = _more(ctx, others, limit - _size(content))
                content = _render(TEMPLATE, more=Raw(more), **extras, **ctx)
        return head + truncate_utf8(content, limit)

    def _digest(self, ctx: dict[str, Any], limit: int) -> str:
        items = ctx.get("alerts") or [{"alert": ctx["alert"], "call": ctx["call"], "link": ctx["link"]}]
        head = DIGEST_HEADER.format(n=len(items))
        dashboard = _http_url(ctx.get("dashboard"))
        tail = f"\n\n[红色预警客户 / Flagged customers]({dashboard})" if dashboard else ""
        body = _fit([self._line(i) for i in items], limit - _size(head + "\n" + tail))
        return head + "\n" + "\n".join(body) + tail

    @staticmethod
    def _line(item: dict[str, Any]) -> str:
        """One alert as one markdown line (every value escaped), as the robot's digest lists them."""
        a, c = item["alert"], item.get("call") or {}
        link = _http_url(item.get("link"))
        open_link = f" [查看 / Open]({link})" if link else ""
        return (f"- {md(item.get('time') or '-')} · {md(c.get('customer_id') or '-')} · {md(a.get('scenario') or '-')}"
                f" · <font color=\"{SEVERITY_COLOR.get(a.get('severity'), 'comment')}\">{md(a.get('severity') or '-')}"
                f"</font> · {md(_clip(a.get('summary') or ''))}{open_link}")

    # --- the outbox's rate limits and merging ---

    def limits(self, payload: dict[str, Any]) -> list[Limit]:
        if payload.get("op", "send") != "send":
            return []
        body = payload.get("body") or {}
        out: list[Limit] = []
        for kind, field in (("user", "touser"), ("party", "toparty"), ("tag", "totag")):
            for value in _split(body.get(field)):
                # WeCom user ids are case-insensitive: "ZhangSan" and "zhangsan" are one member.
                key = f"{kind}:{value.lower() if kind == 'user' else value}"
                out += [Limit(key, 60, PER_MINUTE), Limit(key, 3600, PER_HOUR)]
        return out

    @staticmethod
    def _to(payload: dict[str, Any]) -> tuple[frozenset[str], ...]:
        body = payload.get("body") or {}
        return (frozenset(u.lower() for u in _split(body.get("touser"))), frozenset(_split(body.get("toparty"))),
                frozenset(_split(body.get("totag"))))

    def merge(self, payloads: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One markdown message listing the alerts of ``payloads`` (oldest first), one line
        each, as many messages' alerts as fit whole in 2,048 bytes (``merged``: how many;
        the outbox keeps the rest for the next window); None unless they are all sends to
        the same recipients."""
        if not payloads or any(p.get("op", "send") != "send" or not isinstance(p.get("lines"), list)
                               for p in payloads):
            return None
        to = self._to(payloads[0])
        if any(self._to(p) != to for p in payloads[1:]):
            return None
        # As many messages' alerts as fit whole; the rest wait for the next window.
        n = whole_payloads(payloads, MARKDOWN_BYTES - _size(f"{trial.LABEL}\n" + MERGE_HEADER.format(n=99999) + "\n"))
        payloads = payloads[:n]
        was_trial = any(p.get("trial") for p in payloads)
        trial_head = f"{trial.LABEL}\n" if was_trial else ""
        lines = [str(line) for p in payloads for line in p["lines"]]
        head = trial_head + MERGE_HEADER.format(n=len(lines))
        content = head + "\n" + "\n".join(_fit(lines, MARKDOWN_BYTES - _size(head + "\n")))
        first = payloads[0]["body"]
        recipients = {k: first[k] for k in ("touser", "toparty", "totag") if first.get(k)}
        body = {**recipients, "msgtype": "markdown", "agentid": first.get("agentid", self.cfg.agentid),
                "markdown": {"content": truncate_utf8(content, MARKDOWN_BYTES)}}
        for k in ("enable_duplicate_check", "duplicate_check_interval"):
            if k in first:
                body[k] = first[k]
        return {"op": "send", "body": body, "lines": lines, "trial": was_trial, "merged": len(payloads)}

    # --- send ---

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        op = payload.get("op", "send")
        path = {"send": SEND, "update_card": UPDATE_CARD}.get(op)
        if path is None:
            return SendResult(False, None, f"unknown WeCom app op {str(op)[:40]!r}", retryable=False)
        api = WeComApi(self.cfg.corpid, self.cfg.secret, self.cfg.api_base)
        try:
            answer = api.call(http, "POST", path, timeout, body=payload.get("body"))
        except WeComError as exc:
            return self._refused(exc)
        except requests.Timeout:
            return SendResult(False, None, f"WeCom: timed out after {timeout:.0f}s")
        except requests.RequestException as exc:
            return SendResult(False, None, self._hide(f"WeCom: {exc.__class__.__name__}: {exc}"))
        if op == "send":
            return self._delivered(payload.get("body") or {}, answer)
        return SendResult(True, 200)

    def _hide(self, text: str) -> str:
        """An error fit to store: no secret, no token (scrub), one line, 300 characters."""
        text = scrub.text(text).replace(self.cfg.secret, scrub.HIDDEN)
        return plain(text, 300)

    def _refused(self, exc: WeComError) -> SendResult:
        code, status = exc.errcode, exc.status_code
        if exc.throttled or status == HTTP_THROTTLED:
            return SendResult(False, status, self._hide(f"WeCom rate limit: {exc}"), retry_after=THROTTLE_WAIT_S,
                              throttled=True)
        if code in CREDENTIAL_ERRCODES or code in TOKEN_ERRCODES:
            hint = ("this server's IP is not among the app's trusted IPs (企业可信IP)" if code == 60020 else
                    f"check sinks.{self.name}.corpid and secret, and that the app may send messages")
            return SendResult(False, status, self._hide(f"WeCom refused the app's credentials ({hint}): {exc}"))
        if code in FINAL_ERRCODES or (isinstance(code, int) and 41000 <= code < 42000):
            listed = "; ".join(f"{k}: {str(exc.answer[k])[:100]}" for k in ("invaliduser", "invalidparty", "invalidtag")
                               if exc.answer.get(k))
            said = f"WeCom refused the message: {exc}" + (f" ({listed})" if listed else "")
            return SendResult(False, status, self._hide(said), retryable=False)
        return SendResult(False, status, self._hide(str(exc)))

    def _delivered(self, body: dict[str, Any], answer: dict[str, Any]) -> SendResult:
        """errcode 0; but recipients WeCom could not message are listed in the answer."""
        asked = {"user": [u.lower() for u in _split(body.get("touser"))], "department": _split(body.get("toparty")),
                 "tag": _split(body.get("totag"))}
        bad = {"user": {u.lower() for u in _split(str(answer.get("invaliduser") or ""))},
               "department": set(_split(str(answer.get("invalidparty") or ""))),
               "tag": set(_split(str(answer.get("invalidtag") or "")))}
        unlicensed = {u.lower() for u in _split(str(answer.get("unlicenseduser") or ""))}
        missed = {k: [v for v in asked[k] if v in bad[k]] for k in asked}
        said = "; ".join(f"invalid {k}(s): {', '.join(v)}" for k, v in missed.items() if v)
        if unlicensed:
            said = "; ".join(filter(None, [said, f"user(s) without an API licence: {', '.join(sorted(unlicensed))}"]))
            missed["user"] += [u for u in asked["user"] if u in unlicensed and u not in bad["user"]]
        if not said:
            return SendResult(True, 200)
        reached = any(len(missed[k]) < len(asked[k]) for k in asked)
        if not reached:
            return SendResult(False, 200, plain(f"WeCom messaged no one: {said} (not in the corp or outside the "
                                                f"app's visible range)", 300), retryable=False)
        return SendResult(True, 200, note=plain(f"not delivered to {said}", 300))
