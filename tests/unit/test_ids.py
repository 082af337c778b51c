"""What an id, a phone number and a chat user id from outside may look like."""

import pytest

from plugin.core.ids import id_problem, phone_problem, user_id_problem


@pytest.mark.parametrize("value", ["c-123", "cust_9", "T-55", "a.b:c@d+e#f", "客户-42", "Müller", "finance-complaints",
                                   "x" * 128, "550e8400-e29b-41d4-a716-446655440000"])
def test_ids_that_helpdesks_send(value):
    assert id_problem(value) is None


@pytest.mark.parametrize("value,why", [
    ("", "must not be empty"),
    ("x" * 129, "129 characters long; at most 128"),
    ("../../../admin/users/1/delete?confirm=yes#", "'/'"),
    ("..", "only dots"),
    (".", "only dots"),
    ("a b", "U+0020"),
    ("a\nb", "U+000A"),
    ("a\rb", "U+000D"),
    ("a\tb", "U+0009"),
    ("a\x00b", "U+0000"),
    ("a\x1bb", "U+001B"),
    ("<@all>", "'<'"),
    ("a>b", "'>'"),
    ('a"b', "'\"'"),
    ("a'b", '"\'"'),
    ("a%2Fb", "'%'"),
    ("a\\b", "'\\\\'"),
    ("[x](http://evil)", "'['"),
    ("**bold**", "'*'"),
    ("`code`", "'`'"),
    ("{{ 7*7 }}", "'{'"),
    ("a\u202eb", "U+202E"),  # right-to-left override: reverses what a reader sees
    ("a\u200bb", "U+200B"),  # zero-width space: two ids that look the same
    ("a\u2028b", "U+2028"),  # line separator
])
def test_hostile_ids_are_refused_with_the_reason(value, why):
    problem = id_problem(value)
    assert problem is not None and why in problem


@pytest.mark.parametrize("value", ["+8613800000000", "+86 138 0000 0000", "(010) 1234-5678", "+1 (555) 010-9999", "123"])
def test_phone_numbers(value):
    assert phone_problem(value) is None


@pytest.mark.parametrize("value,why", [
    ("+86 138\n### fake", "U+000A"),
    ("<@all>", "'<'"),
    ("12", "has 2 digits"),
    ("1" * 21, "has 21 digits"),
    ("1" * 33, "at most 32"),
    ("138-0000-0000 ext 5", "'e'"),
    ("1+2", "'+' after the start"),
    ("１３８００００００００", "'１'"),  # full-width digits are not what a dialer takes
])
def test_hostile_phone_numbers(value, why):
    problem = phone_problem(value)
    assert problem is not None and why in problem


@pytest.mark.parametrize("value,ok", [("supervisor01", True), ("zhang.san", True), ("lead-2@corp", True),
                                      ("@all", True), ("a b", False), ("x><@all", False), ("", False),
                                      ("x" * 65, False), (42, False), ("张三", False)])
def test_chat_user_ids(value, ok):
    assert (user_id_problem(value) is None) is ok
