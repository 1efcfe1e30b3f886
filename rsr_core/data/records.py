"""One record of a data file -> its trajectories, in whatever layout the record was published.

Layouts, detected per record (or named with the field options):

| layout | fields |
| --- | --- |
| chat | `messages` (OpenAI / Hugging Face), or ShareGPT `conversations` (`from` / `value`) |
| message-list prompt | a list of messages before a response column (Llama-Nemotron's `input` + `output`) |
| s1K | `question`, `thinking_trajectories` (a one-element list), `attempt` |
| Alpaca | `instruction` (+ `input`) / `output` |
| plain columns | a prompt column beside one or several response columns |

Whatever the layout, a record-level `system` or `system_prompt` is the conversation's system message (unless the
conversation opens with one), and a record-level `tools` list is the tools the conversation offers. A response
column holding a list gives one trajectory per element, a *candidate* (OpenR1-Math's `generations`), with its
index recorded; a correctness list aligned with it (`correctness_math_verify`, `is_correct`, ...) labels each, and
per-element flags (`is_reasoning_complete`, `finish_reasons` = `length`) mark the incomplete ones. A reasoning
column of a one-element list (s1K) is read as its element; an on/off value (Llama-Nemotron's `reasoning` switch)
is never a trace.

Ids: a record's own id (`id`, `trajectory_id`, `uid`, `uuid`), suffixed `/{column}` for one of several response
columns and `/{index}` for a candidate of a list; a record without one gets an id derived from its teacher, run
and conversation (`t-...`, completed by the reader once those are known).
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from rsr_core.data.trajectory import Trajectory, is_missing, is_reasoning_flag, normalise_message
from rsr_core.analysis.table import parse_correct, problem_hash

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "model": "assistant", "chatgpt": "assistant", "bing": "assistant",
                  "tool": "tool"}
PROMPT_FIELDS = ("prompt", "question", "problem", "query", "instruction")
RESPONSE_FIELDS = ("response", "completion", "answer", "generation", "output", "solution", "message_content",
                   "final_answer")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking", "message_thinking", "thoughts", "thought",
                    "chain_of_thought", "think")
ID_FIELDS = ("id", "trajectory_id", "uid", "uuid")
TEACHER_FIELDS = ("teacher", "generator")
CORRECT_FIELDS = ("correct", "is_correct")
CORRECT_LIST_FIELDS = ("correctness_math_verify", "is_correct", "correct", "correctness")
SYSTEM_FIELDS = ("system", "system_prompt")
CANDIDATE_FIELDS = ("generations", "responses", "completions", "candidates", "outputs", "samples")
S1K_FIELDS = ("question", "thinking_trajectories", "attempt")
CHAT_FIELDS = ("messages", "conversations")


@dataclass(frozen=True)
class RecordOptions:
    """How to read records: the fields named on the command line (None / empty: detected), and defaults."""

    prompt_field: str | None = None
    response_fields: tuple[str, ...] = ()
    reasoning_fields: tuple[str, ...] = ()
    correct_field: str | None = None
    reference_field: str | None = None
    teacher: str | None = None
    teacher_field: str = "teacher"
    problem_field: str = "problem_id"

    @classmethod
    def of(cls, prompt_field: str | None = None, response_field: str | Sequence[str] | None = None,
           reasoning_field: str | Sequence[str] | None = None, **kwargs) -> "RecordOptions":
        """Options from the reader's keyword arguments (a field or a list of fields each)."""
        return cls(prompt_field or None, tuple(_as_list(response_field)), tuple(_as_list(reasoning_field)),
                   **kwargs)


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


def maybe_json(value: Any) -> Any:
    """Lists and dicts stored as JSON strings (CSV cells, Arrow string columns)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def has_schema(rec: dict) -> bool:
    """Whether an object is a record by its fields alone: a chat layout, instruction/output, a message-list prompt
    or a prompt field beside a response field."""
    return (any(f in rec for f in CHAT_FIELDS) or ("instruction" in rec and "output" in rec)
            or _message_list_field(rec) is not None
            or (any(f in rec for f in PROMPT_FIELDS) and any(_is_response_field(f) for f in rec)))


def _is_response_field(name: str) -> bool:
    return name in RESPONSE_FIELDS or name.endswith(("_output", "_response", "_solution"))


def _is_message_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and "role" in m for m in value))


def _message_list_field(rec: dict) -> str | None:
    """The one field (other than `messages` / `conversations`) holding a list of messages, beside a response
    field: Llama-Nemotron's `input`."""
    found = [f for f, v in rec.items() if f not in CHAT_FIELDS and _is_message_list(maybe_json(v))]
    responses = [f for f in rec if _is_response_field(f) and f not in found]
    return found[0] if len(found) == 1 and responses else None


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


def check_messages(messages: Any) -> list[dict]:
    """The conversation in the canonical form (`normalise_message`); ValueError naming the message at fault."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` is not a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or ("content" not in m and not m.get("tool_calls")):
            raise ValueError(f"message {i} lacks `role` or `content`")
        try:
            out.append(normalise_message(m))
        except (ValueError, TypeError) as e:
            raise ValueError(f"message {i}: {e}") from None
    if not any(m["role"] == "assistant" and (m["content"].strip() or m.get("reasoning_content") or m.get("tool_calls"))
               for m in out):
        raise ValueError("no non-empty assistant message to score")
    return out


def _expand(patterns: Sequence[str], fields: list[str], what: str) -> list[str]:
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


def _reasoning_candidates(rec: dict) -> list[str]:
    return [f for f in rec if (f in REASONING_FIELDS or f.endswith(("_thinking", "_reasoning")))
            and not is_reasoning_flag(rec[f])]


def plain_columns(rec: dict, options: RecordOptions) -> PlainColumns | None:
    """The plain columns of a record: those given (names or glob patterns), else detected where unambiguous (one
    prompt, one response and at most one reasoning column; a message-list prompt; s1K). None when the record has
    a chat layout. Raises ValueError when the columns are missing or cannot be told apart."""
    fields = list(rec)
    responses, reasoning = list(options.response_fields), list(options.reasoning_fields)
    if not (options.prompt_field or responses or reasoning):
        if any(k in rec for k in CHAT_FIELDS) or ("instruction" in rec and "output" in rec):
            return None
        if all(f in rec for f in S1K_FIELDS):
            return PlainColumns("question", ("attempt",), ("thinking_trajectories",))
        listed = _message_list_field(rec)
        prompts = [listed] if listed else [f for f in PROMPT_FIELDS if f in rec]
        found = [f for f in fields if _is_response_field(f) and f != listed]
        if len(prompts) == 1 and len(found) == 1:
            return plain_columns(rec, RecordOptions(prompts[0], tuple(found)))
        raise ValueError("cannot tell the schema (no `messages`, `conversations`, or instruction/output); "
                         f"fields are {', '.join(sorted(fields))}: pass --prompt-field and --response-field")
    if not (options.prompt_field and responses):
        raise ValueError("give both --prompt-field and --response-field")
    if options.prompt_field not in rec:
        raise ValueError(f"no field {options.prompt_field!r} (fields: {', '.join(sorted(fields))})")
    responses = _expand(responses, fields, "response")
    if reasoning:
        reasoning = _expand(reasoning, fields, "reasoning")
    elif len(responses) == 1:  # a reasoning column beside the answer column, where there is exactly one
        found = [f for f in _reasoning_candidates(rec) if f not in (options.prompt_field, *responses)]
        reasoning = found if len(found) == 1 else []
    if reasoning and len(reasoning) != len(responses):
        raise ValueError(f"{len(reasoning)} reasoning column(s) for {len(responses)} response column(s): give one "
                         "--reasoning-field per --response-field, in the same order")
    return PlainColumns(options.prompt_field, tuple(responses),
                        tuple(reasoning) if reasoning else (None,) * len(responses))


def _context(rec: dict, field: str) -> list[dict]:
    """The conversation before the response: the prompt text as a user message, or a list of messages."""
    value = maybe_json(rec[field])
    if _is_message_list(value):
        return [dict(m) for m in value]
    return [{"role": "user", "content": _text(value, "prompt", field)}]


def _with_system(rec: dict, messages: list[dict]) -> list[dict]:
    """The messages with the record's `system` / `system_prompt` as the system message, unless they open with
    one."""
    system = next((rec[f] for f in SYSTEM_FIELDS if isinstance(rec.get(f), str) and not is_missing(rec[f])), None)
    if system is None or (messages and str(messages[0].get("role", "")).strip().lower() == "system"):
        return messages
    return [{"role": "system", "content": system}, *messages]


def _tools(rec: dict) -> list[dict] | None:
    """The record's `tools` list (OpenAI function specs; JSON text accepted), None without one."""
    tools = maybe_json(rec.get("tools"))
    if tools is None or is_missing(tools) or tools == []:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ValueError("`tools` is not a list of objects")
    return tools


def chat_messages(rec: dict) -> list[dict]:
    """The conversation of a chat-layout record (`messages`, ShareGPT `conversations`, Alpaca), system included."""
    if "messages" in rec:
        messages = maybe_json(rec["messages"])
        return check_messages(_with_system(rec, messages) if isinstance(messages, list) else messages)
    if "conversations" in rec:
        conv = maybe_json(rec["conversations"])
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
        return check_messages(_with_system(rec, msgs))
    user = _text(rec["instruction"], "prompt", "instruction")
    if rec.get("input") and not is_missing(rec["input"]):
        user = f"{user}\n\n{rec['input']}"
    return check_messages(_with_system(rec, [{"role": "user", "content": user},
                                             {"role": "assistant", "content": _text(rec["output"], "response",
                                                                                    "output")}]))


@dataclass
class _Candidate:
    """One response of a record: its conversation, its index in a list column (None: a single response)."""

    messages: list[dict]
    index: int | None
    count: int  # candidates of its column


def _candidates(rec: dict, columns: PlainColumns, k: int) -> list[_Candidate]:
    """The conversations of response column k: one, or one per element of a list."""
    response, reasoning = columns.responses[k], columns.reasoning[k]
    value = maybe_json(rec[response])
    thoughts = None if reasoning is None else maybe_json(rec.get(reasoning))
    if thoughts is not None and (is_missing(thoughts) or is_reasoning_flag(thoughts)):
        thoughts = None
    context = _with_system(rec, _context(rec, columns.prompt))
    listed = isinstance(value, list)
    values = value if listed else [value]
    if isinstance(thoughts, list) and len(thoughts) != len(values):
        raise ValueError(f"{len(thoughts)} reasoning traces in {reasoning!r} for {len(values)} response(s) in "
                             f"{response!r}")
    out = []
    for i, v in enumerate(values):
        t = thoughts[i] if isinstance(thoughts, list) else thoughts
        has_reasoning = t is not None and not is_missing(t)
        assistant = {"role": "assistant", "content": _text(v, "response", response, allow_empty=has_reasoning)}
        if has_reasoning:
            assistant["reasoning_content"] = _text(t, "reasoning", reasoning)
        out.append(_Candidate(check_messages(context + [assistant]), i if listed else None, len(values)))
    return out


def candidate_hint(rec: dict) -> str | None:
    """For a chat-layout record that also holds a list of candidate responses (OpenR1-Math's `generations` beside
    `messages`): the name of that column."""
    if not any(k in rec for k in CHAT_FIELDS):
        return None
    return next((f for f in CANDIDATE_FIELDS
                 if isinstance(maybe_json(rec.get(f)), list) and len(maybe_json(rec[f])) > 0), None)


def _label(value: Any, index: int | None, count: int, field: str) -> bool | None:
    """The correctness of candidate `index` (None: a single response) from a field's value: one label, or a list
    aligned with the candidates. ValueError when a list does not fit."""
    value = maybe_json(value)
    if isinstance(value, list):
        if index is None and len(value) == 1:
            return parse_correct(value[0])
        if index is None or len(value) != count:
            raise ValueError(f"{field!r} holds {len(value)} labels for {count} response(s)")
        return parse_correct(value[index])
    if index is not None:
        raise ValueError(f"{field!r} holds one label for a list of {count} responses; give a list aligned with them")
    return parse_correct(value)


def _correct(rec: dict, column: str | None, cand: _Candidate, options: RecordOptions) -> bool | None:
    """A candidate's correctness from the data: the --correct-field, else an aligned correctness list (a list
    column), else `correct` / `is_correct` of the record or of its response object."""
    if options.correct_field:
        if options.correct_field not in rec:
            raise ValueError(f"no field {options.correct_field!r} for the correctness")
        return _label(rec[options.correct_field], cand.index, cand.count, options.correct_field)
    if cand.index is not None:
        for f in CORRECT_LIST_FIELDS:
            v = maybe_json(rec.get(f))
            if isinstance(v, list) and len(v) == cand.count:
                return parse_correct(v[cand.index])
        return None
    nested = rec.get(column) if column else None
    for source in (rec, nested if isinstance(nested, dict) else {}):
        for f in CORRECT_FIELDS:
            v = parse_correct(source.get(f))
            if v is not None:
                return v
    return None


def _complete(rec: dict, cand: _Candidate) -> bool | None:
    """Whether a candidate's generation finished: False where `is_reasoning_complete` is false or the finish
    reason is `length` (cut off), True where such a flag says it finished, None without flags."""
    flags = []
    for field, finished in (("is_reasoning_complete", lambda v: parse_correct(v)),
                            ("finish_reasons", lambda v: None if is_missing(v) else str(v).strip().lower() != "length"),
                            ("finish_reason", lambda v: None if is_missing(v) else str(v).strip().lower() != "length")):
        value = maybe_json(rec.get(field))
        if value is None:
            continue
        if isinstance(value, list):
            if cand.index is not None and len(value) == cand.count:
                flags.append(finished(value[cand.index]))
            elif cand.index is None and len(value) == 1:
                flags.append(finished(value[0]))
        else:
            flags.append(finished(value))
    known = [f for f in flags if f is not None]
    return None if not known else all(known)


def _reference(rec: dict, options: RecordOptions) -> str | None:
    if not options.reference_field:
        return None
    if options.reference_field not in rec:
        raise ValueError(f"no field {options.reference_field!r} for the reference answer")
    value = rec[options.reference_field]
    if is_missing(value):
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) if isinstance(
        value, (list, dict)) else str(value)


def record_id(rec: dict) -> str | None:
    """The record's own id (`id`, `trajectory_id`, `uid`, `uuid`), None without one."""
    return next((str(rec[f]) for f in ID_FIELDS if rec.get(f) not in (None, "")), None)


def record_trajectories(rec: dict, options: RecordOptions) -> Iterator[tuple[Trajectory | None, str | None]]:
    """Yield (trajectory, None) or (None, problem) for each conversation of one record.

    The teacher is the response column's when there are several, else the option's or the record's (empty: the
    caller's file-derived name); a derived id starts with `t-` and is completed by the caller once teacher and
    run are known."""
    try:
        columns = plain_columns(rec, options)
        tools = _tools(rec)
        reference = _reference(rec, options)
    except ValueError as e:
        yield None, str(e)
        return
    several = columns is not None and columns.several
    rid = record_id(rec)
    for k in range(len(columns.responses) if columns else 1):
        column = columns.responses[k] if columns else None
        where = f"column {column!r}: " if several else ""
        try:
            cands = _candidates(rec, columns, k) if columns else [_Candidate(chat_messages(rec), None, 1)]
        except ValueError as e:
            yield None, where + str(e)
            continue
        for cand in cands:
            try:
                correct = _correct(rec, column, cand, options)
            except ValueError as e:
                yield None, where + str(e)
                break
            parts = [rid] if rid is not None else []
            parts += [column] if several and parts else []
            parts += [str(cand.index)] if cand.index is not None and parts else []
            tid = "/".join(parts) if parts else "t-"
            prompt = next((m["content"] for m in cand.messages if m["role"] == "user"), "")
            pid = rec.get(options.problem_field)
            name = column if several else (options.teacher or next(
                (rec[f] for f in (options.teacher_field, *TEACHER_FIELDS) if rec.get(f) not in (None, "")), None))
            run = str(rec["run"]) if rec.get("run") not in (None, "") else None
            meta = {}
            if cand.index is not None:
                meta["candidate"] = cand.index
            complete = _complete(rec, cand)
            if complete is not None:
                meta["complete"] = complete
            if reference is not None:
                meta["reference"] = reference
            if correct is not None:
                meta["correct_source"] = "data"
            yield Trajectory(trajectory_id=tid, problem_id=str(pid) if pid not in (None, "") else problem_hash(prompt),
                             teacher=str(name) if name else "", run=run, messages=cand.messages, correct=correct,
                             meta=meta, tools=tools), None


def to_messages(rec: dict, prompt_field: str | None = None, response_field: str | Sequence[str] | None = None,
                reasoning_field: str | Sequence[str] | None = None) -> list[list[dict]]:
    """The conversations of one record, whatever its layout. Raises ValueError with the reason."""
    options = RecordOptions.of(prompt_field, response_field, reasoning_field)
    columns = plain_columns(rec, options)
    if columns is None:
        return [chat_messages(rec)]
    return [c.messages for k in range(len(columns.responses)) for c in _candidates(rec, columns, k)]
