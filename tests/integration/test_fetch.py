"""Safe download against a real local HTTP server."""

import time

import pytest

from plugin.audio.fetch import FetchError, fetch
from plugin.config import FetchConfig
from tests.helpers import Reply, Trickler

LOCAL = FetchConfig(allow_networks=["127.0.0.0/8"], timeout_s=2, max_bytes=100_000, max_redirects=2)


def test_download(tmp_path, recordings):
    recordings.routes["/a.wav"] = Reply(200, b"x" * 5000)
    got = fetch(recordings.url + "/a.wav", tmp_path / "a", LOCAL)
    assert got.size == 5000 and got.path.read_bytes() == b"x" * 5000
    assert not list(tmp_path.glob("*.part"))


def test_redirects_are_followed_within_the_limit(tmp_path, recordings):
    recordings.routes["/1"] = Reply(302, b"", {"Location": "/2"})
    recordings.routes["/2"] = Reply(301, b"", {"Location": recordings.url + "/a.wav"})
    recordings.routes["/a.wav"] = Reply(200, b"abc")
    got = fetch(recordings.url + "/1", tmp_path / "a", LOCAL)
    assert got.final_url.endswith("/a.wav") and got.path.read_bytes() == b"abc"


def test_too_many_redirects(tmp_path, recordings):
    recordings.routes["/loop"] = Reply(302, b"", {"Location": "/loop"})
    with pytest.raises(FetchError, match="more than 2 redirects") as err:
        fetch(recordings.url + "/loop", tmp_path / "a", LOCAL)
    assert not err.value.retryable
    assert len(recordings.requests) == 3


def test_redirect_to_a_forbidden_host_is_refused(tmp_path, recordings):
    cfg = LOCAL.model_copy(update={"allow_networks": ["127.0.0.1/32"]})
    recordings.routes["/r"] = Reply(302, b"", {"Location": "http://127.0.0.2:1/secret"})
    with pytest.raises(FetchError, match="non-public address 127.0.0.2"):
        fetch(recordings.url + "/r", tmp_path / "a", cfg)


@pytest.mark.parametrize("status,retryable", [(404, False), (403, False), (500, True), (503, True), (429, True)])
def test_http_errors(tmp_path, recordings, status, retryable):
    recordings.routes["/x"] = Reply(status, b"no")
    with pytest.raises(FetchError, match=f"HTTP {status}") as err:
        fetch(recordings.url + "/x", tmp_path / "a", LOCAL)
    assert err.value.retryable is retryable
    assert not (tmp_path / "a").exists()


def test_size_cap_from_content_length(tmp_path, recordings):
    recordings.routes["/big"] = Reply(200, b"x" * 200_000)
    with pytest.raises(FetchError, match="over the 100000-byte limit"):
        fetch(recordings.url + "/big", tmp_path / "a", LOCAL)


def test_size_cap_while_streaming(tmp_path, recordings):
    recordings.routes["/chunked"] = Reply(200, b"x" * 300_000, {"Transfer-Encoding": "chunked"})
    with pytest.raises(FetchError, match="exceeds the 100000-byte limit"):
        fetch(recordings.url + "/chunked", tmp_path / "a", LOCAL)
    assert not list(tmp_path.iterdir())


def test_slow_server_times_out(tmp_path, recordings):
    recordings.routes["/slow"] = Reply(200, b"x", delay_s=3)
    with pytest.raises(FetchError, match="timed out") as err:
        fetch(recordings.url + "/slow", tmp_path / "a", LOCAL.model_copy(update={"timeout_s": 0.5}))
    assert err.value.retryable


@pytest.mark.parametrize("url,match", [
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("gopher://127.0.0.1/x", "scheme 'gopher' is not allowed"),
    ("http://127.0.0.1:9/x", "non-public address 127.0.0.1"),
    ("http://169.254.169.254/latest/meta-data", "non-public address 169.254.169.254"),
    ("http://[::1]:9/x", "non-public address ::1"),
    ("http:///nohost", "has no host"),
])
def test_hostile_urls(tmp_path, url, match):
    with pytest.raises(FetchError, match=match) as err:
        fetch(url, tmp_path / "a", FetchConfig())
    assert not err.value.retryable


def test_empty_body(tmp_path, recordings):
    recordings.routes["/empty"] = Reply(200, b"")
    with pytest.raises(FetchError, match="empty"):
        fetch(recordings.url + "/empty", tmp_path / "a", LOCAL)


def test_backslash_url_cannot_smuggle_another_host(tmp_path, recordings):
    # urlsplit sees host 1.1.1.1, urllib3 would connect to 127.0.0.1: refuse such URLs outright
    url = f"http://127.0.0.1:{recordings.port}\\@1.1.1.1/admin"
    with pytest.raises(FetchError, match="backslash"):
        fetch(url, tmp_path / "a", FetchConfig())
    assert recordings.requests == []


@pytest.mark.parametrize("ip", ["::ffff:127.0.0.1", "64:ff9b::7f00:1", "::ffff:10.1.2.3"])
def test_ipv4_inside_ipv6_is_checked_as_ipv4(ip):
    import ipaddress

    from plugin.audio.fetch import _allowed
    assert not _allowed(ipaddress.ip_address(ip), [])
    assert _allowed(ipaddress.ip_address(ip), [ipaddress.ip_network("0.0.0.0/0")])


def test_dns_is_resolved_once_and_the_checked_address_is_used(tmp_path, recordings, monkeypatch):
    import socket
    real, calls = socket.getaddrinfo, []

    def rebinding(host, *a, **k):
        if host == "rebind.test":
            calls.append(host)
            if len(calls) > 1:  # a second lookup would answer with a forbidden address
                return real("10.9.9.9", *a, **k)
            return real("127.0.0.1", *a, **k)
        return real(host, *a, **k)
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    recordings.routes["/a.wav"] = Reply(200, b"abc")
    got = fetch(f"http://rebind.test:{recordings.port}/a.wav", tmp_path / "a", LOCAL)
    assert got.path.read_bytes() == b"abc" and calls == ["rebind.test"]
    assert recordings.requests[0].headers["Host"] == f"rebind.test:{recordings.port}"


def test_whole_download_deadline(tmp_path, recordings):
    recordings.routes["/drip"] = Reply(200, b"x" * 400_000, {"Transfer-Encoding": "chunked"})
    cfg = LOCAL.model_copy(update={"max_seconds": 0.000001, "max_bytes": 10_000_000})
    with pytest.raises(FetchError, match="longer than") as err:
        fetch(recordings.url + "/drip", tmp_path / "a", cfg)
    assert not err.value.retryable


@pytest.fixture
def trickler():
    t = Trickler()
    yield t
    t.close()


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"


@pytest.mark.parametrize("head,slow", [
    (OK_HEAD + b"Content-Length: 1000\r\n\r\n", b"x" * 1000),  # a body a byte at a time
    (OK_HEAD + b"Connection: close\r\n\r\n", b"x" * 1000),  # ... with no length: the end is the close
    (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n" * 200),
    (b"", OK_HEAD + b"Content-Length: 1\r\n\r\nx"),  # the status line and headers a byte at a time
])
def test_a_trickling_sender_is_cut_off_at_the_deadline(tmp_path, trickler, head, slow):
    trickler.routes["/t.wav"] = (head, slow)
    cfg = LOCAL.model_copy(update={"max_seconds": 1, "timeout_s": 5})
    t = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch(trickler.url + "/t.wav", tmp_path / "a", cfg)
    took = time.monotonic() - t
    assert str(err.value) == "download took longer than 1s (fetch.max_seconds); not retried"
    assert not err.value.retryable  # another try would hold a worker just as long
    assert 0.9 < took < 1.6, took
    assert not list(tmp_path.iterdir())  # no partial file


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(server context, client CA file) for https://localhost."""
    import ssl

    import trustme
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_ctx, str(ca_file)


@pytest.mark.parametrize("handshake", [False, True])
def test_a_stalled_tls_handshake_or_trickled_https_body_is_cut_off(tmp_path, tls, handshake):
    server_ctx, ca_file = tls
    trickler = Trickler(tls_context=server_ctx, handshake=handshake)
    try:
        trickler.routes["/t.wav"] = (OK_HEAD + b"Content-Length: 1000\r\n\r\n", b"x" * 1000)
        cfg = LOCAL.model_copy(update={"max_seconds": 1, "timeout_s": 5, "ca_bundle": ca_file,
                                       "allow_networks": ["127.0.0.0/8", "::1/128"]})
        t = time.monotonic()
        with pytest.raises(FetchError, match=r"^download took longer than 1s \(fetch.max_seconds\); not retried$"):
            fetch(f"https://localhost:{trickler.port}/t.wav", tmp_path / "a", cfg)
        assert 0.9 < time.monotonic() - t < 1.6
    finally:
        trickler.close()


def test_time_spent_in_redirects_counts(tmp_path, trickler):
    # Each hop ends its redirect slowly (0.6 s): one deadline for all hops, not one each.
    for i in range(4):
        resp = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: /%d\r\n\r\n" % (i + 1)
        trickler.routes[f"/{i}"] = (resp[:-3], resp[-3:])
    cfg = LOCAL.model_copy(update={"max_seconds": 1, "timeout_s": 5, "max_redirects": 5})
    t = time.monotonic()
    with pytest.raises(FetchError, match="longer than 1s"):
        fetch(trickler.url + "/0", tmp_path / "a", cfg)
    assert 0.9 < time.monotonic() - t < 1.6


def test_https_with_hostname_verification(tmp_path):
    import ssl

    import trustme

    from tests.helpers import FakeServer
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    server = FakeServer(tls_context=server_ctx)
    try:
        server.routes["/s.wav"] = Reply(200, b"secure")
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        cfg = FetchConfig(allow_networks=["127.0.0.0/8", "::1/128"], ca_bundle=str(ca_file), timeout_s=5)
        assert fetch(server.url + "/s.wav", tmp_path / "a", cfg).path.read_bytes() == b"secure"
        with pytest.raises(FetchError, match="TLS verification failed"):
            fetch(server.url + "/s.wav", tmp_path / "b", cfg.model_copy(update={"ca_bundle": None}))
    finally:
        server.close()


@pytest.mark.parametrize("timeout_s,max_seconds,match,retryable", [
    (0.5, 10, r"resolving recording host 'silent-dns.test' took longer than 0.5s", True),
    (5, 1, r"download took longer than 1s \(fetch.max_seconds\); not retried", False),
])
def test_a_name_server_that_never_answers_cannot_hold_the_fetch(tmp_path, monkeypatch, timeout_s, max_seconds,
                                                               match, retryable):
    """The sender picks the host, and so its name server: getaddrinfo, which nothing can
    interrupt, must not keep a worker past fetch.timeout_s or the whole fetch's deadline."""
    import socket
    real = socket.getaddrinfo

    def silent(host, *a, **k):
        if host == "silent-dns.test":
            time.sleep(4)  # then the resolver gives up, as a real one does after its retries
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *a, **k)
    monkeypatch.setattr(socket, "getaddrinfo", silent)
    cfg = FetchConfig(allow_networks=["127.0.0.0/8"], timeout_s=timeout_s, max_seconds=max_seconds)
    t = time.monotonic()
    with pytest.raises(FetchError, match=match) as err:
        fetch("http://silent-dns.test/a.wav", tmp_path / "a", cfg)
    assert time.monotonic() - t < min(timeout_s, max_seconds) + 1.5
    assert err.value.retryable is retryable
