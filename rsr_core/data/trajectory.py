"""One teacher trajectory: a conversation plus the metadata that every output carries along.

Reasoning traces have one canonical form. An assistant message keeps its reasoning apart, in `reasoning_content`
(the convention of reasoning datasets and of chat templates that support thinking), and its answer in `content`.
The text that is scored, exported as a single string and shown is always

    <think>\n{reasoning}\n</think>\n\n{answer}

(the form R1-style teachers produce and Qwen3's template renders), or the answer alone when there is no
reasoning. `split_reasoning` reads the same trace written with `<think>` tags, so a trace given as a field, as tags
or as two columns becomes the same message, the same tokens and the same numbers.

Tool calls (agentic traces): an assistant message keeps its OpenAI `tool_calls` as given, and its scored text ends
with them in the form Qwen-family templates write (`tool_calls_text`):
`<tool_call>\n{"name": NAME, "arguments": ARGUMENTS}\n</tool_call>` per call, each on a new line after any text.
`tool` messages keep `tool_call_id` and `name`; the tools a record offers travel as `Trajectory.tools`.

Parts: every character of an assistant text is thinking, answer or tool calls (`part_starts`): thinking up to the
answer (the canonical think block, or OpenThoughts' `<|begin_of_thought|>` ... `<|end_of_thought|>` markers, which
stay in the text as written), the answer, then the tool calls.
"""
from __future__ import annotations

import json
import math
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
    meta: dict = field(default_factory=dict)  # extra table columns: candidate, complete, reference, correct_source
    tools: list[dict] | None = None  # the tools the record offers (OpenAI function specs), context of every turn

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
    def answer(self) -> str:
        """The answer part of the last assistant message: its text after the thinking, before any tool calls (where
        a final answer is looked for)."""
        last = next((m for m in reversed(self.messages) if m["role"] == "assistant"), None)
        if last is None:
            return ""
        a, b = part_starts(last)
        return assistant_text(last)[a:b]  # b None: to the end

    @property
    def has_reasoning(self) -> bool:
        return any(m.get(REASONING_KEY) for m in self.messages if m["role"] == "assistant")

    @property
    def has_tool_calls(self) -> bool:
        return any(m.get(TOOL_CALLS_KEY) for m in self.messages if m["role"] == "assistant")

    @property
    def identity(self) -> object:
        """What the numbers of this trajectory depend on besides the student: its conversation (and its tools)."""
        return conversation_identity(self.messages, self.tools)


def conversation_identity(messages: list[dict], tools: list[dict] | None) -> object:
    """The messages, or messages and tools when the record offers tools (so that conversations without tools keep
    the digests and cache keys they always had)."""
    return {"messages": messages, "tools": tools} if tools else messages


REASONING_KEY = "reasoning_content"
REASONING_ALIASES = (REASONING_KEY, "reasoning", "thinking", "reasoning_text", "thoughts")
REASONING_FLAGS = frozenset({"on", "off"})  # Llama-Nemotron's `reasoning` column: a switch, never a trace
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THOUGHT_OPEN, THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"  # OpenThoughts / Bespoke-Stratos
SOLUTION_OPEN = "<|begin_of_solution|>"
TOOL_CALLS_KEY = "tool_calls"
TOOL_KEYS = ("tool_call_id", "name")  # kept on `tool` messages


def render_trace(reasoning: str | None, answer: str) -> str:
    """The canonical text of a trace: `<think>\n{reasoning}\n</think>\n\n{answer}`, the answer alone without
    reasoning."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}" if reasoning else answer


def answer_start(message: dict) -> int:
    """Character offset of the answer in `assistant_text(message)`: 0 when it has no reasoning."""
    return part_starts(message)[0]


def part_starts(message: dict) -> tuple[int, int | None]:
    """(answer start, tool-call start): character offsets in `assistant_text(message)` where its thinking ends and
    where its tool calls begin. Thinking is the canonical think block, or the text up to OpenThoughts'
    `<|begin_of_solution|>` (else up to the whitespace after `<|end_of_thought|>`); without either, the answer
    starts at 0. Without tool calls, the tool-call start is None."""
    reasoning = message.get(REASONING_KEY)
    content = message["content"]
    trace = render_trace(reasoning, content)
    if reasoning:
        answer = len(render_trace(reasoning, ""))
    else:
        end = content.find(THOUGHT_CLOSE)
        answer = 0
        if end >= 0:
            answer = end + len(THOUGHT_CLOSE)
            solution = content.find(SOLUTION_OPEN, answer)
            rest = content[answer:]
            answer = solution if solution >= 0 else answer + len(rest) - len(rest.lstrip())
    return answer, len(trace) if message.get(TOOL_CALLS_KEY) else None


def turn_part_starts(messages: list[dict]) -> tuple[list[int], list[int | None]]:
    """`part_starts` of every assistant turn: ([answer starts], [tool-call starts]), as token offsets index them."""
    starts = [part_starts(m) for m in messages if m["role"] == "assistant"]
    return [a for a, _ in starts], [c for _, c in starts]


def assistant_text(message: dict) -> str:
    """The text scored for one assistant message: its reasoning and answer in the canonical form, then its tool
    calls (`tool_calls_text`)."""
    trace = render_trace(message.get(REASONING_KEY), message["content"])
    calls = message.get(TOOL_CALLS_KEY)
    return trace + tool_calls_text(calls, message["content"]) if calls else trace


def tool_call_parts(call: dict) -> tuple[str, str]:
    """(name, arguments as text) of one tool call, OpenAI's `{"function": {"name", "arguments"}}` or flat
    `{"name", "arguments"}`; arguments given as an object are written as JSON. ValueError when it has no name."""
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a tool call has no function name")
    args = fn.get("arguments", {})
    if is_missing(args):
        args = {}
    return name, args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def tool_calls_text(calls: list[dict], content: str) -> str:
    """The tool calls of an assistant turn as Qwen-family chat templates write them after the turn's text:
    `<tool_call>\n{"name": NAME, "arguments": ARGUMENTS}\n</tool_call>` each, on a new line after any text."""
    out = []
    for i, call in enumerate(calls):
        name, args = tool_call_parts(call)
        out.append(("\n" if i or content else "") + '<tool_call>\n{"name": "' + name + '", "arguments": ' + args
                   + "}\n</tool_call>")
    return "".join(out)


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
    """One message in the canonical form: lower-case role, text content, reasoning in `reasoning_content`,
    tool calls in `tool_calls` (as given), and a tool message's `tool_call_id` and `name`.

    Reasoning comes from the first non-empty alias field (`reasoning_content`, `reasoning`, `thinking`, ...; an
    on/off flag is not a trace) or else from think tags in the content. A missing content (`is_missing`) is
    empty. Raises ValueError when the content is not text or a tool call has no function name.
    """
    role = str(message["role"]).strip().lower()
    raw = message.get("content")
    content = "" if is_missing(raw) else _content_text(raw)
    if role == "tool":
        return {"role": role, "content": content,
                **{k: str(message[k]) for k in TOOL_KEYS if not is_missing(message.get(k))}}
    if role != "assistant":
        return {"role": role, "content": content}
    reasoning = next((_content_text(message[k]) for k in REASONING_ALIASES
                      if k in message and not is_missing(message[k]) and not isinstance(message[k], float)
                      and not is_reasoning_flag(message[k])), None)
    if reasoning is None or not reasoning.strip():
        reasoning, content = split_reasoning(content)
    out = {"role": role, "content": content}
    if reasoning:
        out[REASONING_KEY] = reasoning
    calls = message.get(TOOL_CALLS_KEY)
    if isinstance(calls, str) and calls.strip()[:1] == "[":
        calls = json.loads(calls)
    if calls is not None and not is_missing(calls) and calls != []:
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise ValueError("`tool_calls` is not a list of objects")
        for c in calls:
            tool_call_parts(c)
        out[TOOL_CALLS_KEY] = calls
    return out


def is_reasoning_flag(value: object) -> bool:
    """Whether a reasoning value is a switch (Llama-Nemotron's `reasoning`: "on" / "off"), not a trace."""
    return isinstance(value, str) and value.strip().lower() in REASONING_FLAGS


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
