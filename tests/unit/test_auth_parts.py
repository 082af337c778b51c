"""The pure parts of logging in: roles, password rules and hashes, signed call links,
where a login may send people afterwards, what each role sees of a call."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from plugin.core import passwords, roles
from plugin.core.signing import CallLinkSigner
from plugin.web.auth import redact
from plugin.web.auth.answers import safe_next

T0 = datetime(2026, 11, 24, 2, 2)


def test_roles_are_ordered():
    assert roles.at_least("admin", "viewer") and roles.at_least("supervisor", "supervisor")
    assert not roles.at_least("viewer", "supervisor") and not roles.at_least(None, "viewer")
    assert not roles.at_least("root", "viewer")
    with pytest.raises(ValueError, match="unknown role 'root' \\(one of viewer, supervisor, admin\\)"):
        roles.at_least("admin", "root")


def test_passwords():
    assert passwords.weakness("short") == "password too short: at least 10 characters"
    assert passwords.weakness("Alice.Smith", "alice.smith") == "password must not be the user name"
    assert passwords.weakness("a long enough one") is None
    stored = passwords.hash_password("a long enough one")
    assert stored.startswith("$argon2id$") and "a long enough one" not in stored
    assert passwords.verify(stored, "a long enough one")
    assert not passwords.verify(stored, "a long enough on") and not passwords.verify(None, "anything at all")
    assert not passwords.verify("not a hash", "anything at all")
    assert not passwords.needs_rehash(stored)


class Clock:
    def __init__(self):
        self.t = T0

    def now(self):
        return self.t


def test_signed_call_links():
    clock = Clock()
    signer = CallLinkSigner("k" * 40, 7, clock.now)
    token = signer.token(12)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert signer.opens(token, 12) and not signer.opens(token, 13)
    assert not signer.opens(token[:-1] + ("A" if token[-1] != "A" else "B"), 12)
    assert not CallLinkSigner("n" * 40, 7, clock.now).opens(token, 12)  # a rotated key
    assert not signer.opens("", 12) and not signer.opens("x" * 500, 12) and not signer.opens("a.b.c", 12)
    clock.t = T0 + timedelta(days=7)
    assert signer.opens(token, 12)
    clock.t = T0 + timedelta(days=7, seconds=1)
    assert not signer.opens(token, 12)
    assert CallLinkSigner("k" * 40, 30, clock.now).opens(token, 12)  # link_days, read when checked


@pytest.mark.parametrize("target, lands", [
    ("/calls/7", "/calls/7"), ("/api/me?x=1", "/api/me?x=1"), (None, "/dashboard"), ("", "/dashboard"),
    ("//evil.example", "/dashboard"), ("https://evil.example/", "/dashboard"), ("/\\evil.example", "/dashboard"),
    ("\\\\evil.example", "/dashboard"), ("javascript:alert(1)", "/dashboard"), ("/a\r\nSet-Cookie: x", "/dashboard"),
    ("calls/7", "/dashboard"), ("/" + "a" * 3000, "/dashboard"), ("/dashboard?", "/dashboard")])
def test_a_login_sends_people_only_to_this_site(target, lands):
    assert safe_next(target) == lands


def test_what_each_role_sees_of_a_call():
    call = {"customer_phone": "+8613812345678", "recording_url": "https://s.example/r.wav?sig=abc&x=1",
            "alerts": [{"summary": "cust-1 at +86 138 1234 5678 was angry", "routing": [{"reason": "r 13812345678"}],
                        "deliveries": [{"status": "delivered", "payload": {"text": "+8613812345678"}}]}]}
    viewer = redact.call(call, phones=False, payloads=False)
    assert viewer["customer_phone"] == "+86138****5678" and viewer["recording_url"] == "https://s.example/r.wav?***"
    # Phones as everywhere else; also ID and card numbers (a summary may print alert.quotes).
    assert viewer["alerts"][0]["summary"] == "cust-1 at +86 138 **** 5678 was angry"
    assert viewer["alerts"][0]["routing"] == [{"reason": "r 138****5678"}]
    assert viewer["alerts"][0]["deliveries"] == [{"status": "delivered"}]
    admin = redact.call(call, phones=True, payloads=True)
    assert admin["customer_phone"] == call["customer_phone"] and admin["alerts"] == call["alerts"]
    assert admin["recording_url"] == "https://s.example/r.wav?***"
    assert call["customer_phone"] == "+8613812345678"  # the input is not changed
    assert redact.mask_text("ticket T-1001 for cust-42") == "ticket T-1001 for cust-42"


def test_a_viewer_sees_the_quotes_an_alert_summary_prints_masked():
    """A rule's summary template may print alert.quotes: a viewer sees the ID-card and bank
    card numbers in it masked, as in the quotes themselves."""
    said = "我的身份证是110101199003071234，卡号6222021234567890123"
    call = {"alerts": [{"summary": f"angry: 00:03 客户: {said}", "quotes": [{"text": said}]}]}
    [viewer] = redact.call(call, phones=False, payloads=False)["alerts"]
    assert viewer["summary"] == "angry: 00:03 客户: 我的身份证是**************1234，卡号***************0123"
    assert viewer["quotes"][0]["text"] in viewer["summary"]
    [admin] = redact.call(call, phones=True, payloads=True)["alerts"]
    assert admin["summary"] == f"angry: 00:03 客户: {said}"
