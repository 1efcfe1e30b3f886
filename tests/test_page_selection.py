"""The Selection page on the demo data, and its table and export helpers."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from app_pages import frame_by_key, open_page
from rsr_core.data import demo
from rsr_core.analysis.pools import assign_pools
from rsr_core.analysis.selection import select, selection_summary
from rsr_core.data.exports import write_selection
from rsr_core.ui.selection_widgets import (CHOICE_MANUAL, candidate_rows, comparison_display, export_bytes,
                                           filter_problems, picks_figure, problem_rows, rule_description,
                                           selectable_metrics, valid_overrides)

PAGE = "pages/selection.py"
TABLE = "selection_problems_table"


@pytest.fixture(scope="module")
def demo_table():
    if not demo.available_demo_students():
        pytest.skip("the demo pool's precomputed scores are missing (make demo-scores)")
    return demo.load_demo(demo.available_demo_students()[0])[0]


@pytest.fixture
def page(monkeypatch, tmp_path):
    return open_page(PAGE, monkeypatch, tmp_path)


def best_per_problem(table: pd.DataFrame, column: str, correct_only: bool = False) -> dict[str, str]:
    """problem -> id of its lowest-`column` trajectory, computed here without the engine."""
    rows = table[table["correct"].fillna(False).astype(bool)] if correct_only else table
    rows = rows.sort_values([column, "trajectory_id"])
    return dict(rows.groupby("problem_id")["trajectory_id"].first())


def chosen(at) -> dict[str, str]:
    rows = frame_by_key(at, TABLE)
    return dict(zip(rows["problem_id"], rows["chosen"]))


# --- the page ------------------------------------------------------------------------------------------------------

def test_default_rule_keeps_the_lowest_rsr_of_every_problem(page, demo_table):
    assert chosen(page) == best_per_problem(demo_table, "rsr")
    rows = frame_by_key(page, TABLE)
    assert set(rows["choice"]) == {"rule"}
    assert (rows["n_candidates"] == rows["problem_id"].map(demo_table["problem_id"].value_counts())).all()
    assert [b.label for b in page.download_button] == ["Download selected.jsonl", "Download selected.parquet"]
    comparison = next(df.value for df in page.dataframe if "rsr vs selected" in df.value.columns)
    assert comparison["set"].iloc[0].startswith("selected") and comparison["set"].iloc[1].startswith("random")


def test_the_default_selection_is_prepared_before_the_page_opens(monkeypatch, tmp_path):
    """Each page run leaves the default selection of the table it showed computing in the background; the
    Selection page then finds it (the same object) in the shared cache. At r_max 37 the table is new to this
    process, so the preparation is this test's own."""
    from rsr_core.ui import results
    from rsr_core.ui.analysis_cache import cached_selection, prepare_default_selection, prepared_selection
    from rsr_core.ui.selection_widgets import default_rule, rule_student

    at = open_page("pages/overview.py", monkeypatch, tmp_path)
    at.number_input(key="sidebar_r_max").set_value(37).run()
    assert not at.exception
    dataset, student = at.session_state["dataset"], at.session_state["student_name"]
    path = next(p for p in dataset.stores if student in results.students(p))
    table = results.table(path, student, 37)  # the shared table the page showed
    preparing = prepared_selection(table, student)
    assert preparing is not None and prepare_default_selection(table, student) is None  # once per table
    preparing.result(timeout=120)
    ready = cached_selection(table, default_rule(table), {}, rule_student(table, student))
    assert ready.selected["rsr"].notna().all()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.session_state["selection_result"] is ready  # the page's rule is the prepared one
    assert at.session_state["r_max"] == 37


def test_a_table_left_before_its_turn_is_not_prepared(monkeypatch, tmp_path):
    """r_max changed twice while the background worker was busy: only the table on screen is prepared; the one
    left is forgotten, and prepared when it is shown again."""
    import threading

    from rsr_core.ui import analysis_cache, results

    at = open_page("pages/overview.py", monkeypatch, tmp_path)
    dataset, student = at.session_state["dataset"], at.session_state["student_name"]
    path = next(p for p in dataset.stores if student in results.students(p))
    left, shown = results.table(path, student, 41), results.table(path, student, 43)  # new to this process
    gate = threading.Event()
    analysis_cache._BACKGROUND.submit(gate.wait, 60)  # the worker is busy with another table
    first = analysis_cache.prepare_default_selection(left, student)
    second = analysis_cache.prepare_default_selection(shown, student)
    gate.set()
    assert first.result(timeout=120) is False and second.result(timeout=120) is True
    assert analysis_cache.prepared_selection(left, student) is None
    again = analysis_cache.prepare_default_selection(left, student)
    assert again is not None and again.result(timeout=120) is True
    assert analysis_cache.prepare_default_selection(left, student) is None  # once per table


def test_changing_the_rule_changes_the_chosen_trajectories(page, demo_table):
    before = chosen(page)
    page.selectbox(key="selection_metric").set_value("n_tokens").run()
    assert not page.exception
    after = chosen(page)
    assert after != before and after == best_per_problem(demo_table, "n_tokens")
    page.selectbox(key="selection_mode").set_value("max").run()
    longest = {p: g.sort_values(["n_tokens", "trajectory_id"], ascending=[False, True])["trajectory_id"].iloc[0]
               for p, g in demo_table.groupby("problem_id")}
    assert chosen(page) == longest


def test_pooling_a_stores_table_by_prompt_reads_its_prompts(page, demo_table):
    """The store's table holds no text: the prompts come from its conversations, and each demo problem has one."""
    page.selectbox(key="selection_pool_by").set_value("prompt").run()
    assert not page.exception and not page.error, [e.value for e in page.error]
    selection = page.session_state["selection_result"]
    assert selection.pool_by == "prompt" and selection.n_pools == demo_table["prompt"].nunique()


def test_lark_g_is_a_rule_of_the_page(page, demo_table):
    """LARK's g_hat is offered where the scores carry lark_rho, computed over the page's pools."""
    from rsr_core.analysis.lark import pool_g_hat

    page.selectbox(key="selection_mode").set_value("max").run()
    page.selectbox(key="selection_metric").set_value("lark_g").run()
    assert not page.exception and not page.error
    t = demo_table.reset_index(drop=True)
    g = pool_g_hat(t["avg_surprisal"].to_numpy(), t["lark_rho"].to_numpy(), pd.factorize(t["problem_id"])[0])
    best = t.assign(g=g).sort_values("g", ascending=False).groupby("problem_id")["trajectory_id"].first()
    chosen = page.session_state["selection_result"].selected.set_index("pool_id")["trajectory_id"]
    assert chosen.sort_index().to_dict() == best.sort_index().to_dict()


def test_random_rule_depends_on_the_seed(page):
    page.selectbox(key="selection_mode").set_value("random").run()
    first = chosen(page)
    page.number_input(key="selection_seed").set_value(7).run()
    assert not page.exception
    assert chosen(page) != first
    page.number_input(key="selection_seed").set_value(0).run()
    assert chosen(page) == first


def test_correct_only_removes_the_incorrect_picks(page, demo_table):
    page.selectbox(key="selection_metric").set_value("n_tokens").run()  # the shortest answers include wrong ones
    rows = frame_by_key(page, TABLE)
    assert (~rows["correct"].astype(bool)).sum() >= 1
    page.checkbox(key="selection_correct_only").check().run()
    assert not page.exception
    rows = frame_by_key(page, TABLE)
    assert rows["correct"].astype(bool).all()
    assert chosen(page) == best_per_problem(demo_table, "n_tokens", correct_only=True)


def demo_messages(tid: str) -> list[dict]:
    from rsr_core.data.store import ResultsStore

    return ResultsStore(demo.DEMO_STORE).conversation(tid)["messages"]


def test_a_manual_choice_is_marked_in_the_table_and_the_export(page):
    page.session_state["selection_overrides"] = {"p01": "p01-calculus"}
    page.run()
    assert not page.exception
    rows = frame_by_key(page, TABLE).set_index("problem_id")
    assert rows.loc["p01", "chosen"] == "p01-calculus" and rows.loc["p01", "choice"] == CHOICE_MANUAL
    assert (rows.drop(index="p01")["choice"] == "rule").all()
    assert next(m.value for m in page.metric if m.label == "manual") == "1"
    selection = page.session_state["selection_result"]
    exported = export_bytes(selection.selected, "jsonl", demo_messages)
    records = [json.loads(line) for line in exported.decode().splitlines()]
    manual = {r["problem_id"]: r["manual"] for r in records}
    assert manual.pop("p01") is True and not any(manual.values())
    page.multiselect(key="selection_filter_choice").select("manual").run()
    assert list(frame_by_key(page, TABLE)["problem_id"]) == ["p01"]


def test_choosing_a_candidate_by_hand_and_back(page):
    page.selectbox(key="selection_problem").set_value("p03").run()
    candidates = frame_by_key(page, "selection_candidates_table")
    assert candidates["trajectory_id"].str.startswith("p03-").all() and candidates["chosen"].sum() == 1
    page.selectbox(key="selection_candidate").set_value("p03-advanced").run()
    page.button(key="selection_choose").click().run()
    assert not page.exception
    assert page.session_state["selection_overrides"] == {"p03": "p03-advanced"}
    assert chosen(page)["p03"] == "p03-advanced"
    page.button(key="selection_unchoose").click().run()
    assert page.session_state["selection_overrides"] == {}
    assert frame_by_key(page, TABLE).set_index("problem_id").loc["p03", "choice"] == "rule"


def test_a_wrong_candidate_chosen_under_correct_only_is_flagged_before_export(page):
    """A choice made by hand wins over "correct only": the page says so before the export writes correct: false."""
    page.checkbox(key="selection_correct_only").check().run()
    page.selectbox(key="selection_problem").set_value("p03").run()
    assert not any("not marked correct" in w.value for w in page.warning)
    page.selectbox(key="selection_candidate").set_value("p03-terse").run()  # marked wrong in the demo
    assert any("p03-terse" in c.value and "not marked correct" in c.value for c in page.caption)
    page.button(key="selection_choose").click().run()
    assert not page.exception
    warning = next(w.value for w in page.warning if "not marked correct" in w.value)
    assert "1 manual choice is not marked correct: p03-terse" in warning and "`correct: false`" in warning
    selection = page.session_state["selection_result"]
    records = [json.loads(line) for line in export_bytes(selection.selected, "jsonl", demo_messages).splitlines()]
    assert {r["id"]: r["correct"] for r in records if r["manual"]} == {"p03-terse": False}
    page.button(key="selection_unchoose").click().run()
    assert not any("not marked correct" in w.value for w in page.warning)


def test_stale_manual_choices_are_reported_not_applied(page):
    page.session_state["selection_overrides"] = {"p01": "p02-terse", "gone": "no-such-id"}
    page.run()
    assert not page.exception
    assert any("not applied" in w.value for w in page.warning)
    page.button(key="selection_forget_stale").click().run()
    assert page.session_state["selection_overrides"] == {}


def test_opening_a_candidate_in_the_inspector(page):
    page.selectbox(key="selection_problem").set_value("p05").run()
    page.selectbox(key="selection_candidate").set_value("p05-advanced").run()
    page.button(key="selection_open").click().run()
    assert not page.exception
    assert page.session_state["selected_trajectory"] == "p05-advanced"
    assert all(df.key != TABLE for df in page.dataframe)  # the inspector is shown instead


# --- helpers -------------------------------------------------------------------------------------------------------

def test_selectable_metrics_put_rsr_first_and_skip_bookkeeping(demo_table):
    metrics = selectable_metrics(demo_table)
    assert metrics[0] == "rsr" and "n_tokens" in metrics
    assert not {"r_max", "record", "correct", "truncated", "n_context"} & set(metrics)


def test_valid_overrides_keep_only_candidates_of_that_problem(demo_table):
    pooled = assign_pools(demo_table)
    valid, stale = valid_overrides(pooled, {"p01": "p01-calculus", "p02": "p03-terse", "p04": "nope"})
    assert valid == {"p01": "p01-calculus"} and sorted(stale) == ["p02", "p04"]


def test_problem_rows_show_drops_manual_choices_and_candidates(demo_table):
    table = demo_table.copy()
    table.loc[table["problem_id"] == "p02", "correct"] = False  # no correct candidate left for p02
    pooled = assign_pools(table)
    sel = select(table, correct_only=True, overrides={"p01": "p01-calculus"})
    rows = problem_rows(pooled, sel, "rsr").set_index("problem_id")
    assert rows.loc["p02", "chosen"] == "" and rows.loc["p02", "choice"] == "dropped: no correct candidate"
    assert rows.loc["p01", "choice"] == CHOICE_MANUAL
    assert rows.loc["p01", "value"] == pytest.approx(table.set_index("trajectory_id").loc["p01-calculus", "rsr"])
    n_p01 = int((table["problem_id"] == "p01").sum())
    assert rows.loc["p01", "candidates"].count(":") == rows.loc["p01", "n_candidates"] == n_p01
    p03 = table[table["problem_id"] == "p03"]
    assert rows.loc["p03", "n_eligible"] == int(p03["correct"].sum()) == len(p03) - 1  # p03-terse is wrong
    assert rows.loc["p03", "n_candidates"] == len(p03)
    assert list(rows.index[:-1]) == [p for p in sel.selected["problem_id"]]  # selection order, dropped last


def test_problem_rows_list_the_best_candidates_then_how_many_more(demo_table):
    pooled = assign_pools(demo_table)
    rows = problem_rows(pooled, select(demo_table), "rsr", shown=3).set_index("problem_id")
    p01 = demo_table[demo_table["problem_id"] == "p01"].sort_values("rsr")
    labels = rows.loc["p01", "candidates"].split(" · ")
    assert len(p01) > 3 and labels[-1] == f"+{len(p01) - 3} more" and len(labels) == 4
    assert [label.split(":")[0].split()[0] for label in labels[:3]] == p01["teacher"].astype(str).tolist()[:3]


def test_filter_problems(demo_table):
    pooled = assign_pools(demo_table)
    rows = problem_rows(pooled, select(demo_table, overrides={"p04": "p04-terse"}))
    assert list(filter_problems(rows, "P04")["problem_id"]) == ["p04"]
    assert list(filter_problems(rows, choices=["manual"])["problem_id"]) == ["p04"]
    one = filter_problems(rows, teachers=["terse"])
    assert set(one["teacher"]) == {"terse"}
    assert len(filter_problems(rows, "2^100")) == 1  # matches the prompt text
    assert len(filter_problems(rows)) == len(rows)


def test_candidate_rows_flag_the_chosen_one(demo_table):
    pooled = assign_pools(demo_table)
    rows = candidate_rows(pooled, "p01", "p01-terse", "avg_surprisal")
    assert len(rows) == int((demo_table["problem_id"] == "p01").sum())
    assert rows.loc[rows["chosen"], "trajectory_id"].tolist() == ["p01-terse"]
    assert "avg_surprisal" in rows and rows["rsr"].is_monotonic_increasing


def test_export_bytes_match_write_selection(demo_table, tmp_path):
    sel = select(demo_table, overrides={"p01": "p01-calculus"})
    data = export_bytes(sel.selected, "jsonl")
    assert data == write_selection(sel.selected, tmp_path / "s.jsonl").read_bytes()
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert len(records) == 19 and records[0]["messages"][0]["role"] in ("user", "system")
    frame = pd.read_parquet(io.BytesIO(export_bytes(sel.selected, "parquet")))
    assert list(frame["id"]) == [r["id"] for r in records]
    assert frame.set_index("problem_id").loc["p01", "manual"] == True  # noqa: E712 - numpy bool
    with pytest.raises(ValueError):
        export_bytes(sel.selected, "csv")


def test_summary_display_and_picks(demo_table):
    sel = select(demo_table)
    summary = selection_summary(demo_table, sel, random_seeds=[0, 1])
    comp = comparison_display(summary)
    assert comp["rsr vs selected"].iloc[0] == 0
    assert np.isclose(comp["rsr vs selected"].iloc[1], comp["rsr"].iloc[1] - comp["rsr"].iloc[0])
    fig = picks_figure(summary.picks)
    assert sum(fig.data[0].x) == len(sel.selected)
    assert rule_description("min", "rsr", None) == "lowest RSR (Eq. 7)"  # a trajectory's own RSR
    assert rule_description("random", "random", 3) == "random, seed 3"
