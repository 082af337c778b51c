"""The pages' language: zh-CN or en, from one message catalogue (Flask-Babel).

Chosen in this order: ``?lang=`` on any page (remembered in a cookie for a year), that
cookie, the browser's Accept-Language, else Chinese. Message ids are the English text;
``plugin/web/translations/zh_Hans_CN/LC_MESSAGES/messages.po`` holds the Chinese (Babel
names zh_CN zh_Hans_CN, and looks for its catalogue under that name), and ``make
translations`` extracts, merges and compiles it (tests/unit/test_translations.py fails
while a message has no Chinese or the compiled catalogue is older than its source)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, current_app, request
from flask_babel import Babel, get_locale
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

LANGUAGES = {"zh_CN": "中文", "en": "English"}  # locale -> its own name, for the switch
# Our codes (the URL, the cookie, the switch) -> Babel's locales: Babel turns "zh_CN" into
# zh_Hans_CN and finds the catalogue only under that name.
_BABEL = {"zh_CN": "zh_Hans_CN", "en": "en"}
DEFAULT = "zh_CN"
COOKIE = "callmood_lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
_ALIASES = {"zh": "zh_CN", "zh_cn": "zh_CN", "zh-cn": "zh_CN", "zh_hans": "zh_CN", "zh-hans": "zh_CN",
            "en": "en", "en_us": "en", "en-us": "en", "en_gb": "en", "en-gb": "en"}


def _known(value: str | None) -> str | None:
    return _ALIASES.get((value or "").strip().lower()[:16])


def _chosen() -> str:
    chosen = _known(request.args.get("lang")) or _known(request.cookies.get(COOKIE))
    if chosen:
        return chosen
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    return (_known(best) if best else None) or DEFAULT


def select_locale() -> str:
    return _BABEL[_chosen()]


def current() -> str:
    """This page's language as LANGUAGES names it (zh_CN or en)."""
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else DEFAULT


def html_lang() -> str:
    """The ``<html lang>`` value: BCP 47 (zh-CN, en), as screen readers and fonts expect it."""
    return current().replace("_", "-")


def lang_url(code: str) -> str:
    """This page again, its query kept, in the language ``code``. A page that answered a
    form (POST /admin/users/add) links to the nearest page above it that a GET opens."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    return _gettable(request.path) + "?" + urlencode([*args, ("lang", code)])


def _gettable(path: str) -> str:
    if request.method in ("GET", "HEAD"):
        return path
    adapter = current_app.url_map.bind("localhost")
    while path not in ("", "/"):
        path = path.rsplit("/", 1)[0]
        try:
            adapter.match(path or "/", method="GET")
            return path or "/"
        except RequestRedirect as moved:  # /admin -> /admin/
            return urlsplit(moved.new_url).path
        except HTTPException:
            continue
    return "/"


def _remember(response: Response) -> Response:
    chosen = _known(request.args.get("lang"))
    if chosen and request.cookies.get(COOKIE) != chosen:
        response.set_cookie(COOKIE, chosen, max_age=365 * 86400, httponly=True, samesite="Lax",
                            secure=current_app.config.get("SESSION_COOKIE_SECURE") or request.is_secure)
    return response


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories=str(TRANSLATIONS))
    app.after_request(_remember)
    app.context_processor(lambda: {"html_lang": html_lang, "lang_url": lang_url, "languages": LANGUAGES,
                                   "current_lang": current})
