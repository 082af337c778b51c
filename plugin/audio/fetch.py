"""Download a recording safely: streamed, time-limited, size-capped, redirects
bounded, and never to an address the operator did not allow.

Each hop is resolved once, every address is checked, and the connection goes to
the checked address (Host header and TLS name kept), so neither a URL that two
parsers read differently nor a DNS answer that changes between check and use
can lead the download somewhere else.

``fetch.max_seconds`` is a wall-clock deadline for the whole fetch, redirects, connecting
and the TLS handshake included: a watchdog shuts the connection's socket when it passes,
so a server that trickles a byte at a time (each read succeeding within
``fetch.timeout_s``) is cut off on time. Such a failure is not retried: the next attempt
would hold a worker just as long, and a recording that honestly needs longer needs a
larger ``fetch.max_seconds``, not another try.

Every other failure says what it was, naming the host (never the URL's path or query,
which may carry a token): no such host (DNS), connection refused, no route, a connect or
read timeout, an untrusted or wrong TLS certificate, a TLS handshake that failed, a
connection cut, an HTTP status. Each is retryable or not by what another try could
change: a refused connection, a timeout or a 5xx may pass (a restart, a load spike); a
certificate the operator does not trust will not (it needs fetch.ca_bundle or a fixed
server), nor does a 404. A name that does not resolve (NXDOMAIN) is retried too, within
worker.max_attempts: a record just created, or a resolver briefly wrong, is answered
within minutes, and the cost of a few more lookups is small next to losing the call.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from ssl import SSLCertVerificationError
from urllib.parse import urljoin

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Timeout, parse_url

from plugin.config import FetchConfig
from plugin.core.data import Credential
from plugin.core.files import private_opener

READ_BYTES = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


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


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL (brackets stripped for IPv6)
    port: int
    ip: str  # the checked address we connect to
    request_uri: str
    host_header: str


def check_url(url: str, cfg: FetchConfig, timeout_s: float | None = None) -> Target:
    """Refuse schemes and hosts that a webhook sender must not make us reach; resolving the
    host may take ``timeout_s`` (default fetch.timeout_s)."""
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise FetchError("recording URL contains whitespace, control characters or a backslash")
    try:
        u = parse_url(url)  # the parser urllib3 itself uses for the request
    except LocationParseError:
        raise FetchError("recording URL cannot be parsed") from None
    scheme = (u.scheme or "").lower()
    if scheme not in cfg.allowed_schemes:
        raise FetchError(f"recording URL scheme {scheme!r} is not allowed "
                         f"(allowed: {', '.join(cfg.allowed_schemes)})")
    if not u.host:
        raise FetchError("recording URL has no host")
    if u.auth:
        raise FetchError("credentials in the recording URL are not supported: remove them from the URL and "
                         "set them for this host under sources.<source>.download (username and password, "
                         "bearer, or header and value)")
    host = u.host.strip("[]")
    port = u.port or (443 if scheme == "https" else 80)
    try:
        infos = _resolve(host, port, cfg.timeout_s if timeout_s is None else timeout_s)
    except socket.gaierror as exc:
        raise _dns_error(host, exc) from None
    allowed = [ipaddress.ip_network(n, strict=False) for n in cfg.allow_networks]
    ips = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not _allowed(ip, allowed):
            raise FetchError(f"recording host {host!r} resolves to non-public address {ip}; "
                             f"add its network to fetch.allow_networks to allow it")
        ips.append(str(ip))
    host_header = u.host if u.port is None else f"{u.host}:{u.port}"
    return Target(scheme, host, port, ips[0], u.request_uri, host_header)


def _dns_error(host: str, exc: socket.gaierror) -> FetchError:
    # Retryable all (see the module's docstring): NXDOMAIN included, within worker.max_attempts.
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return FetchError(f"DNS: no such host {host!r} (the name has no address: {exc.strerror})", retryable=True)
    if exc.errno == socket.EAI_AGAIN:
        return FetchError(f"DNS: lookup of {host!r} failed for now, the name server gave no answer "
                          f"({exc.strerror})", retryable=True)
    return FetchError(f"DNS: cannot resolve recording host {host!r}: {exc.strerror}", retryable=True)


def _resolve(host: str, port: int, timeout_s: float) -> list:
    """getaddrinfo within ``timeout_s``. It cannot be interrupted, so it runs in a thread of
    its own that is left to finish: a name server that never answers (the sender may pick
    it) must not hold the download past its deadline."""
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="callmood-resolve", daemon=True).start()
    if not done.wait(max(0.001, timeout_s)):
        raise FetchError(f"resolving recording host {host!r} took longer than {timeout_s:.3g}s", retryable=True)
    if "error" in box:
        raise box["error"]
    return box["infos"]


def _allowed(ip, allowed) -> bool:
    if any(ip in net for net in allowed):
        return True
    inner = ip.ipv4_mapped if ip.version == 6 else None
    if ip.version == 6 and ip in NAT64:
        inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if inner is not None:
        return _allowed(inner, allowed)
    return ip.is_global and not ip.is_multicast


class _Watchdog:
    """Shuts the fetch's current socket down at the deadline, whatever it is waiting for
    (the TLS handshake, headers, a body arriving a byte at a time)."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the socket: TLS wrapping detaches the original object, and the
        # duplicate's descriptor, held until cancel(), cannot be reused by another connection.
        with self._lock:
            self._forget()
            self._sock = sock.dup()
            if self.fired:
                _shut(self._sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)

    def _forget(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._forget()


def _shut(sock: socket.socket) -> None:
    try:  # wakes a recv blocked in another thread, which close() alone does not
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _WatchedHTTP(HTTPConnection):
    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._watchdog.watch(sock)
        return sock


class _WatchedHTTPS(HTTPSConnection):
    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # before the TLS handshake: that is watched too
        self._watchdog.watch(sock)
        return sock


def _pool(t: Target, cfg: FetchConfig, watchdog: _Watchdog):
    # Neither connecting nor any single read may outlast what is left of the deadline.
    wait = max(0.001, min(cfg.timeout_s, watchdog.left()))
    timeout = Timeout(connect=wait, read=wait)
    if t.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            t.ip, t.port, timeout=timeout, retries=False, maxsize=1,
            cert_reqs="CERT_REQUIRED", ca_certs=cfg.ca_bundle or certifi.where(),
            server_hostname=t.host, assert_hostname=t.host, watchdog=watchdog)
        pool.ConnectionCls = _WatchedHTTPS
        return pool
    pool = urllib3.HTTPConnectionPool(t.ip, t.port, timeout=timeout, retries=False, maxsize=1,
                                      watchdog=watchdog)
    pool.ConnectionCls = _WatchedHTTP
    return pool


def _request_error(exc: HTTPError, t: Target, cfg: FetchConfig) -> FetchError:
    """What went wrong between connecting and the answer's headers, in words."""
    where = f"{t.host}:{t.port}" + (f" ({t.ip})" if t.ip != t.host else "")
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, NewConnectionError):  # before timeouts: urllib3 makes it one of them
        code = getattr(cause, "errno", None)
        if code == errno.ECONNREFUSED:
            return FetchError(f"connection refused by {where}: nothing listens on that port", retryable=True)
        if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return FetchError(f"cannot reach {where}: {cause.strerror}", retryable=True)
        return FetchError(f"cannot connect to {where}: {getattr(cause, 'strerror', None) or cause}"[:300],
                          retryable=True)
    if isinstance(exc, Urllib3Timeout):
        if isinstance(exc, ConnectTimeoutError):  # no answer to the connection at all
            return FetchError(f"timed out connecting to {where} after {cfg.timeout_s:g}s (fetch.timeout_s)",
                              retryable=True)
        return FetchError(f"timed out waiting for {where} to answer: connected, but nothing came within "
                          f"{cfg.timeout_s:g}s (fetch.timeout_s)", retryable=True)
    if isinstance(exc, SSLError):
        inner = exc.args[0] if exc.args else cause
        if isinstance(inner, SSLCertVerificationError):
            return FetchError(f"TLS verification failed for {t.host}: certificate not trusted "
                              f"({inner.verify_message}); fetch.ca_bundle names the CAs to trust", retryable=False)
        if isinstance(inner, ValueError):  # urllib3's CertificateError: a certificate for another name
            return FetchError(f"TLS verification failed for {t.host}: {inner}"[:300], retryable=False)
        reason = getattr(inner, "reason", None) or str(inner)
        if reason == "WRONG_VERSION_NUMBER":  # it answered, but not in TLS: the next try is the same
            return FetchError(f"TLS handshake with {where} failed: {reason} (the server does not speak TLS "
                              f"on that port: plain http?)", retryable=False)
        return FetchError(f"TLS handshake with {where} failed: {reason}"[:300], retryable=True)
    if isinstance(exc, ProtocolError):  # the connection was cut: reset, or closed without an answer
        inner = exc.args[1] if len(exc.args) > 1 else cause
        what = getattr(inner, "strerror", None) or str(inner) or inner.__class__.__name__
        return FetchError(f"connection to {where} lost before an answer: {what}"[:300], retryable=True)
    return FetchError(f"cannot fetch recording from {where}: {exc.__class__.__name__}", retryable=True)


def _too_slow(cfg: FetchConfig) -> FetchError:
    return FetchError(f"download took longer than {cfg.max_seconds:g}s (fetch.max_seconds); not retried")


def fetch(url: str, dest: str | os.PathLike, cfg: FetchConfig,
          headers: dict[str, str] | None = None, credential: Credential | None = None) -> Fetched:
    """Stream ``url`` into ``dest``; the file appears only once complete.

    ``credential``'s headers go only to its own host and port: on the first hop when that is
    its host, and on a redirect only when the redirect stays there (never to a storage host
    a recording server redirects to, nor from http to a host that was https)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    watchdog = _Watchdog(time.monotonic() + cfg.max_seconds)
    current = url
    secure_so_far = False
    try:
        for _hop in range(cfg.max_redirects + 1):
            try:
                target = check_url(current, cfg, min(cfg.timeout_s, watchdog.left()))
            except FetchError:
                if watchdog.left() <= 0:  # resolving ran into the whole fetch's deadline
                    raise _too_slow(cfg) from None
                raise
            if watchdog.left() <= 0:
                raise _too_slow(cfg)
            pool = _pool(target, cfg, watchdog)
            sent = dict(headers or {})
            secure_so_far = secure_so_far or target.scheme == "https"
            # Never in clear text once the chain went through https (a redirect down to http).
            if (credential is not None and credential.applies_to(target.host, target.port)
                    and not (target.scheme == "http" and secure_so_far)):
                sent.update(credential.headers)
            try:
                resp = pool.urlopen("GET", target.request_uri, redirect=False, preload_content=False,
                                    retries=False, headers={"Host": target.host_header, "Accept": "*/*",
                                                            "User-Agent": "CallMood", **sent})
            except HTTPError as exc:
                if watchdog.fired or (isinstance(exc, Urllib3Timeout) and watchdog.left() <= 0):
                    raise _too_slow(cfg) from None
                raise _request_error(exc, target, cfg) from None
            try:
                if resp.status in REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise FetchError("redirect without a Location header")
                    current = urljoin(current, location)
                    continue
                return _save(resp, current, tmp, dest, cfg, watchdog, target.host)
            finally:
                resp.release_conn()
                pool.close()
        raise FetchError(f"more than {cfg.max_redirects} redirects (fetch.max_redirects)")
    finally:
        watchdog.cancel()
        tmp.unlink(missing_ok=True)


def _save(resp, url: str, tmp: Path, dest: Path, cfg: FetchConfig, watchdog: _Watchdog,
          host: str = "") -> Fetched:
    if resp.status != 200:
        retryable = resp.status >= 500 or resp.status in (408, 425, 429)
        hint = " (are the credentials for this host right? sources.<source>.download)" \
            if resp.status in (401, 403) else ""
        try:
            phrase = " " + HTTPStatus(resp.status).phrase
        except ValueError:  # a status HTTP does not name
            phrase = ""
        raise FetchError(f"recording server {host + ' ' if host else ''}answered HTTP {resp.status}{phrase}{hint}",
                         retryable=retryable)
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > cfg.max_bytes:
        raise FetchError(f"recording is {int(length)} bytes, over the {cfg.max_bytes}-byte limit "
                         f"(fetch.max_bytes)")
    size = 0
    try:
        with open(tmp, "wb", opener=private_opener) as out:  # 0600: a customer's call
            for chunk in resp.stream(READ_BYTES):
                size += len(chunk)
                if size > cfg.max_bytes:
                    raise FetchError(f"recording exceeds the {cfg.max_bytes}-byte limit (fetch.max_bytes)")
                if watchdog.left() <= 0:
                    raise _too_slow(cfg)
                out.write(chunk)
    except (Urllib3Timeout, HTTPError, OSError) as exc:
        if watchdog.fired or watchdog.left() <= 0:
            raise _too_slow(cfg) from None
        if isinstance(exc, Urllib3Timeout):
            raise FetchError(f"timed out while downloading the recording: nothing arrived for {cfg.timeout_s:g}s "
                             f"(fetch.timeout_s)", retryable=True) from None
        raise FetchError(f"download interrupted: {exc.__class__.__name__}", retryable=True) from None
    if watchdog.fired:  # a body without a length ends at the shut socket: it is cut, not complete
        raise _too_slow(cfg)
    if size == 0:
        raise FetchError("recording is empty")
    os.replace(tmp, dest)
    return Fetched(dest, size, resp.headers.get("Content-Type"), url)
