"""Measure a Streamlit app as a user meets it: a real server, headless Chromium sessions, timed steps, server RSS.
The browser tests start the app and open its pages with the same pieces.

Pieces, each usable alone:

- `start_server(app_dir, env=...)`: the app of `app_dir` (`python -m rsr_core app`) on a free port (`free_port`),
  headless, from an empty `RSR_CACHE_DIR` (unless `env` sets one), its log in the work folder, ready once
  `wait_healthy`, with a `MemoryWatch` on its process tree (optional kill cap). `stop_server`.
- `MemoryWatch` / `tree_rss`: resident memory of a process and its children (psutil, else /proc), sampled in a
  thread: current, peak, peak per step; above a cap the tree is killed and the watch says at how much.
- `chrome(profile)`: a headless Chromium with its own profile. `open_session(server)`: one of its own, so every
  session is a separate Streamlit session. `close_session`.
- `open_page(driver, url)`: the tests' wait: a page opened once its title shows, its run is over and its charts
  and tables are drawn.
- `wait_render(session, ready)`: the benchmark's timed wait: the page is rendered when the app is connected, its
  script state is `notRunning`, no "running" status widget shows, no element is stale, and `ready` (a page's own
  sign that its content is there) holds, all of it unchanged for `settle` seconds; the time is taken when that
  state was first seen. An app exception ends the wait as an error; so does `timeout`.
- widget helpers by Streamlit key (`st-key-<key>` classes): `type_into` and `commit` (Enter), `set_number`,
  `set_text`, `click`.
- steps (each returns a `Step` with seconds, RSS before/after/peak and details): `step_first_render`,
  `step_set_r_max`, `step_open_page`, `step_build_selection`, `step_search_inspector`.
  `run_step(name, fn, session)` wraps any callable the same way.

Every selector and widget key the steps use is in `SEL` and `KEYS`, so an app whose widgets change needs only
those tables edited (or a step added next to these).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

try:
    import psutil
except ImportError:  # /proc is read instead
    psutil = None

from selenium import webdriver
from selenium.common.exceptions import JavascriptException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

GB = 1 << 30
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1000")
STEP_TIMEOUT = 600.0  # seconds; a step that takes longer is reported as timed out
PAGE_WAIT = 90.0  # seconds `open_page` waits for each of its conditions; the machine may be busy
POLL = 0.1

SEL = {
    "app": '[data-testid="stApp"]',
    "status": '[data-testid="stStatusWidget"]',
    "exception": '[data-testid="stException"]',
    "stale": '[data-stale="true"]',
    "main": '[data-testid="stMain"]',
    "title": "h1",
    "nav_link": '[data-testid="stSidebarNav"] a[href]',
    "dataframe": '[data-testid="stDataFrame"]',
    "metric": '[data-testid="stMetric"]',
    "token": ".rsr-tok",
    "plotly": '[data-testid="stPlotlyChart"] .main-svg',
}
KEYS = {  # widget keys (st.dataframe and st.plotly_chart get no st-key class, widgets do)
    "r_max": "sidebar_r_max",
    "overview_open_best": "overview_open_best",
    "selection_problem": "selection_problem",
    "inspector_search": "inspector_search",
}


@dataclass(frozen=True)
class Page:
    """A page: its URL path, text of its title (h1), and CSS selectors that all match once its content is there
    (elements drawn only after the page's data was computed)."""

    path: str
    title: str
    content: tuple[str, ...] = ()


def key_css(key: str) -> str:
    """CSS of the container Streamlit gives an element created with `key=`."""
    return ".st-key-" + "".join(c if c.isalnum() or c in "_-" else "-" for c in key.strip())


PAGES = {
    "overview": Page("/", "RSR Explorer", (SEL["dataframe"], key_css(KEYS["overview_open_best"]))),
    # the inspector: a search box and a paged list (the trajectory it opens on may have no per-token data, so
    # tokens are not required here)
    "inspector_search": Page("/inspector", "Inspector", (key_css(KEYS["inspector_search"]),)),
    # the teacher table and the open chart of "Teachers at a glance" (drawn by plotly); the per-run table and the
    # budget section are computed when opened
    "teachers": Page("/teachers", "Teachers", (SEL["dataframe"], SEL["plotly"])),
    "selection": Page("/selection", "Selection", (SEL["dataframe"], key_css(KEYS["selection_problem"]))),
    "zone": Page("/zone", "zone"),
    "validation": Page("/validation", "Validation", (SEL["dataframe"],)),
}

# Counts script runs in the page: every change of stApp's data-test-script-state away from notRunning (a
# MutationObserver keeps each change, however quick; the interval re-attaches it if stApp is replaced).
RUN_COUNTER_JS = """
if (!window.__rsrRuns) {
  const r = window.__rsrRuns = {runs: 0, app: null};
  const observer = new MutationObserver((records) => records.forEach((m) => {
    if (m.oldValue === 'notRunning') r.runs += 1;
  }));
  const attach = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (app && app !== r.app) {
      observer.disconnect();
      observer.observe(app, {attributes: true, attributeOldValue: true,
                             attributeFilter: ['data-test-script-state']});
      r.app = app;
    }
  };
  attach();
  setInterval(attach, 50);
}
return window.__rsrRuns.runs;
"""
PAGE_STATE_JS = """
const q = (s) => document.querySelector(s);
const app = q(arguments[0].app);
const exc = q(arguments[0].exception);
return {
  script: app ? app.getAttribute('data-test-script-state') : null,
  connection: app ? app.getAttribute('data-test-connection-state') : null,
  status: !!q(arguments[0].status),
  stale: !!q(arguments[0].stale),
  exception: exc ? exc.innerText.slice(0, 500) : null,
  runs: window.__rsrRuns ? window.__rsrRuns.runs : 0,
};
"""
# every plotly chart and every table in view has been drawn (those in a closed expander or another tab are drawn
# when shown)
DRAWN_JS = """
const hidden = el => !el.getClientRects().length || el.closest('details:not([open])');
const drawn = (sel, part) => [...document.querySelectorAll(sel)].every(el => hidden(el) || el.querySelector(part));
return drawn('[data-testid="stPlotlyChart"]', '.main-svg') && drawn('[data-testid="stDataFrame"]', '.dvn-scroller');
"""
MAIN_TEXT_JS = "const m = document.querySelector(arguments[0]); return m ? m.innerText : '';"
EXISTS_JS = "return !!document.querySelector(arguments[0]);"
TITLES_JS = "return Array.from(document.querySelectorAll(arguments[0]), (t) => t.textContent);"
# the text of every markdown paragraph in the main area: textContent needs no layout, so polling it does not slow
# the page being measured (innerText of a page of 1,500 tokens lays it out on every call)
PARAGRAPHS_JS = """
const m = document.querySelector(arguments[0]);
return m ? Array.from(m.querySelectorAll('[data-testid="stMarkdownContainer"] p'), (p) => p.textContent) : [];
"""


# --- memory ----------------------------------------------------------------------------------------------------

def _proc_children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_pids(pid: int) -> list[int]:
    """The process and all its descendants."""
    if psutil is not None:
        try:
            p = psutil.Process(pid)
            return [pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_proc_children(p))
    return out


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (0 once it is gone)."""
    if psutil is not None:
        total = 0
        for p in tree_pids(pid):
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(p).memory_info().rss
        return total
    return sum(_proc_rss(p) for p in tree_pids(pid))


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (children first)."""
    for p in reversed(tree_pids(pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


class MemoryWatch:
    """Samples the RSS of a process tree in a thread: `current`, `peak`, a resettable step peak, and a kill cap."""

    def __init__(self, pid: int, cap_bytes: int | None = None, interval: float = 0.2):
        self.pid, self.cap, self.interval = pid, cap_bytes, interval
        self.current = self.peak = self.step_peak = 0
        self.killed_at: int | None = None
        self.killed_after: float | None = None
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            if self.cap is not None and self.current > self.cap and self.killed_at is None:
                self.killed_at, self.killed_after = self.current, time.monotonic() - self._t0
                kill_tree(self.pid)
            self._stop.wait(self.interval)

    def sample(self) -> int:
        """Read the tree's RSS now (also updates the peaks)."""
        self.current = tree_rss(self.pid)
        self.peak = max(self.peak, self.current)
        self.step_peak = max(self.step_peak, self.current)
        return self.current

    def start_step(self) -> int:
        """Reset the step peak; returns the RSS now."""
        now = self.sample()
        self.step_peak = now
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def killed(self) -> bool:
        return self.killed_at is not None


def gb(n: int | None) -> float | None:
    return None if n is None else round(n / GB, 2)


# --- server ----------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running app server and what it needs to be measured and stopped."""

    proc: subprocess.Popen
    url: str
    app_dir: Path
    workdir: Path
    log_path: Path
    watch: MemoryWatch
    started_s: float = 0.0

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        return self.watch.sample()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until `/_stcore/health` answers ok; raises when the process ends or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not become healthy in {timeout:.0f} s")


def start_server(app_dir: str | Path, env: dict[str, str] | None = None, workdir: str | Path | None = None,
                 mem_cap_gb: float | None = None, timeout: float = 120.0, python: str = sys.executable) -> Server:
    """The app in `app_dir` as its README starts it (`python -m rsr_core app`, which imports the app's modules
    before the server starts), headless on a free localhost port, file watcher off.

    `env` is added to this process's environment; `RSR_CACHE_DIR` defaults to an empty folder in `workdir` (a new
    temporary folder when None). The server's log goes to `workdir/streamlit.log`."""
    app_dir = Path(app_dir)
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rsr-app-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / "cache"
    env = {**os.environ, "RSR_CACHE_DIR": str(cache), **(env or {})}
    Path(env["RSR_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [python, "-m", "rsr_core", "app", "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    watch = MemoryWatch(proc.pid, int(mem_cap_gb * GB) if mem_cap_gb else None)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        wait_healthy(url, proc, timeout)
    except Exception:
        stop_server_process(proc, watch)
        raise
    return Server(proc, url, app_dir, workdir, log_path, watch, round(time.monotonic() - t0, 2))


def stop_server_process(proc: subprocess.Popen, watch: MemoryWatch | None = None) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait(timeout=20)
    if watch is not None:
        watch.stop()


def stop_server(server: Server) -> None:
    stop_server_process(server.proc, server.watch)


# --- browser sessions ------------------------------------------------------------------------------------------

def browser_binaries() -> tuple[str, str] | None:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


@dataclass
class Session:
    """One browser (its own Chromium and profile, so its own Streamlit session) on one server."""

    driver: webdriver.Chrome
    server: Server
    profile: Path
    name: str = "session"
    steps: list = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return self.server.url + path


def chrome(profile: Path, width: int = 1400, height: int = 1000) -> webdriver.Chrome:
    """A headless Chromium with its own profile folder (so its own Streamlit session), at width x height."""
    binaries = browser_binaries()
    if binaries is None:
        raise RuntimeError("no chromium and chromedriver on this machine (Debian: apt-get install chromium "
                           "chromium-driver)")
    binary, driver_path = binaries
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=opts)
    driver.set_window_size(width, height)
    return driver


def open_session(server: Server, name: str = "session", width: int = 1400, height: int = 1000) -> Session:
    """A fresh headless Chromium pointed at nothing yet (`step_first_render` opens a page)."""
    profile = Path(tempfile.mkdtemp(prefix="rsr-chrome-", dir=server.workdir))
    driver = chrome(profile, width, height)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(30)
    return Session(driver, server, profile, name)


def open_sessions(server: Server, n: int) -> list[Session]:
    return [open_session(server, f"session{i + 1}") for i in range(n)]


def close_session(session: Session) -> None:
    with contextlib.suppress(WebDriverException):
        session.driver.quit()
    shutil.rmtree(session.profile, ignore_errors=True)


# --- waiting for a render ---------------------------------------------------------------------------------------

class RenderError(RuntimeError):
    """The app showed an exception, the server died, or the time ran out."""


def page_state(session: Session) -> dict:
    try:
        return session.driver.execute_script(PAGE_STATE_JS, SEL) or {}
    except (JavascriptException, WebDriverException) as e:
        return {"error": str(e).splitlines()[0][:200]}


def install_run_counter(session: Session) -> int:
    """Start counting script runs in the current page (again after every full page load); returns the count."""
    return int(session.driver.execute_script(RUN_COUNTER_JS) or 0)


def ask(session: Session, script: str, *args, default=None):
    """What a script run in the page returns (`default` when it returns nothing or the page cannot answer, e.g.
    while it is replaced)."""
    try:
        return session.driver.execute_script(script, *args) or default
    except (JavascriptException, WebDriverException):
        return default


def has(session: Session, css: str) -> bool:
    """Whether an element matches `css` (asked in the page: WebDriver's find_elements would send back a reference
    to every match, 1,500 on a page of tokens, on every poll)."""
    return bool(ask(session, EXISTS_JS, css, default=False))


def main_text(session: Session) -> str:
    """The main area's rendered text (the browser's own innerText). WebDriver's element text walks every node
    in JavaScript and took 3-4 s on the Inspector page (1,500 tokens with their hidden hover cards), blocking the
    page it measures; innerText takes about 0.05 s."""
    return ask(session, MAIN_TEXT_JS, SEL["main"], default="")


def wait_render(session: Session, ready: Callable[[Session], bool] | None = None, timeout: float = STEP_TIMEOUT,
                runs_before: int | None = None, settle: float = 0.5, t0: float | None = None) -> float:
    """Seconds from `t0` (now when None) until the page is rendered (see the module's docstring).

    With `runs_before`, a script run must also have started since that count (the action's rerun)."""
    t0 = time.monotonic() if t0 is None else t0
    deadline = t0 + timeout
    since = None
    while True:
        if not session.server.alive:
            raise RenderError(f"the server died (exit {session.server.proc.returncode})"
                              + (f", killed by the memory cap at {gb(session.server.watch.killed_at)} GB"
                                 if session.server.watch.killed else ""))
        st = page_state(session)
        done = (st.get("connection") == "CONNECTED" and st.get("script") == "notRunning" and not st.get("status")
                and (runs_before is None or st.get("runs", 0) > runs_before))
        if done and st.get("exception"):
            raise RenderError(f"app exception: {st['exception']}")
        rendered = done and not st.get("stale") and (ready is None or ready(session))
        # the time the page answered, not the time it was asked: a busy page answers late (its main thread runs
        # the checks only when free), and what it says holds from then on
        now = time.monotonic()
        if rendered:
            since = since if since is not None else now
            if now - since >= settle:
                return since - t0
        else:
            since = None
        if now > deadline:
            raise RenderError(f"not rendered after {timeout:.0f} s (last state: {st})")
        time.sleep(POLL)


def open_page(driver: webdriver.Chrome, url: str, ready: str = SEL["title"], timeout: float = PAGE_WAIT) -> None:
    """Open `url` and wait until `ready` (a CSS selector) matches, Streamlit's "running" status widget is gone and
    every chart and table in view is drawn; then a second more for the last redraw."""
    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ready)))
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, SEL["status"]))
    wait.until(lambda d: d.execute_script(DRAWN_JS))
    time.sleep(1.0)


def page_ready(page: str) -> Callable[[Session], bool]:
    """A page's own sign that its content is there: its title, and every one of its content selectors."""
    spec = PAGES[page]

    def ready(session: Session) -> bool:
        titles = ask(session, TITLES_JS, SEL["title"], default=[])
        if not any(spec.title.lower() in t.lower() for t in titles):
            return False
        return all(has(session, css) for css in spec.content)
    return ready


# --- widgets by key ---------------------------------------------------------------------------------------------

def widget(session: Session, key: str):
    return session.driver.find_element(By.CSS_SELECTOR, key_css(key))


def _scrolled(session: Session, element):
    session.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    return element


def type_into(session: Session, key: str, value) -> None:
    """Type a value into a keyed text or number input, replacing its text, without committing it (Streamlit
    commits on Enter or when the input loses focus, so typing alone runs nothing)."""
    box = _scrolled(session, widget(session, key).find_element(By.CSS_SELECTOR, "input"))
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value))


def commit(session: Session, key: str) -> None:
    """Press Enter in a keyed input: the value typed is sent and the script reruns."""
    widget(session, key).find_element(By.CSS_SELECTOR, "input").send_keys(Keys.ENTER)


def set_number(session: Session, key: str, value) -> None:
    """Type a value into a number input and commit it (Enter)."""
    type_into(session, key, value)
    commit(session, key)


def set_text(session: Session, key: str, value: str) -> None:
    """Type a value into a text input and commit it (Enter)."""
    type_into(session, key, value)
    commit(session, key)


def click(session: Session, key: str) -> None:
    """Click the button of a keyed button widget."""
    _scrolled(session, widget(session, key).find_element(By.CSS_SELECTOR, "button")).click()


def nav_link(session: Session, path: str):
    """The sidebar navigation link to a page (st.navigation), or None."""
    stem = path.strip("/")
    for link in session.driver.find_elements(By.CSS_SELECTOR, SEL["nav_link"]):
        href = (link.get_attribute("href") or "").rstrip("/")
        if (stem and href.endswith("/" + stem)) or (not stem and href == session.server.url):
            return link
    return None


def dataframe_rows(session: Session, nth: int = 0, timeout: float = 10.0) -> int | None:
    """Rows of the page's nth st.dataframe, from its grid's aria-rowcount (header row excluded); None when the
    grid does not say within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = session.driver.find_elements(By.CSS_SELECTOR, SEL["main"] + " " + SEL["dataframe"])
        grids = frames[nth].find_elements(By.CSS_SELECTOR, '[role="grid"]') if len(frames) > nth else []
        count = grids[0].get_attribute("aria-rowcount") if grids else None
        if count and count.isdigit():
            return int(count) - 1
        time.sleep(POLL)
    return None


def metric_values(session: Session) -> dict[str, str]:
    """{label: value} of the st.metric elements on the page."""
    out = {}
    for m in session.driver.find_elements(By.CSS_SELECTOR, SEL["metric"]):
        lines = [x for x in m.text.splitlines() if x.strip()]
        if len(lines) >= 2:
            out[lines[0].strip()] = lines[1].strip()
    return out


# --- steps ------------------------------------------------------------------------------------------------------

@dataclass
class Step:
    """One timed user action: how long until it rendered, and the server's memory around it."""

    name: str
    session: str
    seconds: float | None = None
    ok: bool = False
    error: str | None = None
    rss_before_gb: float | None = None
    rss_after_gb: float | None = None
    rss_peak_gb: float | None = None
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}) or k in ("seconds", "ok")}


def run_step(name: str, fn: Callable[[Session, float], dict | float], session: Session,
             timeout: float = STEP_TIMEOUT) -> Step:
    """Run `fn(session, timeout)`, which acts and waits and returns its seconds (or a dict with `seconds` and
    details); record it with the server's RSS before, after and at its peak. Never raises for the app's faults."""
    step = Step(name, session.name)
    watch = session.server.watch
    step.rss_before_gb = gb(watch.start_step())
    try:
        out = fn(session, timeout)
        detail = out if isinstance(out, dict) else {"seconds": out}
        step.seconds = round(float(detail.pop("seconds")), 2)
        step.detail = detail
        step.ok = True
    except (RenderError, WebDriverException, TimeoutError) as e:
        step.error = f"{type(e).__name__}: {str(e).splitlines()[0][:400]}" if str(e) else type(e).__name__
        if watch.killed:
            step.error = f"server killed by the memory cap at {gb(watch.killed_at)} GB; " + step.error
    step.rss_after_gb = gb(watch.sample() if session.server.alive else None)
    step.rss_peak_gb = gb(watch.step_peak)
    session.steps.append(step)
    return step


def step_first_render(session: Session, timeout: float = STEP_TIMEOUT, page: str = "overview") -> dict:
    """Open a page by its URL in this browser and wait until it is rendered: from navigation to content."""
    path = PAGES[page].path
    t0 = time.monotonic()
    session.driver.get(session.url(path))
    install_run_counter(session)
    seconds = wait_render(session, page_ready(page), timeout, t0=t0)
    out = {"seconds": seconds, "page": page}
    if page == "overview":
        out["report_rows"] = dataframe_rows(session)
    return out


def _act_and_wait(session: Session, action: Callable[[], None], ready, timeout: float) -> float:
    runs = install_run_counter(session)
    t0 = time.monotonic()
    action()
    return wait_render(session, ready, timeout, runs_before=runs, t0=t0)


def step_set_r_max(session: Session, value: int = 50, timeout: float = STEP_TIMEOUT) -> dict:
    """Set the sidebar's r_max and wait for the page to show `r_max = value`; timed from Enter (the value is
    typed first)."""
    type_into(session, KEYS["r_max"], value)  # the user's typing is not the app's time: timed from Enter
    seconds = _act_and_wait(session, lambda: commit(session, KEYS["r_max"]),
                            lambda s: f"r_max = {value}" in main_text(s), timeout)
    return {"seconds": seconds, "r_max": value}


def open_page_action(session: Session, page: str, via: str = "link") -> Callable[[], None]:
    """How to go to a page: its sidebar link (same session; the default) or its URL (a new Streamlit session)."""
    path = PAGES[page].path

    def go() -> None:
        link = nav_link(session, path) if via == "link" else None
        if link is not None:
            _scrolled(session, link).click()
        else:
            session.driver.get(session.url(path))
            install_run_counter(session)
    return go


def step_open_page(session: Session, page: str, timeout: float = STEP_TIMEOUT, via: str = "link") -> dict:
    """Go to a page (sidebar link: same session) and wait until its content is rendered."""
    if via == "url":
        return step_first_render(session, timeout, page)
    seconds = _act_and_wait(session, open_page_action(session, page, via), page_ready(page), timeout)
    return {"seconds": seconds, "page": page, "via": via}


def step_build_selection(session: Session, timeout: float = STEP_TIMEOUT) -> dict:
    """Open the Selection page (it builds the selection, one trajectory per pool, on opening) and wait for its
    problem table and comparison; reports the counts it shows."""
    seconds = _act_and_wait(session, open_page_action(session, "selection"), page_ready("selection"), timeout)
    return {"seconds": seconds, **{f"metric {k}": v for k, v in metric_values(session).items()}}


def step_search_inspector(session: Session, trajectory_id: str, timeout: float = STEP_TIMEOUT,
                          repeats: int = 0) -> dict:
    """On the open Inspector, type `trajectory_id` into its search box and press Enter: the list is filtered to it
    and it is opened; done when its header (`**{id}** · teacher · ... · N tokens`) and its tokens are shown,
    timed from Enter (typing is the user's time).

    With `repeats`, the search is done again that many times, each after opening the trajectory the page first
    showed (so the page changes every time): `search_repeats_s`, the spread of the browser's time for the same
    work (the trajectory's data is then in the server's cache)."""
    first = inspector_header_id(session)

    def opened(tid: str, tokens: bool = True) -> Callable[[Session], bool]:
        def shows(s: Session) -> bool:
            return tid in header_ids(s) and (not tokens or has(s, SEL["token"]))
        return shows

    def search(tid: str, tokens: bool = True) -> float:
        type_into(session, KEYS["inspector_search"], tid)  # the user's typing is not timed: from Enter
        return _act_and_wait(session, lambda: commit(session, KEYS["inspector_search"]), opened(tid, tokens),
                             timeout)

    seconds = search(trajectory_id)
    header = next((line for line in paragraphs(session) if line.startswith(trajectory_id + " ")), "")
    tokens = header.rsplit("·", 1)[-1].strip().split(" ")[0].replace(",", "") if "·" in header else ""
    out = {"seconds": seconds, "trajectory_tokens": int(tokens) if tokens.isdigit() else None,
           "tokens_shown": len(session.driver.find_elements(By.CSS_SELECTOR, SEL["token"]))}
    if repeats and first and first != trajectory_id:
        again = []
        for _ in range(repeats):
            search(first, tokens=False)
            again.append(round(search(trajectory_id), 2))
        out["search_repeats_s"] = again
        out["search_repeats_median_s"] = sorted(again)[len(again) // 2]
    return out


def paragraphs(session: Session) -> list[str]:
    """The text of every markdown paragraph in the main area (cheap enough to poll; see `PARAGRAPHS_JS`)."""
    return list(ask(session, PARAGRAPHS_JS, SEL["main"], default=[]))


def header_ids(session: Session) -> set[str]:
    """Ids of the trajectory header lines shown (`{id} · teacher · problem ... · N tokens`)."""
    return {line.split(" · ", 1)[0] for line in paragraphs(session)
            if " · problem " in line and line.rstrip().endswith(("token", "tokens"))}


def inspector_header_id(session: Session) -> str | None:
    """The id of the trajectory the Inspector shows (its header line), None when there is none."""
    found = sorted(header_ids(session))
    return found[0] if found else None
