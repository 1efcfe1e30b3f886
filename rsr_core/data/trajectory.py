"""One teacher trajectory: a conversation plus the metadata that every output carries along.

Reasoning traces have one canonical form. An assistant message keeps its reasoning apart, in `reasoning_content`
(the convention of reasoning datasets and of chat templates that support thinking), and its answer in `content`.
The text that is scored, exported as a single string and shown is always

    <think>\n{reasoning}\n</think>\n\n{answer}

(the form R1-style teachers produce and Qwen3's template renders), or the answer alone when there is no
reasoning. `split_reasoning` reads the same trace written with `<think>` tags, so a trace given as a field, as tags
or as two columns becomes the same message, the same tokens and the same numbers.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Trajectory:
    """A conversation to score (list of {"role", "content"}) and where it came from."""

    trajectory_id: str
    problem_id: str
    teacher: str
    messages: list[dict]
    run: str | None = None
    correct: bool | None = None
    source: str = ""
    record: int = 0  # 1-based line (JSONL, CSV) or 0-based index (JSON array, Parquet) in `source`
    meta: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """Text of the first user message (the problem)."""
        return next((m["content"] for m in self.messages if m["role"] == "user"), "")

    @property
    def response(self) -> str:
        """The scored text of the last assistant message (reasoning included, in the canonical form)."""
        texts = assistant_texts(self.messages)
        return texts[-1] if texts else ""

    @property
    def has_reasoning(self) -> bool:
        return any(m.get(REASONING_KEY) for m in self.messages if m["role"] == "assistant")


REASONING_KEY = "reasoning_content"
REASONING_ALIASES = (REASONING_KEY, "reasoning", "thinking", "reasoning_text", "thoughts")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def render_trace(reasoning: str | None, answer: str) -> str:
    """The canonical text of a trace: `<think>\n{reasoning}\n</think>\n\n{answer}`, the answer alone without
    reasoning."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}" if reasoning else answer


def answer_start(message: dict) -> int:
    """Character offset of the answer in `assistant_text(message)`: 0 when it has no reasoning."""
    reasoning = message.get(REASONING_KEY)
    return len(render_trace(reasoning, "")) if reasoning else 0


def assistant_text(message: dict) -> str:
    """The text scored for one assistant message: its reasoning and answer in the canonical form."""
    return render_trace(message.get(REASONING_KEY), message["content"])


def assistant_texts(messages: list[dict]) -> list[str]:
    """The scored text of every assistant turn, in order (token offsets index into these)."""
    return [assistant_text(m) for m in messages if m["role"] == "assistant"]


def split_reasoning(content: str) -> tuple[str | None, str]:
    """(reasoning, answer) of an assistant text that opens with a think block; (None, content) otherwise.

    `<think>R</think>A` (leading whitespace allowed) and `R</think>A` (the opening tag was in the prompt, as R1
    distills generate) are split; one newline on each side of R and the newlines that start A are the canonical
    form's own. An unclosed `<think>` (a trace cut off while thinking) is kept as it is, and an empty reasoning is
    no reasoning.
    """
    close = content.find(THINK_CLOSE)
    if close < 0:
        return None, content
    head = content[:close]
    opened = head.lstrip()
    if opened.startswith(THINK_OPEN):
        inner = opened[len(THINK_OPEN):]
    elif THINK_OPEN in head:
        return None, content
    else:
        inner = head
    inner = inner.removeprefix("\n").removesuffix("\n")
    answer = content[close + len(THINK_CLOSE):]
    answer = answer[2:] if answer.startswith("\n\n") else answer.lstrip("\n")
    return (inner if inner.strip() else None), answer


def normalise_message(message: dict) -> dict:
    """One message in the canonical form: lower-case role, text content, reasoning in `reasoning_content`.

    Reasoning comes from the first non-empty alias field (`reasoning_content`, `reasoning`, `thinking`, ...) or
    else from think tags in the content. A missing content (`is_missing`) is empty. Raises ValueError when the
    content is not text.
    """
    role = str(message["role"]).strip().lower()
    content = "" if is_missing(message["content"]) else _content_text(message["content"])
    if role != "assistant":
        return {"role": role, "content": content}
    reasoning = next((_content_text(message[k]) for k in REASONING_ALIASES
                      if k in message and not is_missing(message[k]) and not isinstance(message[k], float)), None)
    if reasoning is None or not reasoning.strip():
        reasoning, content = split_reasoning(content)
    out = {"role": role, "content": content}
    if reasoning:
        out[REASONING_KEY] = reasoning
    return out


MISSING_TEXTS = frozenset({"", "nan", "none", "null", "n/a"})


def is_missing(value: object) -> bool:
    """Whether a value stands for no value: None, NaN, or a whole text that is empty or reads NaN, None, null or
    N/A (any case, outer spaces ignored), as spreadsheets and dataframes write missing cells. A longer text that
    contains such a word is text."""
    if isinstance(value, str):
        text = value.strip()
        return len(text) <= 4 and text.lower() in MISSING_TEXTS
    return value is None or (isinstance(value, float) and math.isnan(value))


def _content_text(content) -> str:
    """Text of a message content: a string, or OpenAI-style parts `[{"type": "text", "text": ...}]` joined."""
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else p for p in content]
        if not all(isinstance(p, str) for p in parts):
            raise ValueError("content parts are not text")
        return "".join(parts)
    if not isinstance(content, str):
        raise ValueError("content is not text")
    return content


def normalise_prompt(text: str) -> str:
    """Lower-case prompt text with whitespace collapsed, so the same problem matches across files and teachers."""
    return re.sub(r"\s+", " ", text).strip().lower()


def stable_hash(*parts: object, n: int = 16) -> str:
    """Short, stable hex digest of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]


def problem_hash(prompt: str) -> str:
    """Problem id derived from the prompt text when the data has none."""
    return "p-" + stable_hash(normalise_prompt(prompt), n=12)


CORRECT_TRUE = frozenset({"true", "1", "1.0", "yes", "y", "t", "correct"})
CORRECT_FALSE = frozenset({"false", "0", "0.0", "no", "n", "f", "incorrect", "wrong"})


def parse_correct(value: object) -> bool | None:
    """Correctness of one value: a bool, 0/1, or (any case, outer spaces ignored) true/false, 1/0, yes/no, y/n,
    t/f, correct/incorrect/wrong; None when unknown (None, NaN, NA, '', any other value)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            return None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value) if value in (0, 1) else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return True if text in CORRECT_TRUE else False if text in CORRECT_FALSE else None


def correct_column(values: pd.Series) -> pd.Series:
    """`parse_correct` of every value of a Series, as pandas 'boolean' (NA where unknown), on the same index."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    codes, uniques = pd.factorize(values)
    parsed = pd.array([parse_correct(v) for v in uniques] + [None], dtype="boolean")
    return pd.Series(parsed[codes], index=values.index)
