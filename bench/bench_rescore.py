"""Rescoring after an edit against a full rescore, same process, same run: what the prefix cache saves.

An 8,000-token real trace (Gemini level-6 solutions from ../shared/data/eit_math, joined until long enough; the
demo pool's responses where ../shared is absent), scored under the embedded student in fp32 on the CPU. Three
edits in its last 10 % (a sentence removed, a word replaced, the last sentence rewritten), each measured as:

- full: `rescore` without a cache entry, one pass over the whole edited conversation (what a plain score costs);
- edit: `rescore` from the original's prepared cache: the body runs from the first changed token on.

The two are interleaved over `--rounds` rounds and the best of each counts (a shared machine is noisy). Checks
that both give the same numbers (ranks exactly, surprisal to 1e-5). Target: edit / full <= 0.25.

Writes bench/results/rescore_cpu.json and prints a Markdown table (quoted in the README).

usage: python bench/bench_rescore.py [--tokens 8000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "eit_math" / "math_gemini_level6_ranked.json"
TARGET = 0.25

from bench.bench_scoring import cpu_model  # noqa: E402

from rsr_core.data import demo  # noqa: E402
from rsr_core.data.edits import Edit, Replacement, edited_trajectory  # noqa: E402
from rsr_core.data.formats import read_trajectories  # noqa: E402
from rsr_core.data.trajectory import Trajectory, assistant_text  # noqa: E402
from rsr_core.engine.chat_format import encode  # noqa: E402
from rsr_core.engine.rescoring import PrefixCache, rescore  # noqa: E402
from rsr_core.engine.student import load_student  # noqa: E402


def texts() -> tuple[list[str], str]:
    if SHARED.exists():
        return [r["gemini_output"] for r in json.loads(SHARED.read_text())], str(SHARED.relative_to(ROOT.parent))
    trajectories, _ = read_trajectories(demo.CANDIDATES)
    return [t.response for t in trajectories], str(demo.CANDIDATES.relative_to(ROOT))


def long_trace(student, tokens: int) -> tuple[Trajectory, str]:
    pool, source = texts()
    text, i = "", 0
    t = None
    while True:
        text += pool[i % len(pool)] + "\n\n"
        i += 1
        t = Trajectory("long", "p", "teacher", [{"role": "user", "content": "Solve all of these."},
                                                {"role": "assistant", "content": text.strip()}])
        if i % 4 == 0 and len(encode(t.messages, student.tokenizer).input_ids) >= tokens:
            return t, source


def edits_near_the_end(text: str) -> dict[str, Replacement]:
    """Three edits in the last 10 % of the text."""
    tail = int(len(text) * 0.9)
    dot = text.index(". ", tail) + 2
    end = text.index(". ", dot) + 2
    word = text.index(" the ", tail) + 1
    last = text.rstrip().rfind(". ", 0, len(text.rstrip()) - 2) + 2
    return {"remove a sentence": Replacement(dot, end, ""),
            "replace a word": Replacement(word, word + 3, "this"),
            "rewrite the last sentence": Replacement(last, len(text), "That is the answer.")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    student = load_student(dtype="float32")
    original, source = long_trace(student, a.tokens)
    text = assistant_text(original.messages[-1])
    rows = []
    for name, rep in edits_near_the_end(text).items():
        edited = edited_trajectory(original, Edit("long", replacements=[rep]), taken=())
        full_s, edit_s = [], []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            full = rescore(student, edited)
            full_s.append(time.perf_counter() - t0)
            cache = PrefixCache()
            rescore(student, original, cache, ("long",))  # the original's cache, as Edit mode prepares it
            t0 = time.perf_counter()
            fast = rescore(student, edited, cache, ("long",))
            edit_s.append(time.perf_counter() - t0)
        same = (np.array_equal(full.scores.rank, fast.scores.rank)
                and bool(np.allclose(full.scores.surprisal, fast.scores.surprisal, rtol=1e-5, atol=1e-5)))
        rows.append({"edit": name, "at": round(rep.start / len(text), 3), "tokens": len(fast.scores),
                     "context_tokens": len(fast.encoded.input_ids), "tokens_run": fast.tokens_run,
                     "full_s": min(full_s), "edit_s": min(edit_s), "ratio": min(edit_s) / min(full_s),
                     "same_numbers": same})
    result = {"machine": f"{cpu_model()}, {platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "student": student.name, "dtype": "float32", "source": source,
              "rounds": a.rounds, "target_ratio": TARGET, "edits": rows,
              "worst_ratio": max(r["ratio"] for r in rows),
              "met": all(r["ratio"] <= TARGET and r["same_numbers"] for r in rows)}
    out = ROOT / "bench" / "results" / "rescore_cpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['machine']}, {student.name} fp32, {rows[0]['context_tokens']:,}-token conversation "
          f"({source})\n")
    print("| edit (last 10 %) | tokens run | full rescore | after the edit | ratio | same numbers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['edit']} | {r['tokens_run']:,} | {r['full_s']:.2f} s | {r['edit_s']:.2f} s | "
              f"{r['ratio']:.2f} | {'yes' if r['same_numbers'] else 'NO'} |")
    print(f"\ntarget: at most {TARGET} of the full time: {'met' if result['met'] else 'NOT met'}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
