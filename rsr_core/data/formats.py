"""Read trajectories from files and folders: JSONL, JSON, Parquet, CSV, and Hugging Face datasets as stored.

What a path holds (`input_files`):

- a file: one teacher, named after the file (a hub shard such as `data/train-00000-of-00010.parquet` after its
  dataset's folder);
- a folder with one subfolder per teacher, each holding one file per run (the reference layout): teacher = the
  subfolder, run = the file;
- a folder of files: one teacher per file;
- a Hugging Face dataset as the hub lays it out (every data file a shard `SPLIT-00000-of-00010.EXT`, e.g. under
  `data/`): one dataset, teacher = the folder's name, not a teacher per subfolder;
- a `datasets.save_to_disk` folder (`state.json` beside its Arrow files, or a DatasetDict's splits): one dataset,
  teacher = the folder's name, read with `datasets.load_from_disk`.

Records are read file by file, Parquet and Arrow in batches of rows, and handed on in batches of trajectories
(`InputSet.batches`), so a corpus of a million records never sits in memory at once. Each record becomes its
trajectories through `rsr_core.data.records` (every published layout). A bad record yields a `RecordError` naming
the file, the record and the problem; every other record is still read. Text files are decoded line by line
(`rsr_core.data.text_files`), so a line that is not text costs that line only.

**Ids that never mix.** When records of different input files share an id (two teacher files both numbering
their records 0, 1, ...), each of those records is read under an id qualified by its file's teacher,
`{teacher}/{id}` (`{teacher}/{run}/{id}` when the teacher does not tell the files apart, `{file path}/{id}` when
neither does), whatever the order of the inputs, and the reader says so once, naming the files. Within one file a
repeated id is a bad record.

**Correctness from reference answers.** With a reference field (`RecordOptions.reference_field`), a trajectory
that the data does not label is checked with math-verify against its record's reference
(`rsr_core.analysis.answers`), `correct_source` saying where each label came from.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from rsr_core.data.records import (CORRECT_LIST_FIELDS, PROMPT_FIELDS, RecordOptions, candidate_hint, has_schema,
                                   record_id, record_trajectories)
from rsr_core.data.text_files import BadText, read_text, text_lines
from rsr_core.data.trajectory import Trajectory
from rsr_core.analysis.table import stable_hash

SUFFIXES = {".jsonl", ".json", ".parquet", ".csv"}
SHARD = re.compile(r"^[\w.]+-\d{5}-of-\d{5}$")  # the hub's shard names: train-00000-of-00010
SAVED_DATASET = ("state.json", "dataset_info.json")  # what `datasets.save_to_disk` writes beside its Arrow files
SAVED_DATASET_DICT = "dataset_dict.json"
BATCH_ROWS = 512  # rows of a Parquet or Arrow file read at once
BATCH_TRAJECTORIES = 10_000  # trajectories handed on at once by `InputSet.batches`


@dataclass
class RecordError:
    """A record that could not be read: where it is and what is wrong with it."""

    source: str
    record: int | None
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        where = f"{self.source}, {self.unit} {self.record}" if self.record is not None else self.source
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class InputFile:
    """One file (or saved dataset) to read, and the teacher and run its layout gives it."""

    path: Path
    teacher: str
    run: str | None = None
    saved: bool = False  # a `datasets.save_to_disk` folder, not a file

    @property
    def unit(self) -> str:
        return "record" if self.saved or self.path.suffix.lower() in (".json", ".parquet") else "line"


def _is_saved_dataset(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SAVED_DATASET)


def _shard_owner(path: Path) -> str:
    """The dataset a hub shard belongs to: its folder's name, or the one above `data/`."""
    parent = path.parent
    return parent.parent.name if parent.name == "data" and parent.parent.name else parent.name


def input_files(path: str | Path) -> list[InputFile]:
    """The files a path holds, each with its teacher and run (see the module docstring); [] for a missing path."""
    path = Path(path)
    if path.is_file():
        return [InputFile(path, _shard_owner(path) if SHARD.match(path.stem) else path.stem)]
    if not path.is_dir():
        return []
    files: list[Path] = []
    saved: list[InputFile] = []
    for folder, subfolders, names in os.walk(path):
        here = Path(folder)
        if _is_saved_dataset(here) or (here / SAVED_DATASET_DICT).is_file():
            name = path.name if here == path else here.relative_to(path).parts[0]
            splits = [here] if _is_saved_dataset(here) else [here / s for s in sorted(subfolders)
                                                            if _is_saved_dataset(here / s)]
            saved += [InputFile(s, name, saved=True) for s in splits]
            subfolders.clear()
            continue
        subfolders.sort()
        files += [here / n for n in names if Path(n).suffix.lower() in SUFFIXES]
    files.sort()
    if files and all(SHARD.match(f.stem) for f in files):
        return saved + [InputFile(f, path.name) for f in files]
    out = []
    for f in files:
        rel = f.relative_to(path)
        out.append(InputFile(f, rel.parts[0], f.stem) if len(rel.parts) > 1 else InputFile(f, f.stem))
    return saved + out


def iter_input_files(path: Path) -> Iterator[tuple[Path, str | None, str | None]]:
    """Yield (file, teacher, run) of every file `input_files` finds."""
    for f in input_files(path):
        yield f.path, f.teacher, f.run


def json_records(data: Any) -> list:
    """The records of a .json file's content: an array is its records; an object with a record's schema
    (`has_schema`) is one record; another object holds its records in its first list of objects (`{"data": [...]}`),
    and without one it is one record. Any other value is one record (that the caller reports as not an object)."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict) or has_schema(data):
        return [data]
    return next((v for v in data.values() if isinstance(v, list) and any(isinstance(x, dict) for x in v)), [data])


def raw_records(path: Path, columns: Sequence[str] | None = None) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (record number, raw record or None, problem or None) for one file: per line for JSONL (a line that is
    not text or not JSON is a problem, the next line is read), per record for CSV (numbered by its first line), per
    element for JSON, per row for Parquet and saved datasets (read in batches of rows; `columns`: only these, where
    the file has them). Raises ValueError (BadText, naming the line) when the file cannot be read at all."""
    if path.is_dir():
        yield from _saved_records(path, columns)
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for n, line, problem in text_lines(path):
            record = None
            if problem is None:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    problem = f"invalid JSON ({e.msg}{'' if e.msg.endswith(' at') else ' at'} column {e.colno})"
                except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits, deep nesting
                    problem = f"invalid JSON ({e})"
            yield n, record, problem
    elif suffix == ".json":
        try:
            data = json.loads(read_text(path))
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None
        for n, rec in enumerate(json_records(data)):
            yield n, rec, None
    elif suffix == ".csv":
        yield from _csv_records(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path)
        names = [c for c in columns if c in f.schema_arrow.names] if columns is not None else None
        n = 0
        for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=names):
            for rec in batch.to_pylist():
                yield n, rec, None
                n += 1
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)")


def _saved_records(folder: Path, columns: Sequence[str] | None) -> Iterator[tuple[int, Any, None]]:
    """The rows of a `datasets.save_to_disk` folder, in batches (memory-mapped by `datasets`)."""
    from datasets import load_from_disk

    ds = load_from_disk(str(folder))
    if columns is not None:
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
    n = 0
    for batch in ds.with_format("arrow").iter(batch_size=BATCH_ROWS):
        for rec in batch.to_pylist():
            yield n, rec, None
            n += 1


csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # reasoning traces outgrow the default 128 KiB


def _csv_records(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """The rows of a CSV file as dicts by the header, each numbered by its first line (quoted fields may span
    lines). A row holding a line that is not text is reported once, at that line, and left out; a bad header
    line makes the file unreadable (BadText)."""
    bad: list[tuple[int, str]] = []

    def lines() -> Iterator[str]:
        for n, line, problem in text_lines(path, keep_ends=True):
            if problem is not None:
                bad.append((n, problem))
            yield line

    reader = csv.reader(lines())
    header: list[str] | None = None
    end = 0
    for row in reader:
        start, end = end + 1, reader.line_num
        if bad:
            (n, problem), more = bad[0], len(bad) - 1
            bad.clear()
            if header is None:
                raise BadText(n, f"header row: {problem}")
            if end > start:
                problem += f" (in the record of lines {start}-{end}{f', with {more} more such lines' if more else ''})"
            yield n, None, problem
        elif not any(cell.strip() for cell in row):
            continue
        elif header is None:
            header = [name or f"Unnamed: {i}" for i, name in enumerate(row)]
        elif len(row) > len(header):
            yield start, None, f"{len(row)} fields where the header has {len(header)}"
        else:
            yield start, dict(zip(header, row + [None] * (len(header) - len(row)), strict=True)), None


def _plain(value: Any) -> Any:
    """numpy/pyarrow values to plain Python (lists, dicts, str); NaN to None."""
    if isinstance(value, str):  # most values: no attribute lookups
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _record_ids(file: InputFile) -> set[str]:
    """The record ids of one file (`records.record_id`), reading as little as the format allows; unreadable
    records and files are left to the reader, which reports them."""
    from rsr_core.data.records import ID_FIELDS

    ids: set[str] = set()
    try:
        for _, raw, problem in raw_records(file.path, columns=ID_FIELDS):
            if problem is None and isinstance(raw, dict):
                rid = record_id({k: _plain(v) for k, v in raw.items()})
                if rid is not None:
                    ids.add(rid)
    except Exception:  # noqa: BLE001 - the reader reports an unreadable file
        pass
    return ids


class InputSet:
    """The trajectories of several input paths (files or folders), read in batches, with ids that never mix.

    InputSet(paths, options=RecordOptions(...), run=None): `batches()` yields ([trajectories], [errors]) of at most
    `BATCH_TRAJECTORIES` trajectories; `notes` holds what a user should hear once (ids qualified, candidates left
    in a list column, labels from math-verify), complete once the batches are read.
    """

    def __init__(self, paths: Sequence[str | Path], options: RecordOptions | None = None, run: str | None = None,
                 answer_timeout: float | None = None, check_answers: bool = True,
                 roots: Sequence[Path] | None = None, listing: Sequence[str | Path] | None = None):
        self.options = options or RecordOptions()
        self.run = run
        self.answer_timeout = answer_timeout
        self.check_answers = check_answers  # False: keep the references, label later (`labels.py`)
        self.roots = None if roots is None else [Path(r).resolve() for r in roots]  # a server's data roots
        self.missing = [RecordError(str(p), None, "no such file or folder") for p in paths if not Path(p).exists()]
        self.files = [f for p in paths if Path(p).exists() for f in input_files(p)]
        if listing is not None:  # a server reads exactly the files of the listing it checked, nothing added since
            listed = {str(Path(f)) for f in listing}
            self.files = [f for f in self.files if str(f.path) in listed
                          or (f.saved and any(x.startswith(str(f.path) + os.sep) for x in listed))]
        self.notes: list[str] = []
        self._labels = self._qualifiers()

    # --- ids that never mix ----------------------------------------------------------------------------------

    def _teacher(self, f: InputFile) -> str:
        return self.options.teacher or f.teacher

    def _run(self, f: InputFile) -> str | None:
        return self.run or f.run

    def _qualifiers(self) -> dict[int, tuple[str, frozenset[str]]]:
        """{file index: (label, ids to qualify)} for the files whose record ids other files share."""
        if len(self.files) < 2:
            return {}
        ids = [_record_ids(f) for f in self.files]
        seen = Counter(i for s in ids for i in s)
        shared = {i for i, c in seen.items() if c > 1}
        involved = [k for k, s in enumerate(ids) if s & shared]
        if not involved:
            return {}
        root = Path(os.path.commonpath([str(self.files[k].path.resolve()) for k in involved]))
        levels = {
            "teacher": lambda f: self._teacher(f),
            "teacher/run": lambda f: "/".join(x for x in (self._teacher(f), self._run(f)) if x),
            "file path": lambda f: str(f.path.resolve().relative_to(root).with_suffix("")) if f.path.resolve() != root
            else f.path.stem,
        }
        rule = next((name for name, level in levels.items()
                     if len({level(self.files[k]) for k in involved}) == len(involved)), "file path")
        labels = {k: levels[rule](self.files[k]) for k in involved}
        example = sorted(shared)[0]
        holders = [self.files[k] for k in involved if example in ids[k]]
        names = ", ".join(str(f.path) for f in holders[:4]) + (" ..." if len(holders) > 4 else "")
        self.notes.append(
            f"records of different input files share ids ({len(shared):,} ids, e.g. {example!r} in {names}); each "
            f"such record is read as '{{{rule}}}/{{id}}', e.g. {labels[involved[0]] + '/' + example!r}, so that "
            "every one is scored with its own numbers")
        return {k: (labels[k], frozenset(ids[k] & shared)) for k in involved}

    # --- reading -----------------------------------------------------------------------------------------------

    def batches(self, size: int = BATCH_TRAJECTORIES) -> Iterator[tuple[list[Trajectory], list[RecordError]]]:
        """([trajectories], [errors]) of at most `size` trajectories at a time, in file and record order."""
        checker = None
        if self.options.reference_field and self.check_answers:
            from rsr_core.analysis.answers import AnswerChecker

            checker = AnswerChecker(timeout=self.answer_timeout)
        labelled = Counter()
        try:
            batch: list[Trajectory] = []
            errors: list[RecordError] = list(self.missing)
            seen: set[str] = set()
            for k, f in enumerate(self.files):
                for t, error in self._file_trajectories(k, f, seen):
                    if error is not None:
                        errors.append(error)
                        continue
                    batch.append(t)
                    if len(batch) >= size:
                        _check_answers(batch, checker, labelled)
                        yield batch, errors
                        batch, errors = [], []
            _check_answers(batch, checker, labelled)
            yield batch, errors
        finally:
            if checker is not None:
                checker.close()
        if checker is not None:
            self.notes.append(_answers_note(labelled, self.options.reference_field))

    def read_all(self) -> tuple[list[Trajectory], list[RecordError]]:
        """Every trajectory and every error, in memory (a dataset for the app, a test)."""
        trajectories, errors = [], []
        for batch, errs in self.batches():
            trajectories += batch
            errors += errs
        return trajectories, errors

    def _file_trajectories(self, k: int, f: InputFile, seen: set[str]) -> Iterator[tuple[Trajectory | None,
                                                                                          RecordError | None]]:
        label, qualify = self._labels.get(k, ("", frozenset()))
        teacher, run = self._teacher(f), self._run(f)
        hinted = 0
        hint = None
        source = str(f.path)
        if self.roots is not None and not _inside_any(f.path, self.roots):  # resolved again as it is opened
            yield None, RecordError(source, None, "refused: it leads outside the folders this server may read "
                                                  "(a symbolic link)")
            return
        try:
            for n, raw, problem in raw_records(f.path):
                if problem is None and not isinstance(raw, dict):
                    problem = f"expected a JSON object, got {type(raw).__name__}"
                results: list = [(None, problem)]
                rec = None
                if problem is None:
                    try:
                        rec = {k2: _plain(v) for k2, v in raw.items()}
                        results = list(record_trajectories(rec, self.options))
                    except RecursionError:
                        results = [(None, "nested too deeply")]
                    hint_field = candidate_hint(rec) if rec is not None and not self.options.response_fields else None
                    if hint_field:
                        hinted += 1
                        hint = hint or (hint_field, rec)
                for t, problem in results:
                    if t is not None and record_id(rec) in qualify:
                        t.trajectory_id = f"{label}/{t.trajectory_id}"
                    if t is not None and t.trajectory_id in seen:
                        problem = f"duplicate trajectory id {t.trajectory_id!r}; record skipped"
                    if problem is not None:
                        yield None, RecordError(source, n, problem, f.unit)
                        continue
                    t.teacher = t.teacher or str(teacher or "unknown")
                    t.run = run or t.run
                    t.source, t.record = source, n
                    if t.trajectory_id.startswith("t-"):  # derived ids cover where the trajectory comes from
                        t.trajectory_id = "t-" + stable_hash(t.teacher, t.run, t.identity)
                    seen.add(t.trajectory_id)
                    yield t, None
        except BadText as e:  # a .json file or a CSV header that is not text: the line is named
            yield None, RecordError(source, e.line, f"cannot read file: {e.message}")
        except (OSError, ValueError) as e:  # unreadable file: report it, go on with the rest
            yield None, RecordError(source, None, f"cannot read file: {e}")
        except Exception as e:  # noqa: BLE001 - pyarrow/pandas/datasets parse errors have many types
            yield None, RecordError(source, None, f"cannot read file: {type(e).__name__}: {e}")
        if hint:
            self.notes.append(_candidates_note(source, hinted, *hint))


def _inside_any(path: Path, roots: Sequence[Path]) -> bool:
    """Whether `path`, its links resolved now, lies in one of `roots` (resolved)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return False
    return any(resolved == r or resolved.is_relative_to(r) for r in roots)


def _candidates_note(source: str, count: int, column: str, rec: dict) -> str:
    """The one line that says a file's records hold more candidates than the conversation scored."""
    prompt = next((f for f in PROMPT_FIELDS if f in rec), "PROMPT")
    correct = next((f for f in CORRECT_LIST_FIELDS if isinstance(rec.get(f), list)), None)
    return (f"{source}: {count:,} records also hold a list of candidate responses in `{column}`; only their "
            f"`messages` conversation was read (one per record). To score every candidate: --prompt-field {prompt} "
            f"--response-field {column}" + (f" --correct-field {correct}" if correct else ""))


def _check_answers(batch: list[Trajectory], checker, labelled: Counter) -> None:
    """Label the trajectories the data does not label, against their reference answers (math-verify)."""
    if checker is None:
        return
    todo = [t for t in batch if t.correct is None and t.meta.get("reference") is not None]
    labelled["data"] += sum(t.correct is not None for t in batch)
    labelled["no reference"] += sum(t.correct is None and t.meta.get("reference") is None for t in batch)
    for t, verdict in zip(todo, checker.check([(t.meta["reference"], t.answer) for t in todo])):
        t.correct = verdict.correct
        if verdict.correct is not None:
            t.meta["correct_source"] = "math-verify"
            labelled["math-verify"] += 1
        else:
            labelled["unknown"] += 1


def _answers_note(labelled: Counter, field_name: str) -> str:
    parts = [f"{labelled['math-verify']:,} labelled by math-verify against `{field_name}`"]
    if labelled["data"]:
        parts.append(f"{labelled['data']:,} labelled by the data")
    if labelled["unknown"]:
        parts.append(f"{labelled['unknown']:,} unknown (no answer found, unparsable or too slow to check)")
    if labelled["no reference"]:
        parts.append(f"{labelled['no reference']:,} without a reference answer")
    return "correctness: " + "; ".join(parts)


@dataclass
class InputRead:
    """Everything read from some inputs: trajectories, bad records, and what a user should hear once."""

    trajectories: list[Trajectory] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_inputs(paths: Sequence[str | Path], *, prompt_field: str | None = None,
                response_field: str | Sequence[str] | None = None,
                reasoning_field: str | Sequence[str] | None = None, correct_field: str | None = None,
                reference_field: str | None = None, teacher: str | None = None, run: str | None = None,
                teacher_field: str = "teacher", problem_field: str = "problem_id",
                check_answers: bool = True, roots: Sequence[Path] | None = None,
                listing: Sequence[str | Path] | None = None) -> InputRead:
    """Every readable trajectory of several files or folders (ids kept apart across them), every error, notes.
    With a reference field and `check_answers`, unlabelled responses are checked with math-verify. A server gives
    its data `roots` and the `listing` of files it checked: only those are read, each resolved again when opened."""
    options = RecordOptions.of(prompt_field, response_field, reasoning_field, correct_field=correct_field,
                               reference_field=reference_field, teacher=teacher, teacher_field=teacher_field,
                               problem_field=problem_field)
    inputs = InputSet(paths, options, run, check_answers=check_answers, roots=roots, listing=listing)
    trajectories, errors = inputs.read_all()
    return InputRead(trajectories, errors, inputs.notes)


def read_trajectories(path: str | Path, **options) -> tuple[list[Trajectory], list[RecordError]]:
    """Every readable trajectory of a file or folder, and an error for every record that is not (`read_inputs`
    of one path).

    `response_field` and `reasoning_field` take one column or several (names or glob patterns); several response
    columns give one trajectory per column and record, teacher = the column name, id = `{record id}/{column}`.
    """
    read = read_inputs([path], **options)
    return read.trajectories, read.errors
