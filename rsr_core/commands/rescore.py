"""`rescore EDITS --store STORE`: score edited versions of stored trajectories and keep them as new candidates.

Each record of EDITS names a trajectory of the store and its new response, or span replacements in it
(`rsr_core.data.edits`). The edited trajectory is scored under the store's student, with the settings its numbers
were computed with (dtype, max_len, rendering), and written into the store as `{id}~edit{n}` of the same problem,
with `edited_from` and `edit` in its row, so `select`, `report` and `export` see it. Edits of one trajectory reuse
the student's key/value cache of their common prefix (`rsr_core.engine.rescoring`). A bad record is named and
skipped; the others are scored and kept.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsr_core.commands import checks
from rsr_core.commands.checks import UsageError
from rsr_core.commands.score import report_errors

FLUSH = 64  # edited trajectories committed together


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("edits", metavar="EDITS", help="JSONL/JSON/CSV/Parquet: one edit per record, "
                   '{"trajectory_id", "response"} or {"trajectory_id", "replace": [{"start", "end", "text"}]} '
                   '(optional "turn": the assistant turn, 0-based; the last by default)')
    p.add_argument("--store", required=True, help="the results store that holds the trajectories and takes the "
                   "edited ones")
    p.add_argument("--student", default=None, help="the store's student to score under (default: its only one), "
                   "loaded from where the store says it was")
    p.add_argument("--device", type=checks.device_name, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", type=checks.dtype_name, default=None,
                   help="default: the dtype the store's numbers were computed in")
    p.add_argument("--cache-dir", default=None, help="score cache (default $RSR_CACHE_DIR or ~/.cache/rsr-explorer)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")


def check(args: argparse.Namespace) -> None:
    """The edits file, the store and its student, known before the model loads."""
    from rsr_core.data.score_tables import is_store, store_student
    from rsr_core.data.store import ResultsStore, writer_problem

    checks.check_device(args.device)
    edits = Path(args.edits).expanduser()
    if not edits.is_file():
        raise UsageError(f"EDITS {args.edits}: no such file")
    if not is_store(args.store):
        raise UsageError(f"--store {args.store} is not a results store (no store.json); score into one first "
                         "(python -m rsr_core score INPUT --out STORE)")
    store = ResultsStore(args.store)
    try:
        args.store_student = store_student(store, args.student)
        args.settings = store.settings(args.store_student)
    except ValueError as e:
        raise UsageError(f"--store: {e}") from None
    finally:
        store.close()
    problem = writer_problem(args.store, args.store_student)
    if problem:
        raise UsageError(f"--store {args.store}: {problem}")
    if not args.settings.known:
        raise UsageError(f"--store {args.store}: the numbers of {args.store_student} were imported without their "
                         "settings (weights, dtype, max_len), so an edit cannot be scored to match them")


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.edits import EditError, edit_root, edited_trajectory, label_edited, read_edits
    from rsr_core.data.formats import RecordError
    from rsr_core.data.paths import cache_root
    from rsr_core.data.store import ResultsStore, StoreError
    from rsr_core.engine.cache import ScoreCache, entry_key
    from rsr_core.engine.rescoring import PrefixCache, keep_edited, prefix_key, rescore, student_format
    from rsr_core.engine.scoring import TOP_K
    from rsr_core.engine.student import StudentError, load_student

    edits, errors = read_edits(args.edits)
    report_errors(errors)
    if not edits:
        print(f"error: no edit could be read from {args.edits}", file=sys.stderr)
        return 2
    settings = args.settings
    plain, max_len = student_format(settings)
    spec = settings.source or args.student or args.store_student
    try:
        student = load_student(spec, device=args.device, dtype=args.dtype or settings.dtype,
                               trust_remote_code=args.trust_remote_code)
    except StudentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if student.name != args.store_student:
        print(f"error: the student loaded from {spec} is {student.name}, not the store's {args.store_student}",
              file=sys.stderr)
        return 2
    cache = None if args.no_cache else ScoreCache(args.cache_dir or cache_root())
    dtype = str(student.dtype).replace("torch.", "")
    template = None if plain else student.chat_template
    store = ResultsStore(args.store)
    prefix = PrefixCache()
    taken = set(store.conversation_ids())
    pending: dict[str, object] = {}  # the edited trajectories of this run, which later edits may name
    pairs, kept, skipped, reused, run_tokens = [], 0, len(errors), 0, 0

    def flush() -> None:
        nonlocal pairs, kept, skipped
        if not pairs:
            return
        label_edited([t for t, _ in pairs])
        result = keep_edited(args.store, student, pairs, plain, max_len)
        for message in result.errors:
            print(f"skipped: {args.store}: {message}", file=sys.stderr)
        kept += len(result.written)
        skipped += len(result.errors)
        pairs = []

    try:
        for edit in edits:
            try:
                original = pending.get(edit.trajectory_id)
                if original is None:
                    if edit.trajectory_id not in taken:
                        raise EditError(f"no trajectory {edit.trajectory_id!r} in {args.store}")
                    original = store.trajectories([edit.trajectory_id], args.store_student)[0]
                new = edited_trajectory(original, edit, taken)
            except (EditError, StoreError) as e:
                report_errors([RecordError(edit.source, edit.record, str(e))])
                skipped += 1
                continue
            # edits of one original (and of its edits) continue from the cache of the last one scored
            out = rescore(student, new, prefix, prefix_key(student, edit_root(original), plain, max_len),
                          plain_format=plain, max_len=max_len)
            if cache is not None:
                cache.put(entry_key(student.name, student.fingerprint, template, dtype, max_len, TOP_K, new.identity),
                          out.scores)
            taken.add(new.trajectory_id)
            pending[new.trajectory_id] = new
            pairs.append((new, out.scores))
            reused += out.reused
            run_tokens += out.tokens_run
            print(f"{new.trajectory_id}: {len(out.scores):,} tokens, RSR {_rsr(out.scores):.4f} "
                  f"(from {original.trajectory_id}: {new.meta['edit']})", file=sys.stderr)
            if len(pairs) >= FLUSH:
                flush()
        flush()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"{kept:,} edited trajectories added to {args.store}"
          + (f"; {skipped:,} skipped" if skipped else "")
          + (f"; {reused:,} tokens' numbers reused from an unchanged prefix" if reused else ""), file=sys.stderr)
    return 0 if kept else 1


def _rsr(scores) -> float:
    from rsr_core.analysis.metrics import trajectory_metrics

    return trajectory_metrics(scores.surprisal, scores.rank, scores.entropy)["rsr"]
