"""A WeCom (企业微信) server stand-in for tests: a real local HTTP server (tests.helpers.FakeServer)
answering an application's API calls as WeCom documents them, and making the encrypted,
signed callbacks WeCom sends to the app's callback URL.

    GET  /cgi-bin/gettoken?corpid=&corpsecret=            (corpid and secret checked)
    POST /cgi-bin/message/send?access_token=               (markdown, text, template_card)
    POST /cgi-bin/message/update_template_card?access_token=

Documented shapes checked: https://developer.work.weixin.qq.com/document/path/90372 (发送应用
消息, template cards), .../path/94945 (更新模版卡片消息), .../path/90376 (模板卡片事件推送),
.../path/91144 (加解密方案说明). Errcodes WeCom does not document for a case (a task_id used
twice, a response_code used twice) are the stand-in's guess: 40058. State: ``sent`` (every message body WeCom accepted),
``duplicates`` (bodies its duplicate check dropped), ``cards`` (by task_id), ``updates``,
``token_requests``. ``fail_next`` answers an errcode for the next N calls (45009 rate limit,
42001 expired token...). ``callback`` / ``verify_url`` make what WeCom sends to the app's
callback URL, encrypted and signed with connectors.wecom_crypto.

    wecom = WeComStandIn()
    sink = WeComAppSink("app", WeComAppConfig(type="wecom_app", **wecom.sink_config(), touser=["zhangsan"]))
    ...
    params, body = wecom.callback(task_id, "cm:correct:42", "zhangsan")
    client.post("/wecom/callback?" + urlencode(params), data=body)
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.wecom_crypto import WeComCrypto, parse_xml
from tests.helpers import FakeServer, Recorded, Reply

CORPID = "wwcallmood0000test"
SECRET = "app-secret-Xq9vT2kLp"
AGENTID = 1000002
TOKEN = "CallMoodCbToken01"
AES_KEY = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456"  # 43 characters

TASK_ID = re.compile(r"[A-Za-z0-9_\-@]{1,128}")
MSGTYPES = {"text", "markdown", "template_card"}
CARD_TYPES = {"text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"}
ERRMSG = {0: "ok", 40001: "invalid credential", 40008: "invalid message type", 40013: "invalid corpid",
          40014: "invalid access_token", 40056: "invalid agentid", 40058: "invalid parameter",
          41001: "access_token missing", 42001: "access_token expired", 44004: "empty content",
          45009: "api freq out of limit", 60020: "not allow to access from your ip",
          81013: "user & party & tag all invalid", 82001: "all touser & toparty & totag invalid or empty"}


def cdata(value: object) -> str:
    """``value`` inside CDATA, a "]]>" in it split across two sections."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass
class _Failure:
    errcode: int
    errmsg: str
    remaining: int
    path: str | None  # "gettoken", "send", "update_template_card" or None: any message call


@dataclass
class Card:
    task_id: str
    body: dict[str, Any]
    touser: list[str]
    msgid: str
    response_code: str
    replaced: dict[str, str] = field(default_factory=dict)  # userid (or "@all") -> button's new text


class WeComStandIn:
    """One corp with one self-built app, on a local HTTP server."""

    def __init__(self, corpid: str = CORPID, secret: str = SECRET, agentid: int = AGENTID, token: str = TOKEN,
                 aes_key: str = AES_KEY, server: FakeServer | None = None, all_invalid_errcode: bool = True):
        self.corpid, self.secret, self.agentid = corpid, secret, agentid
        self.callback_token, self.aes_key = token, aes_key
        self.crypto = WeComCrypto(token, aes_key, corpid)
        self._own_server = server is None
        self.server = server or FakeServer()
        self.url = self.server.url
        # True: a message none of whose recipients exists answers 81013 (as WeCom does);
        # False: errcode 0 with every recipient listed as invalid.
        self.all_invalid_errcode = all_invalid_errcode
        self.invalid_users: set[str] = set()  # user ids WeCom does not know (lower case)
        self.invalid_parties: set[str] = set()
        self.invalid_tags: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self._sent_at: list[float] = []  # time.time() of each of ``sent``
        self.duplicates: list[dict[str, Any]] = []
        self.cards: dict[str, Card] = {}
        self.updates: list[dict[str, Any]] = []
        self.token_requests = 0
        self.tokens: dict[str, float] = {}  # access token -> when it expires (time.time())
        self._codes: dict[str, str] = {}  # unused response_code -> task_id
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server.routes["/cgi-bin/gettoken"] = self._gettoken
        self.server.routes["/cgi-bin/message/send"] = self._send
        self.server.routes["/cgi-bin/message/update_template_card"] = self._update

    # --- set-up ---------------------------------------------------------------------

    def sink_config(self) -> dict[str, Any]:
        """The keys of a wecom_app sink's config that point at this stand-in."""
        return {"corpid": self.corpid, "agentid": self.agentid, "secret": self.secret, "api_base": self.url,
                "callback_token": self.callback_token, "callback_aes_key": self.aes_key}

    def fail_next(self, errcode: int, times: int = 1, path: str | None = None, errmsg: str | None = None) -> None:
        """Answer ``errcode`` to the next ``times`` calls of ``path`` ("send",
        "update_template_card", "gettoken"; None: either message call)."""
        with self._lock:
            self._failures.append(_Failure(errcode, errmsg or ERRMSG.get(errcode, "error"), times, path))

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 42001 from now on."""
        with self._lock:
            for t in self.tokens:
                self.tokens[t] = 0.0

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests

    def close(self) -> None:
        if self._own_server:
            self.server.close()

    def __enter__(self) -> "WeComStandIn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what WeCom sends to the app's callback URL ---------------------------------

    def _signed(self, encrypt: str, timestamp: str | None, nonce: str | None) -> dict[str, str]:
        ts = timestamp or str(int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        return {"msg_signature": self.crypto.signature(ts, nonce, encrypt), "timestamp": ts, "nonce": nonce}

    def verify_url(self, echostr: str = "1616140317555161061", timestamp: str | None = None,
                   nonce: str | None = None) -> dict[str, str]:
        """The query of WeCom's URL verification (GET): msg_signature, timestamp, nonce and
        echostr, whose plain text (``echostr`` here) the app must answer as the body."""
        encrypted = self.crypto.encrypt(echostr)
        return {**self._signed(encrypted, timestamp, nonce), "echostr": encrypted}

    def event_xml(self, task_id: str, event_key: str, from_user: str, response_code: str,
                  create_time: int | None = None, card_type: str = "button_interaction") -> str:
        """The plain XML of a template_card_event, as documented (模板卡片事件推送)."""
        created = int(time.time()) if create_time is None else int(create_time)
        return ("<xml>"
                f"<ToUserName>{cdata(self.corpid)}</ToUserName>"
                f"<FromUserName>{cdata(from_user)}</FromUserName>"
                f"<CreateTime>{created}</CreateTime>"
                f"<MsgType>{cdata('event')}</MsgType>"
                f"<Event>{cdata('template_card_event')}</Event>"
                f"<EventKey>{cdata(event_key)}</EventKey>"
                f"<TaskId>{cdata(task_id)}</TaskId>"
                f"<CardType>{cdata(card_type)}</CardType>"
                f"<ResponseCode>{cdata(response_code)}</ResponseCode>"
                f"<AgentID>{self.agentid}</AgentID>"
                "</xml>")

    def callback(self, task_id: str, event_key: str, from_user: str, response_code: str | None = None,
                 create_time: int | None = None, timestamp: str | None = None,
                 nonce: str | None = None) -> tuple[dict[str, str], str]:
        """A button click on card ``task_id``, as WeCom POSTs it to the callback URL: (the
        query: msg_signature, timestamp, nonce; the XML body with Encrypt). The event's
        response_code (a fresh one unless given) may then update the card once."""
        code = response_code or f"rc-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._codes[code] = task_id
        encrypted = self.crypto.encrypt(self.event_xml(task_id, event_key, from_user, code, create_time))
        body = (f"<xml><ToUserName>{cdata(self.corpid)}</ToUserName><AgentID>{cdata(self.agentid)}</AgentID>"
                f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>")
        return self._signed(encrypted, timestamp, nonce), body

    def open_reply(self, xml: str) -> str:
        """The plain XML of the app's encrypted passive reply (its signature checked)."""
        f = parse_xml(xml)
        return self.crypto.decrypt_message(xml, f.get("MsgSignature", ""), f.get("TimeStamp", ""), f.get("Nonce", ""))

    # --- the API ----------------------------------------------------------------------

    @staticmethod
    def _answer(errcode: int, errmsg: str | None = None, **extra: Any) -> Reply:
        return Reply(200, {"errcode": errcode, "errmsg": errmsg or ERRMSG.get(errcode, "error"), **extra},
                     {"Content-Type": "application/json; charset=UTF-8"})

    def _failure(self, path: str) -> Reply | None:
        with self._lock:
            for f in self._failures:
                if f.remaining > 0 and (f.path == path or (f.path is None and path != "gettoken")):
                    f.remaining -= 1
                    return self._answer(f.errcode, f.errmsg)
        return None

    @staticmethod
    def _query(rec: Recorded) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(rec.path).query).items()}

    def _gettoken(self, rec: Recorded) -> Reply:
        with self._lock:
            self.token_requests += 1
        failed = self._failure("gettoken")
        if failed:
            return failed
        q = self._query(rec)
        if rec.method != "GET":
            return Reply(405, b"method not allowed")
        if q.get("corpid") != self.corpid:
            return self._answer(40013)
        if q.get("corpsecret") != self.secret:
            return self._answer(40001)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.time() + 7200
        return self._answer(0, access_token=token, expires_in=7200)

    def _authorised(self, rec: Recorded) -> tuple[dict[str, Any] | None, Reply | None]:
        if rec.method != "POST":
            return None, Reply(405, b"method not allowed")
        token = self._query(rec).get("access_token")
        if not token:
            return None, self._answer(41001)
        with self._lock:
            expires = self.tokens.get(token)
        if expires is None:
            return None, self._answer(40014)
        if expires <= time.time():
            return None, self._answer(42001)
        try:
            body = json.loads(rec.body)
        except ValueError:
            return None, self._answer(40058, "invalid json")
        if not isinstance(body, dict):
            return None, self._answer(40058, "invalid json")
        if body.get("agentid") != self.agentid:
            return None, self._answer(40056)
        return body, None

    def _send(self, rec: Recorded) -> Reply:
        body, refused = self._authorised(rec)
        if refused:
            return refused
        failed = self._failure("send")
        if failed:
            return failed
        assert body is not None
        problem = self._message_problem(body)
        if problem:
            return self._answer(*problem)
        users = [u for u in str(body.get("touser") or "").split("|") if u]
        parties = [p for p in str(body.get("toparty") or "").split("|") if p]
        tags = [t for t in str(body.get("totag") or "").split("|") if t]
        bad_users = [u for u in users if u.lower() in self.invalid_users]
        bad_parties = [p for p in parties if p in self.invalid_parties]
        bad_tags = [t for t in tags if t in self.invalid_tags]
        if self.all_invalid_errcode and (len(bad_users), len(bad_parties), len(bad_tags)) == (
                len(users), len(parties), len(tags)):
            return self._answer(81013, invaliduser="|".join(bad_users), invalidparty="|".join(bad_parties),
                                invalidtag="|".join(bad_tags))
        with self._lock:
            if self._duplicate(body):
                self.duplicates.append(body)
                return self._answer(0, invaliduser="", invalidparty="", invalidtag="", unlicenseduser="",
                                    msgid=f"msg-dup-{next(self._ids)}")
            extra: dict[str, Any] = {}
            card = body.get("template_card") if body.get("msgtype") == "template_card" else None
            if card is not None:
                task_id = card["task_id"]
                if task_id in self.cards:
                    return self._answer(40058, "invalid task_id: duplicated")
            msgid = f"msg-{next(self._ids)}"
            if card is not None:
                code = f"rc-{secrets.token_urlsafe(24)}"
                self.cards[card["task_id"]] = Card(card["task_id"], body, users, msgid, code)
                if card.get("card_type") in ("button_interaction", "vote_interaction", "multiple_interaction"):
                    self._codes[code] = card["task_id"]
                    extra["response_code"] = code
            self.sent.append(body)
            self._sent_at.append(time.time())
        return self._answer(0, invaliduser="|".join(bad_users), invalidparty="|".join(bad_parties),
                            invalidtag="|".join(bad_tags), unlicenseduser="", msgid=msgid, **extra)

    def _duplicate(self, body: dict[str, Any]) -> bool:
        """WeCom's repeated-message check: the same message to the same people within the
        interval is accepted and dropped."""
        if body.get("enable_duplicate_check") != 1:
            return False
        interval = body.get("duplicate_check_interval", 1800)
        now = time.time()
        return any(old == body and now - at < interval for old, at in zip(self.sent, self._sent_at))

    def _message_problem(self, body: dict[str, Any]) -> tuple[int, str] | None:
        """Why WeCom would refuse ``body`` (errcode, errmsg), or None."""
        for key, most in (("touser", 1000), ("toparty", 100), ("totag", 100)):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                return 40058, f"{key} must be a string of ids joined by |"
            if value and len(value.split("|")) > most:
                return 40058, f"{key} exceeds {most}"
        for key in ("toparty", "totag"):
            if any(not p.isdigit() for p in str(body.get(key) or "").split("|") if p):
                return 40058, f"invalid {key}"
        if not any(body.get(k) for k in ("touser", "toparty", "totag")):
            return 82001, ERRMSG[82001]
        if body.get("touser") == "@all":
            return 40058, "the stand-in refuses @all: tests must not message everyone"
        if body.get("msgtype") not in MSGTYPES:
            return 40008, ERRMSG[40008]
        if body.get("enable_duplicate_check", 0) not in (0, 1):
            return 40058, "enable_duplicate_check must be 0 or 1"
        interval = body.get("duplicate_check_interval", 1800)
        if not isinstance(interval, int) or not 0 < interval <= 4 * 3600:
            return 40058, "duplicate_check_interval exceeds 4 hours"
        if body["msgtype"] in ("markdown", "text"):
            content = (body.get(body["msgtype"]) or {}).get("content")
            if not isinstance(content, str) or not content:
                return 44004, ERRMSG[44004]
            if len(content.encode("utf-8")) > 2048:
                return 40058, f"{body['msgtype']}.content exceed max length 2048"
            return None
        return self._card_problem(body.get("template_card"))

    @staticmethod
    def _card_problem(card: Any) -> tuple[int, str] | None:
        if not isinstance(card, dict):
            return 40058, "template_card missing"
        if card.get("card_type") not in CARD_TYPES:
            return 40058, "invalid card_type"
        task_id = card.get("task_id")
        if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id) or len(task_id.encode()) > 128:
            return 40058, "invalid task_id"
        title = (card.get("main_title") or {}).get("title")
        if card["card_type"] == "button_interaction":
            if not isinstance(title, str) or not title:
                return 40058, "main_title.title missing"
            buttons = card.get("button_list")
            if not isinstance(buttons, list) or not 1 <= len(buttons) <= 6:
                return 40058, "button_list must have 1 to 6 buttons"
            keys = [b.get("key") for b in buttons if isinstance(b, dict)]
            if len(keys) != len(buttons) or len(set(keys)) != len(keys):
                return 40058, "button key duplicated"
            for b in buttons:
                if not isinstance(b.get("text"), str) or not b["text"]:
                    return 40058, "button text missing"
                if b.get("type", 0) == 0 and (not isinstance(b.get("key"), str) or not b["key"]
                                              or len(b["key"].encode()) > 1024):
                    return 40058, "button key missing or over 1024 bytes"
                if "style" in b and b["style"] not in (1, 2, 3, 4):
                    return 40058, "invalid button style"
        source = card.get("source")
        if source is not None and (not isinstance(source, dict) or source.get("desc_color", 0) not in (0, 1, 2, 3)):
            return 40058, "invalid source"
        rows = card.get("horizontal_content_list", [])
        if not isinstance(rows, list) or len(rows) > 6:
            return 40058, "horizontal_content_list exceeds 6"
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("keyname"), str) or not row["keyname"]:
                return 40058, "horizontal_content_list.keyname missing"
            if not isinstance(row.get("value", ""), str):
                return 40058, "horizontal_content_list.value must be a string"
        action = card.get("card_action")
        if action is not None:
            if not isinstance(action, dict) or action.get("type") not in (0, 1, 2):
                return 40058, "invalid card_action.type"
            if action["type"] == 1 and not re.fullmatch(r"https?://\S+", str(action.get("url") or "")):
                return 40058, "card_action.url missing"
        return None

    def _update(self, rec: Recorded) -> Reply:
        body, refused = self._authorised(rec)
        if refused:
            return refused
        failed = self._failure("update_template_card")
        if failed:
            return failed
        assert body is not None
        userids = body.get("userids", [])
        if not isinstance(userids, list) or len(userids) > 1000 or not all(isinstance(u, str) for u in userids):
            return self._answer(40058, "invalid userids")
        for key in ("partyids", "tagids"):
            ids = body.get(key, [])
            if not isinstance(ids, list) or len(ids) > 100:
                return self._answer(40058, f"invalid {key}")
        atall = body.get("atall", 0)
        if atall not in (0, 1):
            return self._answer(40058, "invalid atall")
        if not (userids or body.get("partyids") or body.get("tagids") or atall):
            return self._answer(40058, "no user to update")
        name = (body.get("button") or {}).get("replace_name")
        if not isinstance(name, str) or not name:
            return self._answer(40058, "button.replace_name missing")
        with self._lock:
            task_id = self._codes.pop(str(body.get("response_code")), None)  # one use
            if task_id is None:
                return self._answer(40058, "invalid response_code")
            card = self.cards.get(task_id)
            if card is not None:
                for u in (["@all"] if atall else userids):
                    card.replaced[u] = name
            self.updates.append(body)
        return self._answer(0)
