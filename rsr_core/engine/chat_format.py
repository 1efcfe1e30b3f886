"""Render a conversation for the student and find the response tokens, for any chat template.

The scored response of an assistant turn is always the teacher's text itself, verbatim: its canonical trace
(`rsr_core.data.trajectory.assistant_text`: reasoning and answer as one text). The template gives the context
around it, and only the context. The text before the first response is the rendering of the conversation up to
that turn with `add_generation_prompt=True` (system prompt, headers: what the student sees when it would write the
turn); the text after a response is what the template puts after that turn, found by rendering the turn as a
sentinel: its end-of-turn marker, the next messages, the next generation prompt. So templates that re-render
thinking (Qwen3 strips the newlines around it) or drop it (DeepSeek-R1-Distill keeps only what follows
`</think>`) still score the whole trace, and `Encoded.rewritten` says that their own rendering would differ.
A student without a chat template uses the plain format `System: ...\\n\\nUser: ...\\n\\nAssistant: ...\\n\\n` with
the tokenizer's own special tokens (BOS).

The boundary rule: the whole text is tokenized at once, as the student reads it, and a token is a response token
when it covers at least one character of the response and is not the first token of the text. A token that
straddles the boundary (a header newline merged with leading spaces, "Assistant: Let" tokenized as " Let") is the
student's prediction of the response's first characters, so it is scored, and its text is cut at the boundary.
The texts of a turn's tokens then concatenate back to its response exactly, from the first character.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rsr_core.data.trajectory import THINK_OPEN, assistant_text

MAX_LEN = 32768  # longer conversations are truncated and flagged
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
SENTINEL = "RSRxTURNxSENTINEL"

Renderer = Callable[[list[dict], bool], str]


class TemplateError(ValueError):
    """A conversation that the student's chat template cannot place, with the cause and a way out."""


@dataclass
class Encoded:
    """One conversation as the student reads it. N context tokens, T response tokens."""

    input_ids: list[int]  # [N] after truncation to max_len
    positions: np.ndarray  # [T] int64, index in input_ids of each response token (always >= 1)
    turn: np.ndarray  # [T] int32, assistant-turn index of each response token
    offsets: np.ndarray  # [T, 2] int64, character span in its turn's response text
    tokens: list[str]  # [T] the response text each token covers (concatenation gives the response back)
    truncated: bool  # the rendering was longer than max_len
    rewritten: bool = False  # the template's own rendering of the assistant text differs from the verbatim trace


def plain_render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The plain format: `Role: content\\n\\n` per message, then `Assistant: ` as the generation prompt."""
    text = "".join(f"{PLAIN_ROLES.get(m['role'], m['role'].capitalize())}: {m['content']}\n\n" for m in messages)
    return text + ("Assistant: " if add_generation_prompt else "")


def template_renderer(tokenizer) -> Renderer:
    """The student's chat template as a renderer; a template error becomes a TemplateError naming a way out."""
    def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt)
        except Exception as e:  # noqa: BLE001 - jinja raises whatever the template author chose
            raise TemplateError(f"the student's chat template refuses this conversation ({e}); give the "
                                "conversation in the roles the template accepts, or score with the plain format "
                                "(--plain-format)") from None
    return render


def canonical_messages(messages: list[dict]) -> list[dict]:
    """Role and text only, each assistant turn as its verbatim trace (reasoning included)."""
    return [{"role": m["role"], "content": assistant_text(m) if m["role"] == "assistant" else m["content"]}
            for m in messages]


def splice(messages: list[dict], render: Renderer) -> tuple[str, list[tuple[int, int]], bool]:
    """The conversation as the student reads it: the template's context around each verbatim response.

    Returns the text, the (start, end) of every assistant response in it, and whether the template's own
    rendering differs (it rewrites or drops part of an assistant text).
    """
    canon = canonical_messages(messages)
    turns = [i for i, m in enumerate(canon) if m["role"] == "assistant"]
    if not turns:
        return render(canon, False), [], False
    text = render(canon[:turns[0]], True)
    spans = []
    for j, i in enumerate(turns):
        response = canon[i]["content"]
        if response.startswith(THINK_OPEN):  # a generation prompt that already opens the think block
            for opened in (THINK_OPEN + "\n", THINK_OPEN):
                if text.endswith(opened):
                    text = text[:-len(opened)]
                    break
        spans.append((len(text), len(text) + len(response)))
        text += response + _after_turn(canon, turns, j, render)
    return text, spans, text != render(canon, False)


def _after_turn(canon: list[dict], turns: list[int], j: int, render: Renderer) -> str:
    """What the template writes after assistant turn j: its end of turn, the following messages and the next
    assistant turn's generation prompt (or the rest of the conversation after the last turn)."""
    i = turns[j]
    last = j + 1 == len(turns)
    context = [dict(m) for m in canon[: len(canon) if last else turns[j + 1]]]
    context[i] = {"role": "assistant", "content": SENTINEL}
    rendered = render(context, not last)
    at = rendered.find(SENTINEL)
    if at < 0 or rendered.find(SENTINEL, at + 1) >= 0:
        raise TemplateError(f"assistant turn {j} cannot be placed: the student's chat template does not write the "
                            "assistant's text; score with the plain format (--plain-format) or a student whose "
                            "template renders assistant turns")
    return rendered[at + len(SENTINEL):]


def encode(messages: list[dict], tokenizer, max_len: int = MAX_LEN, use_template: bool = True) -> Encoded:
    """Tokenize a conversation and pick out its response tokens (see module docstring)."""
    templated = use_template and bool(getattr(tokenizer, "chat_template", None))
    text, spans, rewritten = splice(messages, template_renderer(tokenizer) if templated else plain_render)
    enc = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offs = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    truncated = len(ids) > max_len
    if truncated:
        ids, offs = ids[:max_len], offs[:max_len]
    positions, turns, rel, tokens = [], [], [], []
    for k, (a, b) in enumerate(spans):
        idx = np.nonzero((offs[:, 0] < b) & (offs[:, 1] > a) & (offs[:, 1] > offs[:, 0]))[0]
        idx = idx[idx >= 1]  # the first token of the text has no prediction
        if idx.size == 0:
            continue
        s = np.maximum(offs[idx, 0], a) - a
        e = np.append(s[1:], min(int(offs[idx[-1], 1]), b) - a)
        e = np.maximum(e, s)
        response = text[a:b]
        positions.append(idx)
        turns.append(np.full(idx.size, k, dtype=np.int32))
        rel.append(np.stack([s, e], axis=1))
        tokens.extend(response[x:y] for x, y in zip(s.tolist(), e.tolist()))
    if positions:
        pos, turn, offsets = np.concatenate(positions), np.concatenate(turns), np.concatenate(rel)
    else:
        pos, turn, offsets = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 2), np.int64)
    return Encoded(ids, pos.astype(np.int64), turn, offsets.astype(np.int64), tokens, truncated, rewritten)
