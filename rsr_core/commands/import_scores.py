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
    p.add_argument("--student", help="the student the scores are of: an embedded name, a model folder, a .gguf file "
                                     "or a hub id, so that its settings are recorded and `score` can add to the "
                                     "results (default: the table's student column)")
    p.add_argument("--dtype", type=checks.dtype_name, default="auto",
                   help="the dtype the scores were computed in (default auto: what `score` uses on this machine, "
                        "float32 on a CPU, bfloat16 on a GPU)")
    p.add_argument("--max-len", type=checks.integer(2, "a conversation needs a token of context and one to score"),
                   default=None, help="the truncation length used (default: score's default, 32768)")
    p.add_argument("--plain-format", action="store_true",
                   help="the scores were computed in the plain format (`score --plain-format`)")
    p.add_argument("--fingerprint", default=None, help="the student's weight fingerprint, when the student cannot be "
                                                       "loaded here")
    p.add_argument("--r-max", type=checks.integer(1, "ranks are clipped at r_max"), default=None,
                   help="r_max of the table's metric columns (default: its r_max column, else 100)")
    p.add_argument("--batch-tokens", type=checks.integer(1, "tokens per append"), default=None,
                   help="tokens per append (default 262144)")
    p.add_argument("--compact", action="store_true", help="merge all small parts at the end")


def check(args: argparse.Namespace) -> None:
    checks.check_not_an_input("--out", args.out, [args.trajectories, args.tokens])
    checks.check_store_output("--out", args.out)


def recorded_settings(args: argparse.Namespace, name: str):
    """The settings of the student the scores are of, as `score` would record them (loaded without its weights),
    and a note on what was recorded; settings that say nothing of the weights when the student cannot be found."""
    from rsr_core.data.store import StudentSettings
    from rsr_core.engine.chat_format import MAX_LEN
    from rsr_core.engine.pipeline import store_settings
    from rsr_core.engine.student import StudentError, load_student

    max_len = args.max_len or MAX_LEN
    try:
        student = load_student(args.student or name, device="cpu" if args.dtype != "auto" else "auto",
                               dtype=args.dtype, with_model=False)
    except StudentError as e:
        settings = StudentSettings(student=name, fingerprint=args.fingerprint or "",
                                   dtype="" if args.dtype == "auto" else args.dtype, max_len=args.max_len or 0)
        return settings, (f"the student {args.student or name!r} cannot be loaded here ({e}), so the settings its "
                          "scores were computed with are not all known and `score` cannot add to these results; "
                          "name the student with --student NAME_OR_PATH to record them")
    settings = store_settings(student, max_len, args.plain_format)
    if args.fingerprint:
        settings.fingerprint = args.fingerprint
    return settings, (f"recorded the settings of student {settings.student!r}: weights {settings.fingerprint}, dtype "
                      f"{settings.dtype}, max_len {settings.max_len}, rendering {settings.extra['rendering']}; "
                      f"`score --student {args.student or name} --dtype {settings.dtype}` adds to these results "
                      "(give --dtype, --max-len or --plain-format here if the scores were computed otherwise)")


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.store import StoreError
    from rsr_core.data.store_import import BATCH_TOKENS, import_flat_files, table_student

    started = time.monotonic()
    try:
        name = table_student(args.trajectories, args.student)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings, said = recorded_settings(args, name)

    def progress(report) -> None:
        print(f"\rimported {report.written} trajectories, {report.tokens} tokens "
              f"({time.monotonic() - started:.0f} s)", end="", file=sys.stderr, flush=True)

    try:
        report = import_flat_files(args.trajectories, args.tokens, args.out, student=settings.student,
                                   r_max=args.r_max, batch_tokens=args.batch_tokens or BATCH_TOKENS,
                                   compact=args.compact, progress=progress if sys.stderr.isatty() else None,
                                   settings=settings)
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
    print(f"note: {said}", file=sys.stderr)
    print(f"imported {report.written} trajectories ({report.tokens} tokens) of student {report.student} into "
          f"{args.out} in {time.monotonic() - started:.1f} s"
          + (f"; {report.skipped} already there" if report.skipped else "")
          + (f"; {len(report.errors)} record{'' if len(report.errors) == 1 else 's'} skipped" if report.errors
             else ""), file=sys.stderr)
    return 0 if report.written or report.skipped else 1
