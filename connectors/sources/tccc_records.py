"""TCCC's call records API, DescribeTelCdr (API 2020-02-10), through the official Tencent
Cloud SDK (TC3-HMAC-SHA256 signing): every call record of an application in a time range,
page by page, as plain dicts (TelCdrInfo's fields).

https://cloud.tencent.com/document/product/1270/47714: StartTimeStamp/EndTimeStamp in unix
seconds, at most 180 days back and a window shorter than 90 days; PageSize at most 100,
PageNumber from 0; the answer's TotalCount and TelCdrList.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Iterator

import requests

from connectors.sources.base import VendorApiError

log = logging.getLogger(__name__)

PAGE = 100  # DescribeTelCdr's largest page
MAX_PAGES = 1000  # a guard against an API that never says it is done
WINDOW_S = 89 * 86400  # DescribeTelCdr refuses windows of 90 days or more


def call_records(endpoint: str, secret_id: str, secret_key: str, region: str, timeout_s: int, sdk_app_id: int,
                 since: datetime, until: datetime, http: requests.Session | None = None) -> Iterator[dict[str, Any]]:
    """The call records of ``sdk_app_id`` started in [since, until) (naive times are UTC).
    ``endpoint``: host[:port] (https) or http(s)://host[:port]. The SDK has a connection of
    its own; it takes proxies from the environment only when ``http`` does (trust_env)."""
    client = _client(endpoint, secret_id, secret_key, region, timeout_s, http)
    start, end = _unix(since), _unix(until)
    while start < end:
        stop = min(end, start + WINDOW_S)
        yield from _pages(client, sdk_app_id, start, stop)
        start = stop


def _client(endpoint: str, secret_id: str, secret_key: str, region: str, timeout_s: int,
            http: requests.Session | None):
    # Imported here: only `callmood sync tccc` needs the SDK.
    from tencentcloud.ccc.v20200210 import ccc_client
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    scheme, _, host = endpoint.rpartition("://")
    http_profile = HttpProfile(protocol=scheme or "https", endpoint=host, reqMethod="POST", reqTimeout=timeout_s)
    # No region breaker: it would send the request to a backup endpoint of its own choosing.
    profile = ClientProfile(httpProfile=http_profile, disable_region_breaker=True)
    client = ccc_client.CccClient(credential.Credential(secret_id, secret_key), region, profile)
    conn = getattr(getattr(client, "request", None), "conn", None)
    if http is not None and not http.trust_env and conn is not None:
        # The SDK read HTTP(S)_PROXY when it was made, and its session would read them again.
        conn.proxy = None
        if isinstance(getattr(conn, "_session", None), requests.Session):
            conn._session.trust_env = False
    return client


def _pages(client, sdk_app_id: int, start: int, stop: int) -> Iterator[dict[str, Any]]:
    from tencentcloud.ccc.v20200210 import models
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    seen = 0
    for page in range(MAX_PAGES):
        req = models.DescribeTelCdrRequest()
        req.SdkAppId, req.StartTimeStamp, req.EndTimeStamp = sdk_app_id, start, stop
        req.PageSize, req.PageNumber = PAGE, page
        try:
            resp = client.DescribeTelCdr(req)
        except TencentCloudSDKException as exc:
            # The code and message say what is wrong (AuthFailure..., a window too long);
            # they never carry the key.
            raise VendorApiError(f"TCCC DescribeTelCdr failed: {exc.get_code()}: {exc.get_message()}") from None
        records = json.loads(resp.to_json_string()).get("TelCdrList") or []
        yield from (r for r in records if isinstance(r, dict))
        seen += len(records)
        if len(records) < PAGE or seen >= (resp.TotalCount or 0):
            return
    log.warning("tccc: stopped listing call records after %d pages", MAX_PAGES)


def _unix(t: datetime) -> int:
    # The house's times are naive UTC.
    return int((t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp())
