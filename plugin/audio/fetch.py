"""Download a recording safely: streamed, time-limited, size-capped, redirects
bounded, and never to an address the operator did not allow."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from plugin.config import FetchConfig

CHUNK = 64 * 1024


class FetchError(Exception):
    """The recording could not be downloaded. ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    content_type: str | None
    final_url: str


def check_url(url: str, cfg: FetchConfig) -> None:
    """Refuse schemes and hosts that a webhook sender must not make us reach."""
    parts = urlsplit(url)
    if parts.scheme not in cfg.allowed_schemes:
        raise FetchError(f"recording URL scheme {parts.scheme!r} is not allowed "
                         f"(allowed: {', '.join(cfg.allowed_schemes)})")
    host = parts.hostname
    if not host:
        raise FetchError("recording URL has no host")
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve recording host {host!r}: {exc.strerror}", retryable=True)
    allowed = [ipaddress.ip_network(n, strict=False) for n in cfg.allow_networks]
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip.is_global and not ip.is_multicast:
            continue
        if any(ip in net for net in allowed):
            continue
        raise FetchError(
            f"recording host {host!r} resolves to non-public address {ip}; "
            f"add its network to fetch.allow_networks to allow it")


def fetch(url: str, dest: str | os.PathLike, cfg: FetchConfig,
          headers: dict[str, str] | None = None) -> Fetched:
    """Stream ``url`` into ``dest``; the file appears only once complete."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    session = requests.Session()
    session.trust_env = False  # no proxy or netrc surprises from the environment
    current = url
    try:
        for hop in range(cfg.max_redirects + 1):
            check_url(current, cfg)
            try:
                resp = session.get(current, stream=True, allow_redirects=False,
                                   timeout=(cfg.timeout_s, cfg.timeout_s), headers=headers)
            except requests.Timeout:
                raise FetchError(f"timed out fetching recording from {_host(current)}", retryable=True)
            except requests.RequestException as exc:
                raise FetchError(f"cannot fetch recording from {_host(current)}: {exc.__class__.__name__}",
                                 retryable=True)
            with resp:
                if resp.is_redirect:
                    location = resp.headers.get("Location")
                    if not location:
                        raise FetchError("redirect without a Location header")
                    current = urljoin(current, location)
                    continue
                if resp.status_code != 200:
                    retryable = resp.status_code >= 500 or resp.status_code in (408, 425, 429)
                    raise FetchError(f"recording server answered HTTP {resp.status_code}", retryable=retryable)
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > cfg.max_bytes:
                    raise FetchError(f"recording is {int(length)} bytes, over the {cfg.max_bytes}-byte "
                                     f"limit (fetch.max_bytes)")
                size = 0
                try:
                    with open(tmp, "wb") as out:
                        for chunk in resp.iter_content(CHUNK):
                            size += len(chunk)
                            if size > cfg.max_bytes:
                                raise FetchError(f"recording exceeds the {cfg.max_bytes}-byte limit "
                                                 f"(fetch.max_bytes)")
                            out.write(chunk)
                except requests.RequestException as exc:
                    raise FetchError(f"download interrupted: {exc.__class__.__name__}", retryable=True)
                if size == 0:
                    raise FetchError("recording is empty")
                os.replace(tmp, dest)
                return Fetched(dest, size, resp.headers.get("Content-Type"), current)
        raise FetchError(f"more than {cfg.max_redirects} redirects (fetch.max_redirects)")
    finally:
        tmp.unlink(missing_ok=True)
        session.close()


def _host(url: str) -> str:
    return urlsplit(url).hostname or url
