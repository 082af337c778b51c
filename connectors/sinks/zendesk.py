"""Write an alert back to the call's Zendesk ticket: tags on the ticket and its requester,
and an internal note.

What Zendesk documents (read for this module):

- Tags: ``PUT /api/v2/tickets/{id}/tags.json {"tags": [...]}`` adds tags (POST would replace
  them all); ``PUT /api/v2/users/{id}/tags.json`` likewise on a user, once an admin has turned
  on tags on users and organizations. These endpoints "cannot be used to add, update, or
  remove tags on closed tickets".
  https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/
  https://support.zendesk.com/hc/en-us/articles/203662006 (user and organization tagging)
- An internal note is a comment with ``"public": false`` added by updating the ticket:
  ``PUT /api/v2/tickets/{id}.json {"ticket": {"comment": {"body": ..., "public": false}}}``;
  ``GET /api/v2/tickets/{id}/comments.json`` lists the comments (paged, ``next_page``).
  https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/
  https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/
- A closed ticket cannot be reopened or updated; a follow-up is a new ticket created with
  ``via_followup_source_id`` (it only works with closed tickets). A follow-up inherits the
  closed ticket's tags unless the request names tags, which then replace them: so the
  request names the closed ticket's tags and ours. The closed ticket's ``followup_ids``
  lists the follow-ups made from it.
  https://developer.zendesk.com/documentation/ticketing/managing-tickets/creating-and-updating-tickets
- Ticket creation takes an ``Idempotency-Key`` header ("retry a ticket creation request
  without the risk of creating duplicate records"); no other request here documents it, so
  it is sent on that request only.
  https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency
- Over the rate limit the API answers 429 with ``Retry-After`` (seconds to wait).
  https://developer.zendesk.com/api-reference/introduction/rate-limits
- API token authentication: Basic ``{email}/token:{api_token}``.

At least once: the outbox may send one payload again (a retry after a timeout, a worker
that died after Zendesk acted), so every step is safe to repeat. Tags are a set: adding one
again changes nothing. A note is not, so its last line is our marker ``callmood:<key>``
(the delivery's idempotency key) and it is written only when no internal comment of the
ticket already ends with that line; an end user can only write public comments, so a
customer cannot forge a marker to suppress a note. A follow-up is looked for the same way
among the closed ticket's follow-ups, besides the Idempotency-Key Zendesk keeps for a time.

The stored payload holds the ticket id, the tags, the note and a follow-up subject; the
email and API token are read from config at send time.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import requests
from pydantic import Field, field_validator, model_validator

from connectors.sinks.base import SendResult, Sink, SinkConfig, post_json, retry_after_s
from connectors.sinks.quotes import ROLES_EN, clip, one_line, quote_lines
from connectors.sinks.rest import url_value
from connectors.sources.zendesk import zendesk_subdomain
from plugin.core import scrub, trial
from plugin.core.transcript import quote_time  # "1:02:13" past an hour, as the quotes

MAX_TAG = 80  # CallMood's limit on one tag, so a runaway template cannot make a page of text
TAG_EXTRA = "_-:./"  # besides letters and digits (any script)
TRIAL_TAG = "callmood_trial_model"
MAX_COMMENT_PAGES = 5  # newest first: our note, when there, is on the first page
MAX_FOLLOWUPS_CHECKED = 3
MAX_SEGMENTS = 20
SUMMARY_CHARS = 2000
QUOTE_CHARS = 200  # of one quote's words in a note
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ZendeskSinkConfig(SinkConfig):
    type: Literal["zendesk"]
    # The Zendesk account: subdomain ("acme" for acme.zendesk.com), or api_base written out
    # (a host mapped to Zendesk, or a local stand-in); api_base wins.
    subdomain: str | None = None
    api_base: str | None = None
    # An agent's email and an API token (Admin Center > Apps and integrations > Zendesk API).
    email: str = Field(min_length=3)
    api_token: str = Field(min_length=1)
    tag_user: bool = True  # also tag the ticket's requester (user tagging must be on in Zendesk)
    note: bool = True  # add the internal note to the ticket
    # A closed ticket cannot be updated: tag only its requester, or make a follow-up ticket.
    closed_ticket: Literal["user_only", "follow_up"] = "user_only"

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, v: str | None) -> str | None:
        return zendesk_subdomain(v)

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        return api_base(v) if v is not None else v

    @model_validator(mode="after")
    def _account(self) -> ZendeskSinkConfig:
        if not (self.subdomain or self.api_base):
            raise ValueError("set subdomain (acme for acme.zendesk.com) or api_base")
        return self

    def base_url(self) -> str:
        return self.api_base or f"https://{self.subdomain}.zendesk.com"


def api_base(value: str) -> str:
    """scheme://host[:port] of an API, checked: no path, no credentials, and plain http only
    to this machine (the credentials would cross the network readable by anyone on the way)."""
    if not re.fullmatch(r"https?://[^/@\s?#]+/?", value):
        raise ValueError("must be scheme://host[:port] (no path, no credentials)")
    parts = urlsplit(value)
    try:
        parts.port
    except ValueError:
        raise ValueError("has a bad port") from None
    if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK:
        raise ValueError("plain http is allowed only to 127.0.0.1 or localhost (a local stand-in); use https")
    return value.rstrip("/")


# --- render -----------------------------------------------------------------------------

def note_lines(ctx: dict[str, Any]) -> list[str]:
    """The note about one alert, one fact a line, each value on its line: what was heard,
    which rule said so, where in the call, what was said there, and the link to the call's page. About a call a
    trial model analysed the first line says so."""
    alert = ctx["alert"]
    lines = [trial.LABEL] if ctx.get("trial") else []
    lines.append("CallMood: " + clip(one_line(alert.get("summary") or "-"), SUMMARY_CHARS))
    lines.append(f"Rule {one_line(alert.get('rule'))} · scenario {one_line(alert.get('scenario'))} · "
                 f"severity {one_line(alert.get('severity'))}")
    role = one_line(alert.get("role") or "-")
    emotions = "/".join(one_line(e) for e in alert.get("emotions") or []) or "-"
    facts = [f"Emotion {emotions}"]
    if isinstance(alert.get("confidence"), (int, float)):
        facts.append(f"confidence {alert['confidence']:.2f}")
    if isinstance(alert.get("share"), (int, float)):
        facts.append(f"{round(alert['share'] * 100)}% of the {role}'s speech")
    lines.append(" · ".join(facts))
    spans = [f"{quote_time(a)}–{quote_time(b)}" for a, b in (alert.get("matched") or [])]
    if spans:
        more = f" (+{len(spans) - MAX_SEGMENTS} more)" if len(spans) > MAX_SEGMENTS else ""
        lines.append(f"Moments ({role}): " + ", ".join(spans[:MAX_SEGMENTS]) + more)
    said = note_quotes(alert)
    if said:
        lines += ["What was said:"] + said
    if ctx.get("link"):
        lines.append("Call: " + one_line(ctx["link"]))
    return lines


def note_quotes(alert: dict[str, Any]) -> list[str]:
    """What was said in the segments that fired, one plain line each ("02:13 customer: ..."),
    each on its own line whatever the words hold (no caller's words end a note with our marker)."""
    return [f"- {line}" for line in quote_lines(alert, ROLES_EN, QUOTE_CHARS)]


def zendesk_tag(value: object) -> str:
    """``value`` as a Zendesk tag: lower case, runs of spaces as one underscore (a tag is one
    word); letters, digits and ``_ - : . /`` only. Raises ValueError saying what is wrong."""
    tag = "_".join(str(value).split()).lower()
    if not tag:
        raise ValueError("a tag is empty")
    if len(tag) > MAX_TAG:
        raise ValueError(f"tag {tag[:40]!r}… is longer than {MAX_TAG} characters")
    bad = next((c for c in tag if not (c.isalnum() or c in TAG_EXTRA)), None)
    if bad is not None:
        raise ValueError(f"tag {clip(tag, 40)!r} has {bad!r}: a Zendesk tag takes letters, digits and _ - : . / only")
    return tag


def action_tags(ctx: dict[str, Any]) -> list[str]:
    """The rule action's ``tag`` (one tag) or ``tags`` (a list, or a string of tags separated
    by commas), else ``callmood-<rule>``."""
    action = ctx.get("action") or {}
    given = action.get("tags")
    if isinstance(given, str):
        given = [t for t in given.split(",") if t.strip()]
    elif given is not None and not isinstance(given, list):
        raise ValueError("action.tags must be a list of strings, or a string of tags separated by commas")
    if not given:
        given = [action["tag"]] if action.get("tag") else [f"callmood-{ctx['alert']['rule']}"]
    tags = list(dict.fromkeys(zendesk_tag(t) for t in given))
    if ctx.get("trial"):
        tags.append(TRIAL_TAG)
    return tags


def ticket_id_of(value: object) -> str:
    """A Zendesk ticket id (an integer) as the text put into a path, or ValueError."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text:
        raise ValueError("the call has no ticket_id: there is no Zendesk ticket to write to")
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ValueError(f"ticket_id {clip(one_line(text), 40)!r} is not a Zendesk ticket id (digits only)")
    return text


# --- send -------------------------------------------------------------------------------

class ZendeskFailed(Exception):
    """One request did not give what the next step needs; ``result`` says so."""

    def __init__(self, result: SendResult):
        super().__init__(result.error)
        self.result = result


class ZendeskTicketClosed(Exception):
    """Zendesk refused to update an open ticket (422) and it is closed now: ``ticket``."""

    def __init__(self, ticket: dict):
        super().__init__("closed meanwhile")
        self.ticket = ticket


class _ZendeskHttp:
    """The requests of one send, with the credentials, each answer checked."""

    def __init__(self, sink: ZendeskSink, http: requests.Session, timeout: float):
        self.sink, self.http, self.timeout = sink, http, timeout
        self.base = sink.cfg.base_url()
        creds = f"{sink.cfg.email}/token:{sink.cfg.api_token}"
        self.auth = "Basic " + base64.b64encode(creds.encode()).decode("ascii")
        self.secrets = [sink.cfg.api_token, self.auth.split(" ", 1)[1]]

    def fail(self, error: str, status: int | None = None, retryable: bool = True, **kw: Any) -> ZendeskFailed:
        text = scrub.text(error)
        for s in self.secrets:  # an answer that echoes the token verbatim
            text = text.replace(s, scrub.HIDDEN)
        return ZendeskFailed(SendResult(False, status, text[:400], retryable=retryable, **kw))

    def call(self, method: str, path: str, what: str, body: Any = None, extra: dict | None = None,
             expect: tuple[int, ...] = (200, 201)) -> tuple[int, dict]:
        """(status, JSON object) of one request; statuses outside ``expect`` raise ZendeskFailed."""
        url = path if path.startswith(("http://", "https://")) else self.base + path
        headers = {"User-Agent": "CallMood", "Accept": "application/json", "Authorization": self.auth,
                   **(extra or {})}
        resp = post_json(self.http, method, url, body, headers, self.timeout)
        if isinstance(resp, SendResult):
            raise self.fail(f"Zendesk {what}: {resp.error}", retryable=resp.retryable)
        code = resp.status_code
        if code not in expect:
            raise self.refused(resp, what)
        if code == 204 or not resp.content:
            return code, {}
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if code >= 300:  # an expected refusal: its words are only shown
                return code, {"error": one_line(resp.text[:200])}
            raise self.fail(f"Zendesk {what}: HTTP {code} with an answer that is not a JSON object", code)
        return code, data

    def refused(self, resp: requests.Response, what: str) -> ZendeskFailed:
        code, text = resp.status_code, one_line(resp.text[:200])
        if code == 429:
            wait = retry_after_s(resp.headers.get("Retry-After"))
            return self.fail(f"Zendesk {what}: rate limited (HTTP 429)", code, throttled=True, retry_after=wait)
        if code in (401, 403):
            return self.fail(f"Zendesk {what}: HTTP {code}: the API refused the credentials or their rights; "
                             f"check sinks.{self.sink.name}.email and api_token (an agent's, with API token "
                             f"access on)", code)
        # A request Zendesk calls malformed or aimed at nothing will not succeed later.
        final = code in (400, 404, 405, 410, 422)
        return self.fail(f"Zendesk {what}: HTTP {code}: {text}", code, retryable=not final)

    def comments_end_with(self, ticket_id: str, marker: str) -> bool:
        """Whether an internal comment of the ticket ends with the line ``marker``."""
        url: str | None = f"/api/v2/tickets/{url_value(ticket_id)}/comments.json?" + urlencode({"sort_order": "desc"})
        for _page in range(MAX_COMMENT_PAGES):
            _, page = self.call("GET", url, f"comments of ticket {ticket_id}")
            comments = page.get("comments")
            for c in comments if isinstance(comments, list) else []:
                if isinstance(c, dict) and c.get("public") is False and _ends_with(c, marker):
                    return True
            url = page.get("next_page") if isinstance(page.get("next_page"), str) else None
            if not url or not _same_origin(url, self.base):  # credentials go to the Zendesk API only
                return False
        return False


def _ends_with(comment: dict, marker: str) -> bool:
    for key in ("body", "plain_body"):
        text = comment.get(key)
        if isinstance(text, str) and text.strip() and text.strip().splitlines()[-1].strip() == marker:
            return True
    return False


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    try:
        return (a.scheme, (a.hostname or "").lower(), a.port) == (b.scheme, (b.hostname or "").lower(), b.port)
    except ValueError:
        return False


def _user_id(value: object) -> str | None:
    """A user id from Zendesk's answer, fit for a path; None when there is none."""
    if value is None:
        return None
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ValueError(f"Zendesk gave requester_id {clip(one_line(text or repr(value)), 40)!r}, not a user id")
    return text


class ZendeskSink(Sink):
    kind = "zendesk"
    Config = ZendeskSinkConfig
    cfg: ZendeskSinkConfig

    def render(self, ctx: dict[str, Any]) -> dict[str, Any]:
        ticket_id = ticket_id_of((ctx.get("call") or {}).get("ticket_id"))
        alert = ctx["alert"]
        subject = clip(f"CallMood: {one_line(alert.get('severity'))} alert ({one_line(alert.get('rule'))}) "
                       f"on closed ticket {ticket_id}", 150)
        return {"ticket_id": ticket_id, "tags": action_tags(ctx), "note": "\n".join(note_lines(ctx)),
                "subject": subject}

    def send(self, payload: dict[str, Any], http: requests.Session, timeout: float,
             idempotency_key: str) -> SendResult:
        try:
            ticket_id = ticket_id_of(payload.get("ticket_id"))
            stored = payload.get("tags")
            tags = [zendesk_tag(t) for t in stored] if isinstance(stored, list) else []
            if not tags or not isinstance(payload.get("note"), str):
                raise ValueError("no tags or no note")
        except (ValueError, TypeError) as exc:
            return SendResult(False, None, f"stored payload: {exc}", retryable=False)
        api = _ZendeskHttp(self, http, timeout)
        marker = f"callmood:{one_line(idempotency_key)}"
        note = f"{payload['note']}\n{marker}"
        try:
            ticket = self._ticket(api, ticket_id)
            if ticket.get("status") != "closed":
                try:
                    return self._tag_user(api, ticket, tags, self._open(api, ticket_id, tags, note, marker))
                except ZendeskTicketClosed as closed:  # closed while we wrote: it goes as a closed one
                    ticket = closed.ticket
            if self.cfg.closed_ticket == "follow_up":
                return self._follow_up(api, ticket_id, ticket, tags, note, marker, payload, idempotency_key)
            return self._user_only(api, ticket_id, ticket, tags)
        except ZendeskFailed as exc:
            return exc.result
        except ValueError as exc:
            return api.fail(str(exc), retryable=False).result

    def _ticket(self, api: _ZendeskHttp, ticket_id: str) -> dict:
        try:
            _, data = api.call("GET", f"/api/v2/tickets/{url_value(ticket_id)}.json", f"ticket {ticket_id}")
        except ZendeskFailed as exc:
            if exc.result.status_code == 404:
                raise api.fail(f"no ticket {ticket_id} in Zendesk (HTTP 404)", 404, retryable=False) from None
            raise
        ticket = data.get("ticket")
        if not isinstance(ticket, dict):
            raise api.fail(f"Zendesk ticket {ticket_id}: the answer has no ticket")
        _user_id(ticket.get("requester_id"))  # checked before anything is written
        return ticket

    def _open(self, api: _ZendeskHttp, ticket_id: str, tags: list[str], note: str, marker: str) -> str:
        """Tag the open ticket and add the note; what to say beside the delivery ("": nothing).
        Raises ZendeskTicketClosed when Zendesk refused because the ticket was closed meanwhile."""
        path = f"/api/v2/tickets/{url_value(ticket_id)}"
        code, answer = api.call("PUT", f"{path}/tags.json", f"tags of ticket {ticket_id}", {"tags": tags},
                                expect=(200, 201, 422))
        if code == 422:
            self._closed_meanwhile(api, ticket_id, answer)
        if not self.cfg.note:
            return ""
        if api.comments_end_with(ticket_id, marker):
            return f"the note on ticket {ticket_id} was already there (a repeated send)"
        code, answer = api.call("PUT", f"{path}.json", f"note on ticket {ticket_id}",
                                {"ticket": {"comment": {"body": note, "public": False}}}, expect=(200, 201, 422))
        if code == 422:
            self._closed_meanwhile(api, ticket_id, answer)
        return ""

    def _closed_meanwhile(self, api: _ZendeskHttp, ticket_id: str, answer: dict) -> None:
        ticket = self._ticket(api, ticket_id)
        if ticket.get("status") == "closed":
            raise ZendeskTicketClosed(ticket)
        raise api.fail(f"Zendesk refused to update ticket {ticket_id} (HTTP 422): {one_line(answer)[:200]}",
                       422, retryable=False)

    def _tag_user(self, api: _ZendeskHttp, ticket: dict, tags: list[str], done: str) -> SendResult:
        """The requester's tags, after the ticket's: a refusal that retrying cannot fix (user
        tagging off in Zendesk) is said beside the delivery, which succeeded for the ticket."""
        requester = _user_id(ticket.get("requester_id"))
        notes = [done] if done else []
        if self.cfg.tag_user and requester:
            try:
                api.call("PUT", f"/api/v2/users/{url_value(requester)}/tags.json", f"tags of user {requester}",
                         {"tags": tags})
            except ZendeskFailed as exc:
                if exc.result.retryable:  # the ticket's part is safe to repeat
                    raise
                notes.append(f"the requester was not tagged: {exc.result.error}")
        return SendResult(True, 200, note="; ".join(notes) or None)

    def _user_only(self, api: _ZendeskHttp, ticket_id: str, ticket: dict, tags: list[str]) -> SendResult:
        requester = _user_id(ticket.get("requester_id"))
        if not (self.cfg.tag_user and requester):
            why = "tag_user is off" if requester else "it has no requester"
            return api.fail(f"ticket {ticket_id} is closed and {why}: nothing can be written (set "
                            f"sinks.{self.name}.closed_ticket: follow_up to make a follow-up ticket)",
                            retryable=False).result
        api.call("PUT", f"/api/v2/users/{url_value(requester)}/tags.json", f"tags of user {requester}",
                 {"tags": tags})
        return SendResult(True, 200, note=f"ticket {ticket_id} is closed: only its requester was tagged")

    def _follow_up(self, api: _ZendeskHttp, ticket_id: str, ticket: dict, tags: list[str], note: str,
                   marker: str, payload: dict, idempotency_key: str) -> SendResult:
        followups = ticket.get("followup_ids") if isinstance(ticket.get("followup_ids"), list) else []
        made = None
        for fid in followups[-MAX_FOLLOWUPS_CHECKED:]:
            fid = ticket_id_of(fid)
            if api.comments_end_with(fid, marker):
                made, again = fid, True
                break
        if made is None:
            parent_tags = [t for t in ticket.get("tags") or [] if isinstance(t, str)]
            body: dict[str, Any] = {"via_followup_source_id": int(ticket_id),
                                    "subject": clip(one_line(payload.get("subject") or "CallMood"), 150),
                                    "comment": {"body": note, "public": False},
                                    "tags": list(dict.fromkeys(parent_tags + tags))}
            requester = _user_id(ticket.get("requester_id"))
            if requester:
                body["requester_id"] = int(requester)
            _, data = api.call("POST", "/api/v2/tickets.json", f"follow-up of ticket {ticket_id}",
                               {"ticket": body}, extra={"Idempotency-Key": idempotency_key})
            created = data.get("ticket") if isinstance(data.get("ticket"), dict) else {}
            made, again = str(created.get("id") or "?"), False
        said = f"ticket {ticket_id} is closed: follow-up ticket {made} " + ("was already made" if again else "was made")
        return self._tag_user(api, ticket, tags, said)
