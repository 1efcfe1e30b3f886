"""One teacher trajectory: a conversation plus the metadata that every output carries along."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field


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
        """Text of the last assistant message."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), "")


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
