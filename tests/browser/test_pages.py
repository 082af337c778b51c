"""The pages in a real browser (headless Chromium): a supervisor logs in, filters the
red-flag list and exports it, opens a call, clicks a segment and hears the player move
there (by mouse and by keyboard), marks the alert a false alarm and sees it on the list;
a phone (375 px) opens the alert's signed link. Screenshots of each page at desktop and
phone width go to artefacts/screenshots/. The browser asks for English (its locale, so
Accept-Language), the words these tests click on; tests/browser/test_language.py switches."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from plugin.core import files, passwords
from plugin.core.clock import utcnow
from plugin.store.tables import AlertRow, Call, Segment
from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import make_config
from tests.helpers import make_audio

PASSWORD = "correct horse battery"
# What was said in the four windows (a transcript): the customer's words hostile, one long.
SAID = ["您好，这里是客服中心，请问有什么可以帮您？", "我要退款 <script>alert(1)</script>",
        "好的，我帮您查一下订单。", "不然我打12315投诉你们！" + "真的很生气" * 30]
EN = "en-US"  # the browser's language: the pages' words below are the English ones
SCORES = {"angry": 0.81, "neutral": 0.1, "sad": 0.05, "happy": 0.01, "fearful": 0.01, "disgusted": 0.01,
          "surprised": 0.005, "other": 0.003, "unknown": 0.002}


@pytest.fixture
def site(tmp_path, sqlite_url, service_factory):
    """A running service (real sockets) with a supervisor, and one analysed call: two
    speakers, an alert on the customer's angry windows, the recording kept."""
    service = service_factory(make_config(tmp_path, None, sqlite_url), start_runtime=False)
    svc = service.svc
    svc.accounts.add_user("sup", "supervisor", passwords.hash_password(PASSWORD))
    now = utcnow()
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id="browser-1", recording_url="http://127.0.0.1:9/r.wav",
                    customer_id="cust-红", agent_id="agent-7", queue="support", event={}, status="analyzed",
                    received_at=now, duration_s=12.0, channel_roles={"0": "agent", "1": "customer"})
        s.add(call)
        s.flush()
        for i in range(4):
            role, ch = ("agent", 0) if i % 2 == 0 else ("customer", 1)
            s.add(Segment(call_id=call.id, channel=ch, role=role, start=3.0 * i, end=3.0 * i + 3,
                          label="angry" if role == "customer" else "neutral", confidence=0.8, scores=SCORES,
                          text=SAID[i], language="zh", tag_emotion="angry" if role == "customer" else "neutral",
                          events=["laughter"] if i == 1 else []))
        s.add(AlertRow(call_id=call.id, rule="angry_customer", scenario="general", severity="critical",
                       role="customer", emotions=["angry"], share=1.0, confidence=0.8, matched=[[3.0, 6.0], [9.0, 12.0]],
                       summary="客户 cust-红 很生气", customer_id="cust-红", created_at=now, routing=[],
                       details={"share": 1.0, "quotes": [
                           {"start": 3.0, "end": 6.0, "role": "customer", "text": SAID[1]},
                           {"start": 9.0, "end": 12.0, "role": "customer", "text": SAID[3]}]}))
        call_id = call.id
    files.data_subdir(svc.config.data_dir, files.RECORDINGS)
    shutil.copyfile(make_audio(tmp_path / "rec", "wav_pcm", 16000, 2, 12.0),
                    files.recording_copy(svc.config.data_dir, call_id))
    return service, call_id


def log_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill("sup")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/dashboard")


def test_a_supervisor_works_through_the_pages(browser, site, shoot, tmp_path):
    service, call_id = site
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True, locale=EN)
    page = context.new_page()
    log_in(page, service.url)
    assert "cust-红" in page.content()
    shoot(page, "flagged-desktop")

    page.locator('select[name="severity"]').select_option("warning")
    page.get_by_role("button", name="Filter", exact=True).click()  # a click does not wait for the page it loads
    page.wait_for_url("**severity=warning**")
    expect(page.locator("body")).to_contain_text("No customers match these filters.")
    page.locator('select[name="severity"]').select_option("critical")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url("**severity=critical**")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    saved = tmp_path / "flagged.csv"
    download.value.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and "cust-红".encode() in data

    page.get_by_role("link", name=f"#{call_id}").click()
    page.wait_for_url(f"{service.url}/calls/{call_id}")
    shoot(page, "call-desktop")
    page.locator('rect[data-start="9.0"]').click()
    page.wait_for_function("document.getElementById('recording').currentTime >= 9.0")
    page.locator('rect[data-start="3.0"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_function("Math.abs(document.getElementById('recording').currentTime - 3.0) < 1.0")
    # What was said, beside the timeline: a click on a line's words seeks there too.
    said = page.locator("table.transcript")
    expect(said).to_contain_text("我要退款 <script>alert(1)</script>")  # the words as text
    expect(said).to_contain_text("SenseVoice: Mandarin · angry · laughter")
    said.get_by_text("好的，我帮您查一下订单。").click()
    page.wait_for_function("Math.abs(document.getElementById('recording').currentTime - 6.0) < 1.0")
    page.locator("ul.quotes button.seek").last.click()
    page.wait_for_function("document.getElementById('recording').currentTime >= 9.0")

    page.get_by_label("Note").fill("客户在开玩笑")
    page.get_by_role("button", name="False alarm").click()
    expect(page.locator("body")).to_contain_text("False alarm by sup")
    assert "False alarm</b> by sup" in page.content()
    page.get_by_role("link", name="Flagged", exact=True).click()
    page.wait_for_url(f"{service.url}/dashboard")
    expect(page.locator("table")).to_contain_text("false alarm")

    page.get_by_role("link", name="cust-红").click()  # the customer's page: every call, negative share over time
    page.wait_for_url(f"{service.url}/customers?id=*")
    assert page.locator("svg.trend circle").count() == 1 and "100% of 2 windows" in page.locator("table").inner_text()
    shoot(page, "customer-desktop")

    page.get_by_role("link", name="Calls", exact=True).click()
    page.wait_for_url(f"{service.url}/calls")
    shoot(page, "calls-desktop")
    context.close()


def test_a_phone_opens_the_alerts_link(browser, site, shoot):
    service, call_id = site
    link = urlsplit(service.svc.links.call(call_id))
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale=EN)
    page = context.new_page()
    page.goto(f"{service.url}{link.path}?{link.query}")
    assert f"Call #{call_id}" in page.content()
    # Fits the width: nothing wider than the phone but the tables, which scroll inside themselves.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    page.locator('rect[data-start="3.0"]').tap()
    page.wait_for_function("document.getElementById('recording').currentTime >= 3.0")
    shoot(page, "call-phone")
    context.close()


def test_the_pages_at_phone_width(browser, site, shoot):
    service, call_id = site
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale=EN)
    page = context.new_page()
    log_in(page, service.url)
    for name, path in (("flagged", "/dashboard"), ("calls", "/calls"), ("customer", "/customers?id=cust-红")):
        page.goto(service.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, path
        shoot(page, f"{name}-phone")
    context.close()


def test_every_form_control_has_a_label_and_every_button_a_name(browser, site):
    service, call_id = site
    page = browser.new_context(viewport=DESKTOP, locale=EN).new_page()
    log_in(page, service.url)
    for path in ("/dashboard", "/calls", f"/calls/{call_id}"):
        page.goto(service.url + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)""")
        nameless = page.evaluate("""() => [...document.querySelectorAll('button, [role=button]')]
            .filter(e => !(e.innerText || '').trim() && !e.getAttribute('aria-label')).length""")
        assert unlabelled == [] and nameless == 0, path
