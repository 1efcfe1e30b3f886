"""The app at the study's scale, in a real browser: how long a user waits and how much memory the server holds.

`--baseline` measures the app of commit c84133936e41 (precomputed flat demo scores, loaded whole into every
session) in a git worktree of that commit made under a temporary folder and removed afterwards. For each size
NxL it writes well-formed synthetic scores of N trajectories x L tokens for a student named `synthetic`
(`bench/synthetic_flat.py`) and puts them in that worktree's `data/demo/scores/synthetic/`, beside the real demo
scores. Then:

1. load: `rsr_core.data.demo.load_demo("synthetic")` in a fresh Python process: its time (imports excluded) and
   peak RSS (the process's own ru_maxrss, and the sampled RSS of its tree);
2. the app: `streamlit run app.py` in the worktree from an empty RSR_CACHE_DIR, idle RSS; then in headless
   Chromium (one browser instance per session):
   - session 1 opens `/` (Overview): the time from navigation until the page is rendered (app connected, script
     state notRunning, no "running" status widget, no stale element, the title and the teacher report shown;
     see `bench/app_harness.py`), and the server RSS after it. On the bundled demo dataset today's sidebar loads
     the precomputed scores of *every* folder in `data/demo/scores/` (`st.cache_data`) into the session as
     "other students" before any page draws, and the Overview's teacher report covers every student, so this
     first render is the wait for the synthetic scores (its rows are in the report: `report_rows`);
   - session 2 opens `/` too: its render time and the server RSS it adds;
   - session 1 then: makes `synthetic` the active student (today's Student selectbox offers only the embedded
     students, so: `other` and the model name `synthetic`, which files results under that name and so picks up
     the precomputed scores), sets r_max to 50, opens Teachers, opens Selection (the selection is built on
     opening), and opens the Inspector on one trajectory id (its Trajectory selectbox).
   Each step is timed until its page is rendered, with the server RSS before, after and at its peak.

Every step has a time limit (`--step-timeout`, 600 s) and is reported as timed out, not waited on; the load and
the server are killed when their RSS passes `--mem-cap-gb` (15) and reported as "killed at X GB".

Writes bench/results/app_scale.json (bench/results/app_scale-quick.json with --quick) after every size, and prints
two tables: the load and the first renders, then session 1's later steps.

Another app is measured by another mode beside `run_baseline`: a function that prepares each size's data and
calls `run_sizes` with a per-size function around `measure_app(app_dir, workdir, steps, env={...})` (the server's
environment, e.g. `RSR_STORE`); the steps are `bench/app_harness.py`'s `step_*` functions, whose selectors and
widget keys are in its `SEL`, `KEYS` and `PAGES`.

usage: python bench/bench_app_scale.py --baseline [--sizes 990x2000 4983x2000 1980x10000] [--quick]
       [--mem-cap-gb 15] [--step-timeout 600] [--data-dir DIR] [--commit SHA]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import app_harness as h  # noqa: E402
from bench.synthetic_flat import plan, write_flat_scores  # noqa: E402

BASELINE_COMMIT = "c84133936e41eb344bef0c335a7538bad83e4fe6"
SIZES = ("990x2000", "4983x2000", "1980x10000")
QUICK_SIZES = ("99x500",)
STUDENT = "synthetic"
RESULTS = ROOT / "bench" / "results"
LOAD_CODE = """
import json, resource, sys, time
t0 = time.perf_counter()
from rsr_core.data.demo import load_demo
import_s = time.perf_counter() - t0
t0 = time.perf_counter()
table, scores = load_demo(sys.argv[1])
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "import_s": import_s, "trajectories": len(table),
                  "tokens": int(sum(len(s) for s in scores.values())),
                  "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


# --- the machine and the code measured ---------------------------------------------------------------------------

def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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


# --- the baseline checkout and its data --------------------------------------------------------------------------

@contextlib.contextmanager
def baseline_worktree(commit: str, parent: Path):
    """A detached git worktree of `commit` under `parent`, removed afterwards."""
    path = parent / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    try:
        yield path
    finally:
        link = path / "data" / "demo" / "scores" / STUDENT
        if link.is_symlink():
            link.unlink()
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)


def parse_size(text: str) -> tuple[int, int]:
    """'990x2000' -> (990, 2000)."""
    n, length = text.lower().split("x")
    return int(n), int(length)


def synthetic_scores(data_dir: Path, n: int, length: int) -> tuple[Path, dict]:
    """Synthetic flat scores of n x length in `data_dir` (reused when an earlier run wrote the same)."""
    folder = data_dir / f"{STUDENT}-{n}x{length}"
    info_path = folder / "info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("trajectories") == n and info.get("tokens_per_trajectory") == length:
            return folder, {**info, "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    info = write_flat_scores(folder, n, length, student=STUDENT)
    info_path.write_text(json.dumps(info, indent=1))
    return folder, info


def place_scores(app_dir: Path, folder: Path) -> None:
    """Make `folder` the demo scores of the student `synthetic` in `app_dir` (a symbolic link)."""
    link = app_dir / "data" / "demo" / "scores" / STUDENT
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(folder, target_is_directory=True)


# --- measurements ------------------------------------------------------------------------------------------------

def measure_load(app_dir: Path, cap_gb: float, timeout: float) -> dict:
    """`load_demo("synthetic")` in a fresh process in `app_dir`: seconds, peak RSS, or how it was stopped."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", LOAD_CODE, STUDENT], cwd=app_dir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    watch = h.MemoryWatch(proc.pid, int(cap_gb * h.GB))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        h.kill_tree(proc.pid)
        proc.communicate()
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", "peak_rss_gb": h.gb(watch.peak)}
    finally:
        watch.stop()
    wall = round(time.monotonic() - t0, 1)
    if watch.killed:
        return {"ok": False, "error": f"killed at {h.gb(watch.killed_at)} GB after {watch.killed_after:.0f} s "
                                      f"(cap {cap_gb} GB)", "peak_rss_gb": h.gb(watch.peak), "wall_s": wall}
    if proc.returncode != 0:
        return {"ok": False, "error": f"exit {proc.returncode}: {err.strip()[-400:]}", "peak_rss_gb": h.gb(watch.peak)}
    res = json.loads(out.strip().splitlines()[-1])
    return {"ok": True, "seconds": round(res["seconds"], 1), "import_s": round(res["import_s"], 1),
            "peak_rss_gb": round(res["ru_maxrss_gb"], 2), "sampled_peak_rss_gb": h.gb(watch.peak),
            "trajectories": res["trajectories"], "tokens": res["tokens"], "wall_s": wall}


StepFn = Callable[[h.Session, float], dict]


def baseline_steps(trajectory_id: str, r_max: int = 50) -> list[tuple[str, StepFn]]:
    """Session 1's steps after the first renders, against today's widgets."""
    return [
        (f"make {STUDENT} the active student", lambda s, t: h.step_choose_student(s, STUDENT, t)),
        (f"r_max -> {r_max}", lambda s, t: h.step_set_r_max(s, r_max, t)),
        ("open Teachers", lambda s, t: h.step_open_page(s, "teachers", t)),
        ("build a selection (open Selection)", lambda s, t: h.step_build_selection(s, t)),
        ("open the inspector on a trajectory", lambda s, t: h.step_open_inspector(s, trajectory_id, t)),
    ]


def measure_app(app_dir: Path, workdir: Path, steps: list[tuple[str, StepFn]], env: dict | None = None,
                cap_gb: float | None = None, step_timeout: float = h.STEP_TIMEOUT) -> dict:
    """A server in `app_dir`; two browser sessions open `/`; then session 1 runs `steps`, each only after the
    previous one succeeded (a later step would measure another state); the skipped ones are listed."""
    server = h.start_server(app_dir, env=env, workdir=workdir, mem_cap_gb=cap_gb)
    sessions: list[h.Session] = []
    out: dict = {"server_start_s": server.started_s, "steps": []}
    try:
        out["idle_rss_gb"] = h.gb(server.rss())
        first = h.open_session(server, "session 1")
        sessions.append(first)
        step = h.run_step("first Overview", lambda s, t: h.step_first_render(s, t), first, step_timeout)
        out["steps"].append(step.as_dict())
        _print_step(step)
        if step.ok:
            second = h.open_session(server, "session 2")
            sessions.append(second)
            step2 = h.run_step("second session: first Overview", lambda s, t: h.step_first_render(s, t), second,
                               step_timeout)
            out["steps"].append(step2.as_dict())
            _print_step(step2)
            if step2.ok and step.rss_after_gb is not None and step2.rss_after_gb is not None:
                out["second_session_added_rss_gb"] = round(step2.rss_after_gb - step.rss_after_gb, 2)
        ok = step.ok
        for name, fn in steps:
            if not (ok and server.alive):
                out.setdefault("skipped", []).append(name)
                continue
            s = h.run_step(name, fn, first, step_timeout)
            out["steps"].append(s.as_dict())
            _print_step(s)
            ok = s.ok
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


def run_baseline_size(app_dir: Path, data_dir: Path, work: Path, size: str, args) -> dict:
    """Data, load and app measurements of one size against the baseline worktree."""
    n, length = parse_size(size)
    result: dict = {"size": size, "trajectories": n, "tokens_per_trajectory": length, "tokens": n * length,
                    "load_average_before": load_average()}
    print(f"== {size}: {n:,} trajectories x {length:,} tokens ({n * length / 1e6:.1f}M tokens); load average "
          f"{result['load_average_before']}", flush=True)
    folder, result["data"] = synthetic_scores(data_dir, n, length)
    place_scores(app_dir, folder)
    print("  load_demo in a fresh process…", flush=True)
    result["load"] = measure_load(app_dir, args.mem_cap_gb, args.step_timeout)
    print(f"  load: {_load_text(result['load'])}", flush=True)
    tid = plan(n)[n // 2].trajectory_id
    result["inspected_trajectory"] = tid
    print("  the app in Chromium…", flush=True)
    try:
        result["app"] = measure_app(app_dir, work / f"server-{size}", baseline_steps(tid, args.r_max),
                                    cap_gb=args.mem_cap_gb, step_timeout=args.step_timeout)
    except Exception as e:  # noqa: BLE001 - a failed size is reported and the next one runs
        result["app"] = {"error": f"{type(e).__name__}: {e}"}
    result["load_average_after"] = load_average()
    return result


def _load_text(load: dict) -> str:
    if load.get("ok"):
        return f"{load['seconds']} s, peak {load['peak_rss_gb']} GB"
    return load.get("error", "failed")


# --- output ------------------------------------------------------------------------------------------------------

FIRST, SECOND = "first Overview", "second session: first Overview"


def _steps(result: dict) -> list[dict]:
    return result.get("app", {}).get("steps", [])


def _step(result: dict, name: str) -> dict | None:
    return next((s for s in _steps(result) if s["name"] == name), None)


def _pool(result: dict) -> str:
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


def _load_cells(load: dict) -> list[str]:
    if load.get("ok"):
        return [f"{load['seconds']} s", f"{load['peak_rss_gb']} GB"]
    return [load.get("error", "-"), f"{load.get('peak_rss_gb')} GB when stopped"]


def main_table(results: list[dict]) -> str:
    """Per size: the load, the first Overview, the server's memory, a second session."""
    lines = ["| pool | load (`load_demo`) | load peak RSS | first Overview in a browser | server RSS after | "
             "second browser session |", "| " + " | ".join(["---"] * 6) + " |"]
    for r in results:
        first, second = _step(r, FIRST), _step(r, SECOND)
        added = r.get("app", {}).get("second_session_added_rss_gb")
        lines.append("| " + " | ".join([
            _pool(r), *_load_cells(r.get("load", {})), _took(first, r),
            f"{first['rss_after_gb']} GB (peak {first['rss_peak_gb']})" if first and first["ok"] else "-",
            f"{second['seconds']:.1f} s, +{added} GB" if second and second["ok"] else
            ("-" if not first or not first["ok"] else _took(second, r)),
        ]) + " |")
    return "\n".join(lines)


def steps_table(results: list[dict]) -> str:
    """Per size: session 1's later steps (seconds until rendered)."""
    names = list(dict.fromkeys(s["name"] for r in results for s in _steps(r) if s["name"] not in (FIRST, SECOND)))
    names += [n for r in results for n in r.get("app", {}).get("skipped", []) if n not in names]
    if not names:
        return ""
    lines = ["| pool | " + " | ".join(names) + " |", "| " + " | ".join(["---"] * (len(names) + 1)) + " |"]
    for r in results:
        cells = []
        for name in names:
            step = _step(r, name)
            cells.append("skipped" if step is None else _took(step, r))
        lines.append("| " + " | ".join([_pool(r), *cells]) + " |")
    return "\n".join(lines)


def write_results(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")


def report(payload: dict, out_path: Path) -> None:
    m = payload["machine"]
    print(f"\n{payload['mode']}: commit {payload['commit'][:12]}; {m['cpus']} CPUs ({m['cpu']}), {m['memory_gb']} GB; "
          f"written to {out_path.relative_to(ROOT)}\n")
    print(main_table(payload["results"]))
    later = steps_table(payload["results"])
    if later:
        print("\nSession 1 afterwards (seconds until rendered):\n")
        print(later)


# --- main --------------------------------------------------------------------------------------------------------

def run_sizes(args, mode: str, commit: str, sizes: list[str], measure: Callable[[str], dict]) -> int:
    """Measure every size with `measure(size)`, writing the results after each; print the tables."""
    out_path = RESULTS / ("app_scale-quick.json" if args.quick else "app_scale.json")
    payload = {"benchmark": "app_scale", "mode": mode, "commit": commit,
               "started": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "settings": {"sizes": sizes, "mem_cap_gb": args.mem_cap_gb, "step_timeout_s": args.step_timeout,
                            "r_max": args.r_max, "student": STUDENT},
               "measured": __doc__.split("\n\n", 1)[1].split("\n\nusage:")[0], "results": []}
    for size in sizes:
        payload["results"].append(measure(size))
        write_results(out_path, payload)
    payload["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_results(out_path, payload)
    report(payload, out_path)
    return 0


def run_baseline(args) -> int:
    """Today's app: a worktree of --commit with the synthetic scores as a demo student."""
    sizes = list(QUICK_SIZES if args.quick else args.sizes)
    commit = subprocess.run(["git", "rev-parse", args.commit], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="rsr-app-scale-") as tmp:
        work = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else work / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        with baseline_worktree(commit, work) as app_dir:
            return run_sizes(args, "baseline", commit, sizes,
                             lambda size: run_baseline_size(app_dir, data_dir, work, size, args))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", action="store_true", help="measure today's app (the commit of --commit)")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), help="NxL: trajectories x tokens each")
    p.add_argument("--quick", action="store_true", help=f"one small size ({QUICK_SIZES[0]}), a smoke run")
    p.add_argument("--commit", default=BASELINE_COMMIT, help="the commit --baseline measures")
    p.add_argument("--mem-cap-gb", type=float, default=15.0, help="kill a load or server whose RSS passes this")
    p.add_argument("--step-timeout", type=float, default=h.STEP_TIMEOUT, help="seconds per step")
    p.add_argument("--r-max", type=int, default=50, help="the r_max the r_max step sets")
    p.add_argument("--data-dir", help="keep (and reuse) the synthetic scores here instead of a temporary folder")
    args = p.parse_args(argv)
    if h.browser_binaries() is None:
        p.error("no chromium and chromedriver on this machine")
    if not args.baseline:
        p.error("choose what to measure: --baseline")
    return run_baseline(args)


if __name__ == "__main__":
    sys.exit(main())
