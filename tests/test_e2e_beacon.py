"""In a real browser: the app (`python -m rsr_core app`) on a results store whose teacher names, ids, prompts and
run names are Markdown images and links to a local HTTP server (the beacon), every page opened in headless Chromium
(the inspector side by side too): the beacon receives no request, no image, link or other URL in the page points at
it, and the names are shown as text. A last image fetched on purpose shows the browser could reach the beacon.
Skips without chromium and chromedriver."""
from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from bench.app_harness import (  # noqa: E402
    PAGE_WAIT as WAIT,
    browser_binaries,
    chrome,
    open_page,
    start_server,
    stop_server,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from hostile_data import hostile_store  # noqa: E402
from rsr_core.data.demo import available_demo_students, load_demo  # noqa: E402
from rsr_core.ui.inspector import K_COMPARE  # noqa: E402
from rsr_core.ui.navigation import available_pages  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser_binaries() is None, reason="no chromium and chromedriver on this machine"),
    pytest.mark.skipif(not available_demo_students(), reason="no precomputed demo scores"),
]
ROOT = Path(__file__).resolve().parents[1]

# every attribute that makes the browser fetch or link a URL, on any element, that names the beacon
POINTS_AT_JS = """
const host = arguments[0];
const names = ['src', 'srcset', 'href', 'xlink:href', 'action', 'formaction', 'poster', 'data', 'background', 'style'];
const out = [];
for (const el of document.querySelectorAll('*'))
  for (const name of names) {
    const value = el.getAttribute(name);
    if (value && value.includes(host)) out.push(`<${el.tagName.toLowerCase()} ${name}="${value.slice(0, 120)}">`);
  }
return out;
"""


class Beacon(http.server.BaseHTTPRequestHandler):
    """Records every request; answers 204."""

    def _record(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        self.send_response(204)
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_OPTIONS = _record

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def beacon():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Beacon)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def app(beacon, tmp_path_factory):
    """The app served as `make app` starts it, on the hostile store (RSR_STORE), from an empty cache."""
    tmp = tmp_path_factory.mktemp("beacon")
    host = f"http://127.0.0.1:{beacon.server_address[1]}"
    store, _ = hostile_store(tmp / "data", host, load_demo())
    server = start_server(ROOT, env={"RSR_STORE": str(store), "RSR_DATA_ROOTS": str(tmp)}, workdir=tmp / "server",
                          timeout=WAIT)
    yield server, host
    stop_server(server)


def test_no_page_fetches_or_links_the_beacon(app, beacon, tmp_path):
    server, host = app
    driver = chrome(tmp_path / "chrome-profile", 1400, 1000)
    try:
        found, text = {}, ""
        for spec in available_pages():
            ready = ".rsr-tok" if spec.path == "pages/inspector.py" else "h1"
            open_page(driver, server.url + ("/" if spec.default else f"/{Path(spec.path).stem}"), ready)
            errors = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
            assert not errors, f"{spec.path}: {errors[0].text[:300]}"
            found[spec.path] = driver.execute_script(POINTS_AT_JS, host)
            if spec.path == "pages/inspector.py":
                text = driver.execute_script("return document.querySelector('[data-testid=\"stMain\"]').innerText")
                toggle = driver.find_element(By.CSS_SELECTOR, f".st-key-{K_COMPARE} label")
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", toggle)
                toggle.click()
                WebDriverWait(driver, WAIT).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rsr-strip")) >= 3)
                time.sleep(1.0)
                found["pages/inspector.py, side by side"] = driver.execute_script(POINTS_AT_JS, host)
        time.sleep(1.0)
        assert beacon.requests == [], beacon.requests
        assert not any(found.values()), {page: urls for page, urls in found.items() if urls}
        assert "![id](" in text and "[teacher-link](" in text, text[:500]  # the names are there, as text
        # the control: an image fetched on purpose reaches the beacon
        driver.execute_script("new Image().src = arguments[0];", f"{host}/control.png")
        WebDriverWait(driver, 10).until(lambda d: beacon.requests)
        assert beacon.requests == ["GET /control.png"]
    finally:
        driver.quit()
