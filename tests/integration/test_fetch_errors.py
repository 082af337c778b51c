"""A download that fails says what happened (issue 15, item 8): no such host, connection
refused, a connect or read timeout, an untrusted or wrong TLS certificate, a handshake
that failed, a connection cut, an HTTP status; each retryable or not by whether another
try could change it. Real sockets and servers on 127.0.0.1, real DNS for `.invalid`."""

import socket
import ssl
import threading

import pytest

from plugin.audio.fetch import FetchError, fetch
from plugin.config import FetchConfig
from tests.helpers import FakeServer, Reply, free_port

# Tests of a timeout wait 0.5 s for it; every other test allows 10 s, so a busy machine's
# slow answer is never mistaken for the failure a test expects (a 503 read as a timeout).
LOCAL = FetchConfig(allow_networks=["127.0.0.0/8", "::1/128"], timeout_s=0.5, max_seconds=10)
PATIENT = LOCAL.model_copy(update={"timeout_s": 10.0, "max_seconds": 30.0})
SECRET = "tok3n-in-the-query"  # recording URLs often carry a token: never in an error


def failure(url: str, tmp_path, cfg: FetchConfig = PATIENT) -> FetchError:
    with pytest.raises(FetchError) as err:
        fetch(url, tmp_path / "a", cfg)
    assert SECRET not in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())  # no partial file left behind
    return err.value


def test_connection_refused_is_not_called_a_timeout(tmp_path):
    port = free_port()  # closed again: nothing listens there
    err = failure(f"http://127.0.0.1:{port}/a.wav?token={SECRET}", tmp_path)
    assert str(err) == f"connection refused by 127.0.0.1:{port}: nothing listens on that port"
    assert err.retryable  # a server being restarted answers the next try


def test_a_name_that_does_not_exist(tmp_path):
    # .invalid never resolves (RFC 6761): the resolver's real NXDOMAIN answer.
    err = failure(f"http://no-such-host.invalid/a.wav?token={SECRET}", tmp_path)
    assert str(err).startswith("DNS: no such host 'no-such-host.invalid' (the name has no address:")
    assert err.retryable  # within worker.max_attempts: a record just made appears within minutes


def test_a_name_server_that_fails_for_now(tmp_path, monkeypatch):
    def down(host, *a, **k):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "getaddrinfo", down)
    err = failure("http://recordings.example.com/a.wav", tmp_path)
    assert str(err) == ("DNS: lookup of 'recordings.example.com' failed for now, the name server gave no "
                        "answer (Temporary failure in name resolution)")
    assert err.retryable


def test_a_server_that_accepts_and_never_answers(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    try:
        port = silent.getsockname()[1]
        err = failure(f"http://127.0.0.1:{port}/a.wav?token={SECRET}", tmp_path, LOCAL)
        assert str(err) == (f"timed out waiting for 127.0.0.1:{port} to answer: connected, but nothing "
                            f"came within 0.5s (fetch.timeout_s)")
        assert err.retryable
    finally:
        silent.close()


def test_a_connection_that_is_never_accepted(tmp_path):
    # A listening socket whose queue (backlog 0: one connection) is full: Linux drops the
    # next SYN, so connecting itself times out, as behind a firewall that drops packets.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    try:
        err = failure(f"http://127.0.0.1:{port}/a.wav", tmp_path, LOCAL)
        assert str(err) == f"timed out connecting to 127.0.0.1:{port} after 0.5s (fetch.timeout_s)"
        assert err.retryable
    finally:
        queued.close()
        full.close()


def test_a_connection_closed_without_an_answer(tmp_path):
    rude = socket.create_server(("127.0.0.1", 0))

    def hang_up():
        conn, _ = rude.accept()
        conn.recv(65536)
        conn.close()
    threading.Thread(target=hang_up, daemon=True).start()
    try:
        port = rude.getsockname()[1]
        err = failure(f"http://127.0.0.1:{port}/a.wav?token={SECRET}", tmp_path)
        assert str(err).startswith(f"connection to 127.0.0.1:{port} lost before an answer: ")
        assert err.retryable
    finally:
        rude.close()


@pytest.mark.parametrize("status,words,retryable", [
    (404, "HTTP 404 Not Found", False),
    (410, "HTTP 410 Gone", False),
    (503, "HTTP 503 Service Unavailable", True),
    (401, "HTTP 401 Unauthorized (are the credentials for this host right? sources.<source>.download)", False),
])
def test_an_http_status_is_reported_as_that_status(tmp_path, recordings, status, words, retryable):
    recordings.routes["/a.wav"] = Reply(status, b"<html>nope</html>")
    err = failure(f"{recordings.url}/a.wav?token={SECRET}", tmp_path)
    assert str(err) == f"recording server 127.0.0.1 answered {words}"
    assert err.retryable is retryable


@pytest.fixture(scope="module")
def ca():
    import trustme
    return trustme.CA()


def tls_server(ca, name: str) -> FakeServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    server = FakeServer(tls_context=ctx)
    server.routes["/a.wav"] = Reply(200, b"audio")
    return server


def test_a_certificate_nobody_trusts(tmp_path, ca):
    server = tls_server(ca, "localhost")  # signed by a CA that is not in certifi's bundle
    try:
        err = failure(f"{server.url}/a.wav?token={SECRET}", tmp_path)
        assert str(err) == ("TLS verification failed for localhost: certificate not trusted (unable to get "
                            "local issuer certificate); fetch.ca_bundle names the CAs to trust")
        assert not err.retryable  # the next try meets the same certificate
        assert not server.requests  # nothing was sent: the request never left the handshake
    finally:
        server.close()


def test_a_certificate_for_another_name(tmp_path, ca):
    server = tls_server(ca, "recordings.example.com")
    ca_file = tmp_path.parent / f"{tmp_path.name}-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        err = failure(f"{server.url}/a.wav", tmp_path, PATIENT.model_copy(update={"ca_bundle": str(ca_file)}))
        assert str(err) == ("TLS verification failed for localhost: hostname 'localhost' doesn't match "
                            "'recordings.example.com'")
        assert not err.retryable
    finally:
        server.close()


def test_https_to_a_server_that_speaks_plain_http(tmp_path, recordings):
    port = recordings.port
    err = failure(f"https://127.0.0.1:{port}/a.wav", tmp_path)
    assert str(err) == (f"TLS handshake with 127.0.0.1:{port} failed: WRONG_VERSION_NUMBER (the server "
                        f"does not speak TLS on that port: plain http?)")
    assert not err.retryable
