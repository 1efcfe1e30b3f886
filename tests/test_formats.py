"""Every input format and schema, metadata carried through, and bad records reported with file and line."""
import json

import numpy as np
import pandas as pd
import pytest

from rsr_core.data.formats import read_trajectories
from rsr_core.data.trajectory import correct_column, parse_correct
from tests.conftest import write_jsonl

MSG = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}]


def test_messages_jsonl_with_metadata(tmp_path):
    f = write_jsonl(tmp_path / "qwq.jsonl", [
        {"id": "a", "problem_id": "p1", "teacher": "QwQ-32B", "run": 2, "correct": True, "messages": MSG},
        {"messages": MSG}])
    ts, errors = read_trajectories(f)
    assert errors == []
    assert [t.trajectory_id for t in ts][0] == "a"
    a, b = ts
    assert (a.problem_id, a.teacher, a.run, a.correct, a.record) == ("p1", "QwQ-32B", "2", True, 1)
    assert b.teacher == "qwq" and b.correct is None and b.record == 2
    assert b.trajectory_id.startswith("t-") and b.problem_id.startswith("p-")
    # ids and problem ids are stable across reads
    assert read_trajectories(f)[0][1].trajectory_id == b.trajectory_id


def test_correctness_is_read_from_every_spelling_and_unknown_otherwise(tmp_path):
    for value in (True, 1, 1.0, np.int64(1), np.bool_(True), "true", " TRUE ", "1", "1.0", "yes", "Y", "t",
                  "correct"):
        assert parse_correct(value) is True, value
    for value in (False, 0, 0.0, np.float64(0), "false", "0", "0.0", "No", "n", "F", "incorrect", "wrong"):
        assert parse_correct(value) is False, value
    for value in (None, float("nan"), pd.NA, "", "  ", "maybe", 2, 0.5, [1], {"is_correct": True}):
        assert parse_correct(value) is None, value
    column = correct_column(pd.Series(["yes", None, 0, "F", np.nan, "x", True], index=range(5, 12)))
    assert str(column.dtype) == "boolean" and list(column.index) == list(range(5, 12))
    assert [None if pd.isna(v) else bool(v) for v in column] == [True, None, False, False, None, None, True]
    f = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "a", "correct": "Yes", "messages": MSG}, {"id": "b", "is_correct": 0, "messages": MSG},
        {"id": "c", "correct": "unsure", "is_correct": "t", "messages": MSG},
        {"id": "d", "question": "Q?", "answer": {"solution": "A.", "is_correct": "false"}},
        {"id": "e", "correct": "", "messages": MSG}])
    ts, errors = read_trajectories(f)
    assert errors == [] and [t.correct for t in ts] == [True, False, True, False, None]


def test_same_problem_matches_across_files_by_prompt_text(tmp_path):
    f1 = write_jsonl(tmp_path / "t1.jsonl", [{"messages": MSG}])
    other = [dict(MSG[0], content="What is  2 + 2?\n"), {"role": "assistant", "content": "Four."}]
    f2 = write_jsonl(tmp_path / "t2.jsonl", [{"messages": other}])
    (a,), _ = read_trajectories(f1)
    (b,), _ = read_trajectories(f2)
    assert a.problem_id == b.problem_id and a.trajectory_id != b.trajectory_id


def test_sharegpt_alpaca_and_plain_columns(tmp_path):
    f = write_jsonl(tmp_path / "mixed.jsonl", [
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                           {"from": "gpt", "value": "Hello."}]},
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"question": "3 * 3?", "answer": "9"},
    ])
    ts, errors = read_trajectories(f)
    assert errors == []
    assert [m["role"] for m in ts[0].messages] == ["system", "user", "assistant"]
    assert ts[1].messages[0]["content"] == "Add the numbers.\n\n2 and 3" and ts[1].response == "5"
    assert ts[2].prompt == "3 * 3?" and ts[2].response == "9"


@pytest.mark.parametrize("suffix", [".json", ".parquet", ".csv"])
def test_json_parquet_and_csv(tmp_path, suffix):
    rows = [{"id": "x1", "problem": "1 + 1?", "gemini_output": "2", "level": "Level 1"},
            {"id": "x2", "problem": "2 + 2?", "gemini_output": "4", "level": "Level 1"}]
    path = tmp_path / f"gemini{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        pd.DataFrame(rows).to_csv(path, index=False)
    ts, errors = read_trajectories(path, prompt_field="problem", response_field="gemini_output")
    assert errors == [] and [t.trajectory_id for t in ts] == ["x1", "x2"]
    assert ts[1].messages == [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]
    assert ts[0].teacher == "gemini"


def test_messages_column_in_parquet_and_csv(tmp_path):
    frame = pd.DataFrame({"id": ["m1"], "messages": [MSG]})
    frame.to_parquet(tmp_path / "a.parquet")
    frame.assign(messages=[json.dumps(MSG)]).to_csv(tmp_path / "a.csv", index=False)
    for name in ("a.parquet", "a.csv"):
        (t,), errors = read_trajectories(tmp_path / name)
        assert errors == [] and t.messages == MSG


def test_reference_layout_one_folder_per_teacher(tmp_path):
    for teacher in ("qwq-32b", "deepseek-r1"):
        (tmp_path / teacher).mkdir()
        for run in ("run1", "run2"):
            write_jsonl(tmp_path / teacher / f"{run}.jsonl", [{"messages": MSG}])
    ts, errors = read_trajectories(tmp_path)
    assert errors == []
    assert sorted((t.teacher, t.run) for t in ts) == [("deepseek-r1", "run1"), ("deepseek-r1", "run2"),
                                                      ("qwq-32b", "run1"), ("qwq-32b", "run2")]
    assert len({t.trajectory_id for t in ts}) == 4 and len({t.problem_id for t in ts}) == 1


def test_bad_records_are_named_and_the_rest_is_read(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join([
        json.dumps({"id": "ok1", "messages": MSG}),
        '{"id": "broken", "messages": [',
        json.dumps({"id": "no-answer", "messages": MSG[:1]}),
        json.dumps({"id": "ok1", "messages": MSG}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "odd", "text": "no schema"}),
        json.dumps({"id": "ok2", "messages": MSG}),
    ]) + "\n")
    ts, errors = read_trajectories(f)
    assert [t.trajectory_id for t in ts] == ["ok1", "ok2"]
    msgs = [str(e) for e in errors]
    assert len(msgs) == 5
    assert all(m.startswith(f"{f}, line ") for m in msgs)
    assert "line 2: invalid JSON" in msgs[0]
    assert "line 3: no non-empty assistant message" in msgs[1]
    assert "line 4: duplicate trajectory id 'ok1'" in msgs[2]
    assert "line 5: expected a JSON object" in msgs[3]
    assert "line 6: cannot tell the schema" in msgs[4] and "--prompt-field" in msgs[4]


def test_missing_and_unreadable_files(tmp_path):
    ts, errors = read_trajectories(tmp_path / "nope.jsonl")
    assert ts == [] and "no such file" in str(errors[0])
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    ts, errors = read_trajectories(bad)
    assert ts == [] and str(errors[0]).startswith(f"{bad}: cannot read file")
    ts, errors = read_trajectories(tmp_path / "x.jsonl", prompt_field="q")
    assert ts == []


def test_ambiguous_columns_ask_for_fields(shared_data):
    ts, errors = read_trajectories(shared_data / "eit_math" / "math_human.json")
    assert ts == [] and "chatgpt_output" in str(errors[0]) and "--response-field" in str(errors[0])


def test_real_files_read_completely(shared_data):
    ts, errors = read_trajectories(shared_data / "eit_math" / "math_llama_level6_ranked.json",
                                   prompt_field="problem", response_field="llama_output")
    assert errors == [] and len(ts) == 1228 and ts[0].teacher == "math_llama_level6_ranked"
    ts, errors = read_trajectories(shared_data / "gsm8k" / "example_model_solutions.jsonl",
                                   prompt_field="question", response_field="175b_verification")
    assert errors == [] and len(ts) == 1319
    share = sum(t.correct for t in ts) / len(ts)
    assert share == pytest.approx(0.563, abs=0.01)  # the published accuracy of this GPT-3 verifier
    ts, errors = read_trajectories(shared_data / "gsm8k" / "test.jsonl")
    assert errors == [] and len(ts) == 1319 and ts[0].response.split("####")[-1].strip().isdigit()
