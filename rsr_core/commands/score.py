"""`score INPUT... --out OUT`: per-token scoring under a student, into a results store or a flat table.

Scored batches go to a results store as they are done (`rsr_core.data.store`): the `--out` store itself, or a
temporary one from which the flat files are exported at the end. So memory stays flat in the number of
trajectories, a stopped run into a store resumes without rescoring what it holds, and a flat `--out` is replaced
only by a complete table.

`check` refuses unusable arguments and paths before anything is read or loaded (exit 2). A fault while writing
(a full disk, a read-only folder) ends the run with a message naming the path and what is kept (exit 1); a cache
that cannot be written is reported once and scoring goes on without it.
"""
from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rsr_core.analysis.metrics import R_MAX, SAME_PASS_METRICS
from rsr_core.commands import checks
from rsr_core.commands.checks import UsageError, fault_advice, fault_reason, is_store_target
from rsr_core.engine.chat_format import MAX_LEN

MAX_ERRORS_SHOWN = 20
PROGRESS_REFRESH_S = 0.2  # the bar redraws at most this often within a forward pass
LOG_EVERY_S = 10.0  # where stderr is not a terminal (a log file): a plain progress line this often


class OutputFault(Exception):
    """An OSError while writing an output (`path`): the store, a flat table or the token table."""

    def __init__(self, path: str | Path, error: OSError):
        super().__init__(f"{path}: {error}")
        self.path, self.error = Path(path), error


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL/JSON/Parquet/CSV files or folders")
    p.add_argument("--out", required=True,
                   help="a results store (a folder; resumed when it exists) or a trajectory table: .parquet, .csv "
                        "or .jsonl")
    p.add_argument("--tokens-out", help="per-token table (Parquet recommended)")
    p.add_argument("--student", default=None, help="embedded name, HF model id, model folder or .gguf file "
                                                   "(default: the embedded smollm2-135m-instruct)")
    p.add_argument("--r-max", type=checks.integer(1, "ranks are clipped at r_max; the paper uses 100"),
                   default=R_MAX, help="rank clipping for RSR, at least 1 (default 100)")
    p.add_argument("--max-len", type=checks.integer(2, "a conversation needs a token of context and one to score"),
                   default=MAX_LEN, help="truncate (and flag) longer conversations, at least 2 tokens")
    p.add_argument("--device", type=checks.device_name, default="auto",
                   help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    p.add_argument("--dtype", type=checks.dtype_name, default="auto",
                   help="auto (bf16 on cuda, fp32 elsewhere), float32, bfloat16 or float16")
    p.add_argument("--cache-dir", default=None, help="score cache (default $RSR_CACHE_DIR or ~/.cache/rsr-explorer)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    p.add_argument("--token-budget", type=checks.integer(1, "padded tokens per forward pass"), default=None,
                   help="padded tokens per forward pass")
    p.add_argument("--prompt-field", help="plain-column input: the prompt column")
    p.add_argument("--response-field", nargs="+", metavar="FIELD",
                   help="plain-column input: the response column, or several (names or globs such as "
                        "'*_finetuning'), each a teacher of the same problems")
    p.add_argument("--reasoning-field", nargs="+", metavar="FIELD",
                   help="plain-column input: the reasoning column beside the response column (one per response "
                        "column; detected when unambiguous), scored as <think>REASONING</think> before the answer")
    p.add_argument("--correct-field", metavar="FIELD",
                   help="the correctness label: one per record, or a list aligned with a list of candidates "
                        "(detected: correctness_math_verify, is_correct, correct)")
    p.add_argument("--reference-field", metavar="FIELD",
                   help="the reference answer: responses the data does not label are checked against it with "
                        "math-verify (correct, correct_source)")
    p.add_argument("--plain-format", action="store_true",
                   help="render conversations in the plain format instead of the student's chat template")
    p.add_argument("--teacher", help="teacher name for every record (default: the record's, else the file's)")
    p.add_argument("--run", help="run name for every record")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="score on a Ray cluster through Ray Data: no ADDRESS starts a local one; 'auto' or "
                        "HOST:PORT joins a running cluster (one actor per GPU)")
    p.add_argument("--workers", type=checks.integer(1, "scoring actors"), default=None,
                   help="with --ray: scoring actors (default: one per GPU of the cluster, else one)")


def check(args: argparse.Namespace) -> None:
    """Everything that can be known wrong before reading the inputs or loading the student (UsageError): the
    device, the output paths (suffix, a writable folder, an existing store, not an input), the cache folder (one
    that cannot be written is a warning: its entries are still read) and the student (a missing or non-GGUF file,
    a folder that is not a model, a hub id that cannot be fetched now)."""
    from rsr_core.data.paths import cache_root
    from rsr_core.data.store import writer_problem
    from rsr_core.data.students import student_name, student_problem

    if args.ray is None:
        checks.check_device(args.device)
    checks.check_not_an_input("--out", args.out, args.inputs)
    if is_store_target(args.out):
        checks.check_store_output("--out", args.out)
    else:
        checks.check_table_output("--out", args.out)
    if args.tokens_out:
        checks.check_not_an_input("--tokens-out", args.tokens_out, args.inputs)
        checks.check_table_output("--tokens-out", args.tokens_out)
        if Path(args.tokens_out).expanduser().resolve() == Path(args.out).expanduser().resolve():
            raise UsageError(f"--tokens-out {args.tokens_out} is also --out; give two different files")
    args.cache_problem = None
    if not args.no_cache:
        where = Path(args.cache_dir).expanduser() if args.cache_dir is not None else cache_root()
        problem = checks.check_cache_dir(where, given=args.cache_dir is not None)
        if problem:
            readable = where.is_dir()
            print(f"warning: the score cache at {where} cannot be written ({problem}); "
                  + ("its entries are used, new results are not cached" if readable else "going on without it")
                  + " (--cache-dir DIR names another)", file=sys.stderr)
            args.cache_problem, args.no_cache = problem, not readable
    problem = student_problem(args.student)
    if problem:
        raise UsageError(f"--student: {problem}")
    if is_store_target(args.out):
        problem = writer_problem(args.out, student_name(args.student))
        if problem:
            raise UsageError(f"--out {args.out}: {problem}")


def report_errors(errors, stream=None) -> None:
    stream = stream or sys.stderr
    for e in errors[:MAX_ERRORS_SHOWN]:
        print(f"skipped: {e}", file=stream)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"skipped: ... and {len(errors) - MAX_ERRORS_SHOWN} more records", file=stream)


def read_inputs(args):
    """The inputs as an `InputSet`: files found, ids kept apart across them, read in batches."""
    from rsr_core.data.formats import InputSet
    from rsr_core.data.records import RecordOptions

    options = RecordOptions.of(args.prompt_field, args.response_field, args.reasoning_field,
                               correct_field=args.correct_field, reference_field=args.reference_field,
                               teacher=args.teacher)
    return InputSet(args.inputs, options, args.run)


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.store import StoreError
    from rsr_core.engine.student import StudentError, load_model

    inputs = read_inputs(args)
    batches = inputs.batches()
    first, errors = next(batches)
    report_errors(errors)
    if not first:
        print("error: no readable trajectory in the input", file=sys.stderr)
        return 2
    told = _tell(inputs.notes, set())
    if not sys.stderr.isatty():  # a log file: no carriage-return bars from the model loaders either
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    try:
        student, scorer = _local(args) if args.ray is None else _distributed(args)
    except StudentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    to_store = is_store_target(args.out)
    out = Path(args.out)
    store_path, writer = (out if to_store else None), None
    restore_logging = _warnings_to_stderr()
    try:
        if store_path is None:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_stores(out)
                store_path = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".store", dir=out.parent))
            except OSError as e:
                raise OutputFault(out, e) from e
        try:  # the store is checked and locked before the weights are loaded
            writer = _open_writer(store_path, student, args)
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.ray is None:
            try:
                warn_slow_dtype(student)
                load_model(student)
            except StudentError as e:
                writer.close()
                print(f"error: {e}", file=sys.stderr)
                return 2
        run = _Run(writer, student, args, scorer, skipped=len(errors))
        try:
            run.score(first, more=True)
            for batch, errs in batches:
                report_errors(errs)
                run.counts["skipped"] += len(errs)
                if run.stopped:
                    break
                run.score(batch)
        finally:
            try:
                run.close()
            finally:
                writer.close()
            if args.ray is not None:
                from rsr_core.engine.distributed import shutdown

                shutdown()
        _tell(inputs.notes, told)
        return _finish(store_path, student.name, run.ids, args, to_store, run.stopped, run.counts)
    except OutputFault as fault:
        return _write_failed(fault, args, to_store, writer)
    finally:
        restore_logging()
        if not to_store and store_path is not None:
            shutil.rmtree(store_path, ignore_errors=True)


def remove_stale_stores(out: Path) -> None:
    """Remove the temporary stores that killed runs writing `out` left beside it (`.NAME.*.store`, no writer
    holds their lock any more)."""
    from rsr_core.data.store_files import held_by_a_writer

    for folder in out.parent.glob(f".{out.name}.*.store"):
        if folder.is_dir() and not held_by_a_writer(folder):
            shutil.rmtree(folder, ignore_errors=True)


def warn_slow_dtype(student) -> None:
    """Say before scoring when bf16 on this CPU is far slower than fp32 (no bf16 matrix units)."""
    from rsr_core.engine.cpu import slow_dtype_warning

    warning = slow_dtype_warning(student.device, student.dtype)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _tell(notes: list[str], told: set[str]) -> set[str]:
    """Print the notes not printed yet (`note: ...`); returns those printed so far."""
    for note in notes:
        if note not in told:
            print(f"note: {note}", file=sys.stderr)
            told.add(note)
    return told


def _open_writer(store_path: Path, student, args):
    from rsr_core.data.store import StoreWriter
    from rsr_core.engine.pipeline import store_settings

    try:
        return StoreWriter(store_path, store_settings(student, args.max_len, args.plain_format))
    except OSError as e:
        raise OutputFault(store_path, e) from e


def _warnings_to_stderr():
    """Show the engine's warnings (a cache that cannot be written, a corrupt cache entry) as `warning: ...` lines
    that do not break the progress bar; returns the function that puts logging back as it was."""
    from tqdm import tqdm

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(f"warning: {record.getMessage()}", file=sys.stderr)

    handler = Handler(logging.WARNING)
    logger = logging.getLogger("rsr_core")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return restore


def _cache_place(args) -> str | None:
    """Where what this run scored is cached, or None (no cache, a distributed run, or a cache that failed)."""
    cache = getattr(args, "cache", None)
    return None if cache is None or cache.unwritable else str(cache.base)


def _write_failed(fault: OutputFault, args, to_store: bool, writer) -> int:
    """The message for a fault while writing an output: the path, the reason, what is kept, what to do. Exit 1."""
    reason, advice = fault_reason(fault.error), fault_advice(fault.error)
    cache = _cache_place(args)
    in_cache = (f"the scored trajectories are in the cache at {cache}" if cache
                else "trajectories scored but not committed are lost (no cache)")
    tokens = args.tokens_out and fault.path == Path(args.tokens_out)
    if tokens:
        kept = (f"{args.tokens_out} was not written (an existing file there is unchanged); "
                + (f"the results are in the store {args.out}" if to_store else f"{args.out} was written"))
        again = "run the same command again" + ("" if to_store or cache else " (it scores everything again)")
    elif to_store:
        n = len(writer) if writer is not None else 0
        kept = (f"the {n:,} trajectories committed before are kept there, and {in_cache}" if n
                else f"nothing was committed there; {in_cache}")
        again = "run the same command to resume"
    else:
        kept = f"{args.out} was not written (an existing file there is unchanged); {in_cache}"
        again = "run the same command" + (": they will not be scored again" if cache else "")
    where = fault.path if tokens or to_store else Path(args.out)  # not the temporary store beside a flat --out
    print(f"error: {reason} writing {where}; {kept}; {advice} and {again}", file=sys.stderr)
    return 1


def _local(args):
    """The student in this process (its weights loaded once its store is open: `load_model`), and a scorer running
    `score_trajectories` here."""
    from rsr_core.data.paths import cache_root
    from rsr_core.engine.cache import ScoreCache
    from rsr_core.engine.pipeline import score_trajectories
    from rsr_core.engine.student import load_student

    args.cache = None if args.no_cache else ScoreCache(args.cache_dir or cache_root())
    if args.cache is not None:
        args.cache.unwritable = getattr(args, "cache_problem", None)  # found by `check`, reported there
    student = load_student(args.student, device=args.device, dtype=args.dtype,
                           trust_remote_code=args.trust_remote_code, with_model=False)

    def scorer(todo, sink, progress):
        result = score_trajectories(todo, student, max_len=args.max_len, token_budget=args.token_budget,
                                    progress=progress, use_cache=args.cache is not None, cache=args.cache,
                                    plain_format=args.plain_format, sink=sink, keep=False)
        return result.errors, result.rewritten, len(result.canonical_tools_ids), result.stopped, result.cached
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
            return [], 0, 0, True, 0
        return result.errors, result.rewritten, result.canonical_tools, False, 0
    return student, scorer


class _Run:
    """One `score` run into a store, batch of input by batch: what it skipped, resumed, scored and noted."""

    def __init__(self, writer, student, args, scorer, skipped: int = 0):
        from tqdm import tqdm

        from rsr_core.engine.pipeline import FillingSink

        self.writer, self.student, self.args, self.scorer = writer, student, args, scorer
        self.lacking = writer.lacking_ids()  # held without the same-pass columns: rescored to fill them
        self.ids: list[str] = []
        self.counts = {"cached": 0, "resumed": 0, "skipped": skipped}
        self.errors: list = []
        self.refused: list[str] = []
        self.rewritten = self.canonical_tools = 0
        self.stopped = False
        self.base = 0  # trajectories of earlier batches, done
        # the time left is ScoringProgress.seconds_left, the app's estimate (tqdm's own would count cached and
        # resumed trajectories into the rate)
        self.bar = (tqdm(total=0, unit="traj", desc="scoring", file=sys.stderr, dynamic_ncols=True,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
                    if sys.stderr.isatty() else None)  # a log file gets a plain line every LOG_EVERY_S instead
        self.shown = {"at": 0.0, "done": -1, "logged": time.monotonic()}
        self.commit = FillingSink(writer, student.name, self.refused)

        def sink(pairs) -> None:
            try:
                self.commit(pairs)
            except OSError as e:
                raise OutputFault(writer.root, e) from e
        self.sink = sink

    def progress(self, state) -> None:
        from rsr_core.engine.job import format_seconds

        now = time.monotonic()
        left = (f", about {format_seconds(state.seconds_left)} left" if state.seconds_left is not None else "")
        if self.bar is None:
            if now - self.shown["logged"] >= LOG_EVERY_S:
                self.shown["logged"] = now
                inside = state.describe_pass()
                print(f"scoring: {self.base + state.done:,} / {self.base + state.total:,} trajectories, "
                      f"{state.tokens_per_s:,.0f} tokens/s, {self.counts['cached'] + state.cached:,} cached"
                      + left + (f"; {inside}" if inside else ""), file=sys.stderr, flush=True)
            return
        if state.done == self.shown["done"] and now - self.shown["at"] < PROGRESS_REFRESH_S:
            return  # within a forward pass: a few redraws a second are enough
        self.shown.update(at=now, done=state.done)
        self.bar.total = self.base + state.total
        self.bar.n = self.base + state.done
        inside = state.describe_pass()
        self.bar.set_postfix_str(f"{state.tokens_per_s:.0f} tok/s, {self.counts['cached'] + state.cached} cached"
                                 + left + (f"; {inside}" if inside else ""), refresh=False)
        self.bar.refresh()

    def score(self, trajectories: list, more: bool = False) -> None:
        """Score one batch of the input: what the store does not hold yet, batch by batch into it."""
        writer, args = self.writer, self.args
        changed = writer.changed(trajectories)
        for tid, problem in list(changed.items())[:MAX_ERRORS_SHOWN]:
            print(f"skipped: {tid}: {problem} in {writer.root} (scored from another text: write to a new store)",
                  file=sys.stderr)
        todo = [t for t in trajectories if (t.trajectory_id not in writer or t.trajectory_id in self.lacking)
                and t.trajectory_id not in changed]
        filling = sum(t.trajectory_id in writer for t in todo)
        resumed = len(trajectories) - len(todo) - len(changed)
        if filling:
            print(f"note: {filling} trajectories in {writer.root} were stored without the same-pass columns "
                  f"({', '.join(SAME_PASS_METRICS)}); scoring them again to add them (their other numbers stay as "
                  "they are)", file=sys.stderr)
        if not self.ids:  # the first batch: say what is about to happen
            n_reasoning = sum(t.has_reasoning for t in trajectories)
            where = f"a Ray cluster ({args.ray})" if args.ray is not None else str(self.student.device)
            print(f"student {self.student.name} ({self.student.fingerprint}) on {where}, "
                  f"{str(self.student.dtype)[6:]}; {len(trajectories)} trajectories"
                  + (" in the first batch of the input" if more and len(trajectories) >= self._batch_size() else "")
                  + (f", {n_reasoning} with reasoning (scored as <think> ... </think> before the answer)"
                     if n_reasoning else "")
                  + (f"; {resumed} already in {writer.root}" if resumed else ""), file=sys.stderr)
        self.ids += [t.trajectory_id for t in trajectories]
        try:
            errors, rewritten, canonical_tools, stopped, cached = self.scorer(todo, self.sink, self.progress)
        finally:
            self.base += len(todo)
        self.errors += errors
        self.rewritten += rewritten
        self.canonical_tools += canonical_tools
        self.stopped = stopped
        self.counts["cached"] += cached
        self.counts["resumed"] += resumed
        self.counts["skipped"] += len(errors) + len(changed)

    @staticmethod
    def _batch_size() -> int:
        from rsr_core.data.formats import BATCH_TRAJECTORIES

        return BATCH_TRAJECTORIES

    def close(self) -> None:
        from rsr_core.data.formats import RecordError
        from rsr_core.engine.pipeline import rewrite_notes

        try:
            self.commit.flush()
        except OSError as e:
            raise OutputFault(self.writer.root, e) from e
        finally:
            if self.bar is not None:
                self.bar.close()
        self.counts["filled"] = len(self.commit.filled)
        for note in rewrite_notes(self.rewritten, self.canonical_tools):
            print(f"note: {note}", file=sys.stderr)
        report_errors(self.errors + [RecordError(str(self.writer.root), None, m) for m in self.refused])
        self.counts["skipped"] += len(self.refused)


def _finish(store_path: Path, student: str, read_ids: list[str], args, to_store: bool, stopped: bool,
            counts: dict) -> int:
    """Write the flat outputs and the summary from the store."""
    from rsr_core.data.exports import scored_table, write_token_table, write_trajectory_table
    from rsr_core.data.store import ResultsStore

    store = ResultsStore(store_path)
    held = store.scored_index(student) if student in store.students() else ()
    ids = [tid for tid in read_ids if tid in held]
    if not ids and stopped:
        print("interrupted: nothing was scored"
              + ("" if to_store else f"; {args.out} was not written (an existing file there is unchanged)"),
              file=sys.stderr)
        return 130
    if not ids:
        print("error: nothing could be scored", file=sys.stderr)
        return 1
    if stopped and not to_store:
        kept = ("what was scored is in the cache and the next run resumes from there" if _cache_place(args)
                else "what was scored is lost (no cache)")
        print(f"interrupted: {args.out} was not written (an existing file there is unchanged); {kept}",
              file=sys.stderr)
        return 130
    table = scored_table(store, student, ids, args.r_max)
    if not to_store:
        try:
            write_trajectory_table(store, student, args.out, ids, args.r_max)
        except OSError as e:
            raise OutputFault(args.out, e) from e
    if args.tokens_out:
        try:
            write_token_table(store, student, args.tokens_out, ids)
        except OSError as e:
            raise OutputFault(args.tokens_out, e) from e
    _summary(table, args, to_store, counts)
    if stopped:
        print(f"interrupted: {len(ids)} of {len(read_ids)} trajectories read are in {args.out}; run the same "
              "command to score the rest", file=sys.stderr)
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
             f"{counts['filled']} given the same-pass columns" if counts.get("filled") else "",
             f"{n_trunc} truncated at {args.max_len} tokens" if n_trunc else "",
             f"{len(partial)} with coverage below 1.0 (min {partial['coverage'].min():.1%})" if len(partial) else "",
             f"{undefined} with undefined RSR (zero surprisal)" if undefined else "",
             f"{counts['skipped']} record{'' if counts['skipped'] == 1 else 's'} skipped" if counts["skipped"]
             else ""]
    print(f"wrote {len(table)} trajectories to {where} ({', '.join(n for n in notes if n)})", file=sys.stderr)
