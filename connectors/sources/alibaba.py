"""Alibaba Cloud Contact Center (CCC, API 2020-07-01): the event push, then the recording
through the CCC API.

    POST /webhooks/alibaba?token=<sources.alibaba.token>
    [{"eventType": "DualTrackRecordingReady", "eventTime": "2021-04-14T02:34:00.447Z",
      "instanceId": "ccc-test", "contactId": "job-6538214103689", "agentIds": "agent@ccc-test",
      ...}, ...]

    -> 200 {"code": 0}

What the vendor documents, and where:

- Events (https://help.aliyun.com/zh/ccs/use-cases/event-notification-formats): every event
  has ``eventTime``, ``eventType`` and ``instanceId``; call events add ``contactId``,
  ``callType``, ``caller``, ``callee``, ``agentId``, ``skillGroupId``. ``RecordingReady`` (the
  mixed recording is ready: ``contactId``, ``agentIds``, ``duration``, ``fileName``,
  ``downloadURL``), ``DualTrackRecordingReady`` (the channel-separated recording is ready)
  and ``CDRReady`` (the call detail record is ready) are the "after the call" events.
- Webhook delivery is set with UpdateSubscription
  (https://help.aliyun.com/zh/ccs/developer-reference/api-ccc-2020-07-01-updatesubscription):
  ``ProducerId=PID_Webhook``, ``DefaultTopic=Topic_Webhook``, ``AccessPoint`` = our URL, and
  the list of event names. Nothing there (nor in the event format page) signs a push or sends
  a credential: the docs are silent on push authentication. So we require a shared secret
  of our own that the operator puts in the push URL (``?token=``) or, where a proxy can add
  one, a header; it is compared in constant time. The answer ``{"code": 0}`` is the one the
  project's issue names; the docs we found do not describe the expected answer either.
- GetMultiChannelRecording
  (https://help.aliyun.com/zh/ccs/developer-reference/api-ccc-2020-07-01-getmultichannelrecording):
  one file (MKV) with agent and customer on separate channels; the docs do not say which
  channel is whose, so ``channel_roles`` is configurable (default 0 = agent, 1 = customer).
  ListMonoRecordings
  (https://help.aliyun.com/zh/ccs/developer-reference/api-ccc-2020-07-01-listmonorecordings):
  one WAV per party's channel, each naming its ``AgentId``; an item without one is the
  customer's (our reading: the docs show only an agent's item). ``FileUrl`` is an OSS URL
  signed for one day: it is fetched at once, with no credential of ours.
- The API is called through Alibaba's official SDK (alibabacloud_ccc20200701), which signs
  each request (ACS3-HMAC-SHA256, Authorization header) with the AccessKey.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

import requests
from pydantic import Field, field_validator

from connectors.sources.base import (Accepted, Answer, EventError, Inbound, Received, SignatureError, Source,
                                     SourceConfig, VendorApiError, same_secret)
from connectors.sources.fields import json_value
from plugin.core import ids
from plugin.core.data import CallEvent, Download
from plugin.core.phones import e164

# The events that mean "the call is over and its recording can be fetched".
RECORDING_EVENTS = ("DualTrackRecordingReady", "RecordingReady", "CDRReady")
# Every other event CCC documents (event-notification-formats): acknowledged, counted, dropped.
OTHER_EVENTS = frozenset("""
    AgentCheckIn AgentReady AgentDialing AgentRinging AgentTalk AgentRelease AgentBreak
    AgentCheckOut AgentRingingTimeout Dialing Ringing Established Released Held Retrieved Muted
    Unmuted BlindTransfer AttendedTransfer StartConference StopConference Route2IVR Abandoned
    Enqueue QueueingTimeout QueueingOverflow QueueingCancelled QueueingRerouted QueueingFailure
    DispatchingFailure AssignAgentFailure AssignAgent InitiateConsultant StartConsultant
    StopConsultant StartMonitor StopMonitor StartCoach StopCoach BargeIn Intercept IvrTracking
    TextStream MediaStream CampaignSubmitted CampaignPaused CampaignResumed CampaignAborted
    CampaignCompleted CaseAttempted SatisfactionSurveyOffer SatisfactionSurveyResponse
    VoicemailReady""".split())
# Why an event was dropped: a fixed set (metric label values), never a vendor's raw value.
IGNORED_NOT_RECORDING = "event:not-recording"  # a documented event that is not "recording ready"
IGNORED_DISABLED = "event:disabled"  # a recording event the operator did not pick (sources.alibaba.events)
IGNORED_UNKNOWN = "event:unknown"  # an event type CCC does not document (yet)
IGNORED_OTHER_INSTANCE = "instance:other"  # another CCC instance than sources.alibaba.instance_id
IGNORED_NOT_AUDIO = "media:not-audio"  # a chat or ticket contact: nothing to listen to

MAX_EVENTS = 1000  # per push
# Where the customer's number is, by CCC callType; other types (internal, monitor...) have none.
CUSTOMER_SIDE = {"INBOUND": "caller", "OUTBOUND": "callee", "PREDICTIVE": "callee", "BACK2BACK": "callee"}
NOT_AUDIO = {"CHAT", "TICKET"}
# API error codes worth another try later: the vendor's throttling and its own trouble.
RETRYABLE_CODES = re.compile(r"^(Throttling.*|ServiceUnavailable.*|InternalError.*|SystemBusy.*|"
                             r"RequestTimeout.*|UnknownError.*)$", re.I)
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class CccApiError(VendorApiError):
    """A CCC API call failed. ``retryable``: worth another try later (network trouble,
    throttling, the vendor's 5xx, a recording not there yet) or not (no such instance or
    contact, bad credentials). The message names the API and the error code, never a secret."""

    def __init__(self, api: str, code: str, message: str, retryable: bool):
        super().__init__(f"Alibaba CCC {api} failed: {code}: {message}", retryable)
        self.api = api
        self.code = code


class AlibabaConfig(SourceConfig):
    # The shared secret CCC must present: in the push URL (?token=...) or in token_header.
    # Until set, every push is refused (401). Make one with `openssl rand -hex 32`.
    token: str | None = Field(None, min_length=16)
    token_header: str = "X-CallMood-Token"
    # Which events make a call (the ones not listed are acknowledged and counted).
    events: list[Literal["DualTrackRecordingReady", "RecordingReady", "CDRReady"]] = Field(
        default_factory=lambda: ["DualTrackRecordingReady", "RecordingReady"], min_length=1)
    # The CCC instance whose calls we analyse; pushes of other instances are ignored. Unset:
    # any instance of the account (the event's instanceId is then used to fetch).
    instance_id: str | None = None
    # CCC API: a RAM user's AccessKey with read access to the instance's recordings.
    access_key_id: str | None = None
    access_key_secret: str | None = None
    region: str = "cn-shanghai"
    api_endpoint: str | None = None  # host[:port]; default ccc.<region>.aliyuncs.com
    api_protocol: Literal["https", "http"] = "https"  # http only for a local stand-in in tests
    api_timeout_s: float = Field(10, gt=0, le=120)
    # multi_channel: GetMultiChannelRecording, one file, agent and customer on their own
    # channels (channel_roles). mono_per_party: ListMonoRecordings, one file per party.
    recording_layout: Literal["multi_channel", "mono_per_party"] = "multi_channel"
    channel_roles: dict[int, Literal["agent", "customer"]] = Field(
        default_factory=lambda: {0: "agent", 1: "customer"})
    # The country of numbers CCC writes without one (E.164 normalisation).
    phone_region: str = Field("CN", pattern=r"^[A-Z]{2}$")

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not _HOST.fullmatch(v):
            raise ValueError("must be host[:port], without a scheme or path (e.g. ccc.cn-shanghai.aliyuncs.com)")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9-]{2,40}", v):
            raise ValueError("must be an Alibaba Cloud region id such as cn-shanghai")
        return v

    @field_validator("channel_roles")
    @classmethod
    def _channels(cls, v: dict[int, str]) -> dict[int, str]:
        if any(not 0 <= k <= 7 for k in v) or set(v.values()) != {"agent", "customer"}:
            raise ValueError("map channel numbers 0-7 to agent and customer, e.g. {0: agent, 1: customer}")
        return v

    def endpoint(self) -> str:
        return self.api_endpoint or f"ccc.{self.region}.aliyuncs.com"


class AlibabaSource(Source):
    name = "alibaba"
    Config = AlibabaConfig

    # --- the door -------------------------------------------------------------------------

    def authenticate(self, req: Inbound, cfg: AlibabaConfig, now: float | None = None) -> None:
        if not cfg.token:
            raise SignatureError(f"source {self.name!r} has no token configured (sources.{self.name}.token)")
        given = req.headers.get(cfg.token_header) or req.arg("token")
        if not given:
            raise SignatureError(f"missing token: put ?token=<sources.{self.name}.token> in the push URL "
                                 f"(or send the {cfg.token_header} header)")
        if not same_secret(given, cfg.token):
            raise SignatureError(f"the token does not match sources.{self.name}.token")

    def receive(self, req: Inbound, cfg: AlibabaConfig) -> Received:
        data = json_value(req.body)
        items = [data] if isinstance(data, dict) else data  # documented: an array; one object is taken too
        if not isinstance(items, list):
            raise EventError("body", "expected a JSON array of events")
        if len(items) > MAX_EVENTS:
            raise EventError("body", f"{len(items)} events in one push; at most {MAX_EVENTS}")
        received = Received()
        for i, item in enumerate(items):
            event, reason = self._event(item, f"[{i}]", cfg)
            if event is not None:
                received.events.append(event)
            else:
                received.ignored.append(reason)
        return received

    def _event(self, item: Any, at: str, cfg: AlibabaConfig) -> tuple[CallEvent | None, str]:
        if not isinstance(item, dict):
            raise EventError(at, "expected an event object")
        kind = item.get("eventType")
        if not isinstance(kind, str) or not kind:
            raise EventError(f"{at}.eventType", "missing: every CCC event names its eventType")
        if kind not in RECORDING_EVENTS:
            return None, IGNORED_NOT_RECORDING if kind in OTHER_EVENTS else IGNORED_UNKNOWN
        if kind not in cfg.events:
            return None, IGNORED_DISABLED
        instance = _id(item, "instanceId", at, required=True)
        if cfg.instance_id and instance != cfg.instance_id:
            return None, IGNORED_OTHER_INSTANCE
        if str(item.get("mediaType") or "").upper() in NOT_AUDIO:
            return None, IGNORED_NOT_AUDIO
        contact = _id(item, "contactId", at, required=True)
        agent = _id(item, "agentId", at) or _first_agent(item, at)
        side = CUSTOMER_SIDE.get(str(item.get("callType") or "").upper())
        number = item.get(side) if side else None
        return CallEvent(
            source=self.name, call_id=contact,
            recording_url=_api_url(cfg, instance, contact),
            customer_phone=e164(number, cfg.phone_region) if isinstance(number, str) else None,
            agent_id=agent, queue=_id(item, "skillGroupId", at),
            channel_roles=dict(cfg.channel_roles) if cfg.recording_layout == "multi_channel" else None,
            metadata=_metadata(item), raw=item,
        ), ""

    def answer(self, received: Received, accepted: list[Accepted]) -> Answer:
        # The success answer the issue names for CCC (the docs we found are silent on it), for
        # ignored events too: anything else may be taken as a failed delivery and pushed again.
        return Answer.json({"code": 0})

    # --- the recording, at analysis time ---------------------------------------------------

    def downloads(self, call: CallEvent, cfg: AlibabaConfig, http: requests.Session) -> list[Download]:
        """The signed OSS URL(s) of the call's recording, asked of the CCC API now (they last a
        day). ``http`` is not used: the SDK makes and signs its own requests."""
        instance = cfg.instance_id or str(call.raw.get("instanceId") or "")
        if not instance:
            raise CccApiError("GetMultiChannelRecording", "NoInstance",
                                 f"set sources.{self.name}.instance_id", retryable=False)
        if not (cfg.access_key_id and cfg.access_key_secret):
            raise CccApiError("GetMultiChannelRecording", "NoCredentials",
                                 f"set sources.{self.name}.access_key_id and access_key_secret", retryable=False)
        client = _client(cfg)
        if cfg.recording_layout == "mono_per_party":
            return _mono_recordings(client, cfg, instance, call.call_id)
        return [Download(_multi_channel_recording(client, cfg, instance, call.call_id))]


# --- reading an event ---------------------------------------------------------------------

def _id(item: dict, key: str, at: str, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise EventError(f"{at}.{key}", "missing")
        return None
    if not isinstance(value, str):
        raise EventError(f"{at}.{key}", "must be a string")
    problem = ids.id_problem(value)
    if problem:
        raise EventError(f"{at}.{key}", problem)
    return value


def _first_agent(item: dict, at: str) -> str | None:
    # RecordingReady names the call's agents as "a@inst,b@inst": the first one answered.
    value = item.get("agentIds")
    if not isinstance(value, str) or not value.strip():
        return None
    first = value.split(",")[0].strip()
    problem = ids.id_problem(first)
    if problem:
        raise EventError(f"{at}.agentIds", problem)
    return first


def _metadata(item: dict) -> dict[str, Any]:
    """A few of the event's fields worth keeping beside the call (small, plain values)."""
    keep = ("eventType", "eventTime", "instanceId", "callType", "duration", "startTime", "endTime")
    return {k: item[k] if not isinstance(item[k], str) else item[k][:128]
            for k in keep if isinstance(item.get(k), (str, int, float)) and not isinstance(item.get(k), bool)}


def _api_url(cfg: AlibabaConfig, instance: str, contact: str) -> str:
    # What the recording is, for people reading the call: the API call that fetches it.
    action = "ListMonoRecordings" if cfg.recording_layout == "mono_per_party" else "GetMultiChannelRecording"
    return (f"{cfg.api_protocol}://{cfg.endpoint()}/?Action={action}"
            f"&InstanceId={quote(instance, safe='')}&ContactId={quote(contact, safe='')}")


# --- the CCC API --------------------------------------------------------------------------

def _client(cfg: AlibabaConfig):
    # Imported here: the SDK is heavy, and only workers fetching recordings need it.
    from alibabacloud_ccc20200701.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    ms = int(cfg.api_timeout_s * 1000)
    return Client(Config(access_key_id=cfg.access_key_id, access_key_secret=cfg.access_key_secret,
                         region_id=cfg.region, endpoint=cfg.endpoint(), protocol=cfg.api_protocol,
                         read_timeout=ms, connect_timeout=ms))


def _runtime():
    from darabonba.runtime import RuntimeOptions

    return RuntimeOptions(autoretry=False)  # the job queue retries, with its own backoff


def _multi_channel_recording(client, cfg: AlibabaConfig, instance: str, contact: str) -> str:
    from alibabacloud_ccc20200701 import models

    api = "GetMultiChannelRecording"
    body = _call(api, lambda: client.get_multi_channel_recording_with_options(
        models.GetMultiChannelRecordingRequest(contact_id=contact, instance_id=instance), _runtime()))
    url = body.data.file_url if body.data is not None else None
    if not url:
        raise CccApiError(api, "NoRecording", f"no multi-channel recording for contact {contact} yet",
                             retryable=True)
    return _signed_url(api, url)


def _mono_recordings(client, cfg: AlibabaConfig, instance: str, contact: str) -> list[Download]:
    from alibabacloud_ccc20200701 import models

    api = "ListMonoRecordings"
    body = _call(api, lambda: client.list_mono_recordings_with_options(
        models.ListMonoRecordingsRequest(contact_id=contact, instance_id=instance), _runtime()))
    found = [Download(_signed_url(api, r.file_url), role="agent" if r.agent_id else "customer")
             for r in body.data or [] if r is not None and r.file_url]
    if not found:
        raise CccApiError(api, "NoRecording", f"no per-party recordings for contact {contact} yet",
                             retryable=True)
    return found


def _call(api: str, send):
    """The response body of one API call, or CccApiError saying what went wrong."""
    from alibabacloud_tea_openapi import exceptions as sdk_errors
    from Tea.exceptions import TeaException  # the base of every SDK error, network ones included

    try:
        response = send()
    except sdk_errors.AlibabaCloudException as exc:  # the API answered with an error
        code, status = str(exc.code or "Unknown"), exc.status_code or 0
        retryable = (isinstance(exc, (sdk_errors.ThrottlingException, sdk_errors.ServerException))
                     or status >= 500 or bool(RETRYABLE_CODES.match(code)))
        raise CccApiError(api, code, f"HTTP {status}: {_vendor_message(exc)}", retryable) from None
    except (TeaException, requests.RequestException, OSError) as exc:  # no answer at all
        raise CccApiError(api, "NetworkError", f"{exc.__class__.__name__}: {_short(str(exc))}",
                             retryable=True) from None
    body = response.body
    code = str(getattr(body, "code", None) or "OK")
    if code != "OK":  # an error answered with HTTP 200
        raise CccApiError(api, code, _short(str(getattr(body, "message", "") or "")),
                             bool(RETRYABLE_CODES.match(code)))
    return body


def _vendor_message(exc) -> str:
    # The SDK's message is "code: 404, <vendor message> request id: <id>"; keep it short.
    return _short(str(exc.message or exc.description or ""))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _signed_url(api: str, url: str) -> str:
    # The URL comes from the vendor's answer: the same checks as any recording URL at the door.
    if not url.startswith(("https://", "http://")) or any(
            c.isspace() or not c.isprintable() or c == "\\" for c in url) or len(url) > 4096:
        raise CccApiError(api, "BadFileUrl", "the answer's FileUrl is not a plain http(s) URL", retryable=False)
    return url
