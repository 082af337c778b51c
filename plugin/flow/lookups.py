"""Where a phone number's customer id comes from (``identity.lookup`` in the config):
the CRM's REST search, or a CSV file the operator exports from it.

Both answer ``find(phone) -> customer id | None`` (None: no such customer) or raise
``LookupFailed`` (the CRM is down, slow, or answered something that is not an answer),
which the caller must not take for "no such customer". Whatever the CRM or the file says
is checked like any id from outside (plugin/core/ids.py): the customer id goes into
URLs, chat messages and file names later.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from plugin.config import RestLookupConfig
from plugin.core import ids, safe_json, scrub
from plugin.core.phones import e164

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1024 * 1024  # a search by phone answers a few records, not megabytes


class LookupFailed(Exception):
    """No answer could be had; the message says why (no phone number, no value from the
    CRM's answer, no secret in it)."""


def customer_id(value: object, where: str) -> str | None:
    """The id a lookup found, as text; None for an empty one. LookupFailed for a value
    that is not an id (a hostile or broken CRM must not put "../admin" or a markdown link
    into the call). The value itself is never quoted."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LookupFailed(f"{where} is {type(value).__name__}, not an id")
    text = str(value)
    problem = ids.id_problem(text)
    if problem:
        raise LookupFailed(f"{where} is not an id: it {problem}")
    return text


# --- REST ----------------------------------------------------------------------------------

class RestLookup:
    """GET the configured URL with the number in it; the id is at ``id_field`` of the JSON
    answer. 404, an empty list or object, or an empty id: no such customer."""

    def __init__(self, cfg: RestLookupConfig):
        self.cfg = cfg
        head = urlsplit(cfg.url.partition("{phone}")[0])
        self.origin = (head.scheme, head.netloc.lower())  # where every lookup must go

    def url(self, phone: str) -> str:
        # E.164 is "+" and digits; encoding it all the same keeps whatever reaches here
        # inside its path segment or query value.
        url = self.cfg.url.replace("{phone}", quote(phone, safe=""))
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self.origin:
            raise LookupFailed("the lookup URL would go to another host")
        return url

    def find(self, phone: str, http: requests.Session) -> str | None:
        timeout = self.cfg.timeout_s
        headers = {"Accept": "application/json", **self.cfg.headers}
        deadline = time.monotonic() + timeout
        try:
            # No redirects: the headers (a token) go to the configured host only.
            with http.get(self.url(phone), headers=headers, timeout=timeout, allow_redirects=False,
                          stream=True) as resp:
                if resp.status_code == 404:
                    return None
                if not 200 <= resp.status_code < 300:
                    raise LookupFailed(f"the CRM answered HTTP {resp.status_code}")
                body = _read(resp, deadline)
        except requests.Timeout:
            raise LookupFailed(f"no answer within {timeout:g}s") from None
        except requests.RequestException as exc:
            # The exception's text quotes the URL, and so the number: masked.
            raise LookupFailed(scrub.phones(scrub.text(f"{exc.__class__.__name__}: {exc}"))[:300]) from None
        try:
            answer = safe_json.loads(body)
        except safe_json.UnsafeJson as exc:
            raise LookupFailed(f"the answer is not usable JSON ({exc.message[:100]})") from None
        return customer_id(pick(answer, self.cfg.id_field), f"the answer's {self.cfg.id_field}")


def _read(resp: requests.Response, deadline: float) -> bytes:
    body = bytearray()
    for chunk in resp.iter_content(65536):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise LookupFailed(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        if time.monotonic() > deadline:  # a CRM that drips its answer byte by byte
            raise requests.Timeout()
    return bytes(body)


def pick(answer: object, path: str) -> object:
    """The value at the dotted ``path`` ("data.0.id") of ``answer``. None where the answer
    is empty on the way (no results: no such customer); LookupFailed where it does not
    have the shape the path describes (the CRM changed, or id_field is wrong: a failure
    to report, not a customer to forget)."""
    here, walked = answer, []
    for key in path.split("."):
        where = ".".join(walked) or "the answer"
        if here is None or here == [] or here == {}:
            return None
        if isinstance(here, list):
            if not key.isdigit():
                raise LookupFailed(f"{where} is a list; id_field names {key!r} in it")
            if int(key) >= len(here):
                return None
            here = here[int(key)]
        elif isinstance(here, dict):
            if key not in here:
                raise LookupFailed(f"{where} has no {key!r}")
            here = here[key]
        else:
            raise LookupFailed(f"{where} is {type(here).__name__}, not an object or a list")
        walked.append(key)
    return here


# --- CSV -----------------------------------------------------------------------------------

class PhoneBook:
    """A CSV file of phone,customer_id (a header row first), re-read when it changes (its
    modification time, size or inode). Numbers are read as E.164 in ``region``. A file that
    becomes unreadable or malformed keeps the last good version in force (as rules do), with
    a warning; a number listed for two different customers is matched to neither (a shared
    switchboard number names no one customer)."""

    def __init__(self, path: Path, region: str):
        self.path = path
        self.region = region
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._table: dict[str, str] | None = None
        self._problem: str | None = None  # the last one logged, so it is logged once

    def find(self, phone: str) -> str | None:
        return self._current().get(phone)

    def _current(self) -> dict[str, str]:
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    self._table, self._stamp = self._load(), stamp
                    self._problem = None
            except (OSError, ValueError, csv.Error) as exc:
                problem = f"cannot read {self.path}: {getattr(exc, 'strerror', None) or exc}"
                if self._table is None:
                    raise LookupFailed(problem) from None
                if problem != self._problem:
                    log.warning("identity: %s; the version read before stays in force", problem)
                    self._problem = problem
            return self._table

    def _load(self) -> dict[str, str]:
        table: dict[str, str] = {}
        shared: set[str] = set()
        skipped: list[int] = []
        # utf-8-sig: spreadsheets write a byte-order mark before the header.
        with open(self.path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            columns = {(name or "").strip().lower(): name for name in reader.fieldnames or ()}
            if not {"phone", "customer_id"} <= set(columns):
                raise ValueError("the first line must name the columns phone and customer_id")
            for row in reader:
                phone = e164(row.get(columns["phone"]), self.region)
                try:
                    found = customer_id((row.get(columns["customer_id"]) or "").strip(), "customer_id")
                except LookupFailed:
                    found = None
                if phone is None or found is None:
                    skipped.append(reader.line_num)
                    continue
                if table.setdefault(phone, found) != found:
                    shared.add(phone)
        for phone in shared:
            del table[phone]
        # Line numbers and counts only: the values are personal data.
        lines = ", ".join(map(str, skipped[:10])) + ("..." if len(skipped) > 10 else "")
        more = f" (lines {lines})" if skipped else ""
        log.info("identity: %d numbers from %s; %d lines skipped (not a phone number or not an id)%s; "
                 "%d numbers listed for several customers, matched to none",
                 len(table), self.path, len(skipped), more, len(shared))
        return table


class PhoneBooks:
    """The process's CSV phone books, kept between calls (parsed once per change of the file),
    one per file and region."""

    def __init__(self):
        self._books: dict[tuple[str, str], PhoneBook] = {}
        self._lock = threading.Lock()

    def get(self, path: str | Path, region: str) -> PhoneBook:
        key = (str(Path(path).resolve()), region)
        with self._lock:
            if key not in self._books:
                self._books[key] = PhoneBook(Path(key[0]), region)
            return self._books[key]
