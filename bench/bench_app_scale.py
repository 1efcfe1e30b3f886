"""The app at the study's scale, in a real browser: how long a user waits and how much memory the server holds.

`--store` measures the app of this checkout on results stores (`RSR_STORE=STORE python -m rsr_core app`): see
STORE_MEASURED below. `--score-memory` measures the peak memory of `score` into a store: see SCORE_MEASURED. Every
step has a time limit (`--step-timeout`, 600 s) and is reported as timed out, not waited on; the server is killed
when its RSS passes `--mem-cap-gb` (15) and reported as "killed at X GB".

Writes bench/results/app_scale.json (bench/results/app_scale-quick.json with --quick, or --out), one section per
mode (`store`, `score_memory`; a run replaces only its own section) and `comparison` (the store app against the
`baseline` section, the app before the results store, measured on an earlier version and kept in the file, at the
sizes both measured), after every size, and prints the tables.

Another app is measured by another mode beside `run_store`: a function that prepares each size's data and calls
`run_sizes` with a per-size function around `measure_app(app_dir, workdir, steps, first_render, env={...})` (the
server's environment, e.g. `RSR_STORE`); the steps are `bench/app_harness.py`'s `step_*` functions, whose
selectors and widget keys are in its `SEL`, `KEYS` and `PAGES`.

usage: python bench/bench_app_scale.py --store [--sizes 990x2000 4983x2000 1980x10000 165000x10000:5000+32000]
       [--runs 3] [--quiet-below 1.0] [--quick] [--data-dir DIR] [--mem-cap-gb 15] [--step-timeout 600] [--out F]
       python bench/bench_app_scale.py --score-memory [--counts 200 2000] [--score-threads 1] [--quick] [--out F]
"""
from __future__ import annotations

import argparse
import copy
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import app_harness as h  # noqa: E402
from bench import synthetic_store as synthetic_store_module  # noqa: E402

STORE_MEASURED = """`--store` measures the app of this checkout (the commit and whether its app code has local changes
are recorded) on synthetic results stores written by `bench/synthetic_store.py` (student `synthetic-student`; plain
text conversations, no reasoning split). A size is `NxL[:T][+LONG]`: N trajectories (11 teachers x N/33 problems x
3 runs) of L tokens, per-token data for the first T (default all, problem-major), plus one trajectory of LONG
tokens with per-token data (`--long`: an extra run `long1` of a problem among those with tokens, so N + 1
trajectories and still N/33 pools). Stores are written under --data-dir (reused when their info matches) or a
temporary folder. Then `RSR_STORE=STORE streamlit run app.py` in this checkout from an empty RSR_CACHE_DIR, idle
RSS; in headless Chromium (one browser instance per session), session 1:

1. opens `/` (Overview, the default page; the sidebar's dataset is the store and its Student selectbox preselects
   the store's student): time from navigation until rendered (the report table and the "Inspect the lowest-RSR
   trajectory" button shown), and whether the caption names the synthetic student;
2. sets r_max to 50 (sidebar number input; typed, then timed from Enter): until the page shows `r_max = 50`
   (recomputed from the rank aggregates, which the first change reads); then to 200 (the aggregates are in
   memory: the steady cost of a change) and back to 50 (the table and report at 50 are cached);
3. opens Teachers (sidebar link), until its teacher table and the open chart of "Teachers at a glance" are drawn
   (the per-run table and the budget section are computed when opened);
4. opens Selection (sidebar link): it builds the selection over every pool on render; until its problem table and
   candidate picker are drawn;
5. opens the Inspector (sidebar link; it shows the first trajectory of the table, 10,000 tokens in the big store):
   until its search box is shown; then types the inspected id into that box and presses Enter (timed from Enter,
   as the r_max steps: typing is the user's time): until that trajectory's header and tokens are shown. Two
   interactions, two measures. The id is the LONG trajectory when the store has one, else the trajectory in the
   middle of the plan (as the baseline's). Then the search is repeated 4 times, each after opening the first
   trajectory again, so the page changes every time (`search_repeats_s`; the trajectory's data is then in the
   server's cache): how much the browser's time for the same work varies from one run to the next;
6. then session 2 opens `/`: its render time and the server RSS it adds (after session 1's steps, so the shared
   tables, aggregates and caches are already there).

With `--runs N` all of this is done N times, each with a fresh server (from an empty RSR_CACHE_DIR) and fresh
browsers, and every step reports the median of its N times (`runs_s`: each run's; the page and search parts of
the inspector step per run), the memory figures the largest of the N: on a 2-core machine that the browser and
the server share, the same step varies by a second from one run to the next. `--quiet-below L` waits before each
run until the 1-minute load average is under L (at most 3 minutes; `waited_for_quiet_s`).

The server's RSS is that of its process tree (psutil), sampled every 0.2 s: before, after and peak of every step,
and the peak over the run. Memory-mapped files (the rank aggregates) count as resident once touched.
`first_run_imports_s`: the seconds a fresh process takes to import what the first script run imports (paid
once per server process, within session 1's first Overview, whatever the data)."""

SCORE_MEASURED = """`--score-memory` measures `python -m rsr_core score POOL --out STORE --no-cache` (the embedded CPU
student, smollm2-135m-instruct, fp32; the converted model from the user's cache) in a fresh process per count: its peak
RSS (the process's ru_maxrss, from wait4, and the sampled RSS of its tree) and an RSS timeline with the
trajectories committed so far. POOL is N records made from the bundled demo pool's shortest responses (the
`terse` teacher's, 77-100 response tokens under the embedded student) replicated round-robin with distinct ids
(`{id}~{i:05d}`) and a distinct prompt (` (copy i)` appended to the user message), so every conversation is
scored and stored; the store is new for every count. Flat memory: the peak at N=2,000 stays near the peak at 200."""
INSPECT_REPEATS = 4  # the inspector's search again, alternating with the first trajectory it showed
STORE_SIZES = ("990x2000", "4983x2000", "1980x10000", "165000x10000:5000+32000")
STORE_QUICK_SIZES = ("330x1000+32000",)
SCORE_COUNTS = (200, 2000)
SCORE_QUICK_COUNTS = (20, 60)
STORE_STUDENT = "synthetic-student"  # bench/synthetic_store.py's
TERSE_MAX_TOKENS = 100  # the demo responses replicated by --score-memory: at most this many response tokens
RESULTS = ROOT / "bench" / "results"


# --- the machine and the code measured ---------------------------------------------------------------------------

def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(below: float | None, limit_s: float = 180.0) -> float:
    """Wait until the 1-minute load average is under `below` (at most `limit_s`); returns the seconds waited.
    The previous run's server and browsers leave the load near 2 on a 2-core machine for a minute."""
    t0 = time.monotonic()
    while below is not None and os.getloadavg()[0] >= below and time.monotonic() - t0 < limit_s:
        time.sleep(5)
    return round(time.monotonic() - t0, 1)


def _first_line(cmd: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else None
    return None


def machine() -> dict:
    """CPU, memory and the software versions that matter here."""
    cpu = None
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   None)
    mem = None
    with contextlib.suppress(OSError, ValueError):
        mem = round(int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 2**20,
                    1)
    versions = {}
    for name in ("streamlit", "pandas", "pyarrow", "selenium", "psutil"):
        with contextlib.suppress(ImportError, AttributeError):
            versions[name] = __import__(name).__version__
    binaries = h.browser_binaries()
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gb": mem, "platform": platform.platform(),
            "python": platform.python_version(), **versions,
            "chromium": _first_line([binaries[0], "--version"]) if binaries else None}


# --- measurements ------------------------------------------------------------------------------------------------

StepFn = Callable[[h.Session, float], dict]


def measure_app(app_dir: Path, workdir: Path, steps: list[tuple[str, StepFn]], first_render: StepFn,
                env: dict | None = None, cap_gb: float | None = None, step_timeout: float = h.STEP_TIMEOUT) -> dict:
    """A server in `app_dir`; session 1 opens `/` (`first_render`) and runs `steps`, each only after the previous
    one succeeded (a later step would measure another state; the skipped ones are listed); then session 2 opens
    `/`, so the shared tables, aggregates and caches are already there."""
    server = h.start_server(app_dir, env=env, workdir=workdir, mem_cap_gb=cap_gb)
    sessions: list[h.Session] = []
    out: dict = {"server_start_s": server.started_s, "steps": []}
    try:
        out["idle_rss_gb"] = h.gb(server.rss())
        first = h.open_session(server, "session 1")
        sessions.append(first)
        step = h.run_step("first Overview", first_render, first, step_timeout)
        out["steps"].append(step.as_dict())
        _print_step(step)
        ok = step.ok
        for name, fn in steps:
            if not (ok and server.alive):
                out.setdefault("skipped", []).append(name)
                continue
            s = h.run_step(name, fn, first, step_timeout)
            out["steps"].append(s.as_dict())
            _print_step(s)
            ok = s.ok
        if step.ok and server.alive:
            time.sleep(1.0)  # let session 1's last rerun settle before the RSS the second session adds to is read
            rss_before = h.gb(server.rss())
            second = h.open_session(server, "session 2")
            sessions.append(second)
            step2 = h.run_step("second session: first Overview", first_render, second, step_timeout)
            out["steps"].append(step2.as_dict())
            _print_step(step2)
            if step2.ok and rss_before is not None and step2.rss_after_gb is not None:
                out["second_session_added_rss_gb"] = round(step2.rss_after_gb - rss_before, 2)
        else:
            out.setdefault("skipped", []).append("second session: first Overview")
        out["peak_rss_gb"] = h.gb(server.watch.peak)
        out["final_rss_gb"] = h.gb(server.rss()) if server.alive else None
        if server.watch.killed:
            out["killed"] = f"killed at {h.gb(server.watch.killed_at)} GB after {server.watch.killed_after:.0f} s"
        if not all(s["ok"] for s in out["steps"]):
            out["server_log_tail"] = server.log_tail(1500)
    finally:
        for s in sessions:
            h.close_session(s)
        h.stop_server(server)
    return out


def _print_step(step: h.Step) -> None:
    took = f"{step.seconds:.1f} s" if step.ok else f"FAILED ({step.error})"
    print(f"    {step.session}: {step.name}: {took}; server RSS {step.rss_before_gb} -> {step.rss_after_gb} GB "
          f"(peak {step.rss_peak_gb})", flush=True)


# --- the store app and its data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreSize:
    """`NxL[:T][+LONG]`: N trajectories of L tokens, per-token data for the first T, one LONG-token trajectory."""

    text: str
    n: int
    length: int
    token_n: int
    long: int

    @property
    def slug(self) -> str:
        return self.text.replace(":", "t").replace("+", "l")

    @property
    def trajectories(self) -> int:
        return self.n + (1 if self.long else 0)

    @property
    def label(self) -> str:
        text = f"{self.n:,} x {self.length:,}"
        if self.token_n < self.n:
            text += f" (tokens for {self.token_n:,})"
        return text + (f" + 1 x {self.long:,}" if self.long else "")


def parse_store_size(text: str) -> StoreSize:
    m = re.fullmatch(r"(\d+)x(\d+)(?::(\d+))?(?:\+(\d+))?", text.strip().lower())
    if not m:
        raise ValueError(f"{text!r}: a store size is NxL[:T][+LONG], e.g. 165000x10000:5000+32000")
    n, length = int(m[1]), int(m[2])
    if n % 33:
        raise ValueError(f"{text!r}: N must be 11 teachers x problems x 3 runs, a multiple of 33")
    return StoreSize(text.strip().lower(), n, length, min(n, int(m[3]) if m[3] else n), int(m[4] or 0))


def _store_plan(size: StoreSize) -> SimpleNamespace:
    return SimpleNamespace(teachers=11, problems=size.n // 33, runs=3, token_trajectories=size.token_n,
                           long=size.long, long_count=1)


def synthetic_store(data_dir: Path, size: StoreSize) -> tuple[Path, dict]:
    """A store written by bench/synthetic_store.py in `data_dir` (reused when an earlier run wrote the same)."""
    folder, info_path = data_dir / f"store-{size.slug}", data_dir / f"store-{size.slug}.json"
    want = {"trajectories": size.trajectories, "token_trajectories": size.token_n + (1 if size.long else 0),
            "tokens_per_trajectory": size.length, "long_tokens": size.long}
    if info_path.is_file() and (folder / "store.json").is_file():
        info = json.loads(info_path.read_text()).get("generate", {})
        if all(info.get(k) == v for k, v in want.items()):
            return folder, {**info, "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    plan_ = _store_plan(size)
    cmd = [sys.executable, str(ROOT / "bench" / "synthetic_store.py"), "--out", str(folder), "--teachers", "11",
           "--problems", str(plan_.problems), "--runs", "3", "--token-trajectories", str(size.token_n), "--tokens",
           str(size.length), "--no-measure", "--results", str(info_path)]
    if size.long:
        cmd += ["--long", str(size.long)]
    print(f"  writing the store: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    info = json.loads(info_path.read_text())["generate"]
    info["wall_s"] = round(time.monotonic() - t0, 1)
    return folder, info


def inspected_store_trajectory(size: StoreSize, info: dict) -> str:
    """The LONG trajectory when there is one, else the plan's middle one (the baseline's), among those with tokens."""
    if info.get("long_ids"):
        return info["long_ids"][0]
    i = size.n // 2 if size.n // 2 < size.token_n else size.token_n // 2
    return synthetic_store_module.plan(_store_plan(size))[i][0]


IMPORTS_CODE = """
import json, sys, time
out, t0 = {}, time.perf_counter()
for name in sys.argv[1:]:
    t = time.perf_counter()
    __import__(name)
    out[name] = round(time.perf_counter() - t, 2)
out["total"] = round(time.perf_counter() - t0, 2)
print(json.dumps(out))
"""
FIRST_RUN_MODULES = ("streamlit", "pandas", "plotly.graph_objects", "rsr_core.ui.sidebar", "rsr_core.ui.analysis_cache")


def measure_imports(app_dir: Path) -> dict:
    """Seconds to import what the app's first script run imports (app.py, the sidebar, the Overview), one after
    the other in a fresh process (each figure excludes what the ones before it imported): the part of the first
    render that any data size pays. rsr_core.ui.sidebar imports torch (rsr_core.engine.job), analysis_cache
    scipy.stats (rsr_core.analysis.statistics)."""
    res = subprocess.run([sys.executable, "-c", IMPORTS_CODE, *FIRST_RUN_MODULES], cwd=app_dir, capture_output=True,
                         text=True)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": res.stderr.strip()[-300:]}


def store_first_render(session: h.Session, timeout: float) -> dict:
    """The first Overview, and what its caption says: the student preselected, the trajectories counted."""
    out = h.step_first_render(session, timeout)
    text = h.main_text(session)
    m = re.search(r"([\d,]+) trajectories under (\S+)", text)
    out["student_shown"] = f"student: {STORE_STUDENT}" in text
    out["trajectories_shown"] = int(m[1].replace(",", "")) if m else None
    return out


def store_steps(trajectory_id: str, r_max: int = 50) -> list[tuple[str, StepFn]]:
    """Session 1's steps after the first render, against the store app's widgets."""
    warm = 200 if r_max != 200 else 20
    return [
        (f"r_max -> {r_max}", lambda s, t: h.step_set_r_max(s, r_max, t)),
        (f"r_max -> {warm} (aggregates in memory)", lambda s, t: h.step_set_r_max(s, warm, t)),
        (f"r_max -> {r_max} again (cached)", lambda s, t: h.step_set_r_max(s, r_max, t)),
        ("open Teachers", lambda s, t: h.step_open_page(s, "teachers", t)),
        ("build a selection (open Selection)", lambda s, t: h.step_build_selection(s, t)),
        (INSPECT_PAGE, lambda s, t: h.step_open_page(s, "inspector_search", t)),
        (INSPECT, lambda s, t: h.step_search_inspector(s, trajectory_id, t, repeats=INSPECT_REPEATS)),
    ]


def run_store_size(data_dir: Path, work: Path, text: str, args, app_dir: Path = ROOT) -> dict:
    """Data and app measurements of one store size against this checkout."""
    size = parse_store_size(text)
    result: dict = {"size": size.text, "label": size.label, "trajectories": size.trajectories,
                    "tokens_per_trajectory": size.length, "token_trajectories": size.token_n + (1 if size.long else 0),
                    "long_tokens": size.long, "tokens": size.n * size.length + size.long,
                    "load_average_before": load_average()}
    print(f"== store {size.text}: {size.label}; load average {result['load_average_before']}", flush=True)
    folder, result["data"] = synthetic_store(data_dir, size)
    print(f"  store: {folder} ({result['data'].get('disk', {}).get('total')} MB"
          f"{', reused' if result['data'].get('reused') else ''})", flush=True)
    tid = inspected_store_trajectory(size, result["data"])
    result["inspected_trajectory"] = tid
    print(f"  the app in Chromium (inspecting {tid})…", flush=True)
    try:
        result["app"] = measure_app(app_dir, work / f"server-{size.slug}", store_steps(tid, args.r_max),
                                    store_first_render, env={"RSR_STORE": str(folder)}, cap_gb=args.mem_cap_gb,
                                    step_timeout=args.step_timeout)
    except Exception as e:  # noqa: BLE001 - a failed size is reported and the next one runs
        result["app"] = {"error": f"{type(e).__name__}: {e}"}
    result["load_average_after"] = load_average()
    return result


def combine_runs(runs: list[dict]) -> dict:
    """One size measured `len(runs)` times, each on a fresh server and browser: every step's time is the median of
    the runs where it rendered (`runs_s`: each run's, None where it failed; failed when most runs failed), the
    memory figures the largest of the runs. A single run is returned as it is."""
    if len(runs) == 1:
        return runs[0]
    out = copy.deepcopy(runs[0])
    out["runs"] = len(runs)
    out["load_average_after"] = runs[-1].get("load_average_after")
    out["runs_load_average_before"] = [r.get("load_average_before") for r in runs]
    if any("waited_for_quiet_s" in r for r in runs):
        out["waited_for_quiet_s"] = [r.get("waited_for_quiet_s") for r in runs]
    for step in _steps(out):
        same = [_step_of(r, step["session"], step["name"]) for r in runs]
        times = [x["seconds"] if x and x["ok"] else None for x in same]
        done = sorted(t for t in times if t is not None)
        step["runs_s"] = times
        if len(done) * 2 > len(runs):
            step.update(ok=True, seconds=round(statistics.median(done), 2))
            step.pop("error", None)
        else:
            step.update(ok=False, seconds=None,
                        error=next((x["error"] for x in same if x and x.get("error")), "not run in most runs"))
        for key in ("rss_peak_gb", "rss_after_gb"):
            values = [x[key] for x in same if x and x.get(key) is not None]
            if values:
                step[key] = max(values)
    app, apps = out.get("app", {}), [r.get("app", {}) for r in runs]
    for key in ("peak_rss_gb", "second_session_added_rss_gb"):
        values = [a[key] for a in apps if a.get(key) is not None]
        if values and key in app:
            app[key] = max(values)
    return out


def _step_of(result: dict, session: str, name: str) -> dict | None:
    return next((s for s in _steps(result) if s["name"] == name and s.get("session") == session), None)


# --- score: memory against the number of trajectories ---------------------------------------------------------------

def terse_records() -> list[tuple[dict, int]]:
    """The demo pool's records whose response has at most TERSE_MAX_TOKENS tokens under the embedded student
    (from the demo store), shortest first, with that count."""
    from rsr_core.data import demo
    from rsr_core.data.store import ResultsStore
    table = ResultsStore(demo.DEMO_STORE).trajectory_table("smollm2-135m-instruct")
    lengths = dict(zip(table["trajectory_id"].astype(str), table["n_tokens"].astype(int)))
    records = [json.loads(line) for line in demo.CANDIDATES.read_text().splitlines() if line.strip()]
    out = [(r, lengths[r["id"]]) for r in records if lengths.get(r["id"], 10 ** 9) <= TERSE_MAX_TOKENS]
    return sorted(out, key=lambda x: x[1])


def write_score_pool(path: Path, n: int) -> dict:
    """n records: the terse demo records round-robin, each with a distinct id and prompt."""
    base = terse_records()
    tokens = 0
    with open(path, "w") as f:
        for i in range(n):
            record, length = base[i % len(base)]
            rec = json.loads(json.dumps(record))
            rec["id"] = f"{record['id']}~{i:05d}"
            for m in rec["messages"]:
                if m["role"] == "user":
                    m["content"] += f" (copy {i})"
                    break
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            tokens += length
    return {"records": n, "sources": [r["id"] for r, _ in base],
            "source_response_tokens": [length for _, length in base], "response_tokens": tokens}


def _committed(store: Path) -> int:
    """Trajectories committed in a store so far (its manifests), 0 when there is none yet."""
    total = 0
    for manifest in store.glob("students/*/manifest.json"):
        with contextlib.suppress(OSError, ValueError):
            total += sum(int(p.get("trajectories", 0)) for p in json.loads(manifest.read_text()).get("parts", []))
    return total


def measure_score(pool: Path, store: Path, log_path: Path, timeout: float, cap_gb: float,
                  threads: int | None = None) -> dict:
    """`python -m rsr_core score POOL --out STORE --no-cache` in a fresh process: wall time, peak RSS (wait4's
    ru_maxrss and the sampled tree), an RSS timeline with the trajectories committed. `threads` sets
    OMP_NUM_THREADS for it (None: torch's default, one per core)."""
    cmd = [sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(store), "--no-cache"]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    watch = h.MemoryWatch(proc.pid, int(cap_gb * h.GB))
    timeline: list[dict] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            timeline.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(watch.current / 2 ** 20),
                             "committed": _committed(store)})
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(timeout, h.kill_tree, [proc.pid])
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        done.set()
        sampler.join(timeout=10)
        watch.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    out = {"ok": proc.returncode == 0, "exit": proc.returncode, "wall_s": round(wall, 1),
           "peak_rss_mb": round(usage.ru_maxrss / 1024), "sampled_peak_rss_mb": round(watch.peak / 2 ** 20),
           "committed": _committed(store), "timeline": timeline}
    if watch.killed:
        out["error"] = f"killed at {h.gb(watch.killed_at)} GB (cap {cap_gb} GB)"
    elif proc.returncode != 0:
        out["error"] = f"exit {proc.returncode}: {log_path.read_text(errors='replace')[-400:]}"
    return out


def run_score_memory(args) -> int:
    counts = list(SCORE_QUICK_COUNTS if args.quick else args.counts)
    payload = {"mode": "score_memory", "commit": head_commit(), "app_code_changed": app_code_changed(),
               "started": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "load_average_start": load_average(),
               "settings": {"counts": counts, "command": "python -m rsr_core score POOL --out STORE --no-cache",
                            "student": "smollm2-135m-instruct (embedded, CPU, fp32)",
                            "OMP_NUM_THREADS": args.score_threads},
               "measured": SCORE_MEASURED, "results": []}
    out_path = results_path(args)
    with tempfile.TemporaryDirectory(prefix="rsr-score-memory-") as tmp:
        for n in counts:
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            result: dict = {"trajectories": n, "load_average_before": load_average()}
            result["pool"] = write_score_pool(work / "pool.jsonl", n)
            print(f"== score {n:,} trajectories ({result['pool']['response_tokens']:,} response tokens); load "
                  f"average {result['load_average_before']}", flush=True)
            result["score"] = measure_score(work / "pool.jsonl", work / "store", work / "score.log",
                                            args.score_timeout, args.mem_cap_gb, args.score_threads)
            sc = result["score"]
            sc["response_tokens_per_s"] = round(result["pool"]["response_tokens"] / sc["wall_s"], 1)
            result["load_average_after"] = load_average()
            print(f"  {'ok' if sc['ok'] else sc.get('error')}: {sc['wall_s']} s, peak RSS {sc['peak_rss_mb']} MB "
                  f"(sampled {sc['sampled_peak_rss_mb']} MB), {sc['committed']:,} committed", flush=True)
            payload["results"].append(result)
            update_results(out_path, "score_memory", payload)
    payload["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    payload["load_average_end"] = load_average()
    update_results(out_path, "score_memory", payload)
    print(f"\nscore_memory: commit {payload['commit'][:12]}; written to {_shown(out_path)}\n")
    print(score_table(payload["results"]))
    return 0


# --- output ------------------------------------------------------------------------------------------------------

FIRST, SECOND = "first Overview", "second session: first Overview"
INSPECT = "open the inspector on a trajectory"  # the old app: its selectbox; the store app: the search box
INSPECT_PAGE = "open the Inspector"
INSPECT_BOTH = "open the Inspector, then a trajectory in it"  # the two together (the old app: one step)
LATER = ("r_max -> 50", "open Teachers", "build a selection (open Selection)", INSPECT_PAGE, INSPECT)
TARGETS = {  # the store app on the big store: (measure, limit, unit)
    FIRST: (5.0, "s"), "r_max -> 50": (2.0, "s"), "r_max -> 200 (aggregates in memory)": (2.0, "s"),
    "open Teachers": (2.0, "s"),
    "build a selection (open Selection)": (2.0, "s"), INSPECT_PAGE: (2.0, "s"), INSPECT: (2.0, "s"),
    "peak server RSS": (2.0, "GB"), "second session adds": (0.1, "GB"),
}
BIG = 100_000  # stores of at least this many trajectories are checked against TARGETS


def _steps(result: dict) -> list[dict]:
    return result.get("app", {}).get("steps", [])


def _step(result: dict, name: str) -> dict | None:
    return next((s for s in _steps(result) if s["name"] == name), None)


def _pool(result: dict) -> str:
    if result.get("label"):
        return result["label"]
    text = f"{result['trajectories']:,} x {result['tokens_per_trajectory']:,}"
    return text + (f" ({result['tokens'] / 1e6:.0f}M tokens)" if result["tokens"] >= 1e6 else "")


def _failure(result: dict, step: dict | None) -> str:
    app = result.get("app", {})
    if app.get("killed"):
        return app["killed"]
    if step is not None and step.get("error"):
        return step["error"][:80]
    return app.get("error", "not run")[:80]


def _took(step: dict | None, result: dict) -> str:
    return f"{step['seconds']:.1f} s" if step and step["ok"] else _failure(result, step)


def store_table(results: list[dict]) -> str:
    """Per store: its data, the first Overview, the server's memory, the second session (opened last)."""
    lines = ["| store | on disk | idle RSS | first Overview in a browser | server RSS after | second browser session "
             "(last) | server peak RSS | final RSS |", "| " + " | ".join(["---"] * 8) + " |"]
    for r in results:
        first, second = _step(r, FIRST), _step(r, SECOND)
        app = r.get("app", {})
        added = app.get("second_session_added_rss_gb")
        disk = r.get("data", {}).get("disk", {}).get("total")
        lines.append("| " + " | ".join([
            _pool(r), f"{disk / 1000:.2f} GB" if disk else "-", f"{app.get('idle_rss_gb')} GB", _took(first, r),
            f"{first['rss_after_gb']} GB (peak {first['rss_peak_gb']})" if first and first["ok"] else "-",
            f"{second['seconds']:.1f} s, {added:+.2f} GB" if second and second["ok"] and added is not None else
            _took(second, r) if second else "skipped",
            f"{app.get('peak_rss_gb')} GB", f"{app.get('final_rss_gb')} GB",
        ]) + " |")
    return "\n".join(lines)


def steps_table(results: list[dict]) -> str:
    """Per size: session 1's later steps (seconds until rendered)."""
    names = list(dict.fromkeys(s["name"] for r in results for s in _steps(r) if s["name"] not in (FIRST, SECOND)))
    names += [n for r in results for n in r.get("app", {}).get("skipped", []) if n not in names and n != SECOND]
    if not names:
        return ""
    lines = ["| pool | " + " | ".join(names) + " |", "| " + " | ".join(["---"] * (len(names) + 1)) + " |"]
    for r in results:
        cells = []
        for name in names:
            step = _step(r, name)
            cell = "skipped" if step is None else _took(step, r)
            runs = step.get("runs_s") if step else None
            if runs:
                cell += " (" + ", ".join("failed" if x is None else f"{x:.1f}" for x in runs) + ")"
            if step and step["ok"] and "trajectory_tokens" in step.get("detail", {}):
                d = step["detail"]
                again = d.get("search_repeats_s")
                cell += f" ({d.get('trajectory_tokens') or '?'} tokens" + (
                    f"; again: {', '.join(f'{x:.1f}' for x in again)} s" if again else "") + ")"
            cells.append(cell)
        lines.append("| " + " | ".join([_pool(r), *cells]) + " |")
    return "\n".join(lines)


def _measures(result: dict) -> dict[str, tuple[float | None, str]]:
    """{measure: (value, unit)} of one size's app run, for comparisons and targets."""
    out: dict[str, tuple[float | None, str]] = {}
    for name in (FIRST, *LATER, "r_max -> 200 (aggregates in memory)", SECOND):
        step = _step(result, name)
        out[name] = (step["seconds"] if step and step["ok"] else None, "s")
    parts = [out[n][0] for n in ((INSPECT_PAGE, INSPECT) if _step(result, INSPECT_PAGE) else (INSPECT,))]
    out[INSPECT_BOTH] = (round(sum(parts), 2) if None not in parts else None, "s")
    app = result.get("app", {})
    out["second session adds"] = (app.get("second_session_added_rss_gb"), "GB")
    out["peak server RSS"] = (None if app.get("killed") else app.get("peak_rss_gb"), "GB")
    return out


def comparison(sections: dict) -> list[dict]:
    """The store app against the baseline at every size both measured: old, new, old / new."""
    base = {r["size"]: r for r in sections.get("baseline", {}).get("results", [])}
    rows = []
    for r in sections.get("store", {}).get("results", []):
        b = base.get(r["size"])
        if b is None:
            continue
        old, new = _measures(b), _measures(r)
        for name, (value, unit) in new.items():
            if name in (INSPECT_PAGE, INSPECT) and _step(b, INSPECT_PAGE) is None:
                continue  # the old app picked the trajectory in the page's selectbox: compared as INSPECT_BOTH
            before = old[name][0]
            ratio = round(before / value, 1) if before is not None and value else None
            rows.append({"size": r["size"], "measure": name, "unit": unit, "old": before, "new": value,
                         "old_over_new": ratio, **({"old_failed": _failure(b, _step(b, name))}
                                                   if before is None and name != "second session adds" else {})})
    return rows


def comparison_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    names = list(dict.fromkeys(r["measure"] for r in rows))
    lines = ["| measure | " + " | ".join(f"{s}: old / new (old/new)" for s in sizes) + " |",
             "| " + " | ".join(["---"] * (len(sizes) + 1)) + " |"]
    for name in names:
        cells = []
        for size in sizes:
            r = next((x for x in rows if x["size"] == size and x["measure"] == name), None)
            if r is None:
                cells.append("-")
                continue
            unit = r["unit"]
            old = f"{r['old']} {unit}" if r["old"] is not None else (r.get("old_failed") or "-")[:40]
            new = f"{r['new']} {unit}" if r["new"] is not None else "failed"
            cells.append(f"{old} / {new}" + (f" ({r['old_over_new']}x)" if r["old_over_new"] else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: list[dict]) -> list[dict]:
    """The targets checked on every store of at least BIG trajectories."""
    out = []
    for r in results:
        if r["trajectories"] < BIG:
            continue
        values = _measures(r)
        for name, (limit, unit) in TARGETS.items():
            value = values[name][0]
            out.append({"size": r["size"], "measure": name, "value": value, "limit": limit, "unit": unit,
                        "met": value is not None and value < limit})
    return out


def targets_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["| store | measure | measured | target | met |", "| --- | --- | --- | --- | --- |"]
    for t in rows:
        value = f"{t['value']} {t['unit']}" if t["value"] is not None else "failed"
        lines.append(f"| {t['size']} | {t['measure']} | {value} | < {t['limit']} {t['unit']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines)


def score_table(results: list[dict]) -> str:
    lines = ["| trajectories | response tokens | wall | response tokens/s | peak RSS (ru_maxrss) | sampled peak | "
             "RSS along the run (MB at 25 / 50 / 75 / 100 % of the samples) |", "| " + " | ".join(["---"] * 7) + " |"]
    for r in results:
        sc = r["score"]
        tl = [x["rss_mb"] for x in sc.get("timeline", [])]
        along = " / ".join(str(tl[min(len(tl) - 1, max(0, round(q * len(tl)) - 1))]) for q in (0.25, 0.5, 0.75, 1.0)) \
            if tl else "-"
        lines.append(f"| {r['trajectories']:,} | {r['pool']['response_tokens']:,} | "
                     f"{sc['wall_s']} s{'' if sc['ok'] else ' (' + sc.get('error', 'failed')[:60] + ')'} | "
                     f"{sc.get('response_tokens_per_s')} | {sc['peak_rss_mb']} MB | {sc['sampled_peak_rss_mb']} MB | "
                     f"{along} |")
    return "\n".join(lines)


def results_path(args) -> Path:
    if getattr(args, "out", None):
        return Path(args.out)
    return RESULTS / ("app_scale-quick.json" if args.quick else "app_scale.json")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def read_sections(path: Path) -> dict:
    """The results file as {benchmark, baseline, store, score_memory, comparison}; a file written before the
    sections (one mode's payload at the top) becomes that mode's section."""
    if not path.is_file():
        return {"benchmark": "app_scale"}
    data = json.loads(path.read_text())
    if "mode" in data and "results" in data:
        return {"benchmark": "app_scale", data["mode"]: data}
    return data


def update_results(path: Path, section: str, payload: dict) -> None:
    """Replace one mode's section (the others are kept) and recompute the comparison."""
    data = read_sections(path)
    data[section] = payload
    data["comparison"] = comparison(data)
    order = ["benchmark", "baseline", "store", "comparison", "score_memory"]
    data = {k: data[k] for k in order + [k for k in data if k not in order] if k in data}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def report(payload: dict, out_path: Path) -> None:
    m = payload["machine"]
    print(f"\n{payload['mode']}: commit {payload['commit'][:12]}"
          f"{' (app code changed locally)' if payload.get('app_code_changed') else ''}; {m['cpus']} CPUs "
          f"({m['cpu']}), {m['memory_gb']} GB; load average {payload.get('load_average_start')} at the start, "
          f"{payload.get('load_average_end')} at the end; written to {_shown(out_path)}\n")
    print(store_table(payload["results"]))
    later = steps_table(payload["results"])
    if later:
        print("\nSession 1 afterwards (seconds until rendered):\n")
        print(later)
    rows = comparison(read_sections(out_path))
    if rows:
        print("\nThe store app against the baseline (same harness; old / new, and old / new as a ratio):\n")
        print(comparison_table(rows))
    if payload.get("targets"):
        print("\nTargets:\n")
        print(targets_table(payload["targets"]))


# --- main --------------------------------------------------------------------------------------------------------

def head_commit(app_dir: Path = ROOT) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=app_dir, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else f"(not a git checkout: {app_dir})"


def app_code_changed(app_dir: Path = ROOT) -> list[str]:
    """Files of the app (not bench/) that differ from HEAD in the checkout measured."""
    out = subprocess.run(["git", "status", "--porcelain", "--", "app.py", "pages", "rsr_core"], cwd=app_dir,
                         capture_output=True, text=True)
    if out.returncode != 0:
        return ["(not a git checkout)"]
    return [line[3:] for line in out.stdout.splitlines() if line.strip()]


def run_sizes(args, mode: str, commit: str, sizes: list[str], measure: Callable[[str], dict], measured: str,
              extra: dict | None = None) -> int:
    """Measure every size with `measure(size)`, writing the results after each; print the tables."""
    out_path = results_path(args)
    payload = {"benchmark": "app_scale", "mode": mode, "commit": commit, **(extra or {}),
               "started": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "load_average_start": load_average(),
               "settings": {"sizes": sizes, "mem_cap_gb": args.mem_cap_gb, "step_timeout_s": args.step_timeout,
                            "r_max": args.r_max, "student": STORE_STUDENT},
               "measured": measured, "results": []}
    for size in sizes:
        payload["results"].append(measure(size))
        update_results(out_path, mode, payload)
    payload["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    payload["load_average_end"] = load_average()
    if mode == "store":
        payload["targets"] = targets(payload["results"])
    update_results(out_path, mode, payload)
    report(payload, out_path)
    return 0


def run_store(args) -> int:
    """This checkout's app on results stores (RSR_STORE), generated or reused under --data-dir."""
    sizes = list(STORE_QUICK_SIZES if args.quick else args.sizes or STORE_SIZES)
    for size in sizes:
        parse_store_size(size)  # fail before measuring anything
    with tempfile.TemporaryDirectory(prefix="rsr-app-scale-store-") as tmp:
        work = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else work / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        app_dir = Path(args.app_dir).resolve() if args.app_dir else ROOT
        imports = measure_imports(app_dir)
        print(f"imports of the first script run, in a fresh process: {imports}", flush=True)
        def measure(size: str) -> dict:
            runs = []
            for _ in range(max(1, args.runs)):
                waited = wait_for_quiet(args.quiet_below)
                runs.append({**run_store_size(data_dir, work, size, args, app_dir), "waited_for_quiet_s": waited})
            return combine_runs(runs)
        return run_sizes(args, "store", head_commit(app_dir), sizes, measure, measured=STORE_MEASURED,
                         extra={"app_dir": str(app_dir), "app_code_changed": app_code_changed(app_dir),
                                "first_run_imports_s": imports})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--store", action="store_true", help="measure this checkout's app on results stores")
    mode.add_argument("--score-memory", action="store_true", help="peak RSS of `score` into a store at --counts")
    p.add_argument("--sizes", nargs="+", help=f"NxL[:T][+LONG] (default {' '.join(STORE_SIZES)})")
    p.add_argument("--counts", nargs="+", type=int, default=list(SCORE_COUNTS), help="--score-memory: trajectories")
    p.add_argument("--quick", action="store_true", help=f"a smoke run: store {STORE_QUICK_SIZES[0]}, score-memory "
                                                        f"{SCORE_QUICK_COUNTS}")
    p.add_argument("--mem-cap-gb", type=float, default=15.0, help="kill a server or score run whose RSS passes this")
    p.add_argument("--step-timeout", type=float, default=h.STEP_TIMEOUT, help="seconds per step")
    p.add_argument("--r-max", type=int, default=50, help="the r_max the r_max step sets")
    p.add_argument("--data-dir", help="keep (and reuse) the synthetic stores here instead of a temporary folder")
    p.add_argument("--score-threads", type=int, help="--score-memory: OMP_NUM_THREADS of the score process (1 is "
                                                      "several times faster on a loaded 2-core machine)")
    p.add_argument("--score-timeout", type=float, default=7200.0, help="--score-memory: seconds per count")
    p.add_argument("--app-dir", help="--store: measure the app in this folder (e.g. a scratch copy with a candidate "
                                     "fix) instead of this checkout")
    p.add_argument("--runs", type=int, default=1, help="--store: measure each size this many times, each on a "
                                                       "fresh server and browser, and report the medians")
    p.add_argument("--quiet-below", type=float, help="--store: before each run, wait (at most 3 minutes) until the "
                                                     "1-minute load average is under this")
    p.add_argument("--out", help="write the results to this file instead of bench/results/app_scale(-quick).json")
    args = p.parse_args(argv)
    if args.score_memory:
        return run_score_memory(args)
    if not args.store:
        p.error("choose what to measure: --store or --score-memory")
    if h.browser_binaries() is None:
        p.error("no chromium and chromedriver on this machine")
    return run_store(args)


if __name__ == "__main__":
    sys.exit(main())
