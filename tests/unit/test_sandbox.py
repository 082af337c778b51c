"""Operators' templates: immutable, bounded, and values escaped where a sink asks."""

import pytest
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError

from plugin.core.sandbox import OUTPUT_MAX, Raw, TemplateLimit, compile_error, render, render_escaped

CTX = {"call": {"customer_id": "c-1", "id": 123_456_789, "tags": ["vip"]},
       "alert": {"emotions": ["angry", "sad"], "summary": "s", "share": 0.5}}


@pytest.mark.parametrize("template,expected", [
    ("{{ call.customer_id }}: {{ alert.emotions | join('/') }}", "c-1: angry/sad"),
    ("{{ (alert.share * 100) | round | int }}%", "50%"),
    ("{{ call.id }} {{ call.id | string }} {{ '{}'.format(call.id) }} {{ '%d' % call.id }}",
     "123456789 123456789 123456789 123456789"),
    ("{{ 'order 1234567: %s' % call.id }} {{ 'paid: {} of 1000000'.format(2) }} {{ '{:>8}'.format(1) }}",
     "order 1234567: 123456789 paid: 2 of 1000000        1"),
    ("{% for t in call.tags %}#{{ t }}{% endfor %} {{ call.tags | join(',') }}", "#vip vip"),
    ("{% set ns = namespace(n=0) %}{% for e in alert.emotions %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", "2"),
    ("{{ 'x' * 10 }}{{ 'a-b'.replace('-', '+') }}{{ ','.join(['p', 'q']) }}{{ 'ab'.center(6, '.') }}", "xxxxxxxxxxa+bp,q..ab.."),
    ("{{ range(100000) | length }} {{ 7 ** 100 > 0 }}", "100000 True"),
    ("{{ [{'n': 1}, {'n': 2}] | join(',', attribute='n') }}", "1,2"),
])
def test_templates_operators_write_still_work(template, expected):
    assert render(template, **CTX) == expected


@pytest.mark.parametrize("template", [
    "{{ call.update({'customer_id': 'x'}) }}",
    "{{ call.pop('customer_id') }}",
    "{{ call.setdefault('x', 1) }}",
    "{{ call.clear() }}",
    "{{ call.tags.append('hacked') }}",
    "{{ call.tags.extend(['a']) }}",
    "{{ call.tags.insert(0, 'a') }}",
    "{% set l = [] %}{{ l.append(1) }}",
])
def test_templates_cannot_change_the_data_they_are_shown(template):
    ctx = {"call": {"customer_id": "c-1", "tags": ["vip"]}}
    with pytest.raises(SecurityError, match="unsafe"):
        render(template, **ctx)
    assert ctx == {"call": {"customer_id": "c-1", "tags": ["vip"]}}


def test_do_statements_are_not_available():
    assert "do" in (compile_error("{% do call.update({'a': 1}) %}") or "")


@pytest.mark.parametrize("template,match", [
    ("{{ 'x' * 10**8 }}", "would build a value of 100000000 characters"),
    ("{{ 10**8 * 'x' }}", "would build a value of"),
    ("{{ ['x'] * 10**8 }}", "would build a value of"),
    ("{{ 2 ** (10**9) }}", "number over 4096 bits"),
    ("{{ (2**4000) * (2**4000) }}", "number over 4096 bits"),
    ("{{ ('x' * 60000) + ('x' * 60000) }}", "would build a value of 120000"),
    ("{{ 'x' | center(10**8) }}", "passes 100000000 to center"),
    ("{{ 'x' | indent(10**8) }}", "passes 100000000 to indent"),
    ("{{ 'x' | wordwrap(10**8) }}", "to wordwrap"),
    ("{{ [1] | batch(10**8, 0) | list }}", "to batch"),
    ("{{ [1] | slice(10**8, 0) | list }}", "to slice"),
    ("{{ 'x'.ljust(10**8) }}", "passes 100000000 to ljust"),
    ("{{ 'x'.zfill(10**8) }}", "to zfill"),
    ("{{ '\t'.expandtabs(10**8) }}", "to expandtabs"),
    ("{{ '%0999999d' % 1 }}", "width or precision over 99999"),
    ("{{ '%.*f' % (10**6, 1.0) }}", "width or precision over 99999"),
    ("{{ '{:>99999999}'.format(1) }}", "width or precision over 99999"),
    ("{{ '{x:>99999999}'.format_map({'x': 1}) }}", "width or precision over 99999"),
    ("{{ '{:{}}'.format('x', 10**8) }}", "width or precision over 99999"),
    ("{{ '%*s' % (10**8, 'x') }}", "width or precision over 99999"),
    ("{{ range(100000) | join('x' * 60000) }}", "would join into"),
    ("{{ ('x' * 60000).join(['a'] * 100) }}", "would join into"),
    ("{{ ('x' * 60000) | replace('x', 'yy') }}", "would replace into"),
    ("{{ ('x' * 60000).replace('x', 'yy') }}", "would replace into"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "would concatenate into"),
    ("{% set ns = namespace(n=2) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
     "over 4096 bits"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "loops more than 10000 times"),
    ("{% for c in 'x' * 60000 %}{% for d in 'x' * 60000 %}{% endfor %}{% endfor %}", "loops more than"),
    ("{% for i in range(5000) %}{{ 'y' * 100 }}{% endfor %}", "would write"),
    ("{% set b %}{% for i in range(5000) %}{{ 'y' * 100 }}{% endfor %}{% endset %}{{ b | length }}", "would write"),
    ("{% macro m() %}{{ 'z' * 60000 }}{% endmacro %}{{ m() ~ m() }}", "would write"),
    ("{% filter upper %}{% for i in range(9000) %}abcdefgh{% endfor %}{% endfilter %}", "would write"),
])
def test_templates_cannot_build_huge_strings_numbers_or_loops(template, match):
    with pytest.raises(TemplateLimit, match=match):
        render(template, **CTX)


def test_output_is_capped():
    assert len(render("{{ 'x' * n }}", n=OUTPUT_MAX)) == OUTPUT_MAX
    with pytest.raises(TemplateLimit, match=f"over the {OUTPUT_MAX}-character limit"):
        render("{{ a }}{{ a }}", a="x" * (OUTPUT_MAX // 2 + 1))
    with pytest.raises(TemplateLimit):  # literal text counts too
        render("{% for i in range(9000) %}" + "0123456789" + "{% endfor %}")


def test_limits_are_template_errors_with_a_clear_message():
    with pytest.raises(TemplateError) as err:
        render("{{ 'x' * 10**8 }}")
    assert str(err.value) == ("template would build a value of 100000000 characters, over the "
                              "65536-character limit")


def test_escaped_rendering_escapes_values_but_not_the_template_or_raw_values():
    upper = str.upper
    out = render_escaped(upper, "<b>{{ call.customer_id }}</b> {{ link }} {{ call.tags | join('+') }} {{ none }}",
                         link=Raw("http://x/calls/1"), none=None, **CTX)
    assert out == "<b>C-1</b> http://x/calls/1 VIP "


def test_data_is_never_a_template():
    assert render("{{ call.customer_id }}", call={"customer_id": "{{ 7*7 }}"}) == "{{ 7*7 }}"


@pytest.mark.parametrize("template", [
    # Found by the attacker review: ~ is no binop, lipsum takes any length, format any width.
    "{% set a = 'x' * 60000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c | length }}",
    "{{ lipsum(200000) | length }}",
    "{{ '%99999999s' | format('x') }}",
])
def test_concatenation_lipsum_and_format_are_bounded_too(template):
    with pytest.raises(TemplateError):
        render(template)
