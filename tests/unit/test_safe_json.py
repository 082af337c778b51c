"""JSON from outside: refused at the door when the later steps could not hold it."""

import pytest

from plugin.core.safe_json import MAX_DEPTH, UnsafeJson, depth, loads


def test_plain_json_parses():
    assert loads(b'{"a": [1, 2.5, "x", null, true, {"b": "\\u00e9\\u5ba2"}]}') == \
        {"a": [1, 2.5, "x", None, True, {"b": "é客"}]}


@pytest.mark.parametrize("raw,expected", [
    (b"1", 0), (b"[]", 1), (b'{"a": {"b": [1]}}', 3), (b'["[[[[", "]]]", "\\"[[["]', 1),
    (b'{"a": "\\\\"}', 1), (b"[[], [], [[]]]", 3),
])
def test_depth_is_counted_without_parsing_and_ignores_brackets_in_strings(raw, expected):
    assert depth(raw) == expected


def test_nesting_at_the_limit_parses_and_beyond_it_is_refused():
    ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert depth(ok) == MAX_DEPTH and loads(ok)
    with pytest.raises(UnsafeJson, match="nested more than 32 levels deep") as err:
        loads(b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}")
    assert err.value.where == "body"


def test_deep_nesting_that_would_exhaust_the_parser_is_refused_before_parsing():
    # 500 000 levels: json's C parser would raise RecursionError (a 500 before this check).
    for bomb in (b"[" * 500_000, b'{"a":' * 200_000, b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(UnsafeJson, match="nested more than"):
            loads(bomb)


@pytest.mark.parametrize("raw,match", [
    (b'{"score": NaN}', "NaN is not valid JSON"),
    (b'{"score": Infinity}', "Infinity is not valid JSON"),
    (b'{"score": -Infinity}', "-Infinity is not valid JSON"),
    (b'{"score": 1e999}', "1e999 is too large"),
    (b'{"score": -1e400}', "-1e400 is too large"),
    (b"{oops", "not valid JSON"),
    (b'{"a": "\xff\xfe"}', "not valid JSON"),
    (b'{"a": 1' + b"0" * 5000 + b"}", "not valid JSON"),  # an integer of 5000 digits
])
def test_non_finite_numbers_and_broken_json(raw, match):
    with pytest.raises(UnsafeJson, match=match):
        loads(raw)


@pytest.mark.parametrize("raw,where,match", [
    (b'{"customer_id": "a\\u0000b"}', "customer_id", "NUL"),
    (b'{"meta": {"note": ["ok", "x\\u0000"]}}', "meta.note[1]", "NUL"),
    (b'{"k\\u0000": 1}', "k\\u0000 (the key)", "NUL"),
    (b'{"name": "\\ud800"}', "name", "lone surrogate"),
    (b'{"x": {"\\udfff": 1}}', "x.\\udfff (the key)", "lone surrogate"),
])
def test_nul_and_lone_surrogates_anywhere_are_refused_naming_where(raw, where, match):
    with pytest.raises(UnsafeJson, match=match) as err:
        loads(raw)
    assert err.value.where == where


def test_a_surrogate_pair_is_text():
    assert loads(b'{"e": "\\ud83d\\ude00"}') == {"e": "😀"}
