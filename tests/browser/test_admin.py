"""The admin pages in a real browser (headless Chromium): an admin logs in, opens the
rules in force, the routing tree and the users page, adds a user with the form, creates an
API token and sees it once (never again after a reload); each page at desktop and phone
(375 px) width, with screenshots in artefacts/screenshots/admin-*.png (the new token
masked in them)."""

from __future__ import annotations

import pytest

from plugin.core import passwords
from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import make_config

PASSWORD = "correct horse battery"
ROUTING = """\
receivers:
  supervisors: {sink: wecom, mentions: [lead01]}
routes:
  - match: {severity: [critical]}
    receiver: supervisors
quiet_hours: {timezone: Asia/Shanghai, start: "22:00", end: "08:00"}
"""
PAGES = (("rules", "/admin/rules"), ("routing", "/admin/routing"), ("users", "/admin/users"))


@pytest.fixture
def site(tmp_path, sqlite_url, service_factory, rules_dir):
    """A running service (real sockets) with the test rules, a routing.yaml, a WeCom robot
    sink whose key must never show, and an admin."""
    (rules_dir / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    sinks = {"crm": {"type": "rest", "url": "http://127.0.0.1:9/api/{{ call.customer_id }}/tags"},
             "wecom": {"type": "wecom_robot", "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=ROBOT-KEY-SECRET"}}
    service = service_factory(make_config(tmp_path, None, sqlite_url, rules={"path": str(rules_dir)}, sinks=sinks),
                              start_runtime=False)
    service.svc.accounts.add_user("root", "admin", passwords.hash_password(PASSWORD))
    return service


def log_in(page, url: str, then: str = "/admin/routing") -> None:
    page.goto(f"{url}/login?lang=en&next={then}")
    page.locator("input[name=name]").fill("root")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form.login button[type=submit]").click()
    page.wait_for_url(f"{url}{then}")


def test_an_admin_adds_a_user_and_creates_a_token(browser, site, shoot):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    log_in(page, site.url)
    page.get_by_role("link", name="Admin", exact=True).click()  # the main nav's link
    page.wait_for_url(f"{site.url}/admin/rules")
    assert "any_customer_emotion" in page.content() and "always.yaml" in page.content()
    shoot(page, "admin-rules-desktop")

    page.locator("nav.admin-nav").get_by_role("link", name="Routing").click()
    page.wait_for_url(f"{site.url}/admin/routing")
    assert "supervisors" in page.content() and "ROBOT-KEY-SECRET" not in page.content()
    shoot(page, "admin-routing-desktop")

    page.locator("nav.admin-nav").get_by_role("link", name="Users and API tokens").click()
    page.wait_for_url(f"{site.url}/admin/users")
    form = page.locator("#add-user")
    form.get_by_label("User name").fill("alice")
    form.get_by_label("Role").select_option("supervisor")
    form.get_by_label("Password", exact=True).fill("alice's long pass")
    form.get_by_label("Password again").fill("alice's long pass")
    form.get_by_role("button", name="Add user").click()
    page.wait_for_url(f"{site.url}/admin/users")
    assert "User alice added (supervisor)." in page.content()
    assert site.svc.accounts.user("alice").role == "supervisor"

    form = page.locator("#create-token")
    form.get_by_label("Token name").fill("crm-sync")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_label("Expires in (days, empty: never)").fill("30")
    form.get_by_role("button", name="Create token").click()
    page.wait_for_load_state()
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("cm_") and site.svc.accounts.find_token(token).name == "crm-sync"
    shoot_masked(page, "admin-token-desktop")

    page.goto(f"{site.url}/admin/users")  # shown once: never again
    assert token not in page.content() and token[:10] in page.content()
    assert page.locator("#new-token").count() == 0
    shoot(page, "admin-users-desktop")
    _every_control_labelled(page, site.url)
    context.close()


def shoot_masked(page, name: str) -> None:
    """A screenshot with the new token painted over: tokens go nowhere, pictures included."""
    from tests.browser.conftest import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True, mask=[page.locator("#new-token")])


def _every_control_labelled(page, url: str) -> None:
    for _, path in PAGES:
        page.goto(url + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)""")
        # textContent, not innerText: a button inside a closed <details> has no innerText.
        nameless = page.evaluate("""() => [...document.querySelectorAll('button, [role=button]')]
            .filter(e => !(e.textContent || '').trim() && !e.getAttribute('aria-label')).length""")
        assert unlabelled == [] and nameless == 0, path


HOSTILE_KEYWORD = "<script>alert('kw')</script>"
WORDS = """\
scenario: words
match: {queue: [complaints]}
rules:
  - name: regulator_threat
    severity: critical
    when:
      says: [投诉, 12315, "<script>alert('kw')</script>", 'he said "refund"']
      says_regex: ['[<"]img[>&]']
      min_mentions: 2
      tag_emotions: [angry]
"""


def test_a_keyword_rule_shows_its_words_as_text(browser, site, rules_dir, shoot):
    (rules_dir / "words.yaml").write_text(WORDS, encoding="utf-8")
    assert site.svc.rules_holder.reload_if_changed() is True
    for viewport in (DESKTOP, PHONE):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        log_in(page, site.url, then="/admin/rules")
        rule = page.locator("div.rule", has_text="regulator_threat")
        assert rule.locator("q.said").all_inner_texts() == ["投诉", "12315", HOSTILE_KEYWORD, 'he said "refund"']
        assert rule.locator("code.said").all_inner_texts() == ['[<"]img[>&]']
        assert "mentions at least 2 min_mentions" in rule.inner_text()
        assert rule.locator("img, script").count() == 0 and dialogs == []  # text, never markup
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1
        shoot(page, "admin-rules-words-" + ("phone" if viewport is PHONE else "desktop"))
        context.close()


def test_the_admin_pages_at_phone_width(browser, site, shoot):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, site.url)
    for name, path in PAGES:
        page.goto(site.url + path)
        # Nothing wider than the phone but the tables, which scroll inside themselves.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, path
        shoot(page, f"admin-{name}-phone")
    context.close()
