"""Agentic traces: an assistant turn's tool calls are scored (under a template that writes them and one that does
not), `tool` messages are context, and the stored and exported conversation keeps every call, id and tool."""
import copy
import json

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.selection import select
from rsr_core.data.exports import write_selection
from rsr_core.data.formats import read_trajectories
from rsr_core.data.store import ResultsStore
from rsr_core.data.tables import trajectory_table
from rsr_core.data.trajectory import assistant_texts, part_starts, tool_calls_text
from rsr_core.engine.chat_format import encode, tools_system_text
from rsr_core.engine.pipeline import score_trajectories
from tests.app_pages import write_store
from tests.conftest import write_jsonl

TOOLS = [{"type": "function", "function": {"name": "calc", "description": "Evaluate an arithmetic expression",
                                           "parameters": {"type": "object", "properties": {"expr": {"type": "string"}},
                                                          "required": ["expr"]}}}]


def call(i: int, expr: str) -> dict:
    return {"id": f"call_{i}", "type": "function",
            "function": {"name": "calc", "arguments": json.dumps({"expr": expr})}}


AGENT = {"id": "agent-1", "tools": TOOLS, "messages": [
    {"role": "system", "content": "You can use a calculator."},
    {"role": "user", "content": "What is 17 * 23 + 5?"},
    {"role": "assistant", "content": "First I compute the product.", "tool_calls": [call(1, "17*23")]},
    {"role": "tool", "tool_call_id": "call_1", "content": "391"},
    {"role": "assistant", "content": None, "tool_calls": [call(2, "391+5")]},
    {"role": "tool", "tool_call_id": "call_2", "content": "396"},
    {"role": "assistant", "content": "17 * 23 + 5 = 396."}]}

# a Qwen-style chat template that writes the tools and the tool calls (as Qwen2.5 and Qwen3 do)
QWEN_STYLE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0].role == 'system' %}"
    "{{- messages[0].content + '\\n\\n' }}{%- endif %}{{- '# Tools\\n<tools>' }}{%- for tool in tools %}"
    "{{- '\\n' }}{{- tool | tojson }}{%- endfor %}{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- set content = message.content if message.content is string else '' %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant\\n' + content }}"
    "{%- for tc in message.tool_calls or [] %}{%- if (loop.first and content) or not loop.first %}{{- '\\n' }}"
    "{%- endif %}{%- set f = tc.function if tc.function else tc %}"
    "{{- '<tool_call>\\n{\"name\": \"' + f.name + '\", \"arguments\": ' }}"
    "{%- if f.arguments is string %}{{- f.arguments }}{%- else %}{{- f.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}{{- '<|im_start|>user\\n<tool_response>\\n' + content + "
    "'\\n</tool_response><|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    (t,), errors = read_trajectories(write_jsonl(tmp_path_factory.mktemp("agent") / "agent.jsonl", [AGENT]))
    assert errors == []
    return t


@pytest.fixture(scope="module")
def qwen_style(student):
    tokenizer = copy.deepcopy(student.tokenizer)
    tokenizer.chat_template = QWEN_STYLE
    return tokenizer


def test_the_canonical_form_of_tool_calls():
    calls = [call(1, "1+1"), {"name": "search", "arguments": {"q": "zeta"}}]
    assert tool_calls_text(calls, "Let me check.") == (
        '\n<tool_call>\n{"name": "calc", "arguments": {"expr": "1+1"}}\n</tool_call>'
        '\n<tool_call>\n{"name": "search", "arguments": {"q": "zeta"}}\n</tool_call>')
    assert tool_calls_text(calls[:1], "").startswith("<tool_call>")  # no text before: no newline


def test_tool_calls_and_ids_are_read_as_published(agent):
    m = agent.messages
    assert agent.tools == TOOLS and agent.has_tool_calls
    assert m[2]["tool_calls"] == [call(1, "17*23")] and m[3] == {"role": "tool", "content": "391",
                                                                "tool_call_id": "call_1"}
    assert m[4] == {"role": "assistant", "content": "", "tool_calls": [call(2, "391+5")]}  # a call without text
    texts = assistant_texts(m)
    assert texts[0] == ('First I compute the product.\n<tool_call>\n{"name": "calc", "arguments": {"expr": '
                        '"17*23"}}\n</tool_call>')
    assert texts[1].startswith("<tool_call>") and texts[2] == "17 * 23 + 5 = 396."
    assert part_starts(m[2]) == (0, len("First I compute the product.")) and part_starts(m[6]) == (0, None)


def test_a_template_that_does_not_write_tool_calls_scores_them_in_the_canonical_form(agent, student):
    enc = encode(agent.messages, student.tokenizer, tools=agent.tools)
    assert enc.canonical_tools and sorted(set(enc.turn.tolist())) == [0, 1, 2]
    texts = assistant_texts(agent.messages)
    for k, text in enumerate(texts):  # every turn, the tool-call-only one included, is scored as written
        assert "".join(t for t, turn in zip(enc.tokens, enc.turn) if turn == k) == text
    rendered = student.tokenizer.decode(enc.input_ids)
    assert tools_system_text(agent.tools) in rendered and "<|im_start|>tool\n391" in rendered


def test_a_template_that_writes_tool_calls_gets_them_and_the_tools(agent, qwen_style):
    enc = encode(agent.messages, qwen_style, tools=agent.tools)
    assert not enc.canonical_tools and not enc.rewritten
    rendered = qwen_style.decode(enc.input_ids)
    assert "# Tools\n<tools>\n" + json.dumps(TOOLS[0]) in rendered and tools_system_text(TOOLS) not in rendered
    assert "<tool_response>\n391\n</tool_response>" in rendered
    texts = assistant_texts(agent.messages)
    for k, text in enumerate(texts):
        assert "".join(t for t, turn in zip(enc.tokens, enc.turn) if turn == k) == text


def test_scored_stored_and_exported_with_every_call(agent, student, tmp_path):
    result = score_trajectories([agent], student, use_cache=False)
    assert result.canonical_tools_ids == {agent.trajectory_id}
    assert any("does not write tool calls" in n for n in result.notes())
    scores = result.scores
    table = trajectory_table([agent], scores, student.name)
    s = scores[agent.trajectory_id]
    starts = [part_starts(m)[1] for m in agent.messages if m["role"] == "assistant"]
    is_tool = np.array([starts[t] is not None and a >= starts[t] for t, (a, _) in zip(s.turn.tolist(),
                                                                                     s.offsets.tolist())])
    rank, surprisal = np.minimum(s.rank, 100).astype(float), s.surprisal.astype(float)
    assert table["rsr_tool_calls"].iloc[0] == pytest.approx(rank[is_tool].sum() / surprisal[is_tool].sum(), rel=1e-12)
    assert table["rsr_answer"].iloc[0] == pytest.approx(rank[~is_tool].sum() / surprisal[~is_tool].sum(), rel=1e-12)
    assert np.isnan(table["rsr_thinking"].iloc[0])

    write_store(tmp_path / "store", [agent], scores)
    store = ResultsStore(tmp_path / "store")
    conv = store.conversation(agent.trajectory_id)
    assert conv["messages"] == agent.messages and conv["tools"] == TOOLS
    back = store.token_scores(student.name, agent.trajectory_id)
    assert back.tokens == s.tokens and np.array_equal(back.rank, s.rank)
    stored = store.trajectory_table(student.name).iloc[0]
    assert stored["rsr_tool_calls"] == pytest.approx(table["rsr_tool_calls"].iloc[0], rel=1e-12)
    at_10 = store.trajectory_table(student.name, r_max=10).iloc[0]
    assert at_10["rsr_tool_calls"] == pytest.approx(np.minimum(s.rank[is_tool], 10).sum()
                                                    / surprisal[is_tool].sum(), rel=1e-9)

    chosen = select(table).selected
    for path in (tmp_path / "sel.jsonl", tmp_path / "sel.parquet"):
        write_selection(chosen, path)
    record = json.loads((tmp_path / "sel.jsonl").read_text())
    assert record["tools"] == TOOLS
    assert record["messages"][2]["tool_calls"] == [call(1, "17*23")]
    assert [m.get("tool_call_id") for m in record["messages"] if m["role"] == "tool"] == ["call_1", "call_2"]
    frame = pd.read_parquet(tmp_path / "sel.parquet")
    assert json.loads(frame["tools"].iloc[0]) == TOOLS and len(frame["messages"].iloc[0]) == 7
