"""A synthetic results store at the study's scale, for benchmarks of the store and the app.

By default 165,000 trajectories (11 teachers x 5,000 problems x 3 runs) of 10,000 tokens each: aggregates and
trajectory-table rows for all of them, per-token data for the first 5,000 (problem-major, so every teacher has
some). Tokens are drawn per teacher: rank 1 with probability p1, else a Zipf-like (Pareto) rank up to the
vocabulary size (49,152 by default); surprisal grows with log rank, entropy with surprisal; token ids and top-5
alternatives are Zipf-like over the vocabulary, the top-5 holding the token where its rank is 5 or better; the
conversation text is the concatenation of the tokens' texts (a synthetic vocabulary), so the offsets index
real text. Trajectories without per-token data get a short placeholder conversation.

Everything goes through `StoreWriter` (per-token trajectories through `append_columns`, the others through
`append_aggregates`), in batches, so memory stays bounded. Aggregates of the others are computed from their
drawn tokens in worker processes (`--jobs`).

`--long N` adds long trajectories with per-token data (`--long-count`, default 1) on top of the plan: extra runs
`long1`, `long2`, ... of problems spread evenly over the per-token ones, of teachers taken in turn, ids
`{teacher}/long{j}/{problem}` (`long_plan`), written through the same `append_columns`, after the per-token
trajectories and before the aggregate-only ones; so the plan's trajectories, problems and pools stay as they are
and the store holds N + count trajectories. For the inspector at 32k tokens: `--long 32000`.

usage: python bench/synthetic_store.py --out DIR [--small] [--teachers 11 --problems 5000 --runs 3]
       [--token-trajectories 5000] [--tokens 10000] [--long 32000 [--long-count 1]] [--vocab 49152] [--jobs N]
       [--no-measure] [--results FILE|none]
       python bench/synthetic_store.py --flat --out DIR --tokens 71     # flat files, then import-scores them

`--small` is 11 x 30 x 3 = 990 trajectories of 2,000 tokens, all with per-token data. After writing, the
script measures the store (unless --no-measure) and writes the figures to bench/results/store-*.json (or to
`--results FILE`; `--results none` writes no file, for other benchmarks that only want the store).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic_flat import draw_scores  # noqa: E402  (the same token statistics as the flat scores)
from rsr_core.analysis import aggregates as agg  # noqa: E402
from rsr_core.data.store import ResultsStore, StoreWriter, StudentSettings, TokenColumns  # noqa: E402
from rsr_core.data.trajectory import Trajectory  # noqa: E402

TEACHERS = ["DeepSeek-R1-0528", "Qwen-3-235B-Thinking-2507", "GPT-OSS-120B", "Nemotron-Super-49B-v1.5", "QwQ-32B",
            "Qwen-3-30B-Thinking-2507", "Magistral-Small-2506", "GPT-OSS-20B", "Phi-4-Reasoning-Plus", "Qwen-3-8B",
            "Qwen-3-4B-Thinking-2507"]
K = 5
STUDENT = "synthetic-student"
AGG_CHUNK = 200  # trajectories whose tokens are drawn at once for aggregates (2M tokens at 10k each)


def teacher_params(t: int) -> tuple[float, float]:
    """(p1, alpha) of teacher t: P(rank 1) and the tail exponent (the paper's teachers span avg rank 17-145)."""
    return 0.55 + 0.017 * (t % 11), 1.6 + 0.03 * ((t * 7) % 11)


def vocabulary(size: int) -> list[str]:
    """Synthetic decoded token texts: short letter strings, most with a leading space, a few punctuation."""
    out = []
    for i in range(size):
        n = 1 + (i * 7919) % 7
        word = "".join(chr(97 + (i // 26 ** j) % 26) for j in range(n))
        out.append(word if i % 5 == 0 else " " + word if i % 17 else ".\n")
    return out


def zipf_ids(rng: np.random.Generator, shape, vocab: int) -> np.ndarray:
    ids = np.minimum(np.floor((1.0 - rng.random(shape)) ** (-1.0 / 0.3)), vocab + 1).astype(np.int64) - 1
    return np.where(ids >= vocab, rng.integers(0, vocab, shape), ids)


def token_columns(rng, ids: list[str], lengths: np.ndarray, params: list[tuple[float, float]], vocab_np: np.ndarray):
    """TokenColumns of trajectories `ids` and their conversation texts."""
    parts = [draw_scores(rng, int(n), p1, a, len(vocab_np)) for n, (p1, a) in zip(lengths, params)]
    s = np.concatenate([p[0] for p in parts])
    r = np.concatenate([p[1] for p in parts])
    e = np.concatenate([p[2] for p in parts])
    t = s.size
    base = zipf_ids(rng, t, len(vocab_np))
    top_ids = (base[:, None] + np.arange(K) * 7919) % len(vocab_np)
    token_id = zipf_ids(rng, t, len(vocab_np))
    hit = r <= K
    token_id[hit] = top_ids[hit, r[hit] - 1]
    decay = rng.uniform(0.1, 0.7, (t, K))
    decay[:, 0] = rng.uniform(0.3, 0.95, t)
    top_probs = np.cumprod(decay, axis=1).astype(np.float32)
    texts = vocab_np[token_id]
    sizes = np.fromiter((len(x) for x in texts), dtype=np.int64, count=t)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    end = np.empty(t, np.int64)
    start = np.empty(t, np.int64)
    contents = []
    for j in range(len(ids)):
        a, b = offsets[j], offsets[j + 1]
        c = np.cumsum(sizes[a:b])
        end[a:b] = c
        start[a:b] = c - sizes[a:b]
        contents.append("".join(texts[a:b].tolist()))
    lark = ((1 - np.exp(-s.astype(np.float64))) ** 2 * rng.uniform(1.0, 1.6, t)).astype(np.float32)  # (1-p)^2 + ...
    columns = TokenColumns(
        trajectory_id=list(ids), lengths=np.asarray(lengths, np.int64), token_id=token_id, start=start, end=end,
        turn=np.zeros(t, np.int32), surprisal=s, rank=r, entropy=e, top_ids=top_ids, top_probs=top_probs,
        truncated=np.zeros(len(ids), bool), n_context=np.asarray(lengths, np.int64) + 60,
        brier=(lark * np.float32(0.98)), lark_brier=lark)
    return columns, contents


def aggregates_chunk(args) -> agg.RankAggregates:
    """Aggregates of trajectories drawn with (seed, lengths, params): a worker's unit."""
    seed, lengths, params, vocab = args
    rng = np.random.default_rng(seed)
    parts = [draw_scores(rng, int(n), p1, a, vocab) for n, (p1, a) in zip(lengths, params)]
    return agg.batch_aggregates(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                np.concatenate([p[2] for p in parts]), np.asarray(lengths))


def plan(args) -> list[tuple[str, str, str, int, int]]:
    """(trajectory_id, problem_id, teacher, run, teacher index) in write order (problem-major)."""
    return [(f"{TEACHERS[t % len(TEACHERS)]}/r{run}/{p:05d}", f"q{p:05d}", TEACHERS[t % len(TEACHERS)], run, t)
            for p in range(args.problems) for t in range(args.teachers) for run in range(1, args.runs + 1)]


def long_plan(args) -> list[tuple[str, str, str, str, int]]:
    """(trajectory_id, problem_id, teacher, run, teacher index) of the `--long` trajectories: run `long{j}` of a
    problem in the middle of the j-th of `long_count` equal slices of the problems that have per-token data, by
    teacher j (mod the teachers); [] without --long."""
    if not getattr(args, "long", 0):
        return []
    per_problem = args.teachers * args.runs
    with_tokens = max(1, min(args.problems, -(-min(args.token_trajectories, args.problems * per_problem)
                                             // per_problem)))
    out = []
    for j in range(args.long_count):
        p = (2 * j + 1) * with_tokens // (2 * args.long_count)
        t = j % args.teachers
        teacher = TEACHERS[t % len(TEACHERS)]
        out.append((f"{teacher}/long{j + 1}/{p:05d}", f"q{p:05d}", teacher, f"long{j + 1}", t))
    return out


def trajectories(rows, contents) -> list[Trajectory]:
    return [Trajectory(trajectory_id=tid, problem_id=pid, teacher=teacher, run=_run(run),
                       messages=[{"role": "user", "content": f"Synthetic problem {pid}."},
                                 {"role": "assistant", "content": text}],
                       source=f"synthetic/{teacher}/r{run}.jsonl", record=i + 1)
            for i, ((tid, pid, teacher, run, _), text) in enumerate(zip(rows, contents))]


def _run(run) -> str:
    """The run's name: r1, r2, ... for the plan's runs (numbers), as given for the long ones (`long1`, ...)."""
    return run if isinstance(run, str) else f"r{run}"


def table_rows(rows, aggregates: agg.RankAggregates, rng, same_pass: bool = False) -> pd.DataFrame:
    """The trajectory-table rows of the plan's `rows`; same_pass: with drawn Brier columns (results without
    tokens, where the store cannot compute them)."""
    frame = pd.DataFrame({"trajectory_id": [r[0] for r in rows], "problem_id": [r[1] for r in rows],
                          "teacher": [r[2] for r in rows], "run": [_run(r[3]) for r in rows], "student": STUDENT})
    for name, values in agg.metric_columns(aggregates, 100).items():
        frame[name] = values
    if same_pass:
        rho = rng.normal(0.3, 0.03, len(rows)).clip(0.05)
        frame["lark_rho"] = rho
        frame["lark_brier"] = rho * frame["avg_surprisal"].to_numpy()
        frame["brier"] = frame["lark_brier"] * 0.98
    frame["truncated"] = False
    frame["n_context"] = aggregates.n + 60
    frame["correct"] = pd.array(rng.random(len(rows)) < 0.6, dtype="boolean")
    frame["r_max"] = 100
    return frame


def generate(args) -> dict:
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(args.seed)
    vocab = vocabulary(args.vocab)
    vocab_np = np.array(vocab, dtype=object)
    rows = plan(args)
    n_tok = min(args.token_trajectories, len(rows))
    longs = long_plan(args)
    max_len = max(32768, (args.long + 60) if longs else 0)  # n_context = tokens + 60 must fit
    settings = StudentSettings(student=STUDENT, fingerprint="synthetic", dtype="float32", max_len=max_len, top_k=K)
    t0 = time.monotonic()
    with StoreWriter(out, settings, vocabulary=vocab) as writer:
        step = max(1, (1 << 18) // args.tokens)  # ~256k tokens per append
        for a in range(0, n_tok, step):
            batch = rows[a:min(a + step, n_tok)]
            lengths = np.full(len(batch), args.tokens)
            columns, contents = token_columns(rng, [r[0] for r in batch], lengths,
                                              [teacher_params(r[4]) for r in batch], vocab_np)
            result = writer.append_columns(trajectories(batch, contents), columns,
                                           table_rows(batch, columns.aggregates(), rng))
            assert not result.errors, result.errors[:3]
            print(f"\rper-token trajectories: {a + len(batch)}/{n_tok}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        for row in longs:  # one append each: a 32k-token trajectory is a row group of its own anyway
            columns, contents = token_columns(rng, [row[0]], np.array([args.long]), [teacher_params(row[4])],
                                              vocab_np)
            result = writer.append_columns(trajectories([row], contents), columns,
                                           table_rows([row], columns.aggregates(), rng))
            assert not result.errors, result.errors[:3]
        if longs:
            print(f"long trajectories ({args.long:,} tokens): {', '.join(r[0] for r in longs)}", file=sys.stderr)
        t_tokens = time.monotonic() - t0
        rest = rows[n_tok:]
        per_append = 8192
        jobs = [(args.seed * 1_000_003 + i, np.full(len(rest[i:i + AGG_CHUNK]), args.tokens),
                 [teacher_params(r[4]) for r in rest[i:i + AGG_CHUNK]], args.vocab)
                for i in range(0, len(rest), AGG_CHUNK)]
        done = 0
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            pending = []
            for chunk in pool.map(aggregates_chunk, jobs):
                pending.append(chunk)
                if sum(len(c) for c in pending) >= per_append:
                    done = _append_aggregates(writer, rest, done, pending, rng)
                    pending = []
                    print(f"\raggregate-only trajectories: {done}/{len(rest)}", end="", file=sys.stderr, flush=True)
            if pending:
                done = _append_aggregates(writer, rest, done, pending, rng)
        print(file=sys.stderr)
    seconds = time.monotonic() - t0
    return {"trajectories": len(rows) + len(longs), "token_trajectories": n_tok + len(longs),
            "tokens_per_trajectory": args.tokens, "long_tokens": args.long if longs else 0,
            "long_ids": [r[0] for r in longs], "student": STUDENT, "vocab": args.vocab, "generate_s": round(seconds, 1),
            "generate_tokens_part_s": round(t_tokens, 1),
            "disk": disk_usage(out)}


def _append_aggregates(writer, rest, done, pending, rng) -> int:
    aggregates = agg.concat_aggregates(pending)
    batch = rest[done:done + len(aggregates)]
    placeholder = ["(synthetic: per-token data not generated)"] * len(batch)
    result = writer.append_aggregates(trajectories(batch, placeholder), aggregates,
                                      table_rows(batch, aggregates, rng, same_pass=True))
    assert not result.errors, result.errors[:3]
    return done + len(batch)


def disk_usage(out: Path) -> dict:
    sizes = {"tokens": 0, "aggregates": 0, "meta": 0, "conversations": 0, "vocab": 0}
    for p in out.rglob("*"):
        if not p.is_file():
            continue
        kind = ("tokens" if p.name.endswith(".tokens.parquet") else "aggregates" if p.name.endswith(".aggs.arrow")
                else "meta" if p.name.endswith(".meta.parquet") else "conversations" if "conversations" in p.parts
                else "vocab" if "vocab" in p.parts else None)
        if kind:
            sizes[kind] += p.stat().st_size
    sizes["total"] = sum(sizes.values())
    return {k: round(v / 1e6, 1) for k, v in sizes.items()} | {"unit": "MB"}


def measure(out: Path, token_trajectories: int) -> dict:
    """Load the table and aggregates, recompute at several r_max, read trajectories: times and sizes."""
    store = ResultsStore(out)
    t = time.monotonic()
    table = store.trajectory_table(STUDENT)
    t_table = time.monotonic() - t
    t = time.monotonic()
    aggs = store.rank_aggregates(STUDENT)
    t_aggs = time.monotonic() - t
    recompute = {}
    for r_max in (1, 50, 100, 500, 10 ** 6):
        t = time.monotonic()
        agg.rmax_columns(aggs, r_max)
        recompute[r_max] = round(time.monotonic() - t, 3)
    ids = table["trajectory_id"].iloc[:token_trajectories].tolist()
    rng = np.random.default_rng(1)
    pick = [ids[i] for i in rng.choice(len(ids), size=min(20, len(ids)), replace=False)]
    cold = []
    for tid in pick:  # different row groups (mostly): each read decodes one row group
        t = time.monotonic()
        store.token_scores(STUDENT, tid)
        cold.append(time.monotonic() - t)
    t = time.monotonic()
    store.token_scores(STUDENT, pick[-1])
    warm = time.monotonic() - t
    n = len(aggs)
    return {"n": n, "table_load_s": round(t_table, 2),
            "table_memory_mb": round(table.memory_usage(deep=True).sum() / 1e6, 1),
            "aggregates_load_s": round(t_aggs, 2), "aggregates_mb": round(aggs.nbytes / 1e6, 1),
            "aggregate_bytes_per_trajectory": round(aggs.nbytes / max(n, 1)),
            "bins_per_trajectory": round(aggs.bin_rank.size / max(n, 1), 1),
            "singles_per_trajectory": round(aggs.single_rank.size / max(n, 1), 1),
            "recompute_s": recompute, "read_one_trajectory_ms": round(1000 * float(np.median(cold)), 1),
            "read_one_trajectory_cached_ms": round(1000 * warm, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def write_flat_files(folder: Path, args) -> dict:
    """The files `score --out X.parquet --tokens-out Y.parquet` writes, for every trajectory of the plan, with
    lengths uniform in [tokens / 2, 3 tokens / 2): the input of an import-scores benchmark."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    vocab_np = np.array(vocabulary(args.vocab), dtype=object)
    rows = plan(args)
    t0 = time.monotonic()
    table_writer = token_writer = None
    n_tokens = 0
    for a in range(0, len(rows), 5000):
        batch = rows[a:a + 5000]
        lengths = rng.integers(args.tokens // 2, args.tokens * 3 // 2, len(batch))
        columns, contents = token_columns(rng, [r[0] for r in batch], lengths,
                                          [teacher_params(r[4]) for r in batch], vocab_np)
        frame = table_rows(batch, columns.aggregates(), rng)
        ts = trajectories(batch, contents)
        frame["source"] = [t.source for t in ts]
        frame["record"] = [t.record for t in ts]
        frame["prompt"] = [t.prompt for t in ts]
        frame["messages"] = [json.dumps(t.messages, ensure_ascii=False) for t in ts]
        k = columns.top_ids.shape[1]
        seg = np.repeat(np.arange(len(batch)), lengths)
        tokens = pa.table({
            "trajectory_id": pa.array(np.array([r[0] for r in batch], dtype=object)[seg], pa.large_string()),
            "position": np.concatenate([np.arange(n) for n in lengths]), "token_id": columns.token_id,
            "token": pa.array(vocab_np[columns.token_id], pa.large_string()), "start": columns.start,
            "end": columns.end, "turn": columns.turn, "surprisal": columns.surprisal, "rank": columns.rank,
            "entropy": columns.entropy,
            "top_ids": pa.ListArray.from_arrays(pa.array(np.arange(0, columns.top_ids.size + 1, k, dtype=np.int32)),
                                                pa.array(columns.top_ids.ravel())),
            "top_tokens": pa.ListArray.from_arrays(
                pa.array(np.arange(0, columns.top_ids.size + 1, k, dtype=np.int32)),
                pa.array(vocab_np[columns.top_ids.ravel()], pa.string())),
            "top_probs": pa.ListArray.from_arrays(pa.array(np.arange(0, columns.top_ids.size + 1, k, dtype=np.int32)),
                                                  pa.array(columns.top_probs.ravel())),
            "truncated": np.zeros(seg.size, bool), "n_context": columns.n_context[seg]})
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if table_writer is None:
            table_writer = pq.ParquetWriter(folder / "trajectories.parquet", table.schema)
            token_writer = pq.ParquetWriter(folder / "tokens.parquet", tokens.schema)
        table_writer.write_table(table)
        token_writer.write_table(tokens)
        n_tokens += seg.size
        print(f"\rflat files: {a + len(batch)}/{len(rows)}", end="", file=sys.stderr, flush=True)
    table_writer.close()
    token_writer.close()
    print(file=sys.stderr)
    return {"trajectories": len(rows), "tokens": n_tokens, "seconds": round(time.monotonic() - t0, 1),
            "mb": {f.name: round(f.stat().st_size / 1e6, 1) for f in folder.iterdir() if f.is_file()}}


def bench_import(folder: Path) -> dict:
    """Time and peak memory of `import-scores` on the flat files in `folder` (a fresh process)."""
    store = folder / "store"
    if store.exists():
        shutil.rmtree(store)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "rsr_core", "import-scores", str(folder / "trajectories.parquet"),
                    str(folder / "tokens.parquet"), "--out", str(store)], cwd=ROOT, check=True)
    return {"seconds": round(time.monotonic() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            "store_mb": disk_usage(store)["total"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--small", action="store_true", help="990 trajectories x 2,000 tokens, all with tokens")
    p.add_argument("--teachers", type=int, default=11)
    p.add_argument("--problems", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--token-trajectories", type=int, default=5000)
    p.add_argument("--tokens", type=int, default=10000)
    p.add_argument("--long", type=int, default=0, help="add --long-count trajectories of this many tokens, with "
                                                       "per-token data (e.g. 32000 for the inspector)")
    p.add_argument("--long-count", type=int, default=1)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-measure", action="store_true")
    p.add_argument("--results", help="write the figures here instead of bench/results/store(-small).json; "
                                     "'none': write no file")
    p.add_argument("--measure-only", action="store_true", help="measure the store at --out again, do not write it")
    p.add_argument("--flat", action="store_true", help="write the flat files of `score` to --out instead, and time "
                                                       "import-scores on them (--tokens is then the mean length)")
    args = p.parse_args(argv)
    if args.small:
        args.problems, args.token_trajectories, args.tokens = 30, 990, 2000
    if args.flat:
        figures = {"flat_files": write_flat_files(Path(args.out), args)}
        figures["import"] = bench_import(Path(args.out))
        print(json.dumps(figures, indent=1))
        (ROOT / "bench" / "results" / "store-import.json").write_text(json.dumps(figures, indent=1) + "\n")
        return 0
    name = "store-small.json" if args.small else "store.json"
    results = None if args.results == "none" else Path(args.results) if args.results else \
        ROOT / "bench" / "results" / name
    if args.measure_only:
        figures = json.loads(results.read_text()) if results and results.exists() else {}
    else:
        figures = {"generate": generate(args)}
        print(json.dumps(figures["generate"], indent=1))
    if not args.no_measure:
        # a fresh process, so that the figures do not include the generator's memory
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from bench.synthetic_store import measure; "
                f"print(json.dumps(measure(__import__('pathlib').Path({str(args.out)!r}), {args.token_trajectories})))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        figures["measure"] = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(figures["measure"], indent=1))
    figures["machine"] = f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"
    if results is not None:
        results.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
