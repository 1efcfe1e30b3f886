"""Render a conversation with the student's chat template and find the response tokens, for any template.

Each assistant turn is located by rendering the conversation up to that turn with `add_generation_prompt=True`
(the prefix) and finding the turn's content after it in the full rendering; the tokenizer's character offsets then
map tokens to turns. No template-specific markers are hard-coded. A student without a chat template uses the plain
format `System: ...\\n\\nUser: ...\\n\\nAssistant: ...\\n\\n` with the tokenizer's own special tokens (BOS).
The assistant header and the end-of-turn token fall outside the content, so they are never scored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_LEN = 32768  # longer conversations are truncated and flagged
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


class TemplateError(ValueError):
    """A conversation whose assistant turns cannot be found in the rendered template."""


@dataclass
class Encoded:
    """One conversation as the student reads it. N context tokens, T response tokens."""

    input_ids: list[int]  # [N] after truncation to max_len
    positions: np.ndarray  # [T] int64, index in input_ids of each response token (always >= 1)
    turn: np.ndarray  # [T] int32, assistant-turn index of each response token
    offsets: np.ndarray  # [T, 2] int64, character span in its turn's content
    tokens: list[str]  # [T] the content text each token covers (concatenation gives the content back)
    truncated: bool  # the rendering was longer than max_len


def render_plain(messages: list[dict]) -> tuple[str, list[tuple[int, int, int]]]:
    """Plain fallback: the text and the span (start, end, shift) of every assistant content in it.

    Character i of the text is character i - start + shift of the turn's content.
    """
    text, spans = "", []
    for m in messages:
        text += f"{PLAIN_ROLES.get(m['role'], m['role'].capitalize())}: "
        if m["role"] == "assistant":
            spans.append((len(text), len(text) + len(m["content"]), 0))
        text += m["content"] + "\n\n"
    return text, spans


def render_template(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int, int]]]:
    """Chat-template rendering and the span (start, end, shift) of every assistant content in it."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, cursor = [], 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        content = m["content"]
        body = content.strip()
        start_at = len(prefix) if full.startswith(prefix) and len(prefix) >= cursor else cursor
        found = full.find(body, start_at) if body else -1
        if found < 0:
            raise TemplateError(f"assistant turn {len(spans)} is not found in the chat-template rendering "
                                "(the template rewrites it)")
        lead = len(content) - len(content.lstrip())
        if full[found - lead:found - lead + len(content)] == content:
            spans.append((found - lead, found - lead + len(content), 0))  # rendered verbatim
        else:
            spans.append((found, found + len(body), lead))  # the template strips surrounding whitespace
        cursor = spans[-1][1]
    return full, spans


def encode(messages: list[dict], tokenizer, max_len: int = MAX_LEN) -> Encoded:
    """Tokenize a conversation and pick out its response tokens (see module docstring)."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    text, spans = render_template(messages, tokenizer) if templated else render_plain(messages)
    enc = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offs = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    truncated = len(ids) > max_len
    if truncated:
        ids, offs = ids[:max_len], offs[:max_len]
    contents = [m["content"] for m in messages if m["role"] == "assistant"]
    positions, turns, rel, tokens = [], [], [], []
    starts = offs[:, 0]
    for k, (a, b, shift) in enumerate(spans):
        idx = np.nonzero((starts >= a) & (starts < b) & (offs[:, 1] > offs[:, 0]))[0]
        idx = idx[idx >= 1]  # the first token of the context has no prediction
        if idx.size == 0:
            continue
        s = np.minimum(offs[idx, 0], b) - a + shift
        e = np.append(s[1:], min(int(offs[idx[-1], 1]), b) - a + shift)
        e = np.maximum(e, s)
        content = contents[k]
        positions.append(idx)
        turns.append(np.full(idx.size, k, dtype=np.int32))
        rel.append(np.stack([s, e], axis=1))
        tokens.extend(content[x:y] for x, y in zip(s.tolist(), e.tolist()))
    if positions:
        pos, turn, offsets = np.concatenate(positions), np.concatenate(turns), np.concatenate(rel)
    else:
        pos, turn, offsets = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 2), np.int64)
    return Encoded(ids, pos.astype(np.int64), turn, offsets.astype(np.int64), tokens, truncated)
