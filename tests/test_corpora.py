"""Published corpora read as published: every layout gives the conversation of its plain `messages` form (and, scored
under the real student, the same numbers), candidates in lists, correctness and flags per candidate, system
prompts, thought markers; and the notes a user needs once. Records are written in the published schemas:

- OpenR1-Math-220k: problem, solution, answer, uuid, generations (list), correctness_math_verify (aligned list),
  is_reasoning_complete, finish_reasons, correctness_count, messages (one chosen generation);
- Llama-Nemotron post-training: input (a list of messages), output (with <think>), reasoning ("on"/"off"),
  system_prompt, category, generator, license, version;
- OpenThoughts / Bespoke-Stratos: system, conversations (from/value), <|begin_of_thought|> markers;
- s1K: question, solution, cot_type, thinking_trajectories (one-element list), attempt.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsr_core.analysis.segments import ANSWER, THINKING
from rsr_core.data.formats import read_inputs, read_trajectories
from rsr_core.data.tables import scores_parts
from rsr_core.data.trajectory import part_starts
from rsr_core.engine.pipeline import score_trajectories
from tests.conftest import write_jsonl

P1, P2 = "What is 17 * 23 + 5?", "Solve for x: 2x + 6 = 14."


def trace(think: str, answer: str) -> str:
    return f"<think>\n{think}\n</think>\n\n{answer}"


GENERATIONS = [trace("17 * 23 is 391. Adding 5 gives 396.", "So $\\boxed{396}$."),
               trace("17 * 23 = 381? Then 386.", "$\\boxed{386}$"),
               trace("Maybe 400.", "The answer is")]


def user(text):
    return {"role": "user", "content": text}


def asst(text):
    return {"role": "assistant", "content": text}


@pytest.fixture
def openr1(tmp_path):
    rows = [{"problem": P1, "solution": "", "answer": "396", "uuid": "u1", "generations": GENERATIONS,
             "correctness_math_verify": [True, False, False], "is_reasoning_complete": [True, True, False],
             "finish_reasons": ["stop", "stop", "length"], "correctness_count": 1,
             "messages": [user(P1), asst(GENERATIONS[0])]}]
    path = tmp_path / "openr1.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_openr1_generations_are_candidates_with_their_labels_and_flags(openr1):
    ts, errors = read_trajectories(openr1, prompt_field="problem", response_field="generations")
    assert errors == []
    assert [t.trajectory_id for t in ts] == ["u1/0", "u1/1", "u1/2"]
    assert [t.correct for t in ts] == [True, False, False]  # detected: correctness_math_verify
    assert [t.meta["candidate"] for t in ts] == [0, 1, 2]
    assert [t.meta["complete"] for t in ts] == [True, True, False]  # is_reasoning_complete / finish_reasons
    assert [t.meta["correct_source"] for t in ts] == ["data"] * 3
    assert len({t.problem_id for t in ts}) == 1 and ts[0].teacher == "openr1"
    assert ts[1].messages == [user(P1), {"role": "assistant", "content": "$\\boxed{386}$",
                                         "reasoning_content": "17 * 23 = 381? Then 386."}]


def test_openr1_by_default_reads_messages_and_says_the_candidates_are_there(openr1):
    read = read_inputs([openr1])
    assert len(read.trajectories) == 1 and read.trajectories[0].trajectory_id == "u1"
    (note,) = read.notes
    assert "`generations`" in note and "--prompt-field problem --response-field generations" in note
    assert "--correct-field correctness_math_verify" in note


def test_a_correct_field_that_does_not_fit_the_candidates_is_a_named_problem(openr1):
    ts, errors = read_trajectories(openr1, prompt_field="problem", response_field="generations",
                                   correct_field="correctness_count")
    assert ts == [] and len(errors) == 1
    assert "'correctness_count' holds one label for a list of 3 responses" in str(errors[0])
    assert str(errors[0]).startswith(f"{openr1}, record 0")


def test_nemotron_message_list_input_system_prompt_and_the_reasoning_switch(tmp_path):
    out = trace("2x = 8, x = 4.", "x = 4")
    path = write_jsonl(tmp_path / "nemotron.jsonl", [
        {"input": [user(P2)], "output": out, "reasoning": "on", "system_prompt": "detailed thinking on",
         "category": "math", "generator": "DeepSeek-R1", "license": "cc-by-4.0", "version": "v1"},
        {"input": [user(P1)], "output": "396", "reasoning": "off", "system_prompt": "detailed thinking off",
         "category": "math", "generator": "Qwen-2.5-Math-7B-Instruct", "license": "cc-by-4.0", "version": "v1"}])
    (a, b), errors = read_trajectories(path)
    assert errors == []
    assert a.messages == [{"role": "system", "content": "detailed thinking on"}, user(P2),
                          {"role": "assistant", "content": "x = 4", "reasoning_content": "2x = 8, x = 4."}]
    assert b.messages[-1] == asst("396") and "reasoning_content" not in b.messages[-1]  # "off" is not a trace
    assert (a.teacher, b.teacher) == ("DeepSeek-R1", "Qwen-2.5-Math-7B-Instruct")  # the generator
    # named explicitly, the message-list prompt reads the same
    (c, _), errors = read_trajectories(path, prompt_field="input", response_field="output")
    assert errors == [] and c.messages == a.messages


def test_openthoughts_system_prompt_is_kept_and_the_thought_markers_split_the_parts(tmp_path):
    system = "Your role as an assistant involves thoroughly exploring questions."
    text = ("<|begin_of_thought|>\n\n17 * 20 = 340, plus 51 is 391, plus 5 is 396.\n\n<|end_of_thought|>\n\n"
            "<|begin_of_solution|>\n\n396\n\n<|end_of_solution|>")
    path = write_jsonl(tmp_path / "ot.jsonl", [{"system": system, "conversations": [
        {"from": "user", "value": P1}, {"from": "assistant", "value": text}]}])
    (t,), errors = read_trajectories(path)
    assert errors == []
    assert t.messages == [{"role": "system", "content": system}, user(P1), asst(text)]  # verbatim
    answer, tools = part_starts(t.messages[-1])
    assert text[answer:].startswith("<|begin_of_solution|>") and text[:answer].endswith("<|end_of_thought|>\n\n")
    assert tools is None and t.answer == text[answer:]


def test_s1k_reads_the_one_element_trajectory_list(tmp_path):
    path = write_jsonl(tmp_path / "s1k.jsonl", [{"question": P2, "solution": "4", "cot_type": "math",
                                                 "thinking_trajectories": ["2x = 8 so x = 4."],
                                                 "attempt": "$\\boxed{4}$"}])
    want = [user(P2), {"role": "assistant", "content": "$\\boxed{4}$", "reasoning_content": "2x = 8 so x = 4."}]
    for fields in ({}, {"prompt_field": "question", "reasoning_field": "thinking_trajectories",
                        "response_field": "attempt"}):
        (t,), errors = read_trajectories(path, **fields)
        assert errors == [] and t.messages == want


def test_two_reasoning_traces_for_one_response_are_a_named_problem(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"question": P2, "thinking_trajectories": ["a", "b"],
                                               "attempt": "4"}])
    ts, errors = read_trajectories(path)
    assert ts == [] and "2 reasoning traces in 'thinking_trajectories' for 1 response(s)" in str(errors[0])


def test_every_layout_scores_as_its_messages_form(tmp_path, student):
    """The numbers of each published layout equal those of the same conversation written as `messages`: the
    reader gives the student the same text."""
    system = "Think step by step."
    out = trace("2x = 14 - 6 = 8, and x = 4.", "x = 4")
    ot = ("<|begin_of_thought|>\n\n2x = 8.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nx = 4\n\n"
          "<|end_of_solution|>")
    shapes = {
        "nemotron": ({"input": [user(P2)], "output": out, "reasoning": "on", "system_prompt": system},
                     [{"role": "system", "content": system}, user(P2), asst(out)]),
        "openthoughts": ({"system": system, "conversations": [{"from": "user", "value": P2},
                                                              {"from": "assistant", "value": ot}]},
                         [{"role": "system", "content": system}, user(P2), asst(ot)]),
        "s1k": ({"question": P2, "thinking_trajectories": ["2x = 8."], "attempt": "x = 4"},
                [user(P2), {"role": "assistant", "content": "x = 4", "reasoning_content": "2x = 8."}]),
        "openr1": ({"problem": P2, "generations": [out], "correctness_math_verify": [True]},
                   [user(P2), asst(out)]),
    }
    for name, (record, messages) in shapes.items():
        fields = {"prompt_field": "problem", "response_field": "generations"} if name == "openr1" else {}
        (t,), errors = read_trajectories(write_jsonl(tmp_path / f"{name}.jsonl", [record]), **fields)
        (ref,), _ = read_trajectories(write_jsonl(tmp_path / f"{name}_ref.jsonl", [{"messages": messages}]))
        assert errors == [] and t.messages == ref.messages, name
        got = score_trajectories([t, ref], student, use_cache=False).scores
        a, b = got[t.trajectory_id], got[ref.trajectory_id]
        assert a.n_context == b.n_context and a.tokens == b.tokens, name
        assert np.array_equal(a.rank, b.rank) and np.array_equal(a.surprisal, b.surprisal), name
        if name == "openthoughts":  # the markers split the scored tokens into thinking and answer
            parts = scores_parts(t.messages, a)
            first_answer = int(np.flatnonzero(parts == ANSWER)[0])
            assert (parts[:first_answer] == THINKING).all() and (parts[first_answer:] == ANSWER).all()
            assert "".join(a.tokens[first_answer:]).startswith("<|begin_of_solution|>")
