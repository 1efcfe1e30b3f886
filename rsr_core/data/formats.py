"""Read trajectories from JSONL, JSON, Parquet and CSV in the common chat-data schemas.

Schemas, detected per record: `messages` (OpenAI / Hugging Face chat), ShareGPT (`conversations` with
`from`/`value`), Alpaca (`instruction`/`input`/`output`) and plain columns (`prompt_field` + `response_field`,
or an unambiguous pair such as prompt/response, question/answer). Reasoning is read in every shape it comes in
(a `reasoning_content` field or one of its aliases, `<think>` tags, a reasoning column beside the answer column)
and kept in the canonical form of `rsr_core.data.trajectory`. Several response columns make one trajectory per
column, the column naming the teacher. A bad record yields a `RecordError` naming the file, the record and the
problem; every other record is still read. Text files are decoded line by line (`rsr_core.data.text_files`: UTF-8
with or without a byte-order mark, UTF-16 by its mark), so a line that is not text costs that line only. Cells
and values that read NaN, None, null or N/A are missing (`trajectory.is_missing`), never text to score.
"""
from __future__ import annotations

import csv
import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from rsr_core.data.text_files import BadText, read_text, text_lines
from rsr_core.data.trajectory import Trajectory, is_missing, normalise_message, parse_correct, problem_hash, stable_hash

SUFFIXES = {".jsonl", ".json", ".parquet", ".csv"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "model": "assistant", "chatgpt": "assistant", "bing": "assistant"}
PROMPT_FIELDS = ("prompt", "question", "problem", "query", "instruction")
RESPONSE_FIELDS = ("response", "completion", "answer", "generation", "output", "solution", "message_content",
                   "final_answer")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking", "message_thinking", "thoughts", "thought",
                    "chain_of_thought", "think")
ID_FIELDS = ("id", "trajectory_id", "uid")
CORRECT_FIELDS = ("correct", "is_correct")


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


def iter_input_files(path: Path) -> Iterator[tuple[Path, str | None, str | None]]:
    """Yield (file, teacher, run) for a file, or for every data file under a folder.

    The reference layout (one folder per teacher holding one file per run) gives teacher = folder name and
    run = file stem; files directly in the given folder give teacher = file stem.
    """
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
            rel = f.relative_to(path)
            if len(rel.parts) > 1:
                yield f, rel.parts[0], f.stem
            else:
                yield f, f.stem, None
    else:
        yield path, path.stem, None


def has_schema(rec: dict) -> bool:
    """Whether an object is a record by its fields alone: `messages`, `conversations`, instruction/output, or a
    prompt field beside a response field."""
    return ("messages" in rec or "conversations" in rec or ("instruction" in rec and "output" in rec)
            or (any(f in rec for f in PROMPT_FIELDS) and any(_is_response_field(f) for f in rec)))


def _is_response_field(name: str) -> bool:
    return name in RESPONSE_FIELDS or name.endswith(("_output", "_response", "_solution"))


def json_records(data: Any) -> list:
    """The records of a .json file's content: an array is its records; an object with a record's schema
    (`has_schema`) is one record; another object holds its records in its first list of objects (`{"data": [...]}`),
    and without one it is one record. Any other value is one record (that the caller reports as not an object)."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict) or has_schema(data):
        return [data]
    return next((v for v in data.values() if isinstance(v, list) and any(isinstance(x, dict) for x in v)), [data])


def raw_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (record number, raw record or None, problem or None) for one file: per line for JSONL (a line that is
    not text or not JSON is a problem, the next line is read), per record for CSV (numbered by its first line), per
    element for JSON and Parquet. Raises ValueError (BadText, naming the line) when the file cannot be read at all."""
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
                    problem = f"invalid JSON ({e.msg} at column {e.colno})"
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
        import pandas as pd

        for n, rec in enumerate(pd.read_parquet(path).to_dict(orient="records")):
            yield n, rec, None
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)")


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


def _maybe_json(value: Any) -> Any:
    """Lists and dicts stored as JSON strings in CSV cells."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _text(value: Any, what: str, field: str, allow_empty: bool = False) -> str:
    """The text of a prompt, response or reasoning value (`what`) read from `field`; "" for a missing one where
    `allow_empty`, else ValueError."""
    if isinstance(value, dict):  # e.g. {"solution": ..., "is_correct": ...}
        value = next((value[k] for k in ("content", "solution", "text", "value") if k in value), None)
    if is_missing(value):
        if allow_empty:
            return ""
        raise ValueError(f"{what} is empty or missing (field {field!r})")
    if not isinstance(value, str):
        raise ValueError(f"{what} is not text (field {field!r})")
    return value


def _check_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` is not a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} lacks `role` or `content`")
        try:
            out.append(normalise_message(m))
        except ValueError as e:
            raise ValueError(f"message {i}: {e}") from None
    if not any(m["role"] == "assistant" and (m["content"].strip() or m.get("reasoning_content")) for m in out):
        raise ValueError("no non-empty assistant message to score")
    return out


@dataclass(frozen=True)
class PlainColumns:
    """Plain-column schema: the prompt column and, per teacher, a response column and an optional reasoning one."""

    prompt: str
    responses: tuple[str, ...]
    reasoning: tuple[str | None, ...]

    @property
    def several(self) -> bool:
        return len(self.responses) > 1


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def _expand(patterns: list[str], fields: list[str], what: str) -> list[str]:
    """Field names matching each name or glob pattern, in the order given (a glob's matches sorted)."""
    out: list[str] = []
    for p in patterns:
        if any(c in p for c in "*?["):
            matched = sorted(f for f in fields if fnmatch.fnmatchcase(f, p))
        else:
            matched = [p] if p in fields else []
        if not matched:
            raise ValueError(f"no field {p!r} for the {what} (fields: {', '.join(sorted(fields))})")
        out += [m for m in matched if m not in out]
    return out


def _reasoning_candidates(fields: list[str]) -> list[str]:
    return [f for f in fields if f in REASONING_FIELDS or f.endswith(("_thinking", "_reasoning"))]


def plain_columns(rec: dict, prompt_field: str | None = None, response_field: str | Sequence[str] | None = None,
                  reasoning_field: str | Sequence[str] | None = None) -> PlainColumns | None:
    """The plain columns of a record: those given (names or glob patterns), else detected where unambiguous
    (one prompt, one response and at most one reasoning column). None when the record has a chat schema.
    Raises ValueError when the columns are missing or cannot be told apart."""
    fields = list(rec)
    responses, reasoning = _as_list(response_field), _as_list(reasoning_field)
    if not (prompt_field or responses or reasoning):
        if any(k in rec for k in ("messages", "conversations")) or ("instruction" in rec and "output" in rec):
            return None
        prompts = [f for f in PROMPT_FIELDS if f in rec]
        found = [f for f in fields if f in RESPONSE_FIELDS or f.endswith(("_output", "_response", "_solution"))]
        if len(prompts) == 1 and len(found) == 1:
            return plain_columns(rec, prompts[0], found)
        raise ValueError("cannot tell the schema (no `messages`, `conversations`, or instruction/output); "
                         f"fields are {', '.join(sorted(fields))}: pass --prompt-field and --response-field")
    if not (prompt_field and responses):
        raise ValueError("give both --prompt-field and --response-field")
    if prompt_field not in rec:
        raise ValueError(f"no field {prompt_field!r} (fields: {', '.join(sorted(fields))})")
    responses = _expand(responses, fields, "response")
    if reasoning:
        reasoning = _expand(reasoning, fields, "reasoning")
    elif len(responses) == 1:  # a reasoning column beside the answer column, where there is exactly one
        found = [f for f in _reasoning_candidates(fields) if f not in (prompt_field, *responses)]
        reasoning = found if len(found) == 1 else []
    if reasoning and len(reasoning) != len(responses):
        raise ValueError(f"{len(reasoning)} reasoning column(s) for {len(responses)} response column(s): give one "
                         "--reasoning-field per --response-field, in the same order")
    return PlainColumns(prompt_field, tuple(responses), tuple(reasoning) if reasoning else (None,) * len(responses))


def plain_messages(rec: dict, columns: PlainColumns, k: int) -> list[dict]:
    """The conversation of response column k of a plain-column record."""
    reasoning, response = columns.reasoning[k], columns.responses[k]
    has_reasoning = reasoning is not None and not is_missing(rec.get(reasoning))
    assistant = {"role": "assistant", "content": _text(rec[response], "response", response, allow_empty=has_reasoning)}
    if has_reasoning:
        assistant["reasoning_content"] = _text(rec[reasoning], "reasoning", reasoning)
    prompt = _text(rec[columns.prompt], "prompt", columns.prompt)
    return _check_messages([{"role": "user", "content": prompt}, assistant])


def to_messages(rec: dict, prompt_field: str | None = None, response_field: str | Sequence[str] | None = None,
                reasoning_field: str | Sequence[str] | None = None) -> list[list[dict]]:
    """The conversations of one record, whatever its schema: one, or one per response column. Raises ValueError
    with the reason."""
    columns = plain_columns(rec, prompt_field, response_field, reasoning_field)
    if columns is not None:
        return [plain_messages(rec, columns, k) for k in range(len(columns.responses))]
    if "messages" in rec:
        return [_check_messages(_maybe_json(rec["messages"]))]
    if "conversations" in rec:
        conv = _maybe_json(rec["conversations"])
        if not isinstance(conv, list):
            raise ValueError("`conversations` is not a list")
        msgs = []
        for i, turn in enumerate(conv):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise ValueError(f"conversation turn {i} lacks `from` or `value`")
            role = SHAREGPT_ROLES.get(str(turn["from"]).strip().lower())
            if role is None:
                raise ValueError(f"conversation turn {i} has unknown speaker {turn['from']!r}")
            msgs.append({"role": role, "content": turn["value"]})
        return [_check_messages(msgs)]
    user = _text(rec["instruction"], "prompt", "instruction")
    if rec.get("input") and not is_missing(rec["input"]):
        user = f"{user}\n\n{rec['input']}"
    system = rec.get("system")
    msgs = [{"role": "system", "content": system}] if system and not is_missing(system) else []
    return [_check_messages(msgs + [{"role": "user", "content": user},
                                    {"role": "assistant", "content": _text(rec["output"], "response", "output")}])]


def _correct(rec: dict, response_field: str | None) -> bool | None:
    """The first known correctness of the record's `correct`/`is_correct`, else of its response column's dict."""
    nested = rec.get(response_field) if response_field else None
    for source in (rec, nested if isinstance(nested, dict) else {}):
        for f in CORRECT_FIELDS:
            v = parse_correct(source.get(f))
            if v is not None:
                return v
    return None


def read_trajectories(path: str | Path, *, prompt_field: str | None = None,
                      response_field: str | Sequence[str] | None = None,
                      reasoning_field: str | Sequence[str] | None = None, teacher: str | None = None,
                      run: str | None = None, teacher_field: str = "teacher",
                      problem_field: str = "problem_id") -> tuple[list[Trajectory], list[RecordError]]:
    """Every readable trajectory of a file or folder, and an error for every record that is not.

    `response_field` and `reasoning_field` take one column or several (names or glob patterns); several response
    columns give one trajectory per column and record, teacher = the column name, id = `{record id}/{column}`.
    """
    path = Path(path)
    trajectories: list[Trajectory] = []
    errors: list[RecordError] = []
    if not path.exists():
        return [], [RecordError(str(path), None, "no such file or folder")]
    seen: set[str] = set()
    for file, file_teacher, file_run in iter_input_files(path):
        unit = "record" if file.suffix.lower() in (".json", ".parquet") else "line"
        try:
            for n, raw, problem in raw_records(file):
                if problem is None and not isinstance(raw, dict):
                    problem = f"expected a JSON object, got {type(raw).__name__}"
                results: list = [(None, problem)]
                if problem is None:
                    try:
                        results = list(_record_trajectories({k: _plain(v) for k, v in raw.items()}, prompt_field,
                                                            response_field, reasoning_field, teacher, teacher_field,
                                                            problem_field))
                    except RecursionError:
                        results = [(None, "nested too deeply")]
                for t, problem in results:
                    if t is not None and t.trajectory_id in seen:
                        problem = f"duplicate trajectory id {t.trajectory_id!r}; record skipped"
                    if problem is not None:
                        errors.append(RecordError(str(file), n, problem, unit))
                        continue
                    t.teacher = t.teacher or str(file_teacher or "unknown")
                    t.run = run or t.run or file_run
                    t.source, t.record = str(file), n
                    if t.trajectory_id.startswith("t-"):  # derived ids cover where the trajectory comes from
                        t.trajectory_id = "t-" + stable_hash(t.teacher, t.run, t.messages)
                    seen.add(t.trajectory_id)
                    trajectories.append(t)
        except BadText as e:  # a .json file or a CSV header that is not text: the line is named
            errors.append(RecordError(str(file), e.line, f"cannot read file: {e.message}"))
        except (OSError, ValueError) as e:  # unreadable file: report it, go on with the rest
            errors.append(RecordError(str(file), None, f"cannot read file: {e}"))
        except Exception as e:  # noqa: BLE001 - pyarrow/pandas parse errors have many types
            errors.append(RecordError(str(file), None, f"cannot read file: {type(e).__name__}: {e}"))
    return trajectories, errors


def _record_trajectories(rec: dict, prompt_field, response_field, reasoning_field, teacher: str | None,
                         teacher_field: str, problem_field: str):
    """Yield (trajectory, None) or (None, problem) for each conversation of one record.

    The teacher is the response column's when there are several, else `teacher` or the record's (empty: the
    caller's file-derived name); a derived id starts with `t-` and is completed by the caller once teacher and
    run are known."""
    try:
        columns = plain_columns(rec, prompt_field, response_field, reasoning_field)
    except ValueError as e:
        yield None, str(e)
        return
    several = columns is not None and columns.several
    for k in range(len(columns.responses) if columns else 1):
        column = columns.responses[k] if columns else None
        try:
            messages = plain_messages(rec, columns, k) if columns else to_messages(rec)[0]
        except ValueError as e:
            yield None, (f"column {column!r}: " if several else "") + str(e)
            continue
        tid = next((str(rec[f]) for f in ID_FIELDS if rec.get(f) not in (None, "")), None)
        tid = (f"{tid}/{column}" if several else tid) if tid is not None else "t-"
        prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
        pid = rec.get(problem_field)
        name = column if several else (teacher or rec.get(teacher_field))
        run = str(rec["run"]) if rec.get("run") not in (None, "") else None
        yield Trajectory(trajectory_id=tid, problem_id=str(pid) if pid not in (None, "") else problem_hash(prompt),
                         teacher=str(name) if name else "", run=run, messages=messages,
                         correct=_correct(rec, column)), None
