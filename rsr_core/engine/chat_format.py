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

Agentic traces: an assistant turn's tool calls are part of its scored text, in the form Qwen-family templates write
(`rsr_core.data.trajectory.tool_calls_text`); `tool` messages are context. A template that renders tools (Qwen3's)
is given the record's `tools` and writes them in its own system prompt; for one that does not (and the plain
format), the tools are written into the system message as Qwen's template writes them (`tools_system_text`).
`Encoded.canonical_tools` says when the template's own rendering of the calls differs from the scored form (it
drops them, or writes them another way).

The boundary rule: the whole text is tokenized at once, as the student reads it, and a token is a response token
when it covers at least one character of the response and is not the first token of the text. A token that
straddles the boundary (a header newline merged with leading spaces, "Assistant: Let" tokenized as " Let") is the
student's prediction of the response's first characters, so it is scored, and its text is cut at the boundary.
The texts of a turn's tokens then concatenate back to its response exactly, from the first character.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from rsr_core.data.trajectory import THINK_OPEN, TOOL_CALLS_KEY, TOOL_KEYS, assistant_text, tool_calls_text

MAX_LEN = 32768  # longer conversations are truncated and flagged
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
SENTINEL = "RSRxTURNxSENTINEL"
PROBE_TOOL = {"type": "function", "function": {"name": "rsr_probe_tool", "description": "probe",
                                               "parameters": {"type": "object", "properties": {}}}}

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
    canonical_tools: bool = False  # tool calls scored in the canonical form the template does not write itself


def plain_render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The plain format: `Role: content\\n\\n` per message, then `Assistant: ` as the generation prompt."""
    text = "".join(f"{PLAIN_ROLES.get(m['role'], m['role'].capitalize())}: {m['content']}\n\n" for m in messages)
    return text + ("Assistant: " if add_generation_prompt else "")


def template_renderer(tokenizer, tools: list[dict] | None = None) -> Renderer:
    """The student's chat template as a renderer (given `tools` when there are); a template error becomes a
    TemplateError naming a way out."""
    extra = {"tools": tools} if tools else {}

    def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt, **extra)
        except Exception as e:  # noqa: BLE001 - jinja raises whatever the template author chose
            raise TemplateError(f"the student's chat template refuses this conversation ({e}); give the "
                                "conversation in the roles the template accepts, or score with the plain format "
                                "(--plain-format)") from None
    return render


_RENDERS_TOOLS: dict[str, bool] = {}


def renders_tools(tokenizer) -> bool:
    """Whether the student's chat template writes the tools it is given (a probe rendered with and without one)."""
    template = str(getattr(tokenizer, "chat_template", None) or "")
    if template not in _RENDERS_TOOLS:
        probe = [{"role": "user", "content": "x"}]
        try:
            _RENDERS_TOOLS[template] = (template_renderer(tokenizer, [PROBE_TOOL])(probe, False)
                                        != template_renderer(tokenizer)(probe, False))
        except TemplateError:
            _RENDERS_TOOLS[template] = False
    return _RENDERS_TOOLS[template]


def tools_system_text(tools: list[dict]) -> str:
    """The offered tools as Qwen's chat template writes them into the system prompt (for students whose template
    does not write tools, and the plain format)."""
    specs = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
            f"function signatures within <tools></tools> XML tags:\n<tools>{specs}\n</tools>\n\nFor each function "
            "call, return a json object with function name and arguments within <tool_call></tool_call> XML "
            'tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def canonical_messages(messages: list[dict], tools_text: str | None = None) -> list[dict]:
    """Role and text only, each assistant turn as its verbatim trace (reasoning and tool calls included), a tool
    message with its `tool_call_id` and `name`; `tools_text` appended to the system message (one is added when
    there is none)."""
    out = []
    for m in messages:
        if m["role"] == "assistant":
            out.append({"role": "assistant", "content": assistant_text(m)})
        else:
            out.append({"role": m["role"], "content": m["content"], **{k: m[k] for k in TOOL_KEYS if k in m}})
    if tools_text:
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{tools_text}"}
        else:
            out.insert(0, {"role": "system", "content": tools_text})
    return out


def _calls_rendered(messages: list[dict], render: Renderer) -> bool:
    """Whether the template's own rendering of the structured conversation writes every tool call as scored."""
    rendered = render(messages, False)
    return all(tool_calls_text(m[TOOL_CALLS_KEY], "").lstrip("\n") in rendered
               for m in messages if m["role"] == "assistant" and m.get(TOOL_CALLS_KEY))


def splice(messages: list[dict], render: Renderer,
           tools_text: str | None = None) -> tuple[str, list[tuple[int, int]], bool]:
    """The conversation as the student reads it: the template's context around each verbatim response.

    Returns the text, the (start, end) of every assistant response in it, and whether the template's own
    rendering differs (it rewrites or drops part of an assistant text).
    """
    canon = canonical_messages(messages, tools_text)
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


def encode(messages: list[dict], tokenizer, max_len: int = MAX_LEN, use_template: bool = True,
           tools: list[dict] | None = None) -> Encoded:
    """Tokenize a conversation (offering `tools`) and pick out its response tokens (see module docstring)."""
    templated = use_template and bool(getattr(tokenizer, "chat_template", None))
    native = templated and bool(tools) and renders_tools(tokenizer)
    render = template_renderer(tokenizer, tools if native else None) if templated else plain_render
    text, spans, rewritten = splice(messages, render, tools_system_text(tools) if tools and not native else None)
    canonical_tools = templated and any(m.get(TOOL_CALLS_KEY) for m in messages) and not _calls_rendered(
        messages, render)
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
    return Encoded(ids, pos.astype(np.int64), turn, offsets.astype(np.int64), tokens, truncated, rewritten,
                   canonical_tools)
