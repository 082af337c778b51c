"""Requests that come through a reverse proxy: the client's address and scheme are what
the proxy says (X-Forwarded-For, X-Forwarded-Proto), but only when the request comes from
one of ``server.trusted_proxies``; from anyone else those headers are dropped, so nobody
can pose as another address to dodge login throttling. The direct peer's address stays in
``environ["callmood.peer"]`` for checks about the proxy itself (auth.proxy_header)."""

from __future__ import annotations

import ipaddress
from typing import Callable, Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

PEER = "callmood.peer"
FORWARDED = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX")


def within(address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in net for net in networks)


def parse(networks: Iterable[str]) -> list:
    return [ipaddress.ip_network(n, strict=False) for n in networks]


class TrustedProxies:
    def __init__(self, app: Callable, networks: Iterable[str]):
        self.app, self.networks = app, parse(networks)
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR")
        environ[PEER] = peer
        if self.networks and within(peer, self.networks):
            return self.fixed(environ, start_response)
        for name in FORWARDED:
            environ.pop(name, None)
        return self.app(environ, start_response)
