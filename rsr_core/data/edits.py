"""Edits of a trajectory's response, and the edited trajectory they make: a new candidate of the same problem.

An edit names a trajectory and either its new response (`response`: the whole scored text of an assistant turn, in
the canonical form `<think>\\n...\\n</think>\\n\\nanswer` where the trace has thinking) or span replacements by
character offset in that text (`replace`: [{"start", "end", "text"}], offsets as the token table's). `turn` picks
the assistant turn (0-based; the last by default). The edited trajectory is `{original}~edit{n}` (n the next free
number), teacher `{teacher} (edited)`, with `edited_from` (the trajectory edited) and `edit` (what changed, in
words) in its row; its correctness is the original's while the answer is unchanged, else unknown until
`label_edited` asks math-verify against the reference answer where there is one.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Collection, Iterator

from rsr_core.analysis.answers import check_answers
from rsr_core.data.formats import RecordError, raw_records
from rsr_core.data.trajectory import (REASONING_KEY, TOOL_CALLS_KEY, Trajectory, assistant_text, part_starts,
                                      render_trace, split_reasoning, tool_calls_text)

EDIT_MARK = "~edit"
EDITED = " (edited)"
SUMMARY_SPANS = 3  # spans named in an edit's summary; the rest are counted
DIFF_LIMIT = 20000  # characters of changed middle beyond which the summary names one rewritten span


class EditError(ValueError):
    """An edit that cannot be applied, with the reason."""


@dataclass(frozen=True)
class Replacement:
    """Characters [start, end) of a response replaced by `text` (an empty text removes them)."""

    start: int
    end: int
    text: str = ""


@dataclass
class Edit:
    """A new response for one assistant turn of a trajectory, or span replacements in it."""

    trajectory_id: str
    response: str | None = None
    replacements: list[Replacement] = field(default_factory=list)
    turn: int | None = None  # index among the assistant turns; None: the last
    source: str = ""
    record: int | None = None


def apply_replacements(text: str, replacements: list[Replacement]) -> str:
    """`text` with every replacement made (offsets into the original text; spans must not overlap)."""
    spans = sorted(replacements, key=lambda r: (r.start, r.end))
    for r in spans:
        if not 0 <= r.start <= r.end <= len(text):
            raise EditError(f"span {r.start}-{r.end} is outside the response (0-{len(text)})")
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise EditError(f"spans {a.start}-{a.end} and {b.start}-{b.end} overlap")
    out, at = [], 0
    for r in spans:
        out += [text[at:r.start], r.text]
        at = r.end
    return "".join(out + [text[at:]])


def assistant_turns(messages: list[dict]) -> list[int]:
    """Indices in `messages` of the assistant turns."""
    return [i for i, m in enumerate(messages) if m["role"] == "assistant"]


def turn_message(messages: list[dict], turn: int | None) -> tuple[int, dict]:
    """(index in messages, message) of assistant turn `turn` (None: the last)."""
    turns = assistant_turns(messages)
    if not turns:
        raise EditError("the trajectory has no assistant turn")
    k = len(turns) - 1 if turn is None else turn
    if not 0 <= k < len(turns):
        raise EditError(f"turn {turn} does not exist: the trajectory has {len(turns)} assistant turn(s)")
    return turns[k], messages[turns[k]]


def message_with_text(message: dict, text: str) -> dict:
    """`message` with its scored text (`assistant_text`) replaced by `text`: thinking and answer split again where
    the text has the canonical form; tool calls kept when the text still ends with them as written."""
    calls = message.get(TOOL_CALLS_KEY)
    out = {k: v for k, v in message.items() if k not in ("content", REASONING_KEY, TOOL_CALLS_KEY)}
    if calls:
        old = assistant_text(message)
        suffix = tool_calls_text(calls, message["content"])
        if not text.endswith(suffix) or not old.endswith(suffix):
            raise EditError("the edit changes the turn's tool calls: edit its thinking and answer only")
        text = text[: len(text) - len(suffix)]
    reasoning, answer = split_reasoning(text)
    if reasoning is not None and render_trace(reasoning, answer) == text:
        out[REASONING_KEY], out["content"] = reasoning, answer
    else:  # not in the canonical form: scored verbatim
        out["content"] = text
    if calls:
        out[TOOL_CALLS_KEY] = calls
        if assistant_text(out) != text + suffix:  # the calls' text depends on the content they follow
            raise EditError("the edit changes how the turn's tool calls are written: keep the text before them")
    return out


def edit_messages(t: Trajectory, edit: Edit) -> tuple[list[dict], str, str, int]:
    """(edited messages, old text, new text, answer start in the old text) of one edit of `t`."""
    at, message = turn_message(t.messages, edit.turn)
    old = assistant_text(message)
    if edit.response is not None:
        new = edit.response
    elif edit.replacements:
        new = apply_replacements(old, edit.replacements)
    else:
        raise EditError("the edit gives neither a response nor replacements")
    if new == old:
        raise EditError("the edit changes nothing")
    if not new.strip():
        raise EditError("the edited response is empty")
    messages = list(t.messages)
    messages[at] = message_with_text(message, new)
    return messages, old, new, part_starts(message)[0]


def changed_spans(old: str, new: str) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes other than `equal` ([(tag, i1, i2, j1, j2)]) between two texts, found in the span between
    their common prefix and suffix (a long rewrite there is one `replace`)."""
    a = 0
    n = min(len(old), len(new))
    while a < n and old[a] == new[a]:
        a += 1
    b = 0
    while b < n - a and old[len(old) - 1 - b] == new[len(new) - 1 - b]:
        b += 1
    i2, j2 = len(old) - b, len(new) - b
    if i2 - a + j2 - a > DIFF_LIMIT:
        return [("replace", a, i2, a, j2)]
    ops = difflib.SequenceMatcher(None, old[a:i2], new[a:j2], autojunk=False).get_opcodes()
    return [(tag, a + i1, a + i2_, a + j1, a + j2_) for tag, i1, i2_, j1, j2_ in ops if tag != "equal"]


def edit_summary(old: str, new: str, answer_start: int = 0) -> str:
    """What changed, in words: e.g. `removed 212 characters at 1,040 (thinking); replaced "x" by "y" at 2,310
    (answer)`, the first SUMMARY_SPANS spans named and the rest counted; then the length before and after."""
    spans = changed_spans(old, new)
    words = []
    for tag, i1, i2, j1, j2 in spans[:SUMMARY_SPANS]:
        part = "thinking" if answer_start and i1 < answer_start else "answer"
        if tag == "delete":
            what = f"removed {_chars(i2 - i1)}"
        elif tag == "insert":
            what = f"inserted {_quoted(new[j1:j2])}"
        else:
            what = f"replaced {_quoted(old[i1:i2])} by {_quoted(new[j1:j2])}"
        words.append(f"{what} at {i1:,} ({part})")
    if len(spans) > SUMMARY_SPANS:
        words.append(f"{len(spans) - SUMMARY_SPANS} more change(s)")
    return "; ".join(words) + f" [{len(old):,} -> {len(new):,} characters]"


def _chars(n: int) -> str:
    return f"{n:,} character{'s' if n != 1 else ''}"


def _quoted(text: str, limit: int = 40) -> str:
    if len(text) > limit:
        return _chars(len(text))
    return '"' + text.replace("\n", "\\n") + '"'


def edit_root(t: Trajectory) -> str:
    """The id edited trajectories of `t` are named after: `t`'s own, or for an edited trajectory its original's."""
    if t.meta.get("edited_from") and EDIT_MARK in t.trajectory_id:
        return t.trajectory_id.rsplit(EDIT_MARK, 1)[0]
    return t.trajectory_id


def next_edit_id(root: str, taken: Collection[str]) -> str:
    """`{root}~edit{n}` with the smallest n >= 1 not in `taken`."""
    n = 1
    while f"{root}{EDIT_MARK}{n}" in taken:
        n += 1
    return f"{root}{EDIT_MARK}{n}"


def edited_trajectory(t: Trajectory, edit: Edit, taken: Collection[str]) -> Trajectory:
    """The edited trajectory: a new candidate of `t`'s problem with its provenance (module docstring)."""
    messages, old, new, answer_at = edit_messages(t, edit)
    meta = {k: v for k, v in t.meta.items() if k not in ("edited_from", "edit", "correct_source")}
    edited = replace(t, messages=messages)
    correct, source = t.correct, t.meta.get("correct_source")
    if edited.answer != t.answer:  # the final answer changed: the original's label no longer holds
        correct, source = None, None
    if source:
        meta["correct_source"] = source
    meta["edited_from"] = t.trajectory_id
    meta["edit"] = edit_summary(old, new, answer_at)
    teacher = t.teacher if t.teacher.endswith(EDITED) else f"{t.teacher}{EDITED}"
    return Trajectory(trajectory_id=next_edit_id(edit_root(t), taken), problem_id=t.problem_id, teacher=teacher,
                      messages=messages, run=t.run, correct=correct, source=edit.source or t.source,
                      record=edit.record or 0, meta=meta, tools=t.tools)


def label_edited(trajectories: list[Trajectory], timeout: float | None = None) -> int:
    """Correctness of the edited trajectories whose answer changed, by math-verify against their reference answer
    (all checked together, in worker processes); how many got a label."""
    todo = [t for t in trajectories if t.meta.get("edited_from") and t.correct is None and t.meta.get("reference")]
    if not todo:
        return 0
    verdicts = check_answers([(str(t.meta["reference"]), t.answer) for t in todo], timeout)
    for t, v in zip(todo, verdicts):
        if v.correct is not None:
            t.correct, t.meta["correct_source"] = v.correct, "math-verify"
    return sum(v.correct is not None for v in verdicts)


def read_edits(path: str | Path) -> tuple[list[Edit], list[RecordError]]:
    """The edits of a file (JSONL, JSON, CSV or Parquet, one per record) and the records that are not edits."""
    path = Path(path)
    edits, errors = [], []
    for n, record, problem in raw_records(path):
        if problem is None:
            try:
                edits.append(_edit(record, str(path), n))
                continue
            except EditError as e:
                problem = str(e)
        errors.append(RecordError(str(path), n, problem))
    return edits, errors


def _edit(record: object, source: str, n: int) -> Edit:
    if not isinstance(record, dict):
        raise EditError("an edit is an object with trajectory_id and response or replace")
    tid = record.get("trajectory_id", record.get("id"))
    if tid is None or isinstance(tid, (dict, list)) or str(tid) == "":
        raise EditError("no trajectory_id")
    response, spans, turn = record.get("response"), record.get("replace"), record.get("turn")
    if (response is None) == (spans is None):
        raise EditError("give either response (the new text) or replace (a list of {start, end, text})")
    if response is not None and not isinstance(response, str):
        raise EditError("response is not text")
    if turn is not None and (isinstance(turn, bool) or not isinstance(turn, int)):
        raise EditError("turn is not a whole number")
    return Edit(str(tid), response=response, replacements=list(_replacements(spans)) if spans is not None else [],
                turn=turn, source=source, record=n)


def _replacements(spans: object) -> Iterator[Replacement]:
    if not isinstance(spans, list) or not spans:
        raise EditError("replace is not a list of {start, end, text}")
    for i, s in enumerate(spans):
        ok = isinstance(s, dict) and all(isinstance(s.get(k), int) and not isinstance(s.get(k), bool)
                                         for k in ("start", "end")) and isinstance(s.get("text", ""), str)
        if not ok:
            raise EditError(f"replace[{i}] is not {{start, end, text}} with whole-number offsets")
        if s["end"] < s["start"]:
            raise EditError(f"replace[{i}] ends ({s['end']}) before it starts ({s['start']})")
        yield Replacement(s["start"], s["end"], s.get("text", ""))
