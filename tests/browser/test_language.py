"""The pages' language in a real browser (headless Chromium): a supervisor whose browser
asks for Chinese logs in and sees the pages in Chinese; the switch in the nav turns the
page into English and it stays English on the next pages (a cookie), the call page too;
the switch back turns it into Chinese again. A phone (375 px) opens the call page in
either language and it fits the width. Screenshots in each language, at desktop and phone
width, go to artefacts/screenshots/lang-*.png."""

from __future__ import annotations

from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.test_pages import PASSWORD, site  # noqa: F401 (site: the fixture, one analysed call)


def log_in(page, url: str, name: str, password: str, button: str) -> None:
    """The login form, by its labels in the page's language."""
    page.goto(f"{url}/login")
    page.get_by_label(name).fill("sup")
    page.get_by_label(password).fill(PASSWORD)
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(f"{url}/dashboard")


def lang(page) -> str:
    return page.locator("html").get_attribute("lang")


def nav_link(page, name: str):
    return page.locator("nav").get_by_role("link", name=name, exact=True)


def test_the_switch_changes_the_language_and_it_stays_changed(browser, site, shoot):  # noqa: F811
    service, call_id = site
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    log_in(page, service.url, "用户名", "密码", "登录")
    assert lang(page) == "zh-CN"
    assert nav_link(page, "情绪预警").is_visible() and nav_link(page, "Flagged").count() == 0
    assert "cust-红" in page.content()
    shoot(page, "lang-flagged-zh-desktop")

    # The switch: English, on this page, then on the call page and the next ones.
    page.locator("nav").get_by_role("link", name="English").click()
    page.wait_for_url("**lang=en*")  # a click does not wait for the page it loads
    assert lang(page) == "en" and nav_link(page, "Flagged").is_visible() and nav_link(page, "情绪预警").count() == 0
    assert page.locator("nav strong", has_text="English").count() == 1  # where we are: no link
    shoot(page, "lang-flagged-en-desktop")
    page.get_by_role("link", name=f"#{call_id}").click()
    page.wait_for_url(f"{service.url}/calls/{call_id}")  # no ?lang= in the link: the cookie remembers
    assert lang(page) == "en"
    assert page.get_by_role("heading", name="Recording and emotion timeline").is_visible()
    assert page.get_by_role("heading", name="Alerts", exact=True).is_visible()
    assert page.get_by_role("button", name="False alarm").is_visible()
    assert "critical" in page.locator("section.alert").inner_text()
    shoot(page, "lang-call-en-desktop")
    nav_link(page, "Calls").click()
    page.wait_for_url(f"{service.url}/calls")
    assert lang(page) == "en" and page.get_by_role("heading", name="Calls", exact=True).is_visible()

    # And back: Chinese from the switch on, the call page too.
    page.goto(f"{service.url}/calls/{call_id}")
    page.locator("nav").get_by_role("link", name="中文").click()
    page.wait_for_url("**lang=zh_CN*")
    assert lang(page) == "zh-CN" and page.get_by_role("heading", name="录音与情绪时间线").is_visible()
    assert page.get_by_role("button", name="误报").is_visible() and "严重" in page.locator("section.alert").inner_text()
    assert "生气" in page.locator("table").last.inner_text()  # the segments' emotions by their Chinese names
    shoot(page, "lang-call-zh-desktop")
    nav_link(page, "通话").click()
    page.wait_for_url(f"{service.url}/calls")
    assert lang(page) == "zh-CN" and page.get_by_role("heading", name="通话", exact=True).is_visible()
    context.close()


def test_the_call_page_at_phone_width_in_each_language(browser, site, shoot):  # noqa: F811
    service, call_id = site
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US")
    page = context.new_page()
    log_in(page, service.url, "User name", "Password", "Log in")
    for code, heading in (("en", "Recording and emotion timeline"), ("zh_CN", "录音与情绪时间线")):
        page.goto(f"{service.url}/calls/{call_id}?lang={code}")
        assert page.get_by_role("heading", name=heading).is_visible()
        # Fits the width: nothing wider than the phone but the tables, which scroll inside themselves.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, code
        shoot(page, f"lang-call-{code.split('_')[0]}-phone")
    page.goto(f"{service.url}/dashboard")  # the last choice (Chinese) stays, though the phone asks for English
    assert lang(page) == "zh-CN"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    shoot(page, "lang-flagged-zh-phone")
    context.close()
