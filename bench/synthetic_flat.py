"""Well-formed synthetic scores in the demo's flat format, at any size, written with bounded memory.

`write_flat_scores(folder, n, length)` writes `folder/trajectories.parquet` and `folder/tokens.parquet`, the two
files `python -m rsr_core score --out ... --tokens-out ...` writes (`rsr_core.data.tables.trajectory_table` and
`token_table`), for n trajectories of `length` response tokens each:

- the plan: 11 teachers x problems x 3 runs, problem-major (so any prefix covers every teacher), ids
  `{teacher}/r{run}/{problem}`;
- ranks: 1 with a teacher-dependent probability, else a Zipf-like (Pareto) tail up to the vocabulary size
  (49,152 by default), unclipped; surprisal grows with log rank, entropy with surprisal;
- token ids Zipf-like over a synthetic vocabulary of short words (a few non-ASCII), top-5 ids, texts and
  descending probabilities, the token itself in its slot (with its own probability) where its rank is 5 or better;
- every response is a reasoning trace, `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`: the token texts
  concatenate to it exactly, the offsets index it in characters, and `messages` holds the reasoning in
  `reasoning_content` and the answer in `content`, so the app splits thinking from answer as for real traces;
- the trajectory table's metrics come from `rsr_core.analysis.metrics.trajectory_metrics` on the same tokens.

Both files are written by `pyarrow.parquet.ParquetWriter` about 256k tokens at a time.

usage: python bench/synthetic_flat.py OUT_FOLDER --n 990 --length 2000 [--student synthetic] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rsr_core.analysis.metrics import trajectory_metrics  # noqa: E402

TEACHERS = ("DeepSeek-R1-0528", "Qwen-3-235B-Thinking-2507", "GPT-OSS-120B", "Nemotron-Super-49B-v1.5", "QwQ-32B",
            "Qwen-3-30B-Thinking-2507", "Magistral-Small-2506", "GPT-OSS-20B", "Phi-4-Reasoning-Plus", "Qwen-3-8B",
            "Qwen-3-4B-Thinking-2507")
RUNS = 3
VOCAB = 49_152
TOP_K = 5
BATCH_TOKENS = 1 << 18
THINK_SHARE = 0.85  # share of a trace's tokens before </think>
SPECIAL = ("<think>", "</think>", "\n", "\n\n")  # ids 0-3; ordinary tokens are drawn from the rest
PROMPT_TOKENS = 60  # added to the response length for n_context

TOKEN_SCHEMA = pa.schema([
    ("trajectory_id", pa.large_string()), ("position", pa.int64()), ("token_id", pa.int64()),
    ("token", pa.large_string()), ("start", pa.int64()), ("end", pa.int64()), ("turn", pa.int32()),
    ("surprisal", pa.float32()), ("rank", pa.int64()), ("entropy", pa.float32()),
    ("top_ids", pa.list_(pa.int64())), ("top_tokens", pa.list_(pa.string())), ("top_probs", pa.list_(pa.float32())),
    ("truncated", pa.bool_()), ("n_context", pa.int64()),
])
METRIC_COLUMNS = ("n_tokens", "rsr", "avg_surprisal", "avg_rank_clipped", "avg_rank", "avg_entropy", "avg_rsr_token",
                  "filtered_rsr_token", "rank_entropy_ratio")
TABLE_SCHEMA = pa.schema(
    [(c, pa.large_string()) for c in ("trajectory_id", "problem_id", "teacher", "run", "student")]
    + [(c, pa.int64() if c == "n_tokens" else pa.float64()) for c in METRIC_COLUMNS]
    + [("coverage", pa.float64()), ("truncated", pa.bool_()), ("n_context", pa.int64()), ("correct", pa.bool_()),
       ("r_max", pa.int64()), ("source", pa.large_string()), ("record", pa.int64()), ("prompt", pa.large_string()),
       ("messages", pa.large_string())])


@dataclass(frozen=True)
class Planned:
    """One trajectory of the plan."""

    trajectory_id: str
    problem_id: str
    teacher: str
    run: str
    teacher_index: int


def plan(n: int, teachers: int = len(TEACHERS), runs: int = RUNS) -> list[Planned]:
    """The first n trajectories of teachers x problems x runs, problem-major."""
    problems = math.ceil(n / (teachers * runs))
    rows = [Planned(f"{TEACHERS[t]}/r{r}/q{p:05d}", f"q{p:05d}", TEACHERS[t], f"r{r}", t)
            for p in range(problems) for t in range(teachers) for r in range(1, runs + 1)]
    return rows[:n]


def teacher_params(t: int) -> tuple[float, float, float]:
    """(P(rank 1), tail exponent, P(correct)) of teacher t: average ranks span about 15-150 as in the paper."""
    return 0.55 + 0.017 * (t % 11), 1.6 + 0.03 * ((t * 7) % 11), 0.45 + 0.045 * ((t * 5) % 11)


def vocabulary(size: int = VOCAB) -> pa.Array:
    """Decoded token texts: the special ones, then short syllable words, most with a leading space, some
    punctuation, digits and a few non-ASCII symbols. Never contains a think tag."""
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "re", "vi", "do", "pa", "the", "ing", "ion", "er", "al", "st"]
    marks = [".", ",", ":", ";", "?", " =", " +", " -", " (", ")", "\n", " \\(", "\\)",
             " √", " π", " ≤", "²", " ×"]
    out = list(SPECIAL)
    for i in range(len(SPECIAL), size):
        if i % 23 == 0:
            out.append(marks[(i // 23) % len(marks)])
        elif i % 19 == 0:
            out.append(f" {i % 1000}")
        else:
            word = "".join(syllables[(i // len(syllables) ** j) % len(syllables)] for j in range(1 + i % 3))
            out.append(word if i % 7 == 0 else " " + word)
    return pa.array(out, pa.string())


def zipf_ids(rng: np.random.Generator, shape, vocab: int) -> np.ndarray:
    """Zipf-like token ids among the ordinary tokens (ids len(SPECIAL)..vocab-1)."""
    span = vocab - len(SPECIAL)
    ids = np.minimum(np.floor((1.0 - rng.random(shape)) ** (-1.0 / 0.3)), span + 1).astype(np.int64) - 1
    ids = np.where(ids >= span, rng.integers(0, span, shape), ids)
    return ids + len(SPECIAL)


def draw_ranks(rng: np.random.Generator, n: int, p1: float, alpha: float, vocab: int) -> np.ndarray:
    """[n] 1-based unclipped ranks: 1 with probability p1, else floor(2 U^(-1/(alpha-1))) up to vocab."""
    tail = np.floor(2.0 * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0)))
    tail = np.where(tail > vocab, rng.integers(2, vocab + 1, n), tail).astype(np.int64)
    return np.where(rng.random(n) < p1, 1, tail)


def draw_scores(rng: np.random.Generator, n: int, p1: float, alpha: float, vocab: int):
    """([n] surprisal f32, [n] rank i64, [n] entropy f32), surprisal correlated with log rank."""
    rank = draw_ranks(rng, n, p1, alpha, vocab)
    s = np.where(rank == 1, rng.exponential(0.25, n), 0.6 * np.log(rank) + 0.4 + np.abs(rng.normal(0.0, 0.6, n)))
    e = 0.5 * s + rng.gamma(2.0, 0.3, n)
    return s.astype(np.float32), rank, e.astype(np.float32)


def trace_token_ids(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """[length] token ids of one trace: <think> \\n reasoning \\n </think> \\n\\n answer."""
    ids = zipf_ids(rng, length, vocab)
    if length >= 8:
        close = max(4, min(length - 2, int(length * THINK_SHARE)))
        ids[0], ids[1] = 0, 2
        ids[close - 2], ids[close - 1], ids[close] = 2, 1, 3
    return ids


def top_alternatives(rng: np.random.Generator, token_id: np.ndarray, rank: np.ndarray, surprisal: np.ndarray,
                     vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """([T, K] ids, [T, K] descending probabilities) with the token in slot rank-1 when rank <= K."""
    t = token_id.size
    ids = zipf_ids(rng, (t, TOP_K), vocab)
    decay = rng.uniform(0.15, 0.7, (t, TOP_K))
    decay[:, 0] = rng.uniform(0.3, 0.95, t)
    probs = np.cumprod(decay, axis=1)
    hit = np.nonzero(rank <= TOP_K)[0]
    slot = rank[hit] - 1
    ids[hit, slot] = token_id[hit]
    own = np.exp(-surprisal[hit].astype(np.float64))
    cols = np.arange(TOP_K)
    above, below = cols[None, :] < slot[:, None], cols[None, :] > slot[:, None]
    probs[hit] = np.where(above, np.maximum(probs[hit], own[:, None]),
                          np.where(below, np.minimum(probs[hit], own[:, None] * 0.9), own[:, None]))
    return ids, probs.astype(np.float32)


def list_array(values: pa.Array, width: int) -> pa.ListArray:
    offsets = pa.array(np.arange(0, len(values) + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def batch_tables(rng: np.random.Generator, rows: list[Planned], length: int, vocab: pa.Array, student: str,
                 first_record: int) -> tuple[pa.Table, pa.Table]:
    """(trajectory rows, token rows) of one batch of trajectories."""
    n_vocab = len(vocab)
    b = len(rows)
    parts = [draw_scores(rng, length, *teacher_params(r.teacher_index)[:2], n_vocab) for r in rows]
    surprisal = np.concatenate([p[0] for p in parts])
    rank = np.concatenate([p[1] for p in parts])
    entropy = np.concatenate([p[2] for p in parts])
    token_id = np.concatenate([trace_token_ids(rng, length, n_vocab) for _ in rows])
    top_ids, top_probs = top_alternatives(rng, token_id, rank, surprisal, n_vocab)
    texts = pc.take(vocab, pa.array(token_id))
    chars = pc.utf8_length(texts).to_numpy().astype(np.int64)
    seg = np.repeat(np.arange(b), length)
    end = np.cumsum(chars)
    base = np.concatenate([[0], end[length - 1::length][:-1]])
    start = end - chars - base[seg]
    end = end - base[seg]
    responses = pc.binary_join(list_array(texts, length), "").to_pylist()
    ids = pa.array([r.trajectory_id for r in rows], pa.large_string())
    tokens = pa.table({
        "trajectory_id": pc.take(ids, pa.array(seg)), "position": np.tile(np.arange(length, dtype=np.int64), b),
        "token_id": token_id, "token": texts.cast(pa.large_string()), "start": start, "end": end,
        "turn": np.zeros(b * length, np.int32), "surprisal": surprisal, "rank": rank, "entropy": entropy,
        "top_ids": list_array(pa.array(top_ids.ravel()), TOP_K),
        "top_tokens": list_array(pc.take(vocab, pa.array(top_ids.ravel())), TOP_K),
        "top_probs": list_array(pa.array(top_probs.ravel()), TOP_K),
        "truncated": np.zeros(b * length, bool), "n_context": np.full(b * length, length + PROMPT_TOKENS, np.int64),
    }, schema=TOKEN_SCHEMA)
    table = trajectory_rows(rng, rows, responses, parts, length, student, first_record)
    return table, tokens


def messages_of(prompt: str, response: str) -> list[dict]:
    """The conversation whose canonical assistant text is `response` (reasoning kept in `reasoning_content`)."""
    head, close = "<think>\n", "\n</think>\n\n"
    cut = response.find(close)
    if response.startswith(head) and cut > len(head):
        return [{"role": "user", "content": prompt},
                {"role": "assistant", "content": response[cut + len(close):],
                 "reasoning_content": response[len(head):cut]}]
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def trajectory_rows(rng, rows: list[Planned], responses: list[str], parts, length: int, student: str,
                    first_record: int) -> pa.Table:
    """The trajectory table's rows of one batch (metrics at r_max = 100)."""
    metrics = [trajectory_metrics(s, r, e, 100) for s, r, e in parts]
    prompts = [f"Synthetic problem {r.problem_id}: find the value of the expression and justify each step."
               for r in rows]
    correct = [bool(rng.random() < teacher_params(r.teacher_index)[2]) for r in rows]
    columns = {
        "trajectory_id": [r.trajectory_id for r in rows], "problem_id": [r.problem_id for r in rows],
        "teacher": [r.teacher for r in rows], "run": [r.run for r in rows], "student": [student] * len(rows),
        **{c: [m[c] for m in metrics] for c in METRIC_COLUMNS},
        "coverage": [1.0] * len(rows), "truncated": [False] * len(rows),
        "n_context": [length + PROMPT_TOKENS] * len(rows), "correct": correct, "r_max": [100] * len(rows),
        "source": [f"synthetic/{r.teacher}/{r.run}.jsonl" for r in rows],
        "record": list(range(first_record, first_record + len(rows))), "prompt": prompts,
        "messages": [json.dumps(messages_of(p, text), ensure_ascii=False) for p, text in zip(prompts, responses)],
    }
    return pa.table(columns, schema=TABLE_SCHEMA)


def write_flat_scores(folder: str | Path, n: int, length: int, student: str = "synthetic", seed: int = 0,
                      vocab_size: int = VOCAB, progress: bool = True) -> dict:
    """Write `folder/{trajectories,tokens}.parquet` for n trajectories of `length` tokens; returns what was
    written (counts, megabytes, seconds)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(vocab_size)
    rows = plan(n)
    step = max(1, BATCH_TOKENS // max(length, 1))
    t0 = time.monotonic()
    paths = {"trajectories": folder / "trajectories.parquet", "tokens": folder / "tokens.parquet"}
    with pq.ParquetWriter(paths["trajectories"], TABLE_SCHEMA) as table_writer, \
            pq.ParquetWriter(paths["tokens"], TOKEN_SCHEMA) as token_writer:
        for a in range(0, len(rows), step):
            rng = np.random.default_rng([seed, a])
            table, tokens = batch_tables(rng, rows[a:a + step], length, vocab, student, first_record=a + 1)
            table_writer.write_table(table)
            token_writer.write_table(tokens)
            if progress:
                print(f"\rsynthetic scores: {min(a + step, n)}/{n} trajectories", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return {"trajectories": n, "tokens_per_trajectory": length, "tokens": n * length, "teachers": len(TEACHERS),
            "problems": math.ceil(n / (len(TEACHERS) * RUNS)), "runs": RUNS, "vocab": vocab_size, "seed": seed,
            "student": student, "seconds": round(time.monotonic() - t0, 1),
            "mb": {k: round(p.stat().st_size / 1e6, 1) for k, p in paths.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder for trajectories.parquet and tokens.parquet")
    p.add_argument("--n", type=int, default=990, help="trajectories")
    p.add_argument("--length", type=int, default=2000, help="response tokens per trajectory")
    p.add_argument("--student", default="synthetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=VOCAB)
    args = p.parse_args(argv)
    print(json.dumps(write_flat_scores(args.out, args.n, args.length, args.student, args.seed, args.vocab), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
