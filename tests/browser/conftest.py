"""Browser tests: headless Chromium (the OS's, /usr/bin/chromium) driven by Playwright.

`make test` installs Chromium from the OS packages when it is missing (Makefile, target
`browser`). Without it these tests are skipped, except where CALLMOOD_REQUIRE_BROWSER is
set (CI: .ci/run), where that is a failure. Screenshots of each page, at desktop and phone
width, go to artefacts/screenshots/ (git ignores artefacts/)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CALLMOOD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parents[2] / "artefacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        message = "no Chromium (chromium on PATH, or CALLMOOD_CHROMIUM): `make test` installs it from the OS packages"
        if os.environ.get("CALLMOOD_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root; the pages are our own, on 127.0.0.1.
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


@pytest.fixture
def shoot():
    """``shoot(page, name)``: a full-page screenshot in artefacts/screenshots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take
