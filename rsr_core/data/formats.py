"""Read trajectories from JSONL, JSON, Parquet and CSV in the common chat-data schemas.

Schemas, detected per record: `messages` (OpenAI / Hugging Face chat), ShareGPT (`conversations` with
`from`/`value`), Alpaca (`instruction`/`input`/`output`) and plain columns (`prompt_field` + `response_field`,
or an unambiguous pair such as prompt/response, question/answer). A bad record yields a `RecordError` naming the
file, the record and the problem; every other record is still read.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rsr_core.data.trajectory import Trajectory, problem_hash, stable_hash

SUFFIXES = {".jsonl", ".json", ".parquet", ".csv"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "model": "assistant", "chatgpt": "assistant", "bing": "assistant"}
PROMPT_FIELDS = ("prompt", "question", "problem", "query", "instruction")
RESPONSE_FIELDS = ("response", "completion", "answer", "generation", "output", "solution")
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


def _raw_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (record number, raw record or None, error message or None) for one file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line), None
                except json.JSONDecodeError as e:
                    yield n, None, f"invalid JSON ({e.msg} at column {e.colno})"
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        for n, rec in enumerate(data):
            yield n, rec, None
    elif suffix in (".parquet", ".csv"):
        import pandas as pd

        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, keep_default_na=False, dtype=str)
        first = 0 if suffix == ".parquet" else 2  # CSV: line 1 is the header
        for n, rec in enumerate(frame.to_dict(orient="records")):
            yield n + first, rec, None
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)")


def _plain(value: Any) -> Any:
    """numpy/pyarrow values to plain Python (lists, dicts, str); NaN to None."""
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
        except json.JSONDecodeError:
            return value
    return value


def _text(value: Any, what: str) -> str:
    if isinstance(value, dict):  # e.g. {"solution": ..., "is_correct": ...}
        value = next((value[k] for k in ("content", "solution", "text", "value") if k in value), None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is empty or not text")
    return value


def _check_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` is not a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} lacks `role` or `content`")
        content = m["content"]
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ValueError(f"message {i} content is not text")
        out.append({"role": str(m["role"]), "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise ValueError("no non-empty assistant message to score")
    return out


def to_messages(rec: dict, prompt_field: str | None = None, response_field: str | None = None) -> list[dict]:
    """The conversation of one record, whatever its schema. Raises ValueError with the reason."""
    if prompt_field or response_field:
        if not (prompt_field and response_field):
            raise ValueError("give both --prompt-field and --response-field")
        for f in (prompt_field, response_field):
            if f not in rec:
                raise ValueError(f"no field {f!r} (fields: {', '.join(sorted(rec))})")
        return _check_messages([{"role": "user", "content": _text(rec[prompt_field], prompt_field)},
                                {"role": "assistant", "content": _text(rec[response_field], response_field)}])
    if "messages" in rec:
        return _check_messages(_maybe_json(rec["messages"]))
    if "conversations" in rec:
        conv = _maybe_json(rec["conversations"])
        if not isinstance(conv, list):
            raise ValueError("`conversations` is not a list")
        msgs = []
        for i, turn in enumerate(conv):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise ValueError(f"conversation turn {i} lacks `from` or `value`")
            role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
            if role is None:
                raise ValueError(f"conversation turn {i} has unknown speaker {turn['from']!r}")
            msgs.append({"role": role, "content": turn["value"]})
        return _check_messages(msgs)
    if "instruction" in rec and "output" in rec:
        user = _text(rec["instruction"], "instruction")
        if rec.get("input"):
            user = f"{user}\n\n{rec['input']}"
        msgs = [{"role": "system", "content": rec["system"]}] if rec.get("system") else []
        return _check_messages(msgs + [{"role": "user", "content": user},
                                       {"role": "assistant", "content": _text(rec["output"], "output")}])
    prompts = [f for f in PROMPT_FIELDS if f in rec]
    responses = [f for f in rec if f in RESPONSE_FIELDS or f.endswith(("_output", "_response", "_solution"))]
    if len(prompts) == 1 and len(responses) == 1:
        return to_messages(rec, prompts[0], responses[0])
    raise ValueError("cannot tell the schema (no `messages`, `conversations`, or instruction/output); "
                     f"fields are {', '.join(sorted(rec))}: pass --prompt-field and --response-field")


def _correct(rec: dict, response_field: str | None) -> bool | None:
    nested = rec.get(response_field) if response_field else None
    for source in (rec, nested if isinstance(nested, dict) else {}):
        for f in CORRECT_FIELDS:
            v = source.get(f)
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.lower() in ("true", "false", "1", "0"):
                return v.lower() in ("true", "1")
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) and v in (0, 1):
                return bool(v)
    return None


def read_trajectories(path: str | Path, *, prompt_field: str | None = None, response_field: str | None = None,
                      teacher: str | None = None, run: str | None = None, teacher_field: str = "teacher",
                      problem_field: str = "problem_id") -> tuple[list[Trajectory], list[RecordError]]:
    """Every readable trajectory of a file or folder, and an error for every record that is not."""
    path = Path(path)
    trajectories: list[Trajectory] = []
    errors: list[RecordError] = []
    if not path.exists():
        return [], [RecordError(str(path), None, "no such file or folder")]
    seen: set[str] = set()
    for file, file_teacher, file_run in iter_input_files(path):
        unit = "record" if file.suffix.lower() in (".json", ".parquet") else "line"
        try:
            for n, raw, problem in _raw_records(file):
                if problem is None and not isinstance(raw, dict):
                    problem = f"expected a JSON object, got {type(raw).__name__}"
                if problem is not None:
                    errors.append(RecordError(str(file), n, problem, unit))
                    continue
                rec = {k: _plain(v) for k, v in raw.items()}
                try:
                    messages = to_messages(rec, prompt_field, response_field)
                except ValueError as e:
                    errors.append(RecordError(str(file), n, str(e), unit))
                    continue
                t_teacher = str(teacher or rec.get(teacher_field) or file_teacher or "unknown")
                t_run = run or (str(rec["run"]) if rec.get("run") not in (None, "") else file_run)
                tid = next((str(rec[f]) for f in ID_FIELDS if rec.get(f) not in (None, "")), None)
                tid = tid or "t-" + stable_hash(t_teacher, t_run, messages)
                if tid in seen:
                    errors.append(RecordError(str(file), n, f"duplicate trajectory id {tid!r}; record skipped", unit))
                    continue
                seen.add(tid)
                prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
                pid = rec.get(problem_field)
                trajectories.append(Trajectory(
                    trajectory_id=tid,
                    problem_id=str(pid) if pid not in (None, "") else problem_hash(prompt),
                    teacher=t_teacher, run=t_run, messages=messages,
                    correct=_correct(rec, response_field), source=str(file), record=n,
                ))
        except (OSError, ValueError, UnicodeDecodeError) as e:  # unreadable file: report it, go on with the rest
            errors.append(RecordError(str(file), None, f"cannot read file: {e}"))
        except Exception as e:  # noqa: BLE001 - pyarrow/pandas parse errors have many types
            errors.append(RecordError(str(file), None, f"cannot read file: {type(e).__name__}: {e}"))
    return trajectories, errors
