"""Safe download against a real local HTTP server."""

import pytest

from plugin.audio.fetch import FetchError, fetch
from plugin.config import FetchConfig
from tests.helpers import Reply

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
