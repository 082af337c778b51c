"""WeCom (企业微信) server API calls with an application's access token.

    GET  {api_base}/cgi-bin/gettoken?corpid=ID&corpsecret=SECRET
         -> {"errcode": 0, "access_token": "...", "expires_in": 7200}
    POST {api_base}/cgi-bin/<path>?access_token=TOKEN  (JSON body)
         -> {"errcode": 0, "errmsg": "ok", ...}

The token is cached per (API base, corpid, secret) in this process until shortly before
it expires, and fetched again when WeCom answers 40014 (invalid) or 42001 (expired); the
call is then made once more. WeCom returns the same token to every process asking within
its lifetime, so each process keeping its own copy costs one ``gettoken`` per process
per two hours.

Tokens and secrets sit in query strings; every error text made here goes through
``scrub.text`` before anyone stores or logs it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from plugin.core import scrub

DEFAULT_BASE = "https://qyapi.weixin.qq.com"
TOKEN_ERRCODES = {40014, 42001}  # invalid / expired access_token: fetch a new one
RATE_ERRCODES = {45009, 45033}  # API frequency / concurrency limits: back off
CREDENTIAL_ERRCODES = {40001, 40013, 40091, 48001, 60020}  # wrong secret, corpid, no permission, IP not allowed
EARLY_S = 300  # a cached token is replaced this long before WeCom says it expires


class WeComError(Exception):
    """A WeCom answer that is not errcode 0 (or no answer at all)."""

    def __init__(self, message: str, errcode: int | None = None, status_code: int | None = None,
                 answer: dict[str, Any] | None = None):
        super().__init__(scrub.text(message)[:300])
        self.errcode = errcode
        self.status_code = status_code
        self.answer = answer or {}

    @property
    def throttled(self) -> bool:
        return self.errcode in RATE_ERRCODES


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()


_tokens: dict[str, _Token] = {}
_lock = threading.Lock()


def _cache_key(base: str, corpid: str, secret: str) -> str:
    return hashlib.sha256(f"{base}\0{corpid}\0{secret}".encode()).hexdigest()


def forget_tokens() -> None:
    """Drop every cached token (tests)."""
    with _lock:
        _tokens.clear()


class WeComApi:
    """One application's (or the customer-contact secret's) view of WeCom's server API."""

    def __init__(self, corpid: str, secret: str, api_base: str = DEFAULT_BASE):
        self.corpid = corpid
        self.secret = secret
        self.base = api_base.rstrip("/")
        self._key = _cache_key(self.base, corpid, secret)

    def token(self, http: requests.Session, timeout: float, fresh: bool = False) -> str:
        with _lock:
            cached = _tokens.get(self._key)
            if cached is not None and not fresh and cached.expires_at > time.monotonic():
                return cached.value
        answer = self._json(http.get(f"{self.base}/cgi-bin/gettoken",
                                     params={"corpid": self.corpid, "corpsecret": self.secret},
                                     timeout=timeout, allow_redirects=False), "gettoken")
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise WeComError("gettoken: no access_token in the answer")
        ttl = answer.get("expires_in") if isinstance(answer.get("expires_in"), int) else 7200
        with _lock:
            _tokens[self._key] = _Token(value, time.monotonic() + max(ttl - EARLY_S, 60))
        return value

    def call(self, http: requests.Session, method: str, path: str, timeout: float,
             body: Any = None, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON answer of ``path`` (e.g. "cgi-bin/message/send"); raises WeComError."""
        for attempt in (0, 1):
            token = self.token(http, timeout, fresh=attempt == 1)
            query = {**(params or {}), "access_token": token}
            try:
                resp = http.request(method, f"{self.base}/{path.lstrip('/')}", params=query, json=body,
                                    timeout=timeout, allow_redirects=False)
                return self._json(resp, path)
            except WeComError as exc:
                if exc.errcode in TOKEN_ERRCODES and attempt == 0:
                    continue
                raise
        raise AssertionError("unreachable")

    @staticmethod
    def _json(resp: requests.Response, what: str) -> dict[str, Any]:
        if resp.status_code != 200:
            raise WeComError(f"{what}: HTTP {resp.status_code}: {resp.text[:200]}", status_code=resp.status_code)
        try:
            answer = resp.json()
        except ValueError:
            raise WeComError(f"{what}: not JSON: {resp.text[:200]}", status_code=resp.status_code) from None
        if not isinstance(answer, dict):
            raise WeComError(f"{what}: not a JSON object", status_code=resp.status_code)
        code = answer.get("errcode", 0)
        if code != 0:
            raise WeComError(f"{what}: errcode {code}: {answer.get('errmsg', '')}", errcode=code,
                             status_code=resp.status_code, answer=answer)
        return answer
