"""`import-scores TRAJECTORIES TOKENS --out STORE`: flat score files (`score --out`, `--tokens-out`) into a store."""
from __future__ import annotations

import argparse
import sys
import time

from rsr_core.commands import checks
from rsr_core.commands.score import report_errors


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("trajectories", help="trajectory table written by `score --out` (.parquet, .csv or .jsonl)")
    p.add_argument("tokens", help="token table written by `score --tokens-out` (.parquet)")
    p.add_argument("--out", required=True, help="results store folder (created if missing; an import resumes)")
    p.add_argument("--student", help="student name (default: the table's student column)")
    p.add_argument("--fingerprint", default="", help="the student's weight fingerprint, when known")
    p.add_argument("--dtype", default="", help="the dtype the scores were computed in, when known")
    p.add_argument("--max-len", type=checks.integer(0, "0: unknown"), default=0,
                   help="the truncation length used, when known")
    p.add_argument("--r-max", type=checks.integer(1, "ranks are clipped at r_max"), default=None,
                   help="r_max of the table's metric columns (default: its r_max column, else 100)")
    p.add_argument("--batch-tokens", type=checks.integer(1, "tokens per append"), default=None,
                   help="tokens per append (default 262144)")
    p.add_argument("--compact", action="store_true", help="merge all small parts at the end")


def check(args: argparse.Namespace) -> None:
    checks.check_not_an_input("--out", args.out, [args.trajectories, args.tokens])
    checks.check_store_output("--out", args.out)


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.store import StoreError
    from rsr_core.data.store_import import BATCH_TOKENS, import_flat_files

    started = time.monotonic()

    def progress(report) -> None:
        print(f"\rimported {report.written} trajectories, {report.tokens} tokens "
              f"({time.monotonic() - started:.0f} s)", end="", file=sys.stderr, flush=True)

    try:
        report = import_flat_files(args.trajectories, args.tokens, args.out, student=args.student,
                                   fingerprint=args.fingerprint, dtype=args.dtype, max_len=args.max_len,
                                   r_max=args.r_max, batch_tokens=args.batch_tokens or BATCH_TOKENS,
                                   compact=args.compact, progress=progress if sys.stderr.isatty() else None)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(("\n" if sys.stderr.isatty() else "") + f"error: {checks.fault_reason(e)} while importing into "
              f"{args.out}; what was committed before is kept there; {checks.fault_advice(e)} and run the same "
              "command to resume", file=sys.stderr)
        return 1
    if sys.stderr.isatty():
        print(file=sys.stderr)
    report_errors(report.errors, stream=sys.stderr)
    print(f"imported {report.written} trajectories ({report.tokens} tokens) of student {report.student} into "
          f"{args.out} in {time.monotonic() - started:.1f} s"
          + (f"; {report.skipped} already there" if report.skipped else "")
          + (f"; {len(report.errors)} records skipped" if report.errors else ""), file=sys.stderr)
    return 0 if report.written or report.skipped else 1
