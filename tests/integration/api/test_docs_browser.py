"""/docs and /redoc in a real headless Chromium with no internet.

The browser may resolve only 127.0.0.1 (every other host name fails to resolve), and its
DevTools network log is read back: the pages must draw every operation of /openapi.json from
assets served by the API itself, and must not even try a non-loopback host (a CDN, Google Fonts,
Swagger's validator). Needs Debian's ``chromium`` and ``chromium-driver`` (.ci/run installs them).
``CLICKGUARD_DOCS_SCREENSHOT=1`` also refreshes docs/screenshots/api-docs.png.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from clickguard.settings import REPO_ROOT
from tests.integration.api.conftest import LiveServer

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "api-docs.png"
RENDER_TIMEOUT_S = 60
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, offline but for loopback, logging the network."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        msg = "Debian's chromium and chromium-driver are needed: apt-get install chromium " \
              "chromium-driver (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,2000",
        # no internet: a page that needs a CDN renders nothing, as it would offline
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(RENDER_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def operations(base_url: str) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation that /openapi.json documents."""
    doc = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item
            if m in HTTP_METHODS}


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """URLs the page asked for since the last call (DevTools Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg: dict[str, Any] = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def off_loopback(urls: list[str]) -> list[str]:
    return [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urlsplit(u).hostname not in LOOPBACK]


def wait_for_count(driver: webdriver.Chrome, css: str, n: int) -> int:
    """Waits until ``css`` matches ``n`` elements (or the timeout); returns the last count."""
    seen = 0

    def enough(d: webdriver.Chrome) -> bool:
        nonlocal seen
        seen = len(d.find_elements(By.CSS_SELECTOR, css))
        return seen >= n

    try:
        WebDriverWait(driver, RENDER_TIMEOUT_S, poll_frequency=0.5).until(enough)
    except Exception:  # noqa: BLE001 - the assertion below reports the count
        pass
    return seen


def render_swagger(driver: webdriver.Chrome, base_url: str) -> set[tuple[str, str]]:
    """Opens /docs; returns (METHOD, path) of every operation block Swagger UI drew."""
    expected = operations(base_url)
    driver.get(f"{base_url}/docs")
    count = wait_for_count(driver, ".opblock", len(expected))
    assert count == len(expected), f"Swagger UI drew {count} of {len(expected)} operations"
    drawn = set()
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
            "data-path"
        )
        drawn.add((method.upper(), path))
    return drawn


def test_swagger_ui_draws_every_operation_offline(
    browser: webdriver.Chrome, live_api: LiveServer
) -> None:
    drawn = render_swagger(browser, live_api.url)
    assert drawn == operations(live_api.url)
    urls = requested_urls(browser)
    assert f"{live_api.url}/docs-assets/swagger-ui-bundle.js" in urls
    assert f"{live_api.url}/openapi.json" in urls
    assert off_loopback(urls) == []
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert title.startswith("Clickstream Guardian API")
    shot = browser.get_screenshot_as_png()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("CLICKGUARD_DOCS_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(shot)


def test_redoc_draws_every_operation_offline(
    browser: webdriver.Chrome, live_api: LiveServer
) -> None:
    doc = httpx.get(f"{live_api.url}/openapi.json", timeout=10).json()
    expected = {op["operationId"] for item in doc["paths"].values()
                for m, op in item.items() if m in HTTP_METHODS}
    browser.get(f"{live_api.url}/redoc")
    # ReDoc draws each operation as a section with id "operation/<operationId>"
    css = "[data-section-id^='operation/']"
    count = wait_for_count(browser, css, len(expected))
    assert count == len(expected), f"ReDoc drew {count} of {len(expected)} operations"
    drawn = {el.get_attribute("data-section-id").removeprefix("operation/")
             for el in browser.find_elements(By.CSS_SELECTOR, css)}
    assert drawn == expected
    urls = requested_urls(browser)
    assert f"{live_api.url}/docs-assets/redoc.standalone.js" in urls
    assert off_loopback(urls) == []


def test_docs_stay_open_when_an_api_key_is_set(
    browser: webdriver.Chrome, make_server: Any
) -> None:
    server = make_server(api_key="browser-key")
    drawn = render_swagger(browser, server.url)
    assert drawn == operations(server.url)
    # the key is typed into Swagger UI's Authorize dialog: the button is there
    assert browser.find_elements(By.CSS_SELECTOR, ".auth-wrapper .authorize")
    assert off_loopback(requested_urls(browser)) == []
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for path in ("/docs", "/redoc", "/docs-assets/swagger-ui.css", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        assert c.get("/stats").status_code == 401
        assert c.get("/stats", headers={"X-API-Key": "browser-key"}).status_code == 200


def test_an_unknown_docs_asset_is_a_404(live_api: LiveServer) -> None:
    r = httpx.get(f"{live_api.url}/docs-assets/no-such-file.js", timeout=10)
    assert r.status_code == 404
