"""`python -m rsr_core select` end to end on a trajectory table file: one training record per problem."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.metrics import trajectory_metrics

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ("QwQ-32B", "DeepSeek-R1", "Phi-4")


def build_table(n_problems: int = 12, seed: int = 0) -> pd.DataFrame:
    """3 teachers x 2 runs per problem; metrics from random per-token arrays, correctness known."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_problems):
        prompt = f"What is {p} + {p}?"
        for teacher in TEACHERS:
            for run in ("r1", "r2"):
                n = int(rng.integers(20, 80))
                surprisal = rng.gamma(2.0, 0.4, n)
                rank = np.maximum(1, np.round(rng.lognormal(0.6, 1.0, n)))
                tid = f"{teacher}/{run}/{p}"
                rows.append({
                    "trajectory_id": tid, "problem_id": f"q{p:02d}", "teacher": teacher, "run": run,
                    "student": "SmolLM2-135M-Instruct", **trajectory_metrics(surprisal, rank, surprisal),
                    "truncated": False, "correct": bool(p % 4 != 3 and rng.random() < 0.7), "r_max": 100,
                    "source": f"{teacher}/{run}.jsonl", "record": p + 1, "prompt": prompt,
                    "messages": json.dumps([{"role": "user", "content": prompt},
                                            {"role": "assistant", "content": f"{p} + {p} = {2 * p} ({tid})"}]),
                })
    table = pd.DataFrame(rows)
    table.loc[table["problem_id"] == "q03", "correct"] = False  # a pool without any correct candidate
    return table


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsr_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_select_lowest_rsr_writes_one_messages_record_per_problem(tmp_path, suffix):
    table = build_table()
    scores = tmp_path / f"scores{suffix}"
    if suffix == ".parquet":
        table.to_parquet(scores)
    elif suffix == ".csv":
        table.to_csv(scores, index=False)
    else:
        table.to_json(scores, orient="records", lines=True)
    out = tmp_path / "selected.jsonl"
    done = cli("select", str(scores), "--by", "rsr", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "picks per teacher" in done.stdout and "random (mean of 5 seeds)" in done.stdout
    records = read_jsonl(out)
    assert len(records) == 12 and len({r["problem_id"] for r in records}) == 12
    best = table.loc[table.groupby("problem_id")["rsr"].idxmin()].set_index("problem_id")
    for rec in records:
        assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
        assert rec["id"] == best.loc[rec["problem_id"], "trajectory_id"]
        assert rec["id"] in rec["messages"][1]["content"]
        assert rec["teacher"] == best.loc[rec["problem_id"], "teacher"] and rec["run"] in ("r1", "r2")
        assert rec["rsr"] == pytest.approx(best.loc[rec["problem_id"], "rsr"])
        assert rec["rule"] == "min rsr" and rec["manual"] is False
        assert rec["student"] == "SmolLM2-135M-Instruct" and rec["r_max"] == 100


def test_select_correct_only_max_overrides_and_parquet(tmp_path):
    table = build_table(seed=1)
    scores = tmp_path / "scores.parquet"
    table.to_parquet(scores)
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"q05": "Phi-4/r2/5"}))
    out = tmp_path / "selected.parquet"
    done = cli("select", str(scores), "--by", "avg_surprisal", "--max", "--correct-only", "--overrides",
               str(overrides), "--seed", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(out)
    assert "q03" not in set(frame["problem_id"]) and "dropped: " in done.stdout
    correct = table[table["correct"]]
    expected = correct.loc[correct.groupby("problem_id")["avg_surprisal"].idxmax()].set_index("problem_id")
    assert set(frame["problem_id"]) == set(expected.index) | {"q05"}
    for _, rec in frame.iterrows():
        if rec["problem_id"] == "q05":
            assert rec["id"] == "Phi-4/r2/5" and rec["manual"]
        else:
            assert rec["id"] == expected.loc[rec["problem_id"], "trajectory_id"] and not rec["manual"]
            assert rec["correct"] and rec["rule"] == "max avg_surprisal, correct only"
    assert [m["role"] for m in frame["messages"].iloc[0]] == ["user", "assistant"]


def test_select_keeps_pools_without_correct_when_asked(tmp_path):
    scores = tmp_path / "scores.parquet"
    build_table().to_parquet(scores)
    out = tmp_path / "selected.jsonl"
    done = cli("select", str(scores), "--correct-only", "--keep-pools-without-correct", "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = {r["problem_id"]: r for r in read_jsonl(out)}
    assert len(records) == 12 and records["q03"]["correct_filter_fallback"] is True
    assert records["q03"]["correct"] is False


def test_select_random_is_reproducible(tmp_path):
    scores = tmp_path / "scores.parquet"
    build_table().to_parquet(scores)
    a, b, c = (tmp_path / n for n in ("a.jsonl", "b.jsonl", "c.jsonl"))
    for path, seed in ((a, "5"), (b, "5"), (c, "6")):
        assert cli("select", str(scores), "--by", "random", "--seed", seed, "--out", str(path)).returncode == 0
    ids = [[r["id"] for r in read_jsonl(p)] for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2] and len(ids[0]) == 12
    assert read_jsonl(a)[0]["rule"] == "random seed=5"


def test_select_exits_non_zero_when_nothing_can_be_selected(tmp_path):
    table = build_table(n_problems=3)
    table["correct"] = False
    scores = tmp_path / "scores.parquet"
    table.to_parquet(scores)
    out = tmp_path / "selected.jsonl"
    done = cli("select", str(scores), "--correct-only", "--out", str(out))
    assert done.returncode == 1 and "nothing could be selected" in done.stderr and not out.exists()


def test_select_reports_unusable_input(tmp_path):
    done = cli("select", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2 and "error" in done.stderr
    scores = tmp_path / "scores.parquet"
    build_table(n_problems=2).to_parquet(scores)
    done = cli("select", str(scores), "--by", "no_such_metric", "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2 and "no_such_metric" in done.stderr
    done = cli("select", str(scores), "--out", str(tmp_path / "x.txt"))
    assert done.returncode == 2


def test_select_needs_a_student_when_the_table_has_several(tmp_path):
    small, large = build_table(n_problems=4), build_table(n_problems=4, seed=5).assign(student="Qwen-2.5-3B")
    scores = tmp_path / "scores.parquet"
    pd.concat([small, large], ignore_index=True).to_parquet(scores)
    out = tmp_path / "selected.jsonl"
    done = cli("select", str(scores), "--out", str(out))
    assert done.returncode == 2 and "Qwen-2.5-3B" in done.stderr and not out.exists()
    done = cli("select", str(scores), "--student", "Qwen-2.5-3B", "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = read_jsonl(out)
    best = large.loc[large.groupby("problem_id")["rsr"].idxmin(), "trajectory_id"].tolist()
    assert [r["id"] for r in records] == best and {r["student"] for r in records} == {"Qwen-2.5-3B"}
