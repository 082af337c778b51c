"""The pages' Chinese catalogue is complete and compiled: every message the code and the
templates ask for has a translation, with the same placeholders, and the committed .mo
says what the .po says (run `make translations` after changing either)."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
LC = ROOT / "plugin/web/translations/zh_Hans_CN/LC_MESSAGES"  # Babel's name for zh_CN (plugin/web/i18n.py)
METHODS = [("**/web/templates/**.html", "jinja2"), ("**.py", "python")]
# As `make translations` extracts: the usual gettext names and lazy_gettext (module-level text, often as _l).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]|\{\w*\}")


def _po():
    with open(LC / "messages.po", "rb") as f:
        return read_po(f)


def _asked_for() -> set[str]:
    ids = set()
    for _file, _line, message, _comments, _context in extract_from_dir(ROOT / "plugin", METHODS, keywords=KEYWORDS):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def _forms(text) -> list[str]:
    """A message's text as a list: one string, or a plural message's forms (ngettext)."""
    return list(text) if isinstance(text, (tuple, list)) else [text]


def test_every_message_has_chinese():
    po = _po()
    missing = sorted(m for m in _asked_for() if m not in po or not all(_forms(po[m].string)) or po[m].fuzzy)
    assert not missing, f"{len(missing)} message(s) without Chinese (make translations, then translate): {missing[:20]}"


def test_placeholders_match():
    # A plural message's Chinese forms (one: nplurals=1) answer its English plural form.
    wrong = [m.id for m in _po() if m.id and all(_forms(m.string)) and
             any(sorted(PLACEHOLDER.findall(_forms(m.id)[-1])) != sorted(PLACEHOLDER.findall(form))
                 for form in _forms(m.string))]
    assert not wrong, f"placeholders differ between English and Chinese: {wrong}"


def test_compiled_catalogue_is_current():
    with open(LC / "messages.mo", "rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    po = {m.id: m.string for m in _po() if m.id and m.string and not m.fuzzy}
    assert mo == po, "messages.mo is not messages.po compiled: run make translations"
