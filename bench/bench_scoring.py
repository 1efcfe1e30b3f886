"""Scoring speed and memory on this machine: the engine against the naive full-logits scorer.

Runs on 64 real teacher trajectories (../shared/data/eit_math, Gemini level 6) and one ~16k-token trajectory.
Measures response tokens/s of both in fp32 (same process, same model, start-up excluded), the engine in bf16
with its agreement with fp32 (mean relative RSR difference, Spearman of trajectory RSR), and the peak resident
memory of scoring the long trajectory through the CLI and through the naive scorer, each in a fresh process.

The output layer's share: on the same pool, in interleaved rounds (the best of each side counts: shared machines
are noisy), the transformer body alone (no output layer), the engine without the same-pass Brier terms (RSR's
statistics only) and the engine as it runs; with the host's fp32 matmul GFLOP/s measured in the same run, so the
figures mean the same on any CPU. head_share = 1 - body time / engine time; extras_cost = 1 - engine tokens/s /
engine-without-extras tokens/s.

Writes bench/results/cpu.json and prints a Markdown table (quoted in the README).

usage: python bench/bench_scoring.py [--n 64] [--rounds 2] [--skip-memory]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "eit_math" / "math_gemini_level6_ranked.json"

from bench.naive import naive_score  # noqa: E402

from rsr_core.analysis.metrics import trajectory_metrics  # noqa: E402
from rsr_core.engine import cpu_head  # noqa: E402
from rsr_core.engine.chat_format import encode  # noqa: E402
from rsr_core.engine.pipeline import score_trajectories  # noqa: E402
from rsr_core.engine.scoring import LARK_K, padded_ids, score_batch  # noqa: E402
from rsr_core.engine.student import load_student  # noqa: E402
from rsr_core.data.trajectory import Trajectory  # noqa: E402


def conversations(n: int) -> tuple[list[list[dict]], list[dict]]:
    rows = json.loads(SHARED.read_text())
    convs = [[{"role": "user", "content": r["problem"]}, {"role": "assistant", "content": r["gemini_output"]}]
             for r in rows[:n]]
    text, i = "", 0
    while len(text) < 42000:
        text += rows[i]["gemini_output"] + "\n\n"
        i += 1
    long = [{"role": "user", "content": "Solve all of these."}, {"role": "assistant", "content": text}]
    return convs, long


def engine(student, convs):
    trajs = [Trajectory(str(i), str(i), "gemini", c) for i, c in enumerate(convs)]
    t0 = time.perf_counter()
    res = score_trajectories(trajs, student, use_cache=False)
    dt = time.perf_counter() - t0
    metrics = [trajectory_metrics(res.scores[t.trajectory_id].surprisal, res.scores[t.trajectory_id].rank)
               for t in trajs]
    return metrics, dt


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """The host's fp32 matmul speed: the best of `reps` [n, n] @ [n, n] products, in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.inference_mode()
def head_share(student, convs, rounds: int) -> dict:
    """Body-only, engine-without-extras and engine tokens/s on the pool, one conversation per pass as the CPU
    engine runs them, in `rounds` interleaved rounds; the best of each."""
    items = [encode(c, student.tokenizer) for c in convs]
    pad = student.tokenizer.pad_token_id
    n_tok = sum(len(x.positions) for x in items)

    def body():
        for x in items:
            student.model.base_model(input_ids=padded_ids([x], pad), use_cache=False)

    def engine_with(lark: int):
        return lambda: [score_batch(student.model, [x], pad, lark=lark) for x in items]

    sides = {"body": body, "without_extras": engine_with(0), "engine": engine_with(LARK_K)}
    engine_with(LARK_K)()  # warm-up: the kernel built and loaded, caches filled
    best = {name: float("inf") for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            best[name] = min(best[name], _timed(fn))
    return {"head_tokens": n_tok, "compiled_cpu_head": cpu_head.available(),
            "matmul_fp32_gflops": matmul_gflops(),
            "body_only_tokens_per_s": n_tok / best["body"],
            "engine_without_extras_tokens_per_s": n_tok / best["without_extras"],
            "engine_with_extras_tokens_per_s": n_tok / best["engine"],
            "head_share": 1 - best["body"] / best["engine"],
            "extras_cost": 1 - best["without_extras"] / best["engine"]}


def peak_rss_gb(cmd: list[str]) -> float:
    """Peak resident memory of a command, in GB (2**30 bytes), measured by a fresh wrapper process."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, cwd=ROOT, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the output-layer measures")
    ap.add_argument("--skip-memory", action="store_true")
    a = ap.parse_args()
    if not SHARED.exists():
        print(f"needs {SHARED}", file=sys.stderr)
        return 1
    convs, long = conversations(a.n)
    fp32 = load_student(dtype="float32")
    bf16 = load_student(dtype="bfloat16")
    engine(fp32, convs[:2])  # warm-up
    ours, t_ours = engine(fp32, convs)
    t0 = time.perf_counter()
    naive = naive_score(fp32, convs)
    t_naive = time.perf_counter() - t0
    ours_bf16, t_bf16 = engine(bf16, convs)
    n_tok = sum(m["n_tokens"] for m in ours)
    rsr32 = np.array([m["rsr"] for m in ours])
    rsr_naive = np.array([m["rsr"] for m in naive])
    rsr16 = np.array([m["rsr"] for m in ours_bf16])
    result = {
        "machine": f"{cpu_model()}, {platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "student": fp32.name, "trajectories": len(convs), "response_tokens": n_tok,
        "engine_fp32_tokens_per_s": n_tok / t_ours, "naive_fp32_tokens_per_s": n_tok / t_naive,
        "speedup_fp32": t_naive / t_ours,
        "engine_vs_naive_max_rel_rsr_diff": float(np.max(np.abs(rsr32 - rsr_naive) / rsr_naive)),
        "engine_bf16_tokens_per_s": n_tok / t_bf16, "bf16_speedup_over_fp32": t_ours / t_bf16,
        "bf16_mean_rel_rsr_diff": float(np.mean(np.abs(rsr16 - rsr32) / rsr32)),
        "bf16_spearman_rsr": float(spearmanr(rsr16, rsr32).statistic),
        **head_share(fp32, convs, a.rounds),
    }
    if not a.skip_memory:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "long.jsonl"
            path.write_text(json.dumps({"id": "long", "messages": long}) + "\n")
            encoded = fp32.tokenizer.apply_chat_template(long, tokenize=True, return_dict=True)
            result["long_tokens"] = len(encoded["input_ids"])
            result["engine_long_peak_gb"] = peak_rss_gb([sys.executable, "-m", "rsr_core", "score", str(path),
                                                         "--out", f"{tmp}/o.csv", "--no-cache", "--dtype", "float32"])
            result["naive_long_peak_gb"] = peak_rss_gb([sys.executable, "-c", (
                "import sys, json; sys.path[:0] = ['.']; from bench.naive import naive_score; "
                "from rsr_core.engine.student import load_student; "
                f"naive_score(load_student(dtype='float32'), [json.loads(open({str(path)!r}).read())['messages']])")])
    out = ROOT / "bench" / "results" / "cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value |\n|---|---|")
    for k, v in result.items():
        print(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
