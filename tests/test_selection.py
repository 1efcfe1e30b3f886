"""Selection rules, the correct filter, manual overrides, the summary and the training export."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.metrics import dataset_rsr, trajectory_metrics
from rsr_core.analysis.selection import (
    EXPORT_FIELDS,
    prepare_pools,
    read_overrides,
    rule_label,
    select,
    select_pooled,
    selection_records,
    selection_summary,
    set_metrics,
)
from rsr_core.data.exports import write_selection
from rsr_core.analysis.table import problem_hash

TEACHERS = ("QwQ", "R1", "Phi")


def row(tid: str, problem: str, teacher: str, *, run: str = "r1", rank: float = 3.0, surprisal: float = 1.0,
        n: int = 20, correct: object = None, prompt: str | None = None) -> dict:
    """One trajectory-table row whose metrics come from constant per-token arrays (rsr = rank / surprisal)."""
    m = trajectory_metrics(np.full(n, surprisal), np.full(n, rank), np.full(n, surprisal))
    prompt = prompt or f"Solve problem {problem}."
    return {"trajectory_id": tid, "problem_id": problem, "teacher": teacher, "run": run, "student": "tiny", **m,
            "truncated": False, "correct": correct, "r_max": 100, "source": f"{teacher}/{run}.jsonl", "record": 1,
            "prompt": prompt, "messages": json.dumps([{"role": "system", "content": "Think step by step."},
                                                      {"role": "user", "content": prompt},
                                                      {"role": "assistant", "content": f"solution {tid}"}])}


def random_table(n_problems: int = 30, seed: int = 0, runs: tuple[str, ...] = ("r1", "r2")) -> pd.DataFrame:
    """Every teacher and run answers every problem; metrics, lengths and correctness drawn at random."""
    rng = np.random.default_rng(seed)
    rows = [row(f"{t}-{r}-{p}", f"p{p:03d}", t, run=r, rank=rng.uniform(1, 6), surprisal=rng.uniform(0.3, 2),
                n=int(rng.integers(5, 60)), correct=bool(rng.random() < 0.6))
            for p in range(n_problems) for t in TEACHERS for r in runs]
    return pd.DataFrame(rows)


def brute_force(table: pd.DataFrame, column: str, largest: bool = False) -> dict[str, str]:
    """problem -> trajectory id of the extreme `column` value, by plain iteration."""
    best: dict[str, tuple[float, str]] = {}
    for r in table.itertuples():
        v = getattr(r, column) * (-1 if largest else 1)
        if r.problem_id not in best or (v, r.trajectory_id) < best[r.problem_id]:
            best[r.problem_id] = (v, r.trajectory_id)
    return {k: v[1] for k, v in best.items()}


def picks(selection) -> dict[str, str]:
    return dict(zip(selection.selected["pool_id"], selection.selected["trajectory_id"]))


def test_default_rule_keeps_the_lowest_rsr_of_each_pool():
    table = random_table()
    sel = select(table)
    assert sel.rule == "min rsr" and len(sel.selected) == table["problem_id"].nunique() == sel.n_pools
    assert picks(sel) == brute_force(table, "rsr")
    assert (sel.selected["pool_size"] == 6).all() and not sel.selected["manual"].any()
    assert sel.selected["pool_id"].tolist() == sorted(sel.selected["pool_id"])  # input order of problems kept


@pytest.mark.parametrize("column", ["avg_surprisal", "n_tokens", "avg_rank_clipped"])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_min_and_max_of_any_metric(column, mode):
    table = random_table(seed=3)
    sel = select(table, by=column, mode=mode)
    assert picks(sel) == brute_force(table, column, largest=mode == "max")
    assert set(sel.selected["rule"]) == {f"{mode} {column}"}


def test_unknown_or_non_numeric_column_is_an_error():
    table = random_table(n_problems=2)
    with pytest.raises(ValueError, match="no column"):
        select(table, by="not_a_metric")
    with pytest.raises(ValueError, match="numeric"):
        select(table, by="teacher")


def test_random_rule_is_seeded_in_pool_and_independent_of_row_order():
    table = random_table(n_problems=40)
    a, b = picks(select(table, by="random", seed=7)), picks(select(table, mode="random", seed=7))
    shuffled = picks(select(table.sample(frac=1.0, random_state=1), by="random", seed=7))
    assert a == b == shuffled
    assert a != picks(select(table, by="random", seed=8))
    members = table.groupby("problem_id")["trajectory_id"].apply(set)
    assert all(tid in members[p] for p, tid in a.items())
    chosen = pd.Series([tid for s in range(40) for tid in picks(select(table, by="random", seed=s)).values()])
    by_teacher = chosen.str.split("-").str[0].value_counts(normalize=True)
    assert set(by_teacher.index) == set(TEACHERS) and by_teacher.min() > 0.25  # about 1/3 each
    assert select(table, by="random", seed=7).rule == "random seed=7"


def test_nan_never_wins_but_an_all_undefined_pool_is_kept():
    table = pd.DataFrame([row("a", "p1", "A", rank=2.0, surprisal=0.0), row("b", "p1", "B", rank=9.0),
                          row("c", "p1", "C", rank=5.0),
                          row("d", "p2", "A", surprisal=0.0), row("e", "p2", "B", surprisal=0.0)])
    assert np.isnan(table.loc[0, "rsr"])
    assert picks(select(table)) == {"p1": "c", "p2": "d"}
    assert picks(select(table, mode="max")) == {"p1": "b", "p2": "d"}
    assert select(table).selected.set_index("pool_id")["metric_defined"].to_dict() == {"p1": True, "p2": False}
    summary = selection_summary(table, select(table), random_seeds=[])
    assert summary.counts["undefined_metric"] == 1


def test_ties_go_to_the_smallest_trajectory_id_whatever_the_row_order():
    rows = [row("t3", "p1", "A"), row("t1", "p1", "B"), row("t2", "p1", "C")]
    assert picks(select(pd.DataFrame(rows))) == {"p1": "t1"}
    assert picks(select(pd.DataFrame(rows[::-1]))) == {"p1": "t1"}


def test_pools_of_one_are_kept_as_they_are():
    table = pd.DataFrame([row("solo", "p1", "A", rank=50.0), row("x", "p2", "A"), row("y", "p2", "B", rank=1.0)])
    sel = select(table, mode="max")
    assert picks(sel) == {"p1": "solo", "p2": "x"}
    assert sel.selected.set_index("pool_id")["pool_size"].to_dict() == {"p1": 1, "p2": 2}


def test_correct_only_filters_first_and_drops_pools_without_a_correct_candidate():
    table = pd.DataFrame([row("a", "p1", "A", rank=1.0, correct=False), row("b", "p1", "B", rank=4.0, correct=True),
                          row("c", "p1", "C", rank=3.0, correct=True),
                          row("d", "p2", "A", rank=1.0, correct=False), row("e", "p2", "B", correct=False),
                          row("f", "p3", "A", correct=None)])
    assert picks(select(table)) == {"p1": "a", "p2": "d", "p3": "f"}
    sel = select(table, correct_only=True)
    assert picks(sel) == {"p1": "c"} and sel.rule == "min rsr, correct only"
    assert sel.selected["correct"].all() and sel.selected["n_eligible"].tolist() == [2]
    assert sel.dropped.set_index("pool_id")["reason"].to_dict() == {"p2": "no correct candidate",
                                                                   "p3": "correctness unknown"}
    kept = select(table, correct_only=True, keep_pools_without_correct=True)
    assert picks(kept) == {"p1": "c", "p2": "d", "p3": "f"} and kept.dropped.empty
    assert kept.selected.set_index("pool_id")["correct_filter_fallback"].to_dict() == {
        "p1": False, "p2": True, "p3": True}


def test_correct_only_without_any_correctness_is_an_error():
    table = pd.DataFrame([row("a", "p1", "A"), row("b", "p1", "B")])
    with pytest.raises(ValueError, match="correctness"):
        select(table, correct_only=True)


def test_manual_overrides_win_and_are_marked():
    table = random_table(n_problems=5)
    auto = picks(select(table))
    other = next(t for t in table.loc[table["problem_id"] == "p002", "trajectory_id"] if t != auto["p002"])
    sel = select(table, overrides={"p002": other})
    got = sel.selected.set_index("pool_id")
    assert got.loc["p002", "trajectory_id"] == other and bool(got.loc["p002", "manual"])
    assert {p: t for p, t in picks(sel).items() if p != "p002"} == {p: t for p, t in auto.items() if p != "p002"}
    assert got["manual"].sum() == 1 and len(got) == 5


def test_override_restores_a_pool_that_the_correct_filter_dropped():
    table = pd.DataFrame([row("a", "p1", "A", correct=True), row("b", "p2", "A", correct=False),
                          row("c", "p2", "B", rank=9.0, correct=False)])
    sel = select(table, correct_only=True, overrides={"p2": "c"})
    assert picks(sel) == {"p1": "a", "p2": "c"} and sel.dropped.empty
    assert sel.selected.set_index("pool_id").loc["p2", "manual"]


def test_overrides_by_prompt_pool_id_and_invalid_overrides():
    table = pd.DataFrame([row("a", "", "A", prompt="Q one"), row("b", "", "B", prompt="q ONE", rank=9.0),
                          row("c", "", "A", prompt="Q two")])
    pool = select(table).selected.set_index("trajectory_id").loc["a", "pool_id"]
    assert picks(select(table, overrides={pool: "b"}))[pool] == "b"
    with pytest.raises(ValueError, match="no trajectory"):
        select(table, overrides={pool: "zzz"})
    with pytest.raises(ValueError, match="belongs to problem"):
        select(table, overrides={"some-other-problem": "b"})
    ids = pd.DataFrame([row("a", "x1", "A", prompt="Q"), row("b", "x2", "B", prompt="q")])
    assert picks(select(ids, pool_by="prompt", overrides={"x2": "b"})) == {select(ids, pool_by="prompt")
                                                                         .selected["pool_id"][0]: "b"}
    with pytest.raises(ValueError, match="two overrides"):
        select(ids, pool_by="prompt", overrides={"x1": "a", "x2": "b"})


def test_read_overrides_accepts_an_object_or_a_list(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"p1": "a", "7": 8}))
    assert read_overrides(path) == {"p1": "a", "7": "8"}
    path.write_text(json.dumps([{"problem_id": "p1", "trajectory_id": "a"}]))
    assert read_overrides(path) == {"p1": "a"}


def test_summary_counts_picks_and_compares_with_random_and_single_teachers():
    table = random_table(n_problems=25, seed=5)
    sel = select(table)
    summary = selection_summary(table, sel, random_seeds=[0, 1, 2])
    picks_table = summary.picks.set_index("teacher")
    assert picks_table["picks"].sum() == 25 and np.isclose(picks_table["share"].sum(), 1.0)
    assert picks_table["picks"].to_dict() == sel.selected["teacher"].value_counts().to_dict()
    comp = summary.comparison.set_index("set")
    chosen = sel.selected
    assert np.isclose(comp.loc["selected (min rsr)", "rsr"],
                      dataset_rsr(chosen["avg_rank_clipped"], chosen["avg_surprisal"]))
    assert np.isclose(comp.loc["selected (min rsr)", "avg_length"], chosen["n_tokens"].mean())
    randoms = [select(table, by="random", seed=s).selected for s in (0, 1, 2)]
    assert np.isclose(comp.loc["random (mean of 3 seeds)", "rsr"],
                      np.mean([dataset_rsr(r["avg_rank_clipped"], r["avg_surprisal"]) for r in randoms]))
    for teacher in TEACHERS:
        own = table[table["teacher"] == teacher]
        assert np.isclose(comp.loc[f"teacher {teacher} (all)", "rsr"],
                          dataset_rsr(own["avg_rank_clipped"], own["avg_surprisal"]))
        assert comp.loc[f"teacher {teacher} (all)", "n_trajectories"] == len(own)
    text = summary.to_text()
    assert "picks per teacher" in text and "random (mean of 3 seeds)" in text


@pytest.mark.parametrize("settings", [{}, {"by": "random", "seed": 4}, {"correct_only": True},
                                      {"correct_only": True, "keep_pools_without_correct": True, "mode": "max"}])
def test_a_table_pooled_once_gives_the_same_selection_and_summary(settings):
    """The app pools a table once (`prepare_pools`) for the selection and its summary: same results as `select`
    and `selection_summary` on the table itself."""
    table = random_table(n_problems=20, seed=9)
    pooled = prepare_pools(table)
    direct, shared = select(table, **settings), select_pooled(pooled, **settings)
    pd.testing.assert_frame_equal(direct.selected, shared.selected)
    pd.testing.assert_frame_equal(direct.dropped, shared.dropped)
    a = selection_summary(table, direct, random_seeds=[0, 1])
    b = selection_summary(table, shared, random_seeds=[0, 1], pooled=pooled)
    pd.testing.assert_frame_equal(a.comparison, b.comparison)
    assert "_value" not in pooled and len(pooled) == len(table)  # the shared table is left as it was


def test_equal_surprisal_makes_rsr_selection_beat_random_and_every_teacher():
    """With one surprisal for all, dataset RSR is mean rank / s, so the per-pool minimum must win."""
    rng = np.random.default_rng(1)
    table = pd.DataFrame([row(f"{t}{p}", f"p{p}", t, rank=rng.uniform(1, 9)) for p in range(20) for t in TEACHERS])
    comp = selection_summary(table, select(table)).comparison.set_index("set")["rsr"]
    assert comp.iloc[0] == comp.min() and (comp.iloc[1:] > comp.iloc[0]).all()


def test_rule_label():
    assert rule_label() == "min rsr"
    assert rule_label("n_tokens", "max", correct_only=True) == "max n_tokens, correct only"
    assert rule_label(mode="random", seed=3) == "random seed=3"


def test_records_carry_messages_and_provenance():
    table = random_table(n_problems=4)
    table.loc[table.index[:6], "run"] = None
    sel = select(table, overrides={"p001": "Phi-r2-1"})
    records = selection_records(sel.selected)
    assert len(records) == 4
    for rec, (_, r) in zip(records, sel.selected.iterrows()):
        assert list(rec) == ["messages", *EXPORT_FIELDS]
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["messages"][-1]["content"] == f"solution {r['trajectory_id']}"
        assert rec["id"] == r["trajectory_id"] and rec["problem_id"] == r["problem_id"]
        assert rec["teacher"] == r["teacher"] and rec["student"] == "tiny" and rec["r_max"] == 100
        assert rec["rsr"] == pytest.approx(r["rsr"]) and rec["rule"] == "min rsr"
        assert rec["manual"] is (rec["problem_id"] == "p001")
        json.dumps(rec, allow_nan=False)  # strict JSON: no NaN, no numpy scalars
    assert records[0]["run"] is None


def test_records_write_null_for_undefined_rsr_and_fill_a_missing_problem_id():
    table = pd.DataFrame([row("a", "", "A", surprisal=0.0, prompt="Q")])
    rec = selection_records(select(table).selected)[0]
    assert rec["rsr"] is None and rec["problem_id"] == rec["pool_id"] and rec["pool_id"] == problem_hash("Q")


def test_export_without_messages_is_an_error():
    table = pd.DataFrame([row("a", "p1", "A")]).drop(columns="messages")
    with pytest.raises(ValueError, match="messages"):
        selection_records(select(table).selected)


def test_jsonl_and_parquet_exports_hold_the_same_records(tmp_path):
    table = random_table(n_problems=6)
    sel = select(table, correct_only=True, keep_pools_without_correct=True)
    jsonl = write_selection(sel.selected, tmp_path / "out" / "sel.jsonl")
    parquet = write_selection(sel.selected, tmp_path / "sel.parquet")
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    frame = pd.read_parquet(parquet)
    assert len(lines) == len(frame) == 6
    assert list(frame.columns) == ["messages", *EXPORT_FIELDS]
    for rec, (_, back) in zip(lines, frame.iterrows()):
        assert [dict(m) for m in back["messages"]] == rec["messages"]
        for name in ("id", "problem_id", "teacher", "run", "rule", "manual", "correct_filter_fallback"):
            assert back[name] == rec[name]
        assert back["rsr"] == pytest.approx(rec["rsr"])
    with pytest.raises(ValueError, match="jsonl"):
        write_selection(sel.selected, tmp_path / "sel.csv")


def test_exported_jsonl_reads_back_as_trajectories_one_per_problem(tmp_path):
    """Round trip through the project's reader: one conversation per problem, each the argmin of its pool."""
    formats = pytest.importorskip("rsr_core.data.formats")
    table = random_table(n_problems=8, seed=11)
    path = write_selection(select(table).selected, tmp_path / "selected.jsonl")
    trajectories, errors = formats.read_trajectories(path)
    assert errors == []
    assert len(trajectories) == 8 and len({t.problem_id for t in trajectories}) == 8
    best = brute_force(table, "rsr")
    source = table.set_index("trajectory_id")
    for t in trajectories:
        assert t.trajectory_id == best[t.problem_id]
        assert t.teacher == source.loc[t.trajectory_id, "teacher"] and t.run == source.loc[t.trajectory_id, "run"]
        assert t.messages == json.loads(source.loc[t.trajectory_id, "messages"])
        assert bool(t.correct) == bool(source.loc[t.trajectory_id, "correct"])
    parquet = write_selection(select(table).selected, tmp_path / "selected.parquet")
    back, errors = formats.read_trajectories(parquet)
    assert errors == [] and [t.trajectory_id for t in back] == [t.trajectory_id for t in trajectories]


def test_a_table_scored_under_several_students_needs_a_student():
    small, large = random_table(n_problems=6, seed=1), random_table(n_problems=6, seed=2)
    both = pd.concat([small, large.assign(student="large")], ignore_index=True)
    with pytest.raises(ValueError, match="2 students"):
        select(both)
    with pytest.raises(ValueError, match="no student"):
        select(both, student="medium")
    sel = select(both, student="large")
    assert picks(sel) == brute_force(large, "rsr") and set(sel.selected["student"]) == {"large"}
    summary = selection_summary(both, sel, random_seeds=[0])
    assert summary.comparison.set_index("set").loc["teacher QwQ (all)", "n_trajectories"] == 12


@pytest.mark.parametrize("settings", [{}, {"correct_only": True},
                                      {"correct_only": True, "keep_pools_without_correct": True}])
def test_the_random_baseline_is_the_mean_of_random_selections(settings):
    """The summary's random row (all seeds drawn over one sort of the pools) equals the mean over seeds of what
    `select(by='random', seed=...)` keeps, on pools of uneven size, unknown correctness and shuffled rows."""
    rng = np.random.default_rng(3)
    table = random_table(n_problems=40, seed=3)
    table = table[rng.random(len(table)) < 0.7]  # pools of 0 to 6 candidates
    table = table.assign(correct=[None if u < 0.2 else c for u, c in zip(rng.random(len(table)), table["correct"])])
    table = table.sample(frac=1.0, random_state=4).reset_index(drop=True)
    seeds = [0, 1, 7]
    sel = select(table, **settings)
    comp = selection_summary(table, sel, random_seeds=seeds).comparison.set_index("set")
    runs = [set_metrics(select(table, by="random", seed=s, **settings).selected) for s in seeds]
    expected = {k: np.mean([r[k] for r in runs]) for k in runs[0]}
    got = comp.loc[f"random (mean of {len(seeds)} seeds)"]
    assert got["n_trajectories"] == round(expected["n_trajectories"])
    for k in ("rsr", "avg_length", "correct_rate"):
        assert got[k] == pytest.approx(expected[k], rel=1e-12)
    if settings.get("correct_only") and not settings.get("keep_pools_without_correct"):
        assert got["correct_rate"] == 1.0
