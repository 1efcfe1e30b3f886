"""Candidate pools: grouping by problem id or normalised prompt, and reading tables back from files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.metrics import trajectory_metrics
from rsr_core.analysis.pools import assign_pools, pool_summary
from rsr_core.data.tables import read_table
from rsr_core.analysis.table import normalise_prompt, normalise_table, problem_hash

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def row(tid: str, problem: str | None, teacher: str, prompt: str, *, run: str | None = "r1",
        correct: object = None, rank: float = 3.0, surprisal: float = 1.0) -> dict:
    """One trajectory-table row whose metrics come from constant per-token arrays."""
    m = trajectory_metrics(np.full(20, surprisal), np.full(20, rank), np.full(20, surprisal))
    return {"trajectory_id": tid, "problem_id": problem, "teacher": teacher, "run": run, "student": "s", **m,
            "truncated": False, "correct": correct, "r_max": 100, "source": f"{teacher}.jsonl", "record": 1,
            "prompt": prompt, "messages": json.dumps([{"role": "user", "content": prompt},
                                                      {"role": "assistant", "content": f"answer {tid}"}])}


def test_normalise_prompt_lowercases_and_collapses_whitespace():
    assert normalise_prompt("  What is\n\n2 +\t2?  ") == "what is 2 + 2?"
    assert normalise_prompt(None) == "" and normalise_prompt(float("nan")) == ""


def test_pools_use_problem_id_when_every_row_has_one():
    table = pd.DataFrame([row("a1", "p1", "A", "Same text"), row("b1", "p1", "B", "Same text"),
                          row("a2", "p2", "A", "Other"), row("b2", "p3", "B", "Other")])
    pooled = assign_pools(table)
    assert pooled.attrs["pool_by"] == "problem_id"
    assert pooled.groupby("pool_id")["trajectory_id"].apply(sorted).to_dict() == {
        "p1": ["a1", "b1"], "p2": ["a2"], "p3": ["b2"]}


def test_pools_fall_back_to_normalised_prompt_when_ids_are_missing():
    table = pd.DataFrame([row("a1", None, "A", "What is  2+2?"), row("b1", "p9", "B", "what is 2+2?\n"),
                          row("c1", "", "C", "WHAT IS 2+2?"), row("a2", None, "A", "What is 3+3?")])
    pooled = assign_pools(table)
    assert pooled.attrs["pool_by"] == "prompt"
    pools = pooled.groupby("pool_id")["trajectory_id"].apply(sorted).tolist()
    assert sorted(pools) == [["a1", "b1", "c1"], ["a2"]]
    assert pooled.set_index("trajectory_id")["pool_id"].to_dict() == {
        "a1": problem_hash("what is 2+2?"), "b1": problem_hash("what is 2+2?"), "c1": problem_hash("what is 2+2?"),
        "a2": problem_hash("What is 3+3?")}


def test_forcing_problem_id_with_missing_ids_is_an_error_and_prompt_mode_ignores_ids():
    table = pd.DataFrame([row("a1", None, "A", "x"), row("b1", "p1", "B", "x")])
    with pytest.raises(ValueError, match="problem_id"):
        assign_pools(table, by="problem_id")
    ids = pd.DataFrame([row("a1", "1", "A", "Q one"), row("b1", "2", "B", "q  ONE")])
    assert assign_pools(ids, by="problem_id")["pool_id"].nunique() == 2
    assert assign_pools(ids, by="prompt")["pool_id"].nunique() == 1
    with pytest.raises(ValueError):
        assign_pools(ids, by="teacher")


def test_pool_summary_counts_candidates_teachers_correctness_and_mixed_prompts():
    table = pd.DataFrame([row("a1", "p1", "A", "Q1", correct=True), row("a2", "p1", "A", "Q1", run="r2",
                                                                       correct=False),
                          row("b1", "p1", "B", "Q1", correct=None),
                          row("a3", "p2", "A", "Q2"), row("b3", "p2", "B", "a different problem")])
    summary = pool_summary(assign_pools(table)).set_index("pool_id")
    assert summary.loc["p1", ["n_candidates", "n_teachers", "n_correct", "n_known_correct", "n_prompts"]].tolist() \
        == [3, 2, 1, 2, 1]
    assert summary.loc["p2", "n_prompts"] == 2  # same id, different prompts: ids are not shared across files


def test_normalise_table_types_ids_runs_and_correctness():
    table = pd.DataFrame({"trajectory_id": [7, 8], "problem_id": [1, 1], "teacher": ["A", "B"],
                          "run": [np.nan, "r2"], "correct": ["True", ""], "prompt": ["q", "q"]})
    out = normalise_table(table)
    assert out["trajectory_id"].tolist() == ["7", "8"] and out["problem_id"].tolist() == ["1", "1"]
    assert out["run"].tolist() == [None, "r2"]
    assert str(out["correct"].dtype) == "boolean"
    assert bool(out["correct"].iloc[0]) is True
    assert pd.isna(out["correct"].iloc[1])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".json"])
def test_read_table_keeps_ids_and_pools_whatever_the_format(tmp_path, suffix):
    table = pd.DataFrame([row("007", "001", "A", "Q", correct=True), row("008", "001", "B", "Q", run=None),
                          row("009", "002", "A", "R", correct=False)])
    path = tmp_path / f"table{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix == ".jsonl":
        table.to_json(path, orient="records", lines=True)
    else:
        table.to_json(path, orient="records")
    back = read_table(path)
    assert back["trajectory_id"].tolist() == ["007", "008", "009"]
    assert back["problem_id"].tolist() == ["001", "001", "002"]
    assert back["run"].tolist() == ["r1", None, "r1"]
    assert [None if pd.isna(v) else bool(v) for v in back["correct"]] == [True, None, False]
    assert assign_pools(back)["pool_id"].tolist() == ["001", "001", "002"]
    np.testing.assert_allclose(back["rsr"].to_numpy(float), table["rsr"].to_numpy(float))


def test_read_table_rejects_unknown_suffix(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="format"):
        read_table(path)


def test_real_teacher_files_pool_the_same_problem_across_teachers():
    """Three teachers' MATH solutions (EIT-NLP files): pooling by prompt joins each problem's candidates."""
    folder = SHARED / "eit_math"
    if not folder.is_dir():
        pytest.skip("shared data not available")
    rows = []
    for name, field in (("math_human.json", "chatgpt_output"), ("math_gemini_level2_ranked.json", "gemini_output"),
                        ("math_llama_level1_ranked.json", "llama_output")):
        records = json.loads((folder / name).read_text(encoding="utf-8"))[:300]
        rows += [{"trajectory_id": f"{name}:{i}", "problem_id": None, "teacher": field.split("_")[0],
                  "prompt": r["problem"], "run": None} for i, r in enumerate(records)]
    pooled = assign_pools(pd.DataFrame(rows))
    summary = pool_summary(pooled)
    assert pooled.attrs["pool_by"] == "prompt"
    assert summary["n_candidates"].max() == 3 and (summary["n_candidates"] == summary["n_teachers"]).all()
    assert (summary["n_prompts"] == 1).all()
    assert summary["n_candidates"].sum() == len(rows)
    assert (summary["n_candidates"] == 3).mean() > 0.5  # most of the first 300 problems are shared
