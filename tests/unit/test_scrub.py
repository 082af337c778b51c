"""One scrubber for secrets in whatever text is stored, shown or logged."""

import logging

import pytest

from plugin.core import scrub


@pytest.mark.parametrize("raw,secret,kept", [
    ("ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
     "/cgi-bin/webhook/send?key=693a91f6-7xxx (Caused by NewConnectionError)", "693a91f6-7xxx",
     "/cgi-bin/webhook/send?key=***"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?debug=1&key=robotkey#x", "robotkey", "debug=1&key=***#x"),
    ("https://s3.example/rec.wav?X-Amz-Signature=abc123&X-Amz-Credential=AKIA9&v=1", "abc123", "v=1"),
    ("https://pbx/rec.wav?access_token=tok123&id=5", "tok123", "id=5"),
    ("postgresql+psycopg2://callmood:hunter2@db:5432/callmood", "hunter2", "callmood:***@db:5432"),
    ("postgresql://callmood:p@ss@db/x", "ss@db", "callmood:***@db/x"),  # an @ inside the password
    ("https://token123@git.example/x", "token123", "https://***@git.example/x"),
    ("host=db user=cm password=hunter2 dbname=x", "hunter2", "user=cm password=*** dbname=x"),
    ("password='a secret' next", "a secret", "password=*** next"),
    ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", "Authorization: ***"),
    ("sent with bearer abcdefghijklmnop", "abcdefghijklmnop", "bearer ***"),
    ("Cookie: session=xyz; other=1", "xyz", "Cookie: ***"),
    ('HTTP 401: {"error": "expired", "access_token": "tok-999", "n": 1}', "tok-999", '"access_token": "***"'),
    ("{'api_key': 'zzz-1', 'n': 1}", "zzz-1", "'api_key': '***'"),
    ("url=https%3A%2F%2Fpbx%2Fr.wav%3Ftoken%3Dsecret9%26b%3D1", "secret9", "%3Ftoken%3D***%26b%3D1"),
])
def test_secrets_are_hidden_and_the_rest_kept(raw, secret, kept):
    out = scrub.text(raw)
    assert secret not in out and kept in out


@pytest.mark.parametrize("raw", ["call 7: recording server answered HTTP 404", "sqlite:////var/lib/callmood.db",
                                 "http://callmood.local/calls/7", "cannot decode recording: no audio stream in file",
                                 "mail a@b.example", ""])
def test_text_without_secrets_is_unchanged(raw):
    assert scrub.text(raw) == raw


def test_scrubbing_twice_changes_nothing_more():
    once = scrub.text("https://x/send?key=abc&token=def postgresql://u:p@h/d")
    assert scrub.text(once) == once


def test_url_for_showing_drops_query_and_credentials():
    assert scrub.url("https://u:p@pbx.example:8443/rec/1.wav?token=abc#f") == "https://pbx.example:8443/rec/1.wav?***"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.addFilter(scrub.LogFilter())

    def emit(self, record):
        self.lines.append(self.format(record))


def test_log_filter_scrubs_messages_arguments_and_tracebacks():
    handler = _Collect()
    log = logging.getLogger("test.scrub")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("delivery to %s failed: %s", "https://w/send?key=robotkey1", {"password": "pw-2"})
        log.info("database %s", "postgresql://u:hunter3@db/x")
        try:
            raise ConnectionError("Max retries exceeded with url: /send?key=robotkey4")
        except ConnectionError:
            log.exception("sink %s crashed", "wecom")
        log.warning("100%% done %s")  # a message that does not format: logged as logging would
    finally:
        log.removeHandler(handler)
    text = "\n".join(handler.lines)
    for secret in ("robotkey1", "pw-2", "hunter3", "robotkey4"):
        assert secret not in text
    assert "key=***" in text and "Traceback" in text and "ConnectionError" in text


def test_the_command_scrubs_every_log_line():
    import io

    from plugin.cli import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], logging.getLogger("plugin").level
    buf = io.StringIO()
    root.handlers = [logging.StreamHandler(buf)]  # basicConfig keeps it; setup_logging filters it
    try:
        setup_logging("INFO")
        logging.getLogger("plugin.test").info("database %s", "postgresql://u:hunter5@db/x")
        logging.getLogger("urllib3.test").warning("retrying /send?key=robotkey6")  # any library's logger
    finally:
        root.handlers = saved[0]
        logging.getLogger("plugin").setLevel(saved[1])
    assert "hunter5" not in buf.getvalue() and "robotkey6" not in buf.getvalue()
    assert "u:***@db" in buf.getvalue() and "key=***" in buf.getvalue()
