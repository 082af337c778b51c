"""Write an alert back to the caller's HubSpot contact: a contact property (e.g.
``callmood_last_alert`` = "critical: angry_customer 2025-06-01") and a note on the contact's
timeline.

What HubSpot documents (read for this module):

- Update a contact: ``PATCH /crm/v3/objects/contacts/{contactId} {"properties": {...}}``; by
  email or another unique-value property instead of the record id, the value goes in the
  path and ``?idProperty=<property>`` names the property. The answer carries the record's
  ``id``, which the note's association needs. Unknown or read-only properties are an error.
  https://developers.hubspot.com/docs/api-reference/latest/crm/objects/contacts/update-contact
  https://developers.hubspot.com/changelog/updating-objects-by-custom-field-and-adding-owner-properties-via-the-api
- Create a note: ``POST /crm/v3/objects/notes`` with ``properties`` ``hs_timestamp``
  (required: where it sits on the timeline) and ``hs_note_body`` (rich text, at most 65,536
  characters), associated to the contact with ``associationCategory: HUBSPOT_DEFINED``,
  ``associationTypeId: 202`` (note to contact).
  https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide
- Search: ``POST /crm/v3/objects/notes/search`` with ``filterGroups`` of filters
  ``{"propertyName", "operator": "CONTAINS_TOKEN", "value"}`` (whole words, not substrings).
  Newly created records reach search after a short delay.
  https://developers.hubspot.com/docs/api/crm/search
- Rate limits: 429 over a limit, with a body whose ``policyName`` says which (``DAILY`` or
  the rolling ten-second one); answers carry ``X-HubSpot-RateLimit-Max``, ``-Remaining`` and
  ``-Interval-Milliseconds`` (the rolling window) and ``X-HubSpot-RateLimit-Secondly``.
  https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details
  A 429 waits ``Retry-After`` when given, else the window (``-Interval-Milliseconds``), else
  one second when a per-second limit is named, else what ``policyName`` says: an hour for
  ``DAILY`` (it resets at midnight in the account's time zone, which we do not know), ten
  seconds for ``TEN_SECONDLY_ROLLING``, a second for any other. ``-Remaining: 0`` on a
  success needs nothing from this send: the next one is the one refused, and waits then.
- A private app's access token: ``Authorization: Bearer <token>``, scopes
  ``crm.objects.contacts.read`` and ``crm.objects.contacts.write``.

At least once: the outbox may send one payload again (a retry after a timeout, a worker
that died after HubSpot acted). Setting a property to the same value again changes
nothing. A note is not idempotent and HubSpot documents no idempotency key for it, so the
note's last line carries our marker: the delivery's idempotency key and a token made from
it with the access token (HMAC), which no caller can forge into a summary to suppress
another alert's note; the note is created only when a search for that token finds none.
A changed access token between two attempts of one delivery, or a retry within the search
index's delay, can repeat that one note.

Values from the call (the contact's id, email or phone) are percent-encoded into their
path segment; without ``id_property`` the value must be a record id (digits). Every value
put into the note is HTML-escaped (the body is rich text). The stored payload holds the
contact, the properties and the note; the access token is read from config at send time.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlencode

import requests
from pydantic import Field, field_validator

from connectors.sinks.base import SendResult, Sink, SinkConfig, header_problem, post_json, retry_after_s
from connectors.sinks.rest import url_value
from connectors.sinks.zendesk import api_base, clip, note_lines, one_line
from plugin.core import scrub, trial

DEFAULT_BASE = "https://api.hubapi.com"
NOTE_TO_CONTACT = 202  # HUBSPOT_DEFINED association type: note -> contact
MAX_NOTE = 60_000  # hs_note_body takes 65,536 characters; room for the marker line
# A 429's policyName without a header that says more: the daily limit resets at midnight in
# the account's time zone, which we do not know; the others are windows of seconds.
POLICY_WAIT_S = {"DAILY": 3600.0, "TEN_SECONDLY_ROLLING": 10.0}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")  # HubSpot property internal names


class HubSpotSinkConfig(SinkConfig):
    type: Literal["hubspot"]
    api_base: str = DEFAULT_BASE
    access_token: str = Field(min_length=1)  # a private app's token (Bearer), read at send time
    # Where the contact comes from: the call's customer_id (or customer_phone, see id_from) is
    # HubSpot's record id (null), or the value of this unique property: email, or a custom
    # property with unique values (sent as ?idProperty=).
    id_property: str | None = None
    id_from: Literal["customer_id", "customer_phone"] = "customer_id"
    # The contact property set on each alert (create it in HubSpot first); null: none.
    property: str | None = "callmood_last_alert"
    note: bool = True  # add a note to the contact's timeline

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str) -> str:
        return api_base(v)

    @field_validator("access_token")
    @classmethod
    def _token(cls, v: str) -> str:
        if header_problem("Authorization", f"Bearer {v}"):
            raise ValueError("must be text an HTTP header can carry (no line breaks or control characters)")
        return v

    @field_validator("id_property", "property")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.fullmatch(v):
            raise ValueError("must be a HubSpot property's internal name (lower case letters, digits, _)")
        return v


def contact_of(call: dict[str, Any], id_from: str, id_property: str | None) -> str:
    value = call.get(id_from)
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text:
        raise ValueError(f"the call has no {id_from}: there is no HubSpot contact to write to")
    if id_property is None:
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise ValueError(f"{id_from} {clip(one_line(text), 40)!r} is not a HubSpot record id (digits); "
                             f"set id_property to look the contact up by a unique property")
    else:
        if len(text) > 256:
            raise ValueError(f"{id_from} is longer than 256 characters")
        url_value(text)  # raises for "." and ".."
    return text


def note_html(ctx: dict[str, Any]) -> str:
    """The note as HubSpot rich text: every line escaped, the call's link a link."""
    lines = [html.escape(line, quote=False) for line in note_lines({**ctx, "link": None})]
    link = ctx.get("link")
    if isinstance(link, str) and link.startswith(("https://", "http://")):
        href = html.escape(one_line(link), quote=True)
        lines.append(f'Call: <a href="{href}">{href}</a>')
    return clip("<br>".join(lines), MAX_NOTE)


def marker_token(access_token: str, idempotency_key: str) -> str:
    """One word (letters and digits, so search takes it whole) that only the holder of the
    access token can make for this delivery."""
    digest = hmac.new(access_token.encode(), idempotency_key.encode(), hashlib.sha256).hexdigest()
    return "callmood" + digest[:32]


class HubSpotFailed(Exception):
    def __init__(self, result: SendResult):
        super().__init__(result.error)
        self.result = result


class _HubSpotHttp:
    """The requests of one send, with the token, each answer checked."""

    def __init__(self, sink: HubSpotSink, http: requests.Session, timeout: float):
        self.sink, self.http, self.timeout = sink, http, timeout

    def fail(self, error: str, status: int | None = None, retryable: bool = True, **kw: Any) -> HubSpotFailed:
        text = scrub.text(error).replace(self.sink.cfg.access_token, scrub.HIDDEN)
        return HubSpotFailed(SendResult(False, status, text[:400], retryable=retryable, **kw))

    def call(self, method: str, path: str, what: str, body: Any = None) -> dict:
        headers = {"User-Agent": "CallMood", "Accept": "application/json",
                   "Authorization": f"Bearer {self.sink.cfg.access_token}"}
        resp = post_json(self.http, method, self.sink.cfg.api_base + path, body, headers, self.timeout)
        if isinstance(resp, SendResult):
            raise self.fail(f"HubSpot {what}: {resp.error}", retryable=resp.retryable)
        if not 200 <= resp.status_code < 300:
            raise self.refused(resp, what)
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self.fail(f"HubSpot {what}: HTTP {resp.status_code} with an answer that is not a JSON object",
                            resp.status_code)
        return data

    def refused(self, resp: requests.Response, what: str) -> HubSpotFailed:
        code, text = resp.status_code, one_line(resp.text[:300])
        if code == 429:
            return self.fail(f"HubSpot {what}: rate limited (HTTP 429): {text}", code, throttled=True,
                             retry_after=hubspot_wait(resp))
        if code == 401:
            return self.fail(f"HubSpot {what}: HTTP 401: the access token was refused; check "
                             f"sinks.{self.sink.name}.access_token (a private app's token)", code)
        if code == 403:
            return self.fail(f"HubSpot {what}: HTTP 403: the private app lacks a scope it needs "
                             f"(crm.objects.contacts.read and .write): {text}", code)
        final = code in (400, 404, 405, 409, 410, 422)
        return self.fail(f"HubSpot {what}: HTTP {code}: {text}", code, retryable=not final)


def hubspot_wait(resp: requests.Response) -> float | None:
    """Seconds to wait after a 429, from what HubSpot said (see the module's docstring)."""
    wait = retry_after_s(resp.headers.get("Retry-After"))
    if wait is not None:
        return wait
    try:
        interval = float(resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds") or "")
    except ValueError:
        interval = 0.0
    if interval > 0:
        return interval / 1000
    if resp.headers.get("X-HubSpot-RateLimit-Secondly"):
        return 1.0
    try:
        policy = resp.json().get("policyName")
    except (ValueError, AttributeError):
        policy = None
    if not isinstance(policy, str):
        return None
    return POLICY_WAIT_S.get(policy, 1.0)


class HubSpotSink(Sink):
    kind = "hubspot"
    Config = HubSpotSinkConfig
    cfg: HubSpotSinkConfig

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        contact = contact_of(ctx.get("call") or {}, self.cfg.id_from, self.cfg.id_property)
        now = datetime.now(timezone.utc)
        properties = {}
        if self.cfg.property:
            alert, action = ctx["alert"], ctx.get("action") or {}
            value = one_line(action.get("value") or "") or \
                f"{one_line(alert.get('severity'))}: {one_line(alert.get('rule'))} {now.date().isoformat()}"
            if ctx.get("trial"):
                value = f"{trial.TEXT}: {value}"
            properties[self.cfg.property] = clip(value, 1000)
        return {"contact": contact, "id_property": self.cfg.id_property, "properties": properties,
                "note": note_html(ctx), "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z")}

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        id_property = payload.get("id_property")
        try:
            if id_property is not None and not (isinstance(id_property, str) and _NAME.fullmatch(id_property)):
                raise ValueError("id_property is not a property name")
            contact = contact_of({"contact": payload.get("contact")}, "contact", id_property)
            properties = payload.get("properties")
            if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
                raise ValueError("properties must be an object of strings")
            if not isinstance(payload.get("note"), str) or not isinstance(payload.get("timestamp"), str):
                raise ValueError("no note or no timestamp")
        except ValueError as exc:
            return SendResult(False, None, f"stored payload: {exc}", retryable=False)
        api = _HubSpotHttp(self, http, timeout)
        try:
            contact_id = self._contact(api, contact, id_property, properties)
            if not self.cfg.note:
                return SendResult(True, 200)
            token = marker_token(self.cfg.access_token, idempotency_key)
            if self._noted(api, token):
                return SendResult(True, 200, note=f"the note on contact {contact_id} was already there "
                                                  f"(a repeated send)")
            body = f"{payload['note']}<br>callmood:{html.escape(one_line(idempotency_key))} {token}"
            api.call("POST", "/crm/v3/objects/notes", f"note on contact {contact_id}", {
                "properties": {"hs_timestamp": payload.get("timestamp"), "hs_note_body": body},
                "associations": [{"to": {"id": contact_id}, "types": [
                    {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}]}]})
            return SendResult(True, 201)
        except HubSpotFailed as exc:
            return exc.result

    def _contact(self, api: _HubSpotHttp, contact: str, id_property: str | None, properties: dict) -> str:
        """Set the properties (or only look the contact up): the contact's record id."""
        path = f"/crm/v3/objects/contacts/{url_value(contact)}"
        if id_property:
            path += "?" + urlencode({"idProperty": id_property})
        shown = f"contact {clip(one_line(contact), 60)}"
        try:
            if properties:
                data = api.call("PATCH", path, shown, {"properties": properties})
            else:
                data = api.call("GET", path, shown)
        except HubSpotFailed as exc:
            if exc.result.status_code == 404:
                by = f" by {id_property}" if id_property else ""
                raise api.fail(f"no {shown} in HubSpot{by} (HTTP 404)", 404, retryable=False) from None
            if exc.result.status_code == 400 and properties:
                raise api.fail(f"{exc.result.error} (does the contact property {', '.join(properties)} exist "
                               f"in HubSpot and take this value?)", 400, retryable=False) from None
            raise
        found = str(data.get("id") or "")
        if not (found.isascii() and found.isdigit()):
            raise api.fail(f"HubSpot {shown}: the answer has no record id")
        return found

    def _noted(self, api: _HubSpotHttp, token: str) -> bool:
        data = api.call("POST", "/crm/v3/objects/notes/search", "search for an earlier note", {
            "filterGroups": [{"filters": [{"propertyName": "hs_note_body", "operator": "CONTAINS_TOKEN",
                                           "value": token}]}],
            "properties": ["hs_note_body"], "limit": 10})
        results = data.get("results") if isinstance(data.get("results"), list) else []
        return any(token in str(((r or {}).get("properties") or {}).get("hs_note_body") or "")
                   for r in results if isinstance(r, dict))
