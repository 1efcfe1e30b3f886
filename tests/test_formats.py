"""Every input format and schema, metadata carried through, and bad records reported with file and line."""
import json

import numpy as np
import pandas as pd
import pytest

from rsr_core.data.formats import RecordError, json_records, read_trajectories
from rsr_core.data.sources import record_fields
from rsr_core.analysis.table import correct_column, parse_correct
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


def _messages_record(i: int, text: str = "plus", user: str = "user", assistant: str = "assistant") -> dict:
    return {"id": f"r{i}", "messages": [{"role": user, "content": f"What is {i} {text} {i}?"},
                                        {"role": assistant, "content": f"{i} {text} {i} is {2 * i}."}]}


def test_a_byte_that_is_not_utf8_costs_its_line_only(tmp_path):
    lines = [json.dumps(_messages_record(i), ensure_ascii=False) for i in range(1000)]
    lines[600] = json.dumps(_messages_record(600, "plés"), ensure_ascii=False)  # é in Latin-1: byte 0xe9
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    ts, errors = read_trajectories(f)
    assert len(ts) == 999 and "r600" not in {t.trajectory_id for t in ts}
    column = lines[600].index("é") + 1
    assert [str(e) for e in errors] == [
        f"{f}, line 601: not UTF-8 text (byte 0xe9 at column {column}); save the file as UTF-8"]
    assert record_fields(f) == ["id", "messages"]


def test_a_json_document_with_a_bad_byte_names_its_line(tmp_path):
    f = tmp_path / "latin1.json"
    lines = [json.dumps(_messages_record(i, "plés" if i == 3 else "plus"), ensure_ascii=False) for i in range(5)]
    f.write_bytes(("[\n" + ",\n".join(lines) + "\n]").encode("latin-1"))
    ts, errors = read_trajectories(f)
    assert ts == [] and [str(e) for e in errors] == [f"{f}, line 5: cannot read file: not UTF-8 text (byte 0xe9 at "
                                                     f"column {lines[3].index('é') + 1}); save the file as UTF-8"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json"])
@pytest.mark.parametrize("encoding, bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                           ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b""), ("utf-16-be", b"")])
def test_byte_order_marks_and_utf16(tmp_path, suffix, encoding, bom):
    records = [_messages_record(i, "plüs") for i in range(3)]
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records)
    elif suffix == ".json":
        text = json.dumps(records, ensure_ascii=False, indent=1)
    else:
        text = pd.DataFrame([{"id": r["id"], "messages": json.dumps(r["messages"], ensure_ascii=False)}
                             for r in records]).to_csv(index=False)
    f = tmp_path / f"teacher{suffix}"
    f.write_bytes(bom + text.encode(encoding))
    ts, errors = read_trajectories(f)
    assert errors == [] and [t.messages for t in ts] == [r["messages"] for r in records]
    assert [t.teacher for t in ts] == ["teacher"] * 3 and record_fields(f) == ["id", "messages"]


def test_a_json_file_holding_one_record(tmp_path):
    cases = {
        "messages": _messages_record(1),
        "conversations": {"id": "r1", "conversations": [{"from": "human", "value": "Hi?"},
                                                        {"from": "gpt", "value": "Hello."}]},
        "alpaca": {"id": "r1", "instruction": "Add 1 and 1.", "output": "2", "tags": [{"k": "v"}]},
        "plain": {"id": "r1", "question": "1 + 1?", "answer": "2", "steps": [{"op": "add"}]},
    }
    for name, record in cases.items():
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(record))
        (t,), errors = read_trajectories(f)
        assert errors == [] and t.trajectory_id == "r1" and t.record == 0, name
        assert record_fields(f) == list(record), name
    # an object that holds its records under a key is read as before
    f = tmp_path / "wrapped.json"
    f.write_text(json.dumps({"version": 2, "tags": ["a"], "data": [_messages_record(i) for i in range(3)]}))
    ts, errors = read_trajectories(f)
    assert errors == [] and [t.trajectory_id for t in ts] == ["r0", "r1", "r2"]
    assert json_records({"data": []}) == [{"data": []}] and json_records([1]) == [1]
    for value in (0, "text", None, True):  # a document that is no object or array: one record, reported
        f.write_text(json.dumps(value))
        problem = f"expected a JSON object, got {type(value).__name__}"
        assert read_trajectories(f) == ([], [RecordError(str(f), 0, problem, "record")])


def test_roles_in_any_case(tmp_path):
    f = write_jsonl(tmp_path / "roles.jsonl", [
        _messages_record(1, user="User", assistant=" Assistant "),
        _messages_record(2, user="USER", assistant="ASSISTANT"),
        {"id": "s", "conversations": [{"from": "Human", "value": "Hi?"}, {"from": " GPT", "value": "Hello."}]}])
    ts, errors = read_trajectories(f)
    assert errors == [] and [[m["role"] for m in t.messages] for t in ts] == [["user", "assistant"]] * 3


MISSING = ["NaN", "None", "null", "nan", "NULL", "N/A", " none ", "n/a\t", "", None, float("nan")]


def test_missing_value_cells_are_never_scored(tmp_path):
    rows = [{"id": f"m{i}", "question": "What is 2 + 2?", "answer": v} for i, v in enumerate(MISSING)]
    rows += [{"id": "ok1", "question": "What did it return?", "answer": "It returned None."},
             {"id": "ok2", "question": "Say it.", "answer": "Nonexistent"},
             {"id": "no-prompt", "question": "null", "answer": "4"}]
    frame = pd.DataFrame(rows)  # CSV writes None and NaN as empty cells; Parquet keeps them as nulls
    files = {write_jsonl(tmp_path / "cells.jsonl", rows): 1, tmp_path / "cells.csv": 2, tmp_path / "cells.parquet": 0}
    frame.to_csv(tmp_path / "cells.csv", index=False)
    frame.to_parquet(tmp_path / "cells.parquet")
    for f, first in files.items():
        ts, errors = read_trajectories(f)
        assert [t.trajectory_id for t in ts] == ["ok1", "ok2"], f
        assert [e.message for e in errors] == ["response is empty or missing (field 'answer')"] * len(MISSING) + [
            "prompt is empty or missing (field 'question')"], f
        assert [e.record for e in errors] == [first + i for i in range(len(MISSING))] + [first + len(rows) - 1], f


def test_missing_values_in_messages_and_reasoning(tmp_path):
    records = [
        {"id": "a", "messages": [MSG[0], {"role": "assistant", "content": "None"}]},
        {"id": "b", "messages": [MSG[0], {"role": "assistant", "content": "NaN", "reasoning_content": "2 and 2."}]},
        {"id": "c", "messages": [MSG[0], {"role": "assistant", "content": "4", "reasoning_content": "null"}]},
        {"id": "d", "messages": [MSG[0], {"role": "assistant", "content": None}]},
        {"id": "e", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "N/A"}]},
        {"id": "f", "instruction": "Add.", "input": "None", "system": "null", "output": "It is None of those."},
        {"id": "g", "problem": "2 + 2?", "thinking": "NULL", "solution": "4"},
    ]
    ts, errors = read_trajectories(write_jsonl(tmp_path / "m.jsonl", records))
    assert [t.trajectory_id for t in ts] == ["b", "c", "f", "g"]
    assert [str(e).split(": ", 1)[1] for e in errors] == ["no non-empty assistant message to score"] * 3
    b, c, f, g = ts
    assert b.messages[1] == {"role": "assistant", "content": "", "reasoning_content": "2 and 2."}
    assert c.messages[1] == {"role": "assistant", "content": "4"} and not g.has_reasoning
    assert f.messages == [{"role": "user", "content": "Add."}, {"role": "assistant", "content": "It is None of those."}]


def test_csv_records_over_several_lines_and_bad_rows(tmp_path):
    f = tmp_path / "multi.csv"
    f.write_bytes(b'id,question,answer\n'
                  b'a,"line one\nline two",4\n'           # lines 2-3
                  b'b,"broken\nr\xe9sum\xe9\nend",5\n'    # lines 4-6, a Latin-1 byte at line 5
                  b'c,6 * 7?,42,extra\n'                  # line 7: one field too many
                  b'\n'
                  b'd,"2 + 2?\r\n",4\n')                  # lines 9-10
    ts, errors = read_trajectories(f)
    assert [(t.trajectory_id, t.record) for t in ts] == [("a", 2), ("d", 9)]
    assert ts[0].prompt == "line one\nline two" and ts[1].prompt == "2 + 2?\r\n"
    assert [str(e) for e in errors] == [
        f"{f}, line 5: not UTF-8 text (byte 0xe9 at column 2); save the file as UTF-8 (in the record of lines 4-6)",
        f"{f}, line 7: 4 fields where the header has 3"]
    f.write_bytes(b'id,qu\xe9stion,answer\na,1,2\n')
    ts, errors = read_trajectories(f)
    assert ts == [] and [str(e) for e in errors] == [
        f"{f}, line 1: cannot read file: header row: not UTF-8 text (byte 0xe9 at column 6); save the file as UTF-8"]


def test_lines_json_cannot_hold_cost_their_line_only(tmp_path):
    f = tmp_path / "odd.jsonl"
    f.write_bytes(b"\r".join([json.dumps(_messages_record(1)).encode(), b"[" * 100_000, b'{"n": ' + b"1" * 5000 + b"}",
                              b"{\"a\": 1}\x00", json.dumps(_messages_record(2)).encode()]))  # old Mac line ends
    ts, errors = read_trajectories(f)
    assert [t.trajectory_id for t in ts] == ["r1", "r2"]
    assert [(e.record, e.message.split(" (")[0]) for e in errors] == [(2, "invalid JSON"), (3, "invalid JSON"),
                                                                      (4, "not text")]
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000)
    assert [str(e) for e in read_trajectories(f)[1]] == [f"{f}: cannot read file: the JSON is nested too deeply"]
