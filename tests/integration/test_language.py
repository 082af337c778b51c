"""The pages' language (issue 14 item 7), through Flask's test client on SQLite and
PostgreSQL: one language a page, chosen by ``?lang=`` (remembered in a cookie), that
cookie, the browser's Accept-Language, else Chinese; ``<html lang>`` says which; the
switch keeps the page's other query parameters; a value we do not know is ignored, never
reflected; the JSON API answers the same in either language."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from plugin.core.clock import ManualClock
from plugin.store.tables import AlertRow
from plugin.web.i18n import COOKIE
from tests.conftest import authed, make_config
from tests.integration.test_dashboard_pages import add_call

NOW = datetime(2026, 11, 24, 4, 0)
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


@pytest.fixture
def site(tmp_path, db_url, app_factory):
    """The app with one analysed call holding a critical alert, and a supervisor's client
    (an API token, so no CSRF token is needed for its posts)."""
    svc, admin = app_factory(make_config(tmp_path, None, db_url), clock=ManualClock(NOW))
    call_id = add_call(svc, "cust-1", alerts=[("critical", "general", None)])
    return svc, authed(admin.application, "supervisor"), call_id


def html_lang(page: str) -> str:
    return page.split('<html lang="', 1)[1].split('"', 1)[0]


def switch_links(page: str) -> dict[str, str]:
    """The language switch's links: hreflang -> href (the page's own language is no link)."""
    nav = page.split('<span class="langs">', 1)[1].split("</span>", 1)[0]
    out = {}
    for part in nav.split("<a ")[1:]:
        href = part.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        out[part.split('hreflang="', 1)[1].split('"', 1)[0]] = href
    return out


def test_accept_language_picks_the_pages_language(site):
    svc, client, call_id = site
    zh = client.get(f"/calls/{call_id}", headers=ZH).text
    assert html_lang(zh) == "zh-CN"
    assert "<h2>预警</h2>" in zh and "<h2>录音与情绪时间线</h2>" in zh and "状态：" in zh and "严重" in zh
    assert "Recording and emotion timeline" not in zh and ">Flagged</a>" not in zh
    assert '<strong lang="zh-CN">中文</strong>' in zh and switch_links(zh).keys() == {"en"}

    en = client.get(f"/calls/{call_id}", headers=EN).text
    assert html_lang(en) == "en"
    assert "<h2>Alerts</h2>" in en and "<h2>Recording and emotion timeline</h2>" in en and "critical" in en
    assert "录音与情绪时间线" not in en and ">情绪预警</a>" not in en
    assert '<strong lang="en">English</strong>' in en and switch_links(en).keys() == {"zh-CN"}

    # No preference at all: Chinese. A preference by weight: the heavier one wins.
    assert html_lang(client.get("/calls").text) == "zh-CN"
    assert html_lang(client.get("/calls", headers={"Accept-Language": "zh-CN;q=0.4, en;q=0.8"}).text) == "en"
    assert html_lang(client.get("/calls", headers={"Accept-Language": "en;q=0.2, zh;q=0.9"}).text) == "zh-CN"
    assert html_lang(client.get("/calls", headers={"Accept-Language": "fr-FR, de"}).text) == "zh-CN"


def test_every_page_speaks_one_language(site):
    svc, client, call_id = site
    pages = ("/dashboard", "/calls", f"/calls/{call_id}", "/customers?id=cust-1", "/reports/day/2026-11-23",
             "/admin/deliveries")
    admin = authed(client.application, "admin")
    for path in pages:
        zh, en = admin.get(path, headers=ZH), admin.get(path, headers=EN)
        assert zh.status_code == en.status_code == 200, path
        assert html_lang(zh.text) == "zh-CN" and html_lang(en.text) == "en", path
        # The nav in the page's language only (the bilingual "情绪预警 Flagged" is gone).
        assert ">情绪预警</a>" in zh.text and ">通话</a>" in zh.text and ">Flagged</a>" not in zh.text, path
        assert ">Flagged</a>" in en.text and ">Calls</a>" in en.text and "情绪预警" not in en.text, path
    login = client.application.test_client()
    assert "<h1>登录</h1>" in login.get("/login", headers=ZH).text
    assert "<h1>Log in</h1>" in login.get("/login", headers=EN).text


def test_codes_are_named_in_the_pages_language_and_stay_codes_in_the_api(site):
    svc, client, call_id = site
    zh = client.get("/calls?status=analyzed", headers=ZH).text
    en = client.get("/calls?status=analyzed", headers=EN).text
    # The filter's options: the value is the code, the text its name.
    assert '<option value="analyzed" selected>已分析</option>' in zh
    assert '<option value="analyzed" selected>analyzed</option>' in en
    assert 'class="state-analyzed"><b>已分析</b>' in zh
    customer = client.get("/customers?id=cust-1", headers=ZH).text
    assert '<span class="critical">严重</span>' in customer
    # The JSON API is the same whatever the language asked for.
    for path in ("/api/calls", f"/api/calls/{call_id}", "/api/flagged", "/api/calls/999999"):
        assert client.get(path, headers=ZH).json == client.get(path, headers=EN).json, path
    assert client.get(f"/api/calls/{call_id}", headers=ZH).json["status"] == "analyzed"


def test_the_lang_parameter_sets_a_cookie_that_later_pages_keep(site):
    svc, client, call_id = site
    r = client.get("/calls?lang=en", headers=ZH)  # the parameter wins over the browser's language
    assert html_lang(r.text) == "en"
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith(f"{COOKIE}="))
    assert cookie.startswith(f"{COOKIE}=en;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=31536000" in cookie and "Secure" not in cookie  # plain http here (public_url unset)
    assert client.get_cookie(COOKIE).value == "en"
    # Later pages, without the parameter, with a browser asking for Chinese: still English.
    page = client.get(f"/calls/{call_id}", headers=ZH)
    assert html_lang(page.text) == "en" and "<h2>Alerts</h2>" in page.text
    assert not any(c.startswith(f"{COOKIE}=") for c in page.headers.getlist("Set-Cookie"))  # no rewrite
    # Switched back: Chinese from then on.
    assert html_lang(client.get("/dashboard?lang=zh_CN", headers=EN).text) == "zh-CN"
    assert client.get_cookie(COOKIE).value == "zh_CN"
    assert html_lang(client.get("/calls", headers=EN).text) == "zh-CN"
    # The spellings people type: zh-CN, zh, EN.
    for value, lang in (("zh-CN", "zh-CN"), ("EN", "en"), ("zh", "zh-CN"), ("en-GB", "en")):
        assert html_lang(client.get(f"/calls?lang={value}").text) == lang, value


@pytest.mark.parametrize("bogus", ["../../etc", "x" * 5000, "zh_CN<script>", "en\u200b", "fr", "", "en;q=1",
                                   "zh_CN\r\nSet-Cookie: admin=1", "en" + " " * 20 + "x"])
def test_a_language_we_do_not_know_is_ignored_without_error(site, bogus):
    svc, client, call_id = site
    for headers, lang in ((ZH, "zh-CN"), (EN, "en")):
        r = client.get("/calls", query_string={"lang": bogus, "status": "failed"}, headers=headers)
        assert r.status_code == 200 and html_lang(r.text) == lang
        assert not any(c.startswith(f"{COOKIE}=") for c in r.headers.getlist("Set-Cookie"))
        assert "<script>" not in r.text and "../../etc" not in r.text and "x" * 100 not in r.text
        assert "admin=1" not in r.text and all("admin=1" not in c for c in r.headers.getlist("Set-Cookie"))
    assert client.get_cookie(COOKIE) is None
    # The same value in the cookie (a forged or stale one): ignored too.
    client.set_cookie(COOKIE, bogus[:1000].replace("\r\n", " "))
    r = client.get("/calls", headers=EN)
    assert r.status_code == 200 and html_lang(r.text) == "en"
    # (A NUL in a query is refused before any of this: plugin/web/auth/gate.py, 400.)
    assert client.get("/calls", query_string={"lang": "en\x00"}).status_code == 400


def test_the_switch_keeps_the_pages_other_query_parameters(site):
    svc, client, call_id = site
    page = client.get("/calls", query_string=[("status", "failed"), ("lang", "en")]).text
    href = switch_links(page)["zh-CN"]
    assert urlsplit(href).path == "/calls"
    assert parse_qsl(urlsplit(href).query) == [("status", "failed"), ("lang", "zh_CN")]  # one lang, ours last
    # A customer id with characters that mean something in a URL, and a repeated parameter.
    svc_id = "客户/甲 ?&lang=en#x"
    add_call(svc, svc_id, alerts=[("warning", "general", None)])
    page = client.get("/customers", query_string={"id": svc_id, "lang": "zh_CN"}).text
    href = switch_links(page)["en"]
    assert urlsplit(href).path == "/customers" and "#" not in href and " " not in href
    assert parse_qsl(urlsplit(href).query) == [("id", svc_id), ("lang", "en")]
    assert client.get(href).status_code == 200 and html_lang(client.get(href).text) == "en"
    page = client.get("/calls?status=failed&status=analyzed&lang=en").text
    assert parse_qsl(urlsplit(switch_links(page)["zh-CN"]).query) == [
        ("status", "failed"), ("status", "analyzed"), ("lang", "zh_CN")]


def test_the_buttons_answer_in_the_pages_language(site):
    svc, client, call_id = site
    with svc.sessions() as s:
        alert_id = s.execute(select(AlertRow.id).where(AlertRow.call_id == call_id)).scalar_one()
    r = client.post(f"/calls/{call_id}/alerts/{alert_id}/feedback", data={"verdict": "false_alarm"}, headers=ZH)
    assert r.status_code == 302
    page = client.get(r.location, headers=ZH).text
    assert f'<p class="flash" role="status">预警 {alert_id} 已标注：误报</p>' in page
    assert '<b class="false_alarm">误报</b>' in page
    r = client.post(f"/calls/{call_id}/alerts/{alert_id}/feedback", data={"verdict": "correct"}, headers=EN)
    page = client.get(r.location, headers=EN).text
    assert f'<p class="flash" role="status">Alert {alert_id} marked: Correct</p>' in page
    # An error page for people, in their language too.
    missing = client.post(f"/calls/{call_id}/alerts/999999/feedback", data={"verdict": "correct"}, headers=ZH)
    assert missing.status_code == 404 and f"通话 {call_id} 没有预警 999999。" in missing.text


def test_how_long_ago_is_said_in_one_language(site):
    svc, client, call_id = site
    svc.clock.advance(seconds=3 * 3600)
    zh = client.get("/calls", headers=ZH).text
    en = client.get("/calls", headers=EN).text
    assert "<small>(3 小时前)</small>" in zh and "ago" not in zh
    assert "<small>(3 h ago)</small>" in en and "小时" not in en


def test_a_page_that_answered_a_form_switches_to_a_page_a_get_opens(tmp_path, db_url, app_factory):
    from tests.integration.test_admin_pages import add_user, logged_in, post

    svc, app_client = app_factory(make_config(tmp_path, None, db_url), role=None)
    add_user(svc, "root", "admin")
    admin = logged_in(app_client.application, "root")
    refused = post(admin, "/admin/users/add?lang=en", name="x", role="viewer", password="short", password_again="short")
    assert refused.status_code == 400
    href = switch_links(refused.text)["zh-CN"]
    assert urlsplit(href).path == "/admin/users"
    assert admin.get(href).status_code == 200
