"""Tag the customer in WeCom's customer contacts (企业微信 客户联系 · 企业客户标签).

When an alert fires, the customer (an external contact, ``external_userid``) of the member
who owns the contact (``userid``) gets one or more corporate customer tags, e.g.
"情绪预警-严重", in a tag group of our own ("CallMood 情绪" by default):

    POST {api_base}/cgi-bin/externalcontact/get_corp_tag_list?access_token=T
         {"tag_id": [], "group_id": []}             -> {"tag_group": [{"group_id", "group_name",
                                                         "tag": [{"id", "name", "deleted"...}]}]}
    POST {api_base}/cgi-bin/externalcontact/add_corp_tag?access_token=T
         {"group_name": G, "tag": [{"name": N}]}    (or "group_id": an existing group's)
                                                     -> {"tag_group": {"group_id", "tag": [{"id", "name"}]}}
    POST {api_base}/cgi-bin/externalcontact/mark_tag?access_token=T
         {"userid": U, "external_userid": E, "add_tag": [ids]}  -> {"errcode": 0}

Tags are named, not numbered, in rules and config: their ids are looked up by name within
the group named ``group_name`` only (a tag of the same name in another group is never
used), created there when missing (``add_corp_tag`` with our group's id, or with its name
when the group does not exist yet: WeCom creates the group with its first tag), and kept
in this process for ``cache_s`` seconds per (API base, corpid, group). When ``mark_tag``
calls a cached id invalid (40068: the tag was deleted in the admin console, say) the ids
are looked up once more, the tags recreated if they are gone, and the mark made again.

**An app may edit only the customer tags it created** (WeCom's 管理企业标签: "应用仅能编辑和
删除本应用创建的标签"): the answer is 301002 ("无权限操作指定的应用") or 40068 ("invalid
tagid" / "group id not allowed"). When a group or tag of our name exists but another app
or the admin console made it, adding a tag to that group, or marking with that tag, is
refused; the delivery then dies at once with a one-line explanation of the fix: name
another ``group_name`` (or tag), or delete that group or tag in the admin console
(客户联系 > 客户标签) so that the app creates its own. A tag this process created is the
exception: WeCom may not know a new id for a moment, so that refusal is retried.

The errcodes are WeCom's global ones (全局错误码): 40068 不合法的标签ID, 301002 无权限操作
指定的应用, 81011 无权限操作标签, 84061 不存在外部联系人的关系 (the customer is not that
member's contact: final), 45009/45033 frequency limits (throttled, retried after a minute).
Which of 40068 and 301002 WeCom gives for another app's tag is not documented; both are
handled, and by behaviour too: only our group's tags are ever looked up or used.

``mark_tag`` adds tags (it never removes any), and adding a tag the customer already has
is not an error: sending the same payload again (a retry, a worker that crashed after
sending) changes nothing, so no idempotency key is needed.

The secret (of the self-built app listed under 客户联系 > 可调用接口的应用, or the 客户联系
secret) is read from config at send time; the stored payload holds only the two user ids,
the group and the tag names. Tokens and secrets travel in query strings: every error text
made here goes through ``scrub.text``.

Calls a trial model analysed (``ctx["trial"]``: random weights) are not tagged: a tag
stays on the customer's record, where nothing says it came from random weights. The
delivery is stored as dead, saying so.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import Field, field_validator

from connectors.sinks.base import SendResult, Sink, SinkConfig
from connectors.sinks.wecom_api import CREDENTIAL_ERRCODES, DEFAULT_BASE, WeComApi, WeComError
from plugin.core import scrub, trial
from plugin.core.ids import user_id_problem

GET_TAGS = "cgi-bin/externalcontact/get_corp_tag_list"
ADD_TAG = "cgi-bin/externalcontact/add_corp_tag"
MARK_TAG = "cgi-bin/externalcontact/mark_tag"

DEFAULT_GROUP = "CallMood 情绪"
NAME_MAX = 30  # WeCom: group and tag names "最长为30个字符"
MAX_TAGS = 20  # per action: more is a mistake in the rule, not a use
# The default tag is "情绪预警-<severity>", the severity in Chinese where it is one of ours.
SEVERITY_WORDS = {"critical": "严重", "warning": "警告", "info": "提示"}
DEFAULT_TAG_PREFIX = "情绪预警"

# An external contact's id as WeCom issues them ("wmXXXX...", "woXXXX...", the ciphertext
# ids of service-provider apps): letters, digits, _ and -. 128 leaves room for longer ones.
EXTERNAL_USERID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
SOURCE = re.compile(r"(customer_id|agent_id|metadata(\.[A-Za-z0-9_\-]+)+)")

INVALID_TAG = 40068  # 不合法的标签ID: gone, or not this app's ("group id not allowed")
NOT_OURS = {301002, 81011}  # 无权限操作指定的应用 (the app's own tags only) / 无权限操作标签
NOT_A_CONTACT = 84061  # 不存在外部联系人的关系: the customer is not this member's contact
# Ids WeCom does not know: the same request can never succeed.
BAD_IDS = {40003: "userid", 60111: "userid", 46004: "userid", 40096: "external_userid",
           41056: "external_userid"}
PERMISSION = {48002, 50002, 84074}  # API not allowed, member out of the app's range, no 客户联系 permission
THROTTLE_RETRY_S = 60.0  # 45009/45033 say no time; WeCom's limits count per minute


def name_problem(value: object, what: str = "tag name") -> str | None:
    """Why ``value`` cannot be a WeCom customer tag (or tag group) name, or None."""
    if not isinstance(value, str):
        return f"a {what} must be text, not {type(value).__name__}"
    if not value.strip():
        return f"a {what} must not be empty"
    if value != value.strip():
        return f"{what} {value[:40]!r} starts or ends with spaces"
    if len(value) > NAME_MAX:
        return f"{what} {value[:40]!r} is {len(value)} characters long; WeCom allows at most {NAME_MAX}"
    for ch in value:
        if unicodedata.category(ch)[0] == "C":  # controls, format characters, unassigned
            return f"{what} {value[:40]!r} contains U+{ord(ch):04X}, which a tag name cannot hold"
    return None


def external_userid_problem(value: object) -> str | None:
    if not isinstance(value, str) or not EXTERNAL_USERID.fullmatch(value):
        return (f"{str(value)[:80]!r} is not a WeCom external_userid "
                "(letters, digits, _ and -; up to 128 characters)")
    return None


class WeComTagConfig(SinkConfig):
    type: Literal["wecom_customer_tag"]
    corpid: str  # 企业ID (My Company > Company Information)
    # The secret of the self-built app listed under 客户联系 > 可调用接口的应用 (or the 客户联系
    # secret). Used at send time only, never stored.
    secret: str = Field(repr=False)
    api_base: str = DEFAULT_BASE  # a stand-in in tests
    group_name: str = DEFAULT_GROUP  # the tag group the app creates and uses (its own tags only)
    # Tags when the action names none (action.tag / action.tags); none: "情绪预警-<severity>".
    tags: list[str] | None = None
    external_userid_from: str = "customer_id"  # or "metadata.<field>[.<field>...]" of the event
    userid_from: str = "agent_id"  # the member who owns the contact; or "metadata.<field>..."
    userid: str | None = None  # a fixed member instead of userid_from
    cache_s: float = Field(default=3600, ge=0)  # how long looked-up tag ids are kept

    @field_validator("corpid")
    @classmethod
    def _corpid(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", v):
            raise ValueError("must be the 企业ID: letters and digits, e.g. ww1234567890abcdef")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not v or any(c.isspace() or not c.isprintable() for c in v):
            raise ValueError("must be the app's secret: not empty, no spaces or control characters")
        return v

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http:// or https:// and a host, e.g. https://qyapi.weixin.qq.com")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must be a plain base URL: no credentials, query or fragment")
        return v.rstrip("/")

    @field_validator("group_name")
    @classmethod
    def _group(cls, v: str) -> str:
        problem = name_problem(v, "group name")
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("must name at least one tag (or be left out: 情绪预警-<severity>)")
            for name in v:
                problem = name_problem(name)
                if problem:
                    raise ValueError(problem)
        return v

    @field_validator("external_userid_from", "userid_from")
    @classmethod
    def _source(cls, v: str) -> str:
        if not SOURCE.fullmatch(v):
            raise ValueError("must be customer_id, agent_id or metadata.<field> (e.g. metadata.wecom_userid)")
        return v

    @field_validator("userid")
    @classmethod
    def _userid(cls, v: str | None) -> str | None:
        problem = user_id_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


# --- tag ids, per process --------------------------------------------------------------

@dataclass
class _Ids:
    ids: dict[str, str]  # tag name -> id, in our group
    expires_at: float  # time.monotonic()


_ids: dict[tuple[str, str, str], _Ids] = {}
_locks: dict[tuple[str, str, str], threading.Lock] = {}
_guard = threading.Lock()


def forget_tag_ids() -> None:
    """Drop every cached tag id (tests)."""
    with _guard:
        _ids.clear()
        _made.clear()


def _lock(key: tuple[str, str, str]) -> threading.Lock:
    with _guard:
        return _locks.setdefault(key, threading.Lock())


_made: set[str] = set()  # ids of the tags this process created: ours, whatever WeCom says for a moment


class TagRefused(Exception):
    """A refusal explained in words: final (a group or tag of our name that this app did not
    create) or retryable (a permission an admin may still grant)."""

    def __init__(self, text: str, retryable: bool = False):
        super().__init__(text)
        self.retryable = retryable


def _not_ours_text(sink: str, group: str, names: list[str], code: int | None, tag_level: bool) -> str:
    what = (f"tag {', '.join(repr(n) for n in names)} in group {group!r}" if tag_level
            else f"tag group {group!r}")
    rename = "group_name (or the tag names) to names" if tag_level else "group_name to a name"
    return (f"标签不是本应用创建的 / WeCom refuses the {what} (errcode {code}): an app may use only the customer "
            f"tags it created, and this one was made in the admin console or by another app. Fix: set "
            f"sinks.{sink}.{rename} not used in WeCom, or delete that {'tag' if tag_level else 'group'} "
            f"in the admin console (客户联系 > 客户标签) so the app creates its own.")


def _groups(answer: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """Our live groups (by name) in a get_corp_tag_list answer, oldest first."""
    groups = answer.get("tag_group")
    if not isinstance(groups, list):
        raise WeComError("get_corp_tag_list: no tag_group list in the answer")
    ours = [g for g in groups if isinstance(g, dict) and g.get("group_name") == group and not g.get("deleted")
            and isinstance(g.get("group_id"), str) and g["group_id"]]
    return sorted(ours, key=lambda g: g.get("create_time") if isinstance(g.get("create_time"), int) else 0)


def _tags_in(groups: list[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for g in groups:
        for tag in g.get("tag") if isinstance(g.get("tag"), list) else []:
            if (isinstance(tag, dict) and not tag.get("deleted") and isinstance(tag.get("name"), str)
                    and isinstance(tag.get("id"), str) and tag["id"]):
                found.setdefault(tag["name"], tag["id"])
    return found


class WeComTagSink(Sink):
    kind = "wecom_customer_tag"
    Config = WeComTagConfig
    cfg: WeComTagConfig

    # --- planning ---------------------------------------------------------------------

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx.get("trial"):
            raise ValueError(f"{trial.LABEL}: a trial model analysed this call, and a customer tag cannot say "
                             "so; customers are not tagged from random weights")
        call = ctx.get("call") or {}
        action = ctx.get("action") or {}
        external = self._value(call, self.cfg.external_userid_from, "external_userid")
        problem = external_userid_problem(external)
        if problem:
            raise ValueError(f"cannot tag the customer: {self.cfg.external_userid_from}: {problem}")
        if self.cfg.userid is not None:
            userid = self.cfg.userid
        else:
            userid = self._value(call, self.cfg.userid_from, "userid (the member who owns the contact)")
            problem = user_id_problem(userid)
            if problem:
                raise ValueError(f"cannot tag the customer: {self.cfg.userid_from}: {problem}")
        group = action.get("group") or self.cfg.group_name
        problem = name_problem(group, "group name")
        if problem:
            raise ValueError(f"action.group: {problem}")
        return {"userid": userid, "external_userid": external, "group": group,
                "tags": self._tag_names(action, ctx.get("alert") or {})}

    @staticmethod
    def _value(call: dict[str, Any], source: str, what: str) -> str:
        if source.startswith("metadata."):
            value: Any = call.get("metadata")
            for part in source.split(".")[1:]:
                value = value.get(part) if isinstance(value, dict) else None
        else:
            value = call.get(source)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None or value == "":
            raise ValueError(f"cannot tag the customer: the call has no {what} in {source}")
        return value

    def _tag_names(self, action: dict[str, Any], alert: dict[str, Any]) -> list[str]:
        if action.get("tags") is not None:
            given, where = action["tags"], "action.tags"
            if isinstance(given, str):
                given = [t.strip() for t in given.split(",") if t.strip()]
            elif not isinstance(given, list):
                raise ValueError(f"action.tags must be a list of tag names, not {type(given).__name__}")
        elif action.get("tag") is not None:
            given, where = [action["tag"]], "action.tag"
        elif self.cfg.tags is not None:
            given, where = self.cfg.tags, "tags"
        else:
            severity = str(alert.get("severity") or "warning")
            given, where = [f"{DEFAULT_TAG_PREFIX}-{SEVERITY_WORDS.get(severity, severity)}"], "alert.severity"
        names = list(dict.fromkeys(t.strip() if isinstance(t, str) else t for t in given))
        if not names:
            raise ValueError(f"{where}: no tag to add")
        if len(names) > MAX_TAGS:
            raise ValueError(f"{where}: {len(names)} tags; at most {MAX_TAGS} per alert")
        for name in names:
            problem = name_problem(name)
            if problem:
                raise ValueError(f"{where}: {problem}")
        return names

    # --- sending ----------------------------------------------------------------------

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        problem = self._payload_problem(payload)
        if problem:
            return SendResult(False, None, f"stored payload: {problem}", retryable=False)
        group, names = payload["group"], payload["tags"]
        api = WeComApi(self.cfg.corpid, self.cfg.secret, self.cfg.api_base)
        body = {"userid": payload["userid"], "external_userid": payload["external_userid"]}
        try:
            ids = self._tag_ids(api, http, timeout, group, names, fresh=False)
            try:
                api.call(http, "POST", MARK_TAG, timeout, body={**body, "add_tag": [ids[n] for n in names]})
            except WeComError as exc:
                if exc.errcode != INVALID_TAG:
                    raise
                # A cached id WeCom no longer takes: deleted (look up / recreate), or not ours.
                again = self._tag_ids(api, http, timeout, group, names, fresh=True)
                stale = [n for n in names if again[n] == ids[n] and again[n] not in _made]
                if stale:  # listed in our group under that name, yet refused: not this app's
                    raise TagRefused(_not_ours_text(self.name, group, stale, exc.errcode, tag_level=True)) from None
                api.call(http, "POST", MARK_TAG, timeout, body={**body, "add_tag": [again[n] for n in names]})
        except TagRefused as exc:
            return SendResult(False, None, scrub.text(exc)[:600], retryable=exc.retryable)
        except WeComError as exc:
            return self._failure(exc, payload)
        except requests.Timeout:
            return SendResult(False, None, f"WeCom: timed out after {timeout:g}s")
        except requests.RequestException as exc:
            return SendResult(False, None, scrub.text(f"WeCom: {exc.__class__.__name__}: {exc}")[:300])
        return SendResult(True, 200)

    @staticmethod
    def _payload_problem(payload: Any) -> str | None:
        if not isinstance(payload, dict):
            return "not an object"
        problem = (external_userid_problem(payload.get("external_userid")) or user_id_problem(payload.get("userid"))
                   or name_problem(payload.get("group"), "group name"))
        if problem:
            return problem
        tags = payload.get("tags")
        if not isinstance(tags, list) or not tags or len(tags) > MAX_TAGS:
            return "tags must be a list of 1 to 20 names"
        return next((p for p in map(name_problem, tags) if p), None)

    def _tag_ids(self, api: WeComApi, http: requests.Session, timeout: float, group: str, names: list[str],
                 fresh: bool) -> dict[str, str]:
        """The id of each of ``names`` in ``group``, created where missing. One lookup at a
        time per group in this process, so that its workers do not create a tag twice."""
        key = (api.base, self.cfg.corpid, group)
        with _lock(key):
            cached = _ids.get(key)
            if (not fresh and cached is not None and cached.expires_at > time.monotonic()
                    and all(n in cached.ids for n in names)):
                return cached.ids
            ours = _groups(api.call(http, "POST", GET_TAGS, timeout, body={"tag_id": [], "group_id": []}), group)
            found = _tags_in(ours)
            missing = [n for n in names if n not in found]
            if missing:
                where = {"group_id": ours[0]["group_id"]} if ours else {"group_name": group}
                try:
                    answer = api.call(http, "POST", ADD_TAG, timeout,
                                      body={**where, "tag": [{"name": n} for n in missing]})
                except WeComError as exc:
                    # Into an existing group of our name that is not ours: refused for good.
                    if ours and (exc.errcode in NOT_OURS or exc.errcode == INVALID_TAG):
                        text = _not_ours_text(self.name, group, missing, exc.errcode, tag_level=False)
                        raise TagRefused(text) from None
                    if exc.errcode in NOT_OURS:  # no group of that name that we can see
                        raise TagRefused(
                            f"WeCom refused to create tag group {group!r} (errcode {exc.errcode}): list the app "
                            "under 客户联系 > 可调用接口的应用 (or use the 客户联系 secret); if a group of that name "
                            f"exists (made by another app), set sinks.{self.name}.group_name to another name",
                            retryable=True) from None
                    raise
                made = answer.get("tag_group")
                new = _tags_in([made]) if isinstance(made, dict) else {}
                created = {n for n in missing if n in new}
                found.update({n: new[n] for n in created})
                _made.update(new[n] for n in created)
                if len(created) < len(missing):  # an answer without the ids: read the library again
                    again = _tags_in(_groups(api.call(http, "POST", GET_TAGS, timeout,
                                                      body={"tag_id": [], "group_id": []}), group))
                    found.update({n: again[n] for n in missing if n not in found and n in again})
                lost = [n for n in missing if n not in found]
                if lost:
                    raise WeComError(f"add_corp_tag: WeCom did not return ids for {', '.join(lost)}")
            _ids[key] = _Ids(dict(found), time.monotonic() + self.cfg.cache_s)
            return found

    def _failure(self, exc: WeComError, payload: dict[str, Any]) -> SendResult:
        code, said = exc.errcode, scrub.text(exc)[:300]
        if exc.throttled:
            return SendResult(False, exc.status_code, f"WeCom frequency limit: {said}", throttled=True,
                              retry_after=THROTTLE_RETRY_S)
        if code in NOT_OURS:
            return SendResult(False, exc.status_code, _not_ours_text(
                self.name, payload["group"], payload["tags"], code, tag_level=True), retryable=False)
        if code == NOT_A_CONTACT:
            return SendResult(False, exc.status_code, (
                f"customer {payload['external_userid']} is not a contact of member {payload['userid']} "
                f"(errcode {code}): check sinks.{self.name}.external_userid_from and userid_from; {said}"),
                retryable=False)
        if code in BAD_IDS:
            return SendResult(False, exc.status_code, f"WeCom does not know this {BAD_IDS[code]}: {said}",
                              retryable=False)
        if code in CREDENTIAL_ERRCODES:
            return SendResult(False, exc.status_code, f"check sinks.{self.name}.corpid and secret: {said}")
        if code in PERMISSION:
            return SendResult(False, exc.status_code, (
                f"the app may not tag customers: list it under 客户联系 > 可调用接口的应用 (or use the 客户联系 "
                f"secret) and make the member visible to it; {said}"))
        return SendResult(False, exc.status_code, said)
