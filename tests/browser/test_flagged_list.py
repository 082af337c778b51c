"""The red-flag list in a real browser (headless Chromium): a supervisor filters it,
acknowledges a customer and assigns them, sees who did it and when, and exports the CSV
of what is on screen; at phone width (375 px) it fits and every control has a label.
Screenshots go to artefacts/screenshots/."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from plugin.core import passwords
from plugin.core.clock import utcnow
from plugin.store.tables import AlertRow, Call
from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import make_config

PASSWORD = "correct horse battery"
CUSTOMERS = (("cust-红", "critical", "+8613812345678"), ("cust-blue", "warning", "+8613912345678"),
             ("cust-green", "info", None))


@pytest.fixture
def site(tmp_path, sqlite_url, service_factory):
    """A running service (real sockets) with two supervisors and three flagged customers."""
    service = service_factory(make_config(tmp_path, None, sqlite_url, reports={"timezone": "Asia/Shanghai"}),
                              start_runtime=False, load_model=False)
    svc = service.svc
    svc.accounts.add_user("sup", "supervisor", passwords.hash_password(PASSWORD))
    svc.accounts.add_user("ann", "supervisor", passwords.hash_password(PASSWORD))
    now = utcnow()
    with svc.sessions.begin() as s:
        for i, (customer, severity, phone) in enumerate(CUSTOMERS):
            call = Call(source="generic", external_id=f"flagged-{i}", recording_url="http://127.0.0.1:9/r.wav",
                        customer_id=customer, customer_phone=phone, agent_id=f"agent-{i}", queue="support",
                        event={}, status="analyzed", received_at=now - timedelta(minutes=i))
            s.add(call)
            s.flush()
            s.add(AlertRow(call_id=call.id, rule="angry_customer", scenario="general", severity=severity,
                           role="customer", emotions=["angry"], share=1.0, confidence=0.8, matched=[[0.0, 3.0]],
                           summary=f"客户 {customer} 很生气", customer_id=customer,
                           created_at=now - timedelta(minutes=i), routing=[]))
    return service


def log_in(page, url: str) -> None:
    page.goto(f"{url}/login?lang=en&next=/dashboard")
    page.locator("input[name=name]").fill("sup")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form.login button[type=submit]").click()
    page.wait_for_url(f"{url}/dashboard")


def shown_customers(page) -> list[str]:
    return page.locator("table.flagged tr td:first-child a").all_inner_texts()


def test_a_supervisor_filters_acknowledges_assigns_and_exports(browser, site, shoot, tmp_path):
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    log_in(page, site.url)
    assert shown_customers(page) == ["cust-红", "cust-blue", "cust-green"]
    shoot(page, "flagged-list-desktop")

    page.locator("select[name=severity]").select_option("critical")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url("**/dashboard?*severity=critical*")
    assert shown_customers(page) == ["cust-红"]

    row = page.locator("table.flagged tr", has_text="cust-红")
    row.locator("summary").click()
    row.get_by_label("Note").fill("calling back today")
    row.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("p.flash")).to_contain_text("Customer cust-红 acknowledged.")  # the click does not wait
    assert "Customer cust-红 acknowledged." in page.locator("p.flash").inner_text()
    assert page.locator("select[name=severity]").input_value() == "critical"  # the filters kept
    handling = page.locator("table.flagged tr", has_text="cust-红").locator("td.handling")
    assert "Acknowledged by sup" in handling.inner_text() and "calling back today" in handling.inner_text()
    assert handling.locator("time").count() == 1  # when, in the team's zone, with how long ago

    row = page.locator("table.flagged tr", has_text="cust-红")
    row.locator("summary").click()
    row.get_by_label("Assign to").select_option("ann")
    row.get_by_role("button", name="Assign", exact=False).first.click()
    expect(page.locator("p.flash")).to_contain_text("assigned to ann")
    handling = page.locator("table.flagged tr", has_text="cust-红").locator("td.handling")
    assert "Assigned to ann by sup" in handling.inner_text()
    shoot(page, "flagged-handled-desktop")

    page.locator("select[name=severity]").select_option("")
    page.locator("select[name=handled]").select_option("no")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url("**/dashboard?*handled=no*")
    assert shown_customers(page) == ["cust-blue", "cust-green"]

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    saved = tmp_path / "flagged.csv"
    download.value.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads the Chinese as UTF-8
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["customer_id"] for r in rows] == shown_customers(page)

    page.locator("select[name=handled]").select_option("yes")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url("**/dashboard?*handled=yes*")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    download.value.save_as(saved)
    [only] = list(csv.DictReader(io.StringIO(saved.read_bytes().decode("utf-8-sig"))))
    assert (only["customer_id"], only["acknowledged_by"], only["assigned_to"]) == ("cust-红", "sup", "ann")
    context.close()


def test_the_list_at_phone_width_with_every_control_labelled(browser, site, shoot):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, site.url)
    # Fits the width: nothing wider than the phone but the table, which scrolls inside itself.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    row = page.locator("table.flagged tr", has_text="cust-blue")
    row.locator("summary").scroll_into_view_if_needed()
    row.locator("summary").tap()
    assert row.get_by_role("button", name="Acknowledge").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    shoot(page, "flagged-list-phone")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)""")
    nameless = page.evaluate("""() => [...document.querySelectorAll('button, summary, a')]
        .filter(e => !(e.innerText || e.textContent || '').trim() && !e.getAttribute('aria-label')).length""")
    assert unlabelled == [] and nameless == 0
    context.close()
