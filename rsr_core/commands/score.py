"""`score INPUT... --out FILE`: per-token scoring under a student, written as the trajectory table."""
from __future__ import annotations

import argparse
import math
import sys

from rsr_core.analysis.metrics import R_MAX
from rsr_core.engine.chat_format import MAX_LEN

MAX_ERRORS_SHOWN = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL/JSON/Parquet/CSV files or folders")
    p.add_argument("--out", required=True, help="trajectory table: .parquet, .csv or .jsonl")
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


def report_errors(errors, stream=sys.stderr) -> None:
    for e in errors[:MAX_ERRORS_SHOWN]:
        print(f"skipped: {e}", file=stream)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"skipped: ... and {len(errors) - MAX_ERRORS_SHOWN} more records", file=stream)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rsr_core.data.formats import read_trajectories
    from rsr_core.engine.pipeline import score_trajectories
    from rsr_core.engine.student import StudentError, load_student
    from rsr_core.data.tables import token_table, trajectory_table, write_table

    trajectories, errors = [], []
    for path in args.inputs:
        t, e = read_trajectories(path, prompt_field=args.prompt_field, response_field=args.response_field,
                                 reasoning_field=args.reasoning_field, teacher=args.teacher, run=args.run)
        trajectories += t
        errors += e
    report_errors(errors)
    if not trajectories:
        print("error: no readable trajectory in the input", file=sys.stderr)
        return 2
    try:
        student = load_student(args.student, device=args.device, dtype=args.dtype,
                               trust_remote_code=args.trust_remote_code)
    except StudentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_reasoning = sum(t.has_reasoning for t in trajectories)
    print(f"student {student.name} ({student.fingerprint}) on {student.device}, {str(student.dtype)[6:]}; "
          f"{len(trajectories)} trajectories" + (f", {n_reasoning} with reasoning (scored as <think> ... </think> "
                                                 "before the answer)" if n_reasoning else ""), file=sys.stderr)
    bar = tqdm(total=len(trajectories), unit="traj", desc="scoring", file=sys.stderr, dynamic_ncols=True)

    def progress(state) -> None:
        bar.total = state.total
        bar.n = state.done
        bar.set_postfix_str(f"{state.tokens_per_s:.0f} tok/s, {state.cached} cached", refresh=False)
        bar.refresh()

    result = score_trajectories(trajectories, student, cache_dir=args.cache_dir, max_len=args.max_len,
                                token_budget=args.token_budget, progress=progress,
                                use_cache=not args.no_cache, plain_format=args.plain_format)
    bar.close()
    for note in result.notes():
        print(f"note: {note}", file=sys.stderr)
    report_errors(result.errors)
    table = trajectory_table(trajectories, result.scores, student.name, args.r_max)
    if table.empty:
        print("error: nothing could be scored", file=sys.stderr)
        return 1
    write_table(table, args.out)
    if args.tokens_out:
        write_table(token_table({t: result.scores[t] for t in table["trajectory_id"]}), args.tokens_out)
    n_trunc = int(table["truncated"].sum())
    partial = table[table["coverage"] < 1.0]
    for _, row in partial.head(MAX_ERRORS_SHOWN).iterrows():
        print(f"coverage: {row['trajectory_id']} scored {row['coverage']:.1%} of its response characters"
              + (" (truncated at --max-len)" if row["truncated"] else ""), file=sys.stderr)
    undefined = int(table["rsr"].map(lambda v: not math.isfinite(v)).sum())
    print(f"wrote {len(table)} trajectories to {args.out} ({result.cached} from cache"
          + (f", {n_trunc} truncated at {args.max_len} tokens" if n_trunc else "")
          + (f", {len(partial)} with coverage below 1.0 (min {partial['coverage'].min():.1%})" if len(partial) else "")
          + (f", {undefined} with undefined RSR (zero surprisal)" if undefined else "")
          + (f", {len(errors) + len(result.errors)} records skipped" if errors or result.errors else "") + ")",
          file=sys.stderr)
    if result.stopped:
        print("interrupted: the rest resumes from the cache on the next run", file=sys.stderr)
        return 130
    return 0
