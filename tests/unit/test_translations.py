"""The pages' Chinese catalogue is complete and compiled: every message the code and the
templates ask for has a translation, with the same placeholders, and the committed .mo
says what the .po says (run `make translations` after changing either)."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
LC = ROOT / "plugin/web/translations/zh_CN/LC_MESSAGES"
METHODS = [("**/web/templates/**.html", "jinja2"), ("**.py", "python")]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]|\{\w*\}")


def _po():
    with open(LC / "messages.po", "rb") as f:
        return read_po(f)


def _asked_for() -> set[str]:
    ids = set()
    for _file, _line, message, _comments, _context in extract_from_dir(ROOT / "plugin", METHODS):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def test_every_message_has_chinese():
    po = _po()
    missing = sorted(m for m in _asked_for() if m not in po or not po[m].string or po[m].fuzzy)
    assert not missing, f"{len(missing)} message(s) without Chinese (make translations, then translate): {missing[:20]}"


def test_placeholders_match():
    wrong = [m.id for m in _po() if m.id and m.string and
             sorted(PLACEHOLDER.findall(m.id)) != sorted(PLACEHOLDER.findall(m.string))]
    assert not wrong, f"placeholders differ between English and Chinese: {wrong}"


def test_compiled_catalogue_is_current():
    with open(LC / "messages.mo", "rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    po = {m.id: m.string for m in _po() if m.id and m.string and not m.fuzzy}
    assert mo == po, "messages.mo is not messages.po compiled: run make translations"
