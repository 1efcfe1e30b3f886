"""`score INPUT... --out OUT`: per-token scoring under a student, into a results store or a flat table.

Scored batches go to a results store as they are done (`rsr_core.data.store`): the `--out` store itself, or a
temporary one from which the flat files are exported at the end. So memory stays flat in the number of
trajectories, a stopped run into a store resumes without rescoring what it holds, and a flat `--out` is replaced
only by a complete table.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

from rsr_core.analysis.metrics import R_MAX
from rsr_core.data.tables import TABLE_SUFFIXES
from rsr_core.engine.chat_format import MAX_LEN

MAX_ERRORS_SHOWN = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL/JSON/Parquet/CSV files or folders")
    p.add_argument("--out", required=True,
                   help="a results store (a folder; resumed when it exists) or a trajectory table: .parquet, .csv "
                        "or .jsonl")
    p.add_argument("--tokens-out", help="per-token table (Parquet recommended)")
    p.add_argument("--student", default=None, help="embedded name, HF model id, model folder or .gguf file "
                                                   "(default: the embedded smollm2-135m-instruct)")
    p.add_argument("--r-max", type=int, default=R_MAX, help="rank clipping for RSR (default 100)")
    p.add_argument("--max-len", type=int, default=MAX_LEN, help="truncate (and flag) longer conversations")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, mps or cpu")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 elsewhere), float32 or bfloat16")
    p.add_argument("--cache-dir", default=None, help="score cache (default $RSR_CACHE_DIR or ~/.cache/rsr-explorer)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    p.add_argument("--token-budget", type=int, default=None, help="padded tokens per forward pass")
    p.add_argument("--prompt-field", help="plain-column input: the prompt column")
    p.add_argument("--response-field", nargs="+", metavar="FIELD",
                   help="plain-column input: the response column, or several (names or globs such as "
                        "'*_finetuning'), each a teacher of the same problems")
    p.add_argument("--reasoning-field", nargs="+", metavar="FIELD",
                   help="plain-column input: the reasoning column beside the response column (one per response "
                        "column; detected when unambiguous), scored as <think>REASONING</think> before the answer")
    p.add_argument("--plain-format", action="store_true",
                   help="render conversations in the plain format instead of the student's chat template")
    p.add_argument("--teacher", help="teacher name for every record (default: the record's, else the file's)")
    p.add_argument("--run", help="run name for every record")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="score on a Ray cluster through Ray Data: no ADDRESS starts a local one; 'auto' or "
                        "HOST:PORT joins a running cluster (one actor per GPU)")
    p.add_argument("--workers", type=int, default=None,
                   help="with --ray: scoring actors (default: one per GPU of the cluster, else one)")


def report_errors(errors, stream=sys.stderr) -> None:
    for e in errors[:MAX_ERRORS_SHOWN]:
        print(f"skipped: {e}", file=stream)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"skipped: ... and {len(errors) - MAX_ERRORS_SHOWN} more records", file=stream)


def is_store_target(path: str | Path) -> bool:
    """`--out` names a results store (a folder) unless it has a table suffix."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() not in TABLE_SUFFIXES


def read_inputs(args) -> tuple[list, list]:
    from rsr_core.data.formats import read_trajectories

    trajectories, errors = [], []
    for path in args.inputs:
        t, e = read_trajectories(path, prompt_field=args.prompt_field, response_field=args.response_field,
                                 reasoning_field=args.reasoning_field, teacher=args.teacher, run=args.run)
        trajectories += t
        errors += e
    return trajectories, errors


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.store import StoreError, StoreWriter
    from rsr_core.engine.pipeline import store_settings
    from rsr_core.engine.student import StudentError

    trajectories, errors = read_inputs(args)
    report_errors(errors)
    if not trajectories:
        print("error: no readable trajectory in the input", file=sys.stderr)
        return 2
    try:
        student, scorer = _local(args) if args.ray is None else _distributed(args)
    except StudentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    to_store = is_store_target(args.out)
    out = Path(args.out)
    if to_store:
        store_path = out
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        store_path = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".store", dir=out.parent))
    try:
        try:
            writer = StoreWriter(store_path, store_settings(student, args.max_len, args.plain_format))
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            status = _score_into(writer, trajectories, student, args, scorer)
        finally:
            writer.close()
            if args.ray is not None:
                from rsr_core.engine.distributed import shutdown

                shutdown()
        stopped, counts = status
        counts["skipped"] += len(errors)
        return _finish(store_path, student.name, trajectories, args, to_store, stopped, counts)
    finally:
        if not to_store:
            shutil.rmtree(store_path, ignore_errors=True)


def _local(args):
    """The student in this process, and a scorer running `score_trajectories` here."""
    from rsr_core.engine.pipeline import score_trajectories
    from rsr_core.engine.student import load_student

    student = load_student(args.student, device=args.device, dtype=args.dtype,
                           trust_remote_code=args.trust_remote_code)

    def scorer(todo, sink, progress):
        result = score_trajectories(todo, student, cache_dir=args.cache_dir, max_len=args.max_len,
                                    token_budget=args.token_budget, progress=progress, use_cache=not args.no_cache,
                                    plain_format=args.plain_format, sink=sink, keep=False)
        return result.errors, result.rewritten, result.stopped, result.cached
    return student, scorer


def _distributed(args):
    """The student's tokenizer and settings here (no model), and a scorer that runs on a Ray cluster."""
    from rsr_core.engine import distributed
    from rsr_core.engine.student import load_student

    device, dtype = distributed.cluster_device(None if args.ray == "local" else args.ray, args.device, args.dtype)
    student = load_student(args.student, device="cpu", dtype=dtype, trust_remote_code=args.trust_remote_code,
                           with_model=False)
    run = distributed.RayRun(student=args.student, address=None if args.ray == "local" else args.ray,
                             workers=args.workers, device=device, dtype=dtype, max_len=args.max_len,
                             token_budget=args.token_budget, plain_format=args.plain_format,
                             trust_remote_code=args.trust_remote_code)

    def scorer(todo, sink, progress):
        try:
            result = distributed.score_with_ray(todo, run, student.tokenizer, sink, progress)
        except KeyboardInterrupt:
            return [], 0, True, 0
        return result.errors, result.rewritten, False, 0
    return student, scorer


def _score_into(writer, trajectories, student, args, scorer) -> tuple[bool, dict]:
    """Score what the store does not hold yet, batch by batch into it. Returns (stopped, counts of cached,
    resumed and skipped trajectories)."""
    from tqdm import tqdm

    from rsr_core.data.formats import RecordError
    from rsr_core.engine.pipeline import rewrite_notes, store_sink

    changed = writer.changed(trajectories)
    for tid, problem in list(changed.items())[:MAX_ERRORS_SHOWN]:
        print(f"skipped: {tid}: {problem} in {writer.root} (scored from another text: write to a new store)",
              file=sys.stderr)
    done = writer.committed_ids
    todo = [t for t in trajectories if t.trajectory_id not in done and t.trajectory_id not in changed]
    n_reasoning = sum(t.has_reasoning for t in trajectories)
    where = f"a Ray cluster ({args.ray})" if args.ray is not None else str(student.device)
    print(f"student {student.name} ({student.fingerprint}) on {where}, {str(student.dtype)[6:]}; "
          f"{len(trajectories)} trajectories" + (f", {n_reasoning} with reasoning (scored as <think> ... </think> "
                                                 "before the answer)" if n_reasoning else "")
          + (f"; {len(trajectories) - len(todo) - len(changed)} already in {writer.root}" if done else ""),
          file=sys.stderr)
    bar = tqdm(total=len(todo), unit="traj", desc="scoring", file=sys.stderr, dynamic_ncols=True)
    refused: list[str] = []

    def progress(state) -> None:
        bar.total = state.total
        bar.n = state.done
        bar.set_postfix_str(f"{state.tokens_per_s:.0f} tok/s, {state.cached} cached", refresh=False)
        bar.refresh()

    errors, rewritten, stopped, cached = scorer(todo, store_sink(writer, student.name, refused), progress)
    bar.close()
    for note in rewrite_notes(rewritten):
        print(f"note: {note}", file=sys.stderr)
    report_errors(errors + [RecordError(str(writer.root), None, m) for m in refused])
    return stopped, {"cached": cached, "resumed": len(trajectories) - len(todo) - len(changed),
                     "skipped": len(errors) + len(refused) + len(changed)}


def _finish(store_path: Path, student: str, trajectories, args, to_store: bool, stopped: bool, counts: dict) -> int:
    """Write the flat outputs and the summary from the store."""
    from rsr_core.data.exports import scored_table, write_token_table, write_trajectory_table
    from rsr_core.data.store import ResultsStore

    store = ResultsStore(store_path)
    held = store.scored_ids(student) if student in store.students() else set()
    ids = [t.trajectory_id for t in trajectories if t.trajectory_id in held]
    if not ids:
        print("error: nothing could be scored", file=sys.stderr)
        return 1
    if stopped and not to_store:
        print(f"interrupted: {args.out} was not written; what was scored is in the cache and the next run resumes "
              "from there", file=sys.stderr)
        return 130
    table = scored_table(store, student, ids, args.r_max)
    if not to_store:
        write_trajectory_table(store, student, args.out, ids, args.r_max)
    if args.tokens_out:
        write_token_table(store, student, args.tokens_out, ids)
    _summary(table, args, to_store, counts)
    if stopped:
        print(f"interrupted: {len(ids)} of {len(trajectories)} trajectories are in {args.out}; run the same command "
              "to score the rest", file=sys.stderr)
        return 130
    return 0


def _summary(table, args, to_store: bool, counts: dict) -> None:
    n_trunc = int(table["truncated"].sum())
    partial = table[table["coverage"] < 1.0] if "coverage" in table else table.iloc[:0]
    for _, row in partial.head(MAX_ERRORS_SHOWN).iterrows():
        print(f"coverage: {row['trajectory_id']} scored {row['coverage']:.1%} of its response characters"
              + (" (truncated at --max-len)" if row["truncated"] else ""), file=sys.stderr)
    undefined = int(table["rsr"].map(lambda v: not math.isfinite(v)).sum())
    where = f"the store {args.out}" if to_store else str(args.out)
    notes = [f"{counts['cached']} from cache", f"{counts['resumed']} already in the store" if counts["resumed"] else "",
             f"{n_trunc} truncated at {args.max_len} tokens" if n_trunc else "",
             f"{len(partial)} with coverage below 1.0 (min {partial['coverage'].min():.1%})" if len(partial) else "",
             f"{undefined} with undefined RSR (zero surprisal)" if undefined else "",
             f"{counts['skipped']} records skipped" if counts["skipped"] else ""]
    print(f"wrote {len(table)} trajectories to {where} ({', '.join(n for n in notes if n)})", file=sys.stderr)
