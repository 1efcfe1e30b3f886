"""End to end in a real browser: the app (`python -m rsr_core app`) on a free port from an empty cache, every page
opened in headless Chromium (Selenium), a token hovered for its tooltip, the span that raises RSR most jumped to,
every page read at 1280 and 900 px wide (no value, label or button cut, no overlapping chart labels, no toolbar
over a chart's title, the teaching page's tables without sideways scrolling), screenshots saved in tests/artifacts/
(inspector.png, 1400x1000 with a hover card, is the README's screenshot). The server, the browser and the wait for a
page are the app benchmark's (`bench/app_harness.py`). Skips without chromium and chromedriver."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WIDTHS = (1280, 900)  # window widths the pages must read well at (900: the sidebar open beside a 540 px page)
FITTING_TABLES = (".st-key-zpd_simulation", ".st-key-zpd_cartoon")  # tables that must not scroll sideways

CURVE_DRAWN_JS = """
return [...document.querySelectorAll('.js-plotly-plot .gtitle')].some(t => t.textContent.includes('-token windows'));
"""

# what a reader would see as broken on the page, one line per problem: text cut by its box (metric values and
# labels, buttons, widget labels), chart labels on top of each other, a chart's toolbar over its title, a table
# that must fit scrolling sideways, the page wider than the window
LAYOUT_JS = """
const fitting = arguments[0];
const main = document.querySelector('[data-testid="stMain"]');
const problems = [];
const name = el => (el.innerText || el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
const shown = el => el.getClientRects().length > 0 && !el.closest('details:not([open])');
const overflows = el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
const cut = root => [root, ...root.querySelectorAll('*')].some(overflows);
const meet = (a, b, tol) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > tol
                           && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > tol;
for (const [what, sel] of [['metric', '[data-testid="stMetric"]'], ['button', 'button'],
                           ['label', '[data-testid="stWidgetLabel"]']])
  for (const el of main.querySelectorAll(sel))
    if (shown(el) && name(el) && cut(el)) problems.push(`${what} cut: "${name(el)}"`);
for (const plot of [...main.querySelectorAll('.js-plotly-plot')].filter(shown)) {
  const title = plot.querySelector('.gtitle');
  const called = title ? title.textContent.slice(0, 50) : '(no title)';
  const bar = plot.querySelector('.modebar');
  if (title && bar && meet(title.getBoundingClientRect(), bar.getBoundingClientRect(), 0))
    problems.push(`chart toolbar over the title "${called}"`);
  const texts = [...plot.querySelectorAll('.textpoint text, .annotation-text, .legendtext')]
    .filter(t => t.textContent.trim() && t.getBoundingClientRect().width > 0);
  for (let i = 0; i < texts.length; i++)
    for (let j = i + 1; j < texts.length; j++)
      if (meet(texts[i].getBoundingClientRect(), texts[j].getBoundingClientRect(), 1))
        problems.push(`labels overlap in "${called}": "${texts[i].textContent}" / "${texts[j].textContent}"`);
}
for (const sel of fitting)
  for (const grid of main.querySelectorAll(`${sel} [data-testid="stDataFrame"]`)) {
    const scroller = grid.querySelector('.dvn-scroller');
    if (scroller && overflows(scroller))
      problems.push(`table ${sel} scrolls sideways: ${scroller.scrollWidth} px in ${scroller.clientWidth}`);
  }
if (overflows(main)) problems.push(`page wider than the window: ${main.scrollWidth} px in ${main.clientWidth}`);
return problems;
"""

webdriver = pytest.importorskip("selenium.webdriver")
from bench.app_harness import (  # noqa: E402  (one way to start the app, launch Chromium and wait for a page)
    DRAWN_JS,
    PAGE_WAIT as WAIT,
    browser_binaries,
    chrome,
    open_page,
    start_server,
    stop_server,
)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from rsr_core.data.demo import available_demo_students  # noqa: E402
from rsr_core.ui.inspector import JUMP_LABEL, WHY_TABS  # noqa: E402
from rsr_core.ui.navigation import available_pages  # noqa: E402


pytestmark = [
    pytest.mark.skipif(browser_binaries() is None, reason="no chromium and chromedriver on this machine"),
    pytest.mark.skipif(not available_demo_students(), reason="no precomputed demo scores"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app served as `make app` starts it (`python -m rsr_core app`) from an empty score cache."""
    app = start_server(ROOT, workdir=tmp_path_factory.mktemp("e2e"), timeout=WAIT)
    yield app.url
    stop_server(app)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chrome(tmp_path_factory.mktemp("chrome-profile"), 1400, 1000)
    yield driver
    driver.quit()


def page_url(base: str, path: str) -> str:
    """The URL `st.navigation` gives a page: the default page at /, the others at /<file stem>."""
    spec = next(p for p in available_pages() if p.path == path)
    return base + "/" if spec.default else f"{base}/{Path(path).stem}"


def card(driver, token) -> str:
    """The text of a token's hover card as drawn (its ::after content; "none" when not shown)."""
    return driver.execute_script("return getComputedStyle(arguments[0], '::after').content", token)


def test_inspector_tooltip_and_jump(server, browser):
    """Runs first: /inspector is the first URL this server process sees (app.py must still run around it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    open_page(browser, page_url(server, "pages/inspector.py"))
    wait = WebDriverWait(browser, WAIT)
    tokens = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".rsr-tok")))
    assert len(tokens) > 20
    # the sidebar: app.py runs around the page (on a fresh server, after a first run of the page file alone)
    wait.until(lambda d: d.find_elements(By.XPATH, "//*[contains(text(), 'r_max (rank clipping)')]"))
    browser.save_screenshot(str(ARTIFACTS / "inspector-top.png"))

    token = next(t for t in tokens[10:] if t.text.strip())
    assert card(browser, token) == "none"  # CSS-only card: nothing until hovered
    metric = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMetric"]')
    browser.execute_script(  # the metrics row just below the header, the text and the scatter beneath
        "const main = document.querySelector('[data-testid=\"stMain\"]');"
        "main.scrollTop += arguments[0].getBoundingClientRect().top - 70;", metric)
    ActionChains(browser).move_to_element(token).perform()
    wait.until(lambda d: card(d, token) != "none")
    text = card(browser, token)
    assert "surprisal" in text and "rank" in text and "nats" in text, text
    assert f"#{token.get_attribute('data-t')}" in text
    assert f"clipped rank {token.get_attribute('data-c')} (r_max 100)" in text, text  # values, not attr() left over
    assert "Brier term " in text and "(LARK, top 50)" in text, text  # the demo's tokens carry LARK's term
    time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / "inspector.png"))  # metrics, text with a hover card, scatter

    button = next(b for b in browser.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == JUMP_LABEL)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)  # not under the header
    button.click()
    marked = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".rsr-tok.rsr-hl")))
    assert len(marked) >= 2
    positions = sorted(int(m.get_attribute("data-t")) for m in marked)
    assert positions == list(range(positions[0], positions[-1] + 1))  # one contiguous span


def test_every_page_in_a_browser(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    for spec in available_pages():
        open_page(browser, page_url(server, spec.path))
        errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        assert not errors, f"{spec.path}: {errors[0].text[:300]}"
        browser.save_screenshot(str(ARTIFACTS / f"{Path(spec.path).stem}.png"))


def test_metrics_page_in_a_browser(server, browser):
    """The Metrics page draws its agreement heatmap, the scatter of RSR against LARK and the disputed problems;
    tests/artifacts/metrics-agreement.png is the README's screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    open_page(browser, page_url(server, "pages/metrics.py"))
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .gtitle")]
    assert any(t.startswith("Share of problems where two rules") for t in titles), titles
    assert any("RSR against LARK" in t for t in titles), titles
    assert browser.find_elements(By.CSS_SELECTOR, ".st-key-metrics_disputes [data-testid='stDataFrame']")
    heading = next(h for h in browser.find_elements(By.CSS_SELECTOR, "h3")
                   if h.text.startswith("Do the rules keep the same trajectory"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / "metrics-agreement.png"))


def click_button(driver, text: str) -> None:
    """Click the enabled button with this text once there is one (the page may redraw it meanwhile)."""
    def clicked(d) -> bool:
        for b in d.find_elements(By.CSS_SELECTOR, "button"):
            if b.text.strip() == text and b.is_enabled():
                d.execute_script("arguments[0].scrollIntoView({block: 'center'});", b)
                b.click()
                return True
        return False
    WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(clicked)


def test_an_edit_in_the_inspector(server, browser):
    """Edit mode in a real browser: remove the span that raises RSR most, rescore it in the background (the page
    updates by itself), add it as a candidate; tests/artifacts/edit.png is the README's screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    open_page(browser, page_url(server, "pages/inspector.py"))
    wait = WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,))

    def toggled(d) -> bool:
        for t in d.find_elements(By.CSS_SELECTOR, '[data-testid="stCheckbox"]'):
            if t.text.strip() == "Edit":
                d.execute_script("arguments[0].scrollIntoView({block: 'center'});", t)
                t.find_element(By.CSS_SELECTOR, "label").click()
                return True
        return False
    wait.until(toggled)
    click_button(browser, "Remove the span that raises RSR most")
    click_button(browser, "Rescore")

    def finished(d):
        return next((c for c in d.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"]')
                     if "kept their numbers from the unchanged prefix" in c.text), None)
    caption = wait.until(finished)
    assert "Before: RSR" in caption.text
    assert wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-edit_sides .rsr-tok"))
    time.sleep(1.5)  # the last redraw of the finished job
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", wait.until(finished))
    time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / "edit.png"))
    click_button(browser, "Add as a candidate")
    wait.until(lambda d: any("~edit1" in e.text and "Added" in e.text
                             for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]')))
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')


def layout_problems(driver) -> list[str]:
    return driver.execute_script(LAYOUT_JS, list(FITTING_TABLES))


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_reads_well_at(width, server, browser):
    """At 1280 and 900 px: nothing cut, nothing overlapping, on every page, and on the inspector after the jump
    to the span that raises RSR most (its label on the curve). Screenshots: tests/artifacts/<page>-<width>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(width, 1000)
    try:
        assert browser.execute_script("return window.innerWidth") == width
        found = {}
        for spec in available_pages():
            open_page(browser, page_url(server, spec.path))
            found[spec.path] = layout_problems(browser)
            browser.save_screenshot(str(ARTIFACTS / f"{Path(spec.path).stem}-{width}.png"))
            if spec.path == "pages/inspector.py":
                button = next(b for b in browser.find_elements(By.CSS_SELECTOR, "button")
                              if b.text.strip() == JUMP_LABEL)
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
                button.click()
                WebDriverWait(browser, WAIT).until(
                    ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".rsr-tok.rsr-hl")))
                tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, '[role="tab"]')
                           if t.text.strip() == WHY_TABS[1])  # the curve, with the outlined span's label on it
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", tab)
                tab.click()
                WebDriverWait(browser, WAIT).until(lambda d: d.execute_script(CURVE_DRAWN_JS))
                WebDriverWait(browser, WAIT).until(lambda d: d.execute_script(DRAWN_JS))
                time.sleep(1.0)
                found["pages/inspector.py, after the jump"] = layout_problems(browser)
        problems = {page: p for page, p in found.items() if p}
        assert not problems, problems
    finally:
        browser.set_window_size(1400, 1000)
