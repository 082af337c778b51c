"""The upload page in a real browser (headless Chromium): a viewer logs in, chooses two
recordings (a WAV and a stereo MP3) and drops a broken file with a hostile name, sees each
file's state and both results with their segments and timeline, downloads the CSV (BOM,
header, one row per segment); the drop zone's field is labelled and reached by keyboard;
a busy server (429) is waited for and tried again; the page fits a 375 px phone.
Screenshots go to artefacts/screenshots/upload-*.png."""

from __future__ import annotations

import csv
import io
import threading

import pytest

from plugin.core import passwords
from plugin.web.predict import POOL
from plugin.web.upload_page import CSV_COLUMNS
from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import make_config
from tests.helpers import make_audio

PASSWORD = "correct horse battery"
DONE_S = 90_000  # ms: two short files through the tiny CPU model

# A file dropped on the zone, as a person's drag and drop delivers it (DataTransfer).
DROP_JS = """([name, bytes]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([new Uint8Array(bytes)], name, {type: 'audio/wav'}));
  const zone = document.getElementById('drop-zone');
  for (const type of ['dragenter', 'dragover', 'drop'])
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
}"""


@pytest.fixture
def site(tmp_path, sqlite_url, service_factory):
    """A running service (real sockets, the shared random-weight model, the test rules) with
    a viewer, and two recordings on disk."""
    service = service_factory(make_config(tmp_path, None, sqlite_url, server={"predict_queue": 0}),
                              start_runtime=False)
    service.svc.accounts.add_user("vi", "viewer", passwords.hash_password(PASSWORD))
    wav = make_audio(tmp_path / "客户-1", "wav_pcm", 16000, 1, 7.0)
    mp3 = make_audio(tmp_path / "stereo", "mp3", 44100, 2, 4.0)
    return service, [wav, mp3]


def log_in(page, url: str) -> None:
    """Log in as the viewer, in English, and land on the upload page (the login sends you back)."""
    page.goto(f"{url}/upload?lang=en")
    page.wait_for_url(f"{url}/login**")
    page.locator("input[name=name]").fill("vi")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form.login button").click()
    page.wait_for_url(f"{url}/upload**")


def test_a_viewer_analyses_two_files_and_downloads_the_csv(browser, site, shoot, tmp_path):
    service, recordings = site
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, service.url)
    assert page.get_by_role("link", name="Analyse recordings").get_attribute("href") == "/upload"  # the nav

    # The drop zone's field: labelled, described, and reached with the keyboard.
    field = page.get_by_label("Recordings")
    assert field.get_attribute("type") == "file" and field.get_attribute("multiple") is not None
    assert "Drag and drop" in page.locator("#" + field.get_attribute("aria-describedby")).inner_text()
    page.locator("select[name=scenario]").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "upload-files"
    assert page.evaluate("document.getElementById('drop-zone').matches(':focus-within')")
    assert page.evaluate("getComputedStyle(document.getElementById('drop-zone')).outlineStyle") == "solid"

    page.get_by_label("Scenario").select_option("everything")
    field.set_input_files([str(p) for p in recordings])
    page.evaluate(DROP_JS, ["<img src=x onerror=window.__xss=1>.wav", list(b"not audio at all" * 8)])
    page.wait_for_function("() => document.querySelectorAll('.upload-state.state-done').length === 2", timeout=DONE_S)
    page.wait_for_function("() => document.querySelectorAll('.upload-state.state-error').length === 1", timeout=DONE_S)

    items = page.locator(".upload-item")
    assert items.count() == 3
    names = [items.nth(i).locator(".upload-name").inner_text() for i in range(3)]
    assert names == ["客户-1.wav", "stereo.mp3", "<img src=x onerror=window.__xss=1>.wav"]  # as text
    assert page.evaluate("window.__xss") is None and page.locator(".upload-item img").count() == 0
    assert "cannot decode recording" in items.nth(2).inner_text()
    segments = 0
    for i in range(2):
        item = items.nth(i)
        assert "Verdict" in item.inner_text() and "everything" in item.inner_text()
        assert item.locator(".timeline svg rect").count() >= 2
        rows = item.locator(".upload-segments tr").count() - 1
        assert rows >= 2
        segments += rows
    assert "any_customer_emotion" in items.nth(0).inner_text()  # the test rule fired: the verdict says so
    shoot(page, "upload-desktop")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename.startswith("callmood-upload-")
    saved = tmp_path / "upload.csv"
    download.value.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == CSV_COLUMNS and len(rows) == 1 + segments
    assert {r[0] for r in rows[1:]} == {"客户-1.wav", "stereo.mp3"}
    assert errors == []
    context.close()


def test_a_busy_server_is_waited_for_and_tried_again(browser, site):
    service, recordings = site
    page = browser.new_context(viewport=DESKTOP).new_page()
    log_in(page, service.url)
    held, release = threading.Event(), threading.Event()

    def hold():  # the only place in the queue (predict_queue: 0), as another upload would
        with service.app.extensions[POOL].turn():
            held.set()
            release.wait(30)
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(5)
        page.get_by_label("Recordings").set_input_files(str(recordings[0]))
        page.wait_for_function("() => document.querySelector('.upload-state.state-waiting')", timeout=10_000)
        assert "busy" in page.locator(".upload-item").inner_text()
    finally:
        release.set()
        holder.join()
    page.wait_for_function("() => document.querySelector('.upload-state.state-done')", timeout=DONE_S)


def test_the_upload_page_at_phone_width(browser, site, shoot):
    service, recordings = site
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, service.url)
    page.goto(f"{service.url}/upload?lang=zh_CN")
    page.locator("#upload-files").set_input_files([str(p) for p in recordings])
    page.wait_for_function("() => document.querySelectorAll('.upload-state.state-done').length === 2", timeout=DONE_S)
    # Fits the width: nothing wider than the phone but the tables, which scroll inside themselves.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    shoot(page, "upload-phone")
    context.close()


def test_the_words_of_each_segment_are_shown_as_text(browser, site, monkeypatch):
    """What a speech recognizer heard (built by hand: hostile words) in a Words column, set as
    text, SenseVoice's tag and events in small type."""
    from plugin.core.data import SegmentResult, summarize
    from plugin.web import upload_page
    from plugin.web.upload_audio import HeardUpload

    segs = [SegmentResult(0.0, 3.0, -1, "mixed", "angry", 0.9, {"angry": 0.9},
                          text="我要退款 <img src=x onerror=window.__xss=1>", language="zh", tag_emotion="angry",
                          events=("laughter",)),
            SegmentResult(3.0, 6.0, -1, "mixed", "neutral", 0.8, {"neutral": 0.8}, text="", language="nospeech")]
    heard = HeardUpload(summarize(segs, 6.0), {"tracks": [{"channel": -1, "role": "mixed"}], "skipped_s": 0.0},
                        {"source_codec": "pcm_s16le"}, {"trial": False})
    monkeypatch.setattr(upload_page, "hear_upload", lambda upload, roles, **kw: heard)
    service, recordings = site
    page = browser.new_context(viewport=DESKTOP).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, service.url)
    page.get_by_label("Recordings").set_input_files(str(recordings[0]))
    page.wait_for_function("() => document.querySelector('.upload-state.state-done')", timeout=DONE_S)
    table = page.locator(".upload-segments table")
    assert table.locator("th").last.inner_text() == "Words"
    words = table.locator("td.upload-words")
    assert words.nth(0).inner_text().splitlines() == ["我要退款 <img src=x onerror=window.__xss=1>",
                                                      "SenseVoice: angry · laughter"]
    assert words.nth(1).inner_text() == "(no words)"
    assert page.evaluate("window.__xss") is None and table.locator("img").count() == 0 and errors == []
