"""Reasoning traces in every shape they come in: read, kept, rendered canonically and scored the same way."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.selection import selection_records
from rsr_core.data.formats import read_trajectories
from rsr_core.data.tables import coverage, trajectory_table
from rsr_core.data.trajectory import answer_start, assistant_text, split_reasoning
from rsr_core.engine.cache import entry_key
from rsr_core.engine.pipeline import score_trajectories
from tests.conftest import ROOT, write_jsonl

PROBLEM = "A shop sells pencils at 3 for $0.75. How much do 14 pencils cost?"
THINKING = ("Okay, so the price is for three pencils. 0.75 divided by 3 is 0.25.\n"
            "Wait, let me double-check: 3 times 0.25 is 0.75. Yes.\nSo 14 pencils cost 3.5.\n")
ANSWER = "One pencil costs $0.25, so 14 pencils cost **$3.50**."
CANONICAL = "<think>\n" + THINKING + "\n</think>\n\n" + ANSWER
USER = {"role": "user", "content": PROBLEM}

SHAPES = {
    "field": {"messages": [USER, {"role": "assistant", "content": ANSWER, "reasoning_content": THINKING}]},
    "alias reasoning": {"messages": [USER, {"role": "assistant", "content": ANSWER, "reasoning": THINKING}]},
    "alias thinking": {"messages": [USER, {"role": "assistant", "content": ANSWER, "thinking": THINKING}]},
    "tags": {"messages": [USER, {"role": "assistant", "content": CANONICAL}]},
    "closing tag only": {"messages": [USER, {"role": "assistant", "content": THINKING + "\n</think>\n\n" + ANSWER}]},
    "content parts": {"messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": CANONICAL}]}]},
    "sharegpt": {"conversations": [{"from": "human", "value": PROBLEM}, {"from": "gpt", "value": CANONICAL}]},
    "columns, detected": {"problem": PROBLEM, "message_thinking": THINKING, "message_content": ANSWER},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_reads_into_the_same_canonical_message(tmp_path, shape):
    (t,), errors = read_trajectories(write_jsonl(tmp_path / "in.jsonl", [SHAPES[shape]]))
    assert errors == []
    assert t.messages == [USER, {"role": "assistant", "content": ANSWER, "reasoning_content": THINKING}]
    assert t.response == CANONICAL and t.has_reasoning


def test_plain_columns_with_explicit_reasoning_field(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", [{"q": PROBLEM, "cot": THINKING, "final": ANSWER, "why": "x"}])
    (t,), errors = read_trajectories(f, prompt_field="q", response_field="final", reasoning_field="cot")
    assert errors == [] and t.response == CANONICAL
    # two candidate reasoning columns are ambiguous: nothing is guessed
    g = write_jsonl(tmp_path / "two.jsonl", [{"problem": PROBLEM, "thinking": THINKING, "reasoning": "other",
                                              "answer": ANSWER}])
    (u,), _ = read_trajectories(g, prompt_field="problem", response_field="answer")
    assert u.response == ANSWER and not u.has_reasoning


def test_canonical_form_round_trips():
    assert split_reasoning(CANONICAL) == (THINKING, ANSWER)
    assert split_reasoning("<think>unfinished thought") == (None, "<think>unfinished thought")
    assert split_reasoning("<think>\n\n</think>\n\nJust the answer.") == (None, "Just the answer.")
    message = {"role": "assistant", "content": ANSWER, "reasoning_content": THINKING}
    assert assistant_text(message)[answer_start(message):] == ANSWER


def test_the_three_shapes_give_the_same_tokens_and_numbers(tmp_path, student):
    files = {
        "field": write_jsonl(tmp_path / "field.jsonl", [dict(SHAPES["field"], id="t")]),
        "tags": write_jsonl(tmp_path / "tags.jsonl", [dict(SHAPES["tags"], id="t")]),
        "columns": write_jsonl(tmp_path / "plain.jsonl", [{"id": "t", "problem": PROBLEM, "thinking": THINKING,
                                                           "answer": ANSWER}]),
    }
    results = {}
    for name, f in files.items():
        kwargs = dict(prompt_field="problem", response_field="answer", reasoning_field="thinking") \
            if name == "columns" else {}
        (t,), _ = read_trajectories(f, **kwargs)
        results[name] = score_trajectories([t], student, use_cache=False).scores["t"]
    ref = results["field"]
    assert "".join(ref.tokens) == CANONICAL
    for name, got in results.items():
        np.testing.assert_array_equal(got.token_ids, ref.token_ids, err_msg=name)
        np.testing.assert_array_equal(got.surprisal, ref.surprisal, err_msg=name)
        np.testing.assert_array_equal(got.rank, ref.rank, err_msg=name)


def test_reasoning_is_kept_in_the_stored_cached_and_exported_conversation(tmp_path, student):
    (t,), _ = read_trajectories(write_jsonl(tmp_path / "in.jsonl", [dict(SHAPES["tags"], id="t")]))
    result = score_trajectories([t], student, cache_dir=tmp_path / "cache")
    table = trajectory_table([t], result.scores, student.name)
    stored = json.loads(table.loc[0, "messages"])
    assert stored[1]["reasoning_content"] == THINKING and table.loc[0, "coverage"] == 1.0
    record = selection_records(table)[0]
    assert record["messages"][1] == {"role": "assistant", "content": ANSWER, "reasoning_content": THINKING}
    # the answer-only conversation is another cache entry: a run without the reasoning never answers for it
    answer_only = [USER, {"role": "assistant", "content": ANSWER}]
    keys = {entry_key(student.name, student.fingerprint, student.chat_template, "float32", 32768, 5, m)
            for m in (t.messages, answer_only)}
    assert len(keys) == 2
    again = score_trajectories([t], student, cache_dir=tmp_path / "cache")
    assert again.cached == 1 and "".join(again.scores["t"].tokens) == CANONICAL


def test_coverage_falls_below_one_only_when_truncated(tmp_path, student):
    (t,), _ = read_trajectories(write_jsonl(tmp_path / "in.jsonl", [dict(SHAPES["field"], id="t")]))
    full = score_trajectories([t], student, use_cache=False).scores["t"]
    cut = score_trajectories([t], student, use_cache=False, max_len=60).scores["t"]
    assert coverage(full, t.messages) == 1.0
    assert cut.truncated and 0 < coverage(cut, t.messages) < 1.0


def test_many_teachers_in_one_file(tmp_path):
    rows = [{"id": f"q{i}", "question": f"{i} + {i}?", "ground_truth": str(2 * i),
             "small_model": {"solution": f"{i} + {i} = {2 * i}", "is_correct": True},
             "large_model": {"solution": f"It is {2 * i + 1}", "is_correct": False}} for i in range(3)]
    f = write_jsonl(tmp_path / "solutions.jsonl", rows)
    ts, errors = read_trajectories(f, prompt_field="question", response_field="*_model")
    assert errors == [] and len(ts) == 6
    assert sorted({t.teacher for t in ts}) == ["large_model", "small_model"]
    assert ts[0].trajectory_id == "q0/large_model" and len({t.problem_id for t in ts}) == 3
    assert {t.teacher: t.correct for t in ts} == {"small_model": True, "large_model": False}
    # a record missing one column loses only that trajectory, with the column named
    rows[1]["large_model"] = None
    ts, errors = read_trajectories(write_jsonl(tmp_path / "gap.jsonl", rows), prompt_field="question",
                                   response_field=["small_model", "large_model"])
    assert len(ts) == 5 and len(errors) == 1 and "line 2: column 'large_model'" in str(errors[0])


def test_gsm8k_model_solutions_score_as_four_teachers_in_one_command(tmp_path, shared_data):
    src = shared_data / "gsm8k" / "example_model_solutions.jsonl"
    head = tmp_path / "solutions.jsonl"
    head.write_text("".join(src.read_text().splitlines(keepends=True)[:3]))
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "rsr_core", "score", str(head), "--prompt-field", "question",
                           "--response-field", "*_finetuning", "*_verification", "--out", str(out),
                           "--cache-dir", str(tmp_path / "cache")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 12 and table["teacher"].nunique() == 4 and table["problem_id"].nunique() == 3
    assert (table["coverage"] == 1.0).all() and table["correct"].notna().all()
