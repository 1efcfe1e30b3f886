"""The app in AppTest, on the bundled demo store and from an empty cache: every page renders; the inspector picks
by search and pages, recolours, rescores on r_max, highlights selected tokens, jumps to the worst span, pages
through a 16k-token trajectory and compares side by side; a results store opens from RSR_STORE; page settings
survive moving between pages; the sidebar reports unreadable records and scores into a store with Score / Stop;
no session holds the shared results."""
from __future__ import annotations

import base64
import gc
import json
import os
import re
import stat
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app_pages import app_table, write_store
from rsr_core.analysis import explain
from rsr_core.analysis.metrics import trajectory_rsr
from rsr_core.data.demo import CANDIDATES, available_demo_students, load_demo
from rsr_core.data.paths import DATA_DIR
from rsr_core.data.tables import rescore_table
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory
from rsr_core.ui import inspector as ui
from rsr_core.ui.inspector_figures import rank_surprisal_scatter, token_positions
from rsr_core.ui.navigation import available_pages
from tests.conftest import keep_app_navigation

pytestmark = pytest.mark.skipif(not available_demo_students(), reason="no precomputed demo scores")
INSPECTOR = "pages/inspector.py"
APP = str(Path(__file__).resolve().parents[1] / "app.py")
SECOND = "gemma-3-270m"


@pytest.fixture(autouse=True)
def _app_script_every_run(monkeypatch):
    keep_app_navigation(monkeypatch)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rsr-cache")


@pytest.fixture(autouse=True)
def empty_cache(cache_dir, monkeypatch, tmp_path_factory):
    """An empty score cache; the tests' folders and the project's data/ are the server's data roots."""
    monkeypatch.setenv("RSR_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("RSR_STORE", raising=False)
    monkeypatch.setenv("RSR_DATA_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(DATA_DIR)]))


@pytest.fixture(scope="module")
def demo():
    return load_demo()


def start_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception[0].message
    return at


def inspector(at: AppTest) -> AppTest:
    at.switch_page(INSPECTOR).run()
    assert not at.exception, at.exception[0].message
    return at


def pick(at: AppTest, tid: str) -> AppTest:
    """Open a trajectory the way a user does: type its id into the search box."""
    at.text_input(key=ui.K_SEARCH).input(tid).run()
    assert not at.exception, at.exception[0].message
    assert at.session_state["selected_trajectory"] == tid
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def strips(at: AppTest) -> list[str]:
    return [h.value for h in at.html if "rsr-strip" in h.value]


def highlighted(html: str) -> set[int]:
    return {int(t) for t in re.findall(r'class="rsr-tok rsr-hl" data-t="(\d+)"', html)}


def test_every_page_renders(demo):
    at = start_app()
    table, _ = demo
    assert len(app_table(at)) == len(table)
    assert any(f"{len(table):,} trajectories under" in c.value for c in at.caption)
    assert any(df.value.shape[0] >= table["teacher"].nunique() for df in at.dataframe)  # the teacher report
    for spec in available_pages():
        at.switch_page(spec.path).run()
        assert not at.exception, f"{spec.path}: {at.exception[0].message}"


def test_pages_run_inside_app_when_served_alone(monkeypatch, cache_dir):
    """Without `keep_app_navigation` (a plain AppTest run), a page file run alone still gets
    app.py around it: the sidebar is there on the inspector and the overview."""
    monkeypatch.undo()
    monkeypatch.setenv("RSR_CACHE_DIR", str(cache_dir))
    at = start_app()
    for path in ("pages/inspector.py", "pages/overview.py"):
        at.switch_page(path).run()
        assert not at.exception, at.exception[0].message
        assert at.sidebar.number_input(key="sidebar_r_max").value == 100


def test_pick_view_and_r_max(demo):
    table, scores = demo
    at = inspector(start_app())
    tid = table.sort_values("rsr").iloc[-1]["trajectory_id"]  # not the first one shown
    pick(at, tid)
    ts = scores[tid]
    assert metric(at, "RSR") == f"{trajectory_rsr(ts.surprisal, ts.rank, 100):.3f}"
    assert metric(at, "tokens") == f"{len(ts):,}"

    at.radio(key=ui.K_VIEW).set_value("zone").run()
    assert 'data-view="zone"' in strips(at)[0]
    assert strips(at)[0].count('class="rsr-tok') == len(ts)

    at.sidebar.number_input(key="sidebar_r_max").set_value(10).run()
    expected = rescore_table(table[table["trajectory_id"] == tid], scores, 10)["rsr"].iloc[0]
    assert metric(at, "RSR") == f"{expected:.3f}"
    assert (ts.rank > 10).any() and expected < trajectory_rsr(ts.surprisal, ts.rank, 100)  # clipping lowers it
    assert (app_table(at)["r_max"] == 10).all()


def test_reasoning_trace_shows_prompt_boundary_and_parts(demo):
    table, scores = demo
    tid = "p06-r1-style"
    at = pick(inspector(start_app()), tid)
    messages = json.loads(table.set_index("trajectory_id").at[tid, "messages"])
    assert messages[1]["reasoning_content"]
    prompt = next(e for e in at.expander if e.label == "Prompt")
    assert any(messages[0]["content"] in tx.value for tx in prompt.text)
    ts = scores[tid]
    codes, answers, tools = ui.part_positions(ts, messages)
    mask = codes == 0
    assert tools == []
    assert 0 < len(answers) and mask[:answers[0]].all() and not mask[answers[0]:].any()
    assert "".join(ts.tokens[answers[0]:]).lstrip("\n") == messages[1]["content"].lstrip("\n")
    parts = next(df.value for df in at.dataframe if list(df.value.get("part", [])) == ["thinking", "answer"])
    assert parts["tokens"].tolist() == [int(mask.sum()), int((~mask).sum())]
    thinking_rsr = trajectory_rsr(ts.surprisal[mask], ts.rank[mask], 100)
    assert parts["rsr"].iloc[0] == pytest.approx(thinking_rsr)
    assert strips(at)[0].count('class="rsr-part"') == 1
    assert any("coverage 100.0%" in c.value for c in at.caption)


def list_frame(at: AppTest) -> pd.DataFrame:
    """The trajectory list's page as shown, the list opened first (a collapsed list is not drawn)."""
    if not at.session_state[ui.K_LIST_OPEN]:
        assert not [df for df in at.dataframe if df.key == ui.K_LIST]
        at.session_state[ui.K_LIST_OPEN] = True
        at.run()
    return next(df.value for df in at.dataframe if df.key == ui.K_LIST)


def test_filters_narrow_the_list(demo):
    table, _ = demo
    at = inspector(start_app())
    teacher = sorted(table["teacher"].unique())[-1]
    at.selectbox(key=ui.K_TEACHER).set_value(teacher).run()
    shown = list_frame(at)
    assert set(shown["teacher"]) == {teacher} and len(shown) == int((table["teacher"] == teacher).sum())
    assert at.session_state["selected_trajectory"] in set(table.loc[table["teacher"] == teacher, "trajectory_id"])
    at.text_input(key=ui.K_PROBLEM).input("p07").run()
    assert list_frame(at)["trajectory_id"].tolist() == [f"p07-{teacher}"]


def test_the_list_is_searchable_and_paged(demo):
    table, _ = demo
    at = inspector(start_app())
    assert len(list_frame(at)) == ui.LIST_PAGE < len(table)
    expected = table.sort_values("rsr", kind="stable")["trajectory_id"].tolist()
    assert list_frame(at)["trajectory_id"].tolist() == expected[:ui.LIST_PAGE]
    at.number_input(key=ui.K_LIST_PAGE).set_value(2).run()
    assert list_frame(at)["trajectory_id"].tolist() == expected[ui.LIST_PAGE:2 * ui.LIST_PAGE]
    at.text_input(key=ui.K_SEARCH).input("R1-STYLE").run()  # case-insensitive part of an id
    assert set(list_frame(at)["teacher"]) == {"r1-style"} and len(list_frame(at)) == 19


def test_selected_tokens_are_highlighted(demo):
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    at.session_state["selected_tokens"] = {tid: [3, 5]}  # what a scatter selection stores
    at.run()
    assert highlighted(strips(at)[0]) == {3, 5}
    at.button(key="inspector_clear").click().run()
    assert highlighted(strips(at)[0]) == set()


def test_scatter_selection_points_to_positions():
    points = [{"customdata": [7, "x", 3], "x": 1.0}, {"customdata": [2, "y", 1]}, {"customdata": [7, "x", 3]}]
    assert token_positions(points) == [2, 7]
    assert token_positions([]) == []


def test_scatter_of_a_long_trajectory_is_its_density_and_the_dots_of_the_page(demo):
    table, scores = demo
    ts = max(scores.values(), key=len)
    n = len(ts)
    every = rank_surprisal_scatter(ts, 100, dots_up_to=n)
    assert sum(len(t.x) for t in every.data if t.mode == "markers") == n
    fig = rank_surprisal_scatter(ts, 100, window=(10, 30), dots_up_to=n - 1)
    density = [t for t in fig.data if t.type == "heatmap"]
    assert len(density) == 1 and density[0].customdata is None  # a click on it selects no token
    assert np.nansum(np.asarray(density[0].text, dtype=float)) == n  # every token counted once
    dots = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert sorted(int(p) for t in dots for p in np.asarray(t.customdata)[:, 0]) == list(range(10, 30))
    assert all("on this page" in t.name for t in dots)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def plotly_array(value) -> np.ndarray:
    """An array of a figure's JSON: a list, or plotly's typed array {"dtype", "bdata" (base64)}."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def test_only_the_open_chart_tab_is_drawn(demo):
    """The chart tabs beside the text draw the open tab only; choosing another draws that one instead."""
    table, scores = demo
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    n = len(scores[tid])

    def drawn() -> list[str]:
        return [d["type"] for spec in chart_specs(at) for d in spec["data"]]
    assert "scatter" in drawn() and "bar" not in drawn()
    at.session_state[ui.K_CHART_TAB] = "Surprisal"
    at.run()
    assert not at.exception
    bars = [d for spec in chart_specs(at) for d in spec["data"] if d["type"] == "bar"]
    assert len(bars) == 1 and set(drawn()) == {"bar"}
    assert int(np.sum(plotly_array(bars[0]["y"]))) == n  # binned on the server: every token in one of the bars
    at.session_state[ui.K_CHART_TAB] = "Zones"
    at.run()
    assert drawn() == [] and any("% of Σ clipped rank" in df.value.columns for df in at.dataframe)


def test_why_this_score_draws_the_open_tab_only(demo):
    """Under the text: the spans table by default; the window curve and the token table when their tab is chosen,
    each with the numbers of `explain` for this trajectory and the window shown."""
    table, scores = demo
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    ts = scores[tid]
    window = int(at.number_input(key=ui.window_key(tid)).value)

    def curves() -> list[dict]:
        return [s for s in chart_specs(at) if "window" in json.dumps(s["layout"].get("title", ""))]

    def frame(column: str) -> pd.DataFrame | None:
        return next((df.value for df in at.dataframe if column in df.value.columns), None)
    spans = frame("rsr_without")
    top = explain.top_spans(ts.surprisal, ts.rank, 100, window, k=5)
    assert not curves() and frame("position") is None
    assert spans["start"].tolist() == [sp.start for sp in top] and spans["stop"].tolist() == [sp.stop for sp in top]
    at.session_state[ui.K_WHY_TAB] = "RSR along the text"
    at.run()
    assert not at.exception and frame("rsr_without") is None
    [curve] = curves()
    expected = explain.sliding_rsr(ts.surprisal, ts.rank, 100, window, stride=ui.curve_stride(len(ts), window))
    y = plotly_array(curve["data"][0]["y"])
    np.testing.assert_allclose(y, expected["rsr"].to_numpy(), rtol=1e-9)
    at.session_state[ui.K_WHY_TAB] = "Tokens that push RSR up most"
    at.run()
    assert not at.exception and not curves()
    tokens = frame("position")
    expected = explain.token_contributions(ts.surprisal, ts.rank, ts.tokens, 100, k=10)
    assert tokens["position"].tolist() == expected["position"].tolist() and len(tokens) == 10


def test_the_curve_of_a_long_text_has_a_bounded_number_of_windows():
    s, r = np.random.default_rng(0).exponential(size=32_000), np.arange(32_000) % 50 + 1
    for n, w in ((32_000, 64), (32_000, 2), (500, 64), (70, 64)):
        curve = explain.sliding_rsr(s[:n], r[:n], 100, w, stride=ui.curve_stride(n, w))
        assert len(curve) <= ui.CURVE_POINTS + 2 and curve["stop"].iloc[-1] == n
        assert curve["start"].diff().max() <= max(w // 4, 1) or len(curve) > ui.CURVE_POINTS - 2
    assert ui.curve_stride(500, 64) == 16  # a short text keeps the quarter-window step


def test_jump_to_worst_span(demo):
    table, scores = demo
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    window = int(at.number_input(key=ui.window_key(tid)).value)
    worst = explain.top_spans(scores[tid].surprisal, scores[tid].rank, 100, window, k=1)[0]
    button = at.button(key="inspector_jump_worst")
    assert button.label == ui.JUMP_LABEL and "ranked by how much they raise" in button.help
    button.click().run()
    assert at.session_state["selected_tokens"][tid] == list(range(worst.start, worst.stop))
    assert at.session_state["token_window_start"][tid] == ui.window_for(worst.start)
    assert highlighted(strips(at)[0]) == set(range(worst.start, worst.stop))
    # what the ranking means, beside the outlined span: its excess, not its own RSR, put it first
    span = explain.span_at(scores[tid].surprisal, scores[tid].rank, worst.start, worst.stop, 100)
    said = next(c.value for c in at.caption if "outlined" in c.value)
    assert "the span that raises RSR most" in said and f"excess {span.excess:+.1f}" in said
    assert f"Their own RSR is {span.rsr:.2f}" in said and "need not be the highest point" in said


def long_trajectory(scores: dict[str, TokenScores], n: int = 16_000) -> tuple[Trajectory, TokenScores]:
    """A 16k-token trajectory stitched from real per-token scores, with the conversation its tokens spell."""
    parts, total = [], 0
    while total < n:
        for ts in scores.values():
            parts.append(ts)
            total += len(ts)
            if total >= n:
                break
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])[:n]  # noqa: E731
    tokens = [t for p in parts for t in p.tokens][:n]
    ends = np.cumsum([len(t) for t in tokens])
    offsets = np.stack([ends - [len(t) for t in tokens], ends], axis=1).astype(np.int64)
    ts = TokenScores(token_ids=cat("token_ids"), tokens=tokens, offsets=offsets, turn=np.zeros(n, np.int32),
                     surprisal=cat("surprisal"), rank=cat("rank"), entropy=cat("entropy"), top_ids=cat("top_ids"),
                     top_tokens=[t for p in parts for t in p.top_tokens][:n], top_probs=cat("top_probs"),
                     n_context=n + 40)
    traj = Trajectory("long-16k", "p-long", "stitched", [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "".join(tokens)}])
    return traj, ts


def test_long_trajectory_renders_one_page_at_a_time(demo, tmp_path, monkeypatch):
    """A store with a 16k-token trajectory, opened at start-up through RSR_STORE."""
    table, scores = demo
    traj, ts = long_trajectory(scores)
    monkeypatch.setenv("RSR_STORE", str(write_store(tmp_path / "long", [traj], {"long-16k": ts})))
    t = time.perf_counter()
    at = inspector(start_app())
    assert at.session_state["dataset"].from_store and at.session_state["selected_trajectory"] == "long-16k"
    assert metric(at, "tokens") == "16,000"
    html = strips(at)[0]
    assert html.count('class="rsr-tok') == ui.DEFAULT_PAGE and 'data-t="0"' in html
    at.number_input(key=ui.K_START).set_value(9000).run()
    html = strips(at)[0]
    last = 9000 + ui.DEFAULT_PAGE - 1
    assert 'data-t="9000"' in html and f'data-t="{last}"' in html and f'data-t="{last + 1}"' not in html
    at.button(key="inspector_jump_worst").click().run()
    worst = explain.top_spans(ts.surprisal, ts.rank, 100, ui.default_window(len(ts)), k=1)[0]
    assert f'data-t="{worst.start}"' in strips(at)[0]
    assert at.session_state["token_window_start"]["long-16k"] == ui.window_for(worst.start)
    assert time.perf_counter() - t < 120  # four full runs of the page with 16k tokens


def test_side_by_side_same_problem(demo):
    table, _ = demo
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    pid = table.set_index("trajectory_id").at[tid, "problem_id"]
    at.toggle(key=ui.K_COMPARE).set_value(True).run()
    # options are shown as "id · teacher · RSR"
    options = [o.split(" · ")[0] for o in at.selectbox(key=ui.K_COMPARE_WITH).options]
    assert set(options) == set(table.loc[(table["problem_id"] == pid) & (table["trajectory_id"] != tid),
                                         "trajectory_id"])
    assert len(strips(at)) == 3  # the text view and the two sides
    other = options[-1]
    at.selectbox(key=ui.K_COMPARE_WITH).set_value(other).run()
    rsrs = [m.value for m in at.metric if m.label == "RSR"]
    rows = table.set_index("trajectory_id")
    assert rsrs[1:] == [f"{rows.at[tid, 'rsr']:.3f}", f"{rows.at[other, 'rsr']:.3f}"]
    answers = [m.value for m in at.metric if m.label == "answer"]
    assert answers[1:] == [ui.answer_label(rows.at[tid, "correct"]), ui.answer_label(rows.at[other, "correct"])]
    assert set(answers) <= {"correct", "wrong", "unknown"}


@pytest.mark.skipif(SECOND not in available_demo_students(), reason="no precomputed demo scores of a 2nd student")
def test_side_by_side_two_students_and_switching(demo):
    """The demo store holds a second student: compare under both, then make it active (no model is loaded)."""
    table, scores = demo
    b_table, b_scores = load_demo(SECOND)
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    at.toggle(key=ui.K_COMPARE).set_value(True).run()
    at.radio(key=ui.K_COMPARE_MODE).set_value("student").run()
    assert at.selectbox(key=ui.K_COMPARE_STUDENT).options == [SECOND]
    rsrs = [m for m in at.metric if m.label == "RSR"]
    b_rsr = trajectory_rsr(b_scores[tid].surprisal, b_scores[tid].rank, 100)
    a_rsr = trajectory_rsr(scores[tid].surprisal, scores[tid].rank, 100)
    assert rsrs[-1].value == f"{b_rsr:.3f}" and rsrs[-2].value == f"{a_rsr:.3f}"
    # the overview reports both students, the active one first
    at.switch_page("pages/overview.py").run()
    report = next(df.value for df in at.dataframe if "student" in df.value.columns)
    assert report["student"].iloc[0] == "smollm2-135m-instruct" and set(report["student"]) == {
        "smollm2-135m-instruct", SECOND}
    at.sidebar.selectbox(key="sidebar_student").set_value(SECOND).run()
    report = next(df.value for df in at.dataframe if "student" in df.value.columns)
    n_second = int((report["student"] == SECOND).sum())
    assert (report["student"].iloc[:n_second] == SECOND).all()  # the active student's rows on top
    bars = next(spec["data"][0] for spec in chart_specs(at) if "per teacher" in json.dumps(spec["layout"]))
    mine = report[report["student"] == SECOND].sort_values("rsr")
    assert list(bars["y"]) == mine["teacher"].tolist()  # the active student's teachers, best on top
    assert np.allclose(plotly_array(bars["x"]), mine["rsr"].to_numpy(float))
    inspector(at)
    assert at.session_state["student_name"] == SECOND
    assert set(app_table(at)["student"]) == {SECOND}
    assert metric(at, "RSR") == f"{b_table.set_index('trajectory_id').at[tid, 'rsr']:.3f}"
    assert "scoring_job" not in at.session_state


def test_a_store_opens_from_the_sidebar(demo, tmp_path):
    table, scores = demo
    ids = table["trajectory_id"].tolist()[:5]
    trajectories = [Trajectory(r["trajectory_id"], r["problem_id"], r["teacher"], json.loads(r["messages"]))
                    for r in table.iloc[:5].to_dict("records")]
    path = write_store(tmp_path / "five", trajectories, {t: scores[t] for t in ids})
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("store").run()
    at.sidebar.text_input(key="sidebar_store_path").input(str(path)).run()
    assert not at.exception, at.exception[0].message
    assert sorted(app_table(at)["trajectory_id"]) == sorted(ids)
    assert any("5 trajectories under" in c.value for c in at.caption)
    at.sidebar.text_input(key="sidebar_store_path").input(str(tmp_path / "nothing")).run()
    assert any("not an RSR Explorer results store" in e.value for e in at.sidebar.error)


def test_page_settings_survive_moving_between_pages():
    at = inspector(start_app())
    at.radio(key="inspector_view").set_value("zone").run()
    at.switch_page("pages/selection.py").run()
    at.selectbox(key="selection_mode").set_value("max").run()
    at.checkbox(key="selection_correct_only").check().run()
    at.switch_page("pages/zone.py").run()
    at.slider(key="zpd_weight").set_value(0.7).run()
    at.switch_page("pages/overview.py").run()
    at.switch_page("pages/selection.py").run()
    assert at.selectbox(key="selection_mode").value == "max" and at.checkbox(key="selection_correct_only").value
    inspector(at)
    assert at.radio(key="inspector_view").value == "zone" and 'data-view="zone"' in strips(at)[0]
    at.switch_page("pages/zone.py").run()
    assert at.slider(key="zpd_weight").value == pytest.approx(0.7)


def test_sessions_share_the_results_and_hold_none_of_them(demo):
    """Two sessions read the same table object; session state holds no table, scores or conversations."""
    from rsr_core.ui import results

    first, second = inspector(start_app()), inspector(start_app())
    for at in (first, second):
        held = [k for k, v in at.session_state.items()
                if isinstance(v, (pd.DataFrame, TokenScores)) or isinstance(v, dict) and len(v) > 50]
        assert held == [], held
    path = str(at.session_state["dataset"].stores[1])
    assert results.table(path, "smollm2-135m-instruct", 100) is results.table(path, "smollm2-135m-instruct", 100)


def write_pool(path, n_good: int = 2, bad: bool = True) -> list[dict]:
    """A small pool from the demo's shortest candidates, plus one broken line."""
    rows = sorted((json.loads(line) for line in open(CANDIDATES, encoding="utf-8") if line.strip()),
                  key=lambda r: len(r["messages"][-1]["content"]))[:n_good]
    lines = [json.dumps(r) for r in rows]
    if bad:
        lines.insert(1, '{"id": "broken", "messages": [')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


def test_unreadable_records_are_reported(tmp_path):
    pool = tmp_path / "pool.jsonl"
    write_pool(pool)
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    at.sidebar.text_input(key="sidebar_path").input(str(pool)).run()
    assert not at.exception
    assert any("1 record(s) could not be read" in w.value for w in at.sidebar.warning)
    assert any(f"{pool}, line 2: invalid JSON" in m.value for m in at.sidebar.markdown)
    assert len(at.session_state["dataset"].trajectories) == 2
    at.sidebar.text_input(key="sidebar_path").input(str(tmp_path / "missing.jsonl")).run()
    assert any("no such file or folder" in e.value for e in at.sidebar.error)
    for spec in available_pages():
        at.switch_page(spec.path).run()
        assert not at.exception, f"{spec.path}: {at.exception[0].message}"


def test_server_paths_outside_the_data_roots_are_refused(monkeypatch, tmp_path):
    """With the default data roots (the project's data/ and the working folder), /etc/passwd, a way out by `..`
    and another folder are refused before anything is read: no columns offered, no values, no dataset."""
    monkeypatch.delenv("RSR_DATA_ROOTS")
    write_pool(tmp_path / "pool.jsonl", bad=False)
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    for path in ("/etc/passwd", str(DATA_DIR / ".." / ".." / ".." / ".." / "etc" / "passwd"),
                 str(tmp_path / "pool.jsonl")):
        at.sidebar.text_input(key="sidebar_path").input(path).run()
        assert not at.exception, at.exception[0].message
        assert any("is outside the folders this server may read" in e.value and "RSR_DATA_ROOTS" in e.value
                   for e in at.sidebar.error), [e.value for e in at.sidebar.error]
        assert not at.session_state["dataset"].trajectories
        assert not [s for s in at.sidebar.selectbox if s.key == "sidebar_prompt_field"]  # no column names shown
        assert not any("root:" in m.value for m in [*at.sidebar.markdown, *at.markdown])
    at.sidebar.text_input(key="sidebar_path").input(str(CANDIDATES)).run()  # the demo pool, inside data/
    assert not at.sidebar.error and len(at.session_state["dataset"].trajectories) > 50
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("store").run()
    at.sidebar.text_input(key="sidebar_store_path").input("/etc").run()
    assert any("is outside the folders this server may read" in e.value for e in at.sidebar.error)
    monkeypatch.setenv("RSR_DATA_ROOTS", str(tmp_path))  # a root added on purpose
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    at.sidebar.text_input(key="sidebar_path").input(str(tmp_path / "pool.jsonl")).run()
    assert not at.sidebar.error and len(at.session_state["dataset"].trajectories) == 2


def test_a_large_folder_is_refused_before_it_is_read(tmp_path):
    from rsr_core.data.sources import MAX_FOLDER_ENTRIES

    big = tmp_path / "big"
    big.mkdir()
    for k in range(MAX_FOLDER_ENTRIES + 1):
        (big / f"{k}.txt").touch()
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    at.sidebar.text_input(key="sidebar_path").input(str(big)).run()
    assert not at.exception, at.exception[0].message
    assert any(f"holds more than {MAX_FOLDER_ENTRIES:,} files and folders" in e.value for e in at.sidebar.error)
    assert not at.session_state["dataset"].trajectories


def test_an_upload_is_kept_privately_and_removed_with_its_session(cache_dir):
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("upload").run()
    data = b"".join(line for line in CANDIDATES.read_bytes().splitlines(keepends=True)[:3])
    at.sidebar.file_uploader(key="sidebar_upload").set_value(("pool.jsonl", data, "application/jsonl")).run()
    assert not at.exception, at.exception[0].message
    assert len(at.session_state["dataset"].trajectories) == 3
    folder = at.session_state["upload_folder"].path
    files = list(folder.iterdir())
    assert folder.parent == cache_dir / "uploads" and len(files) == 1 and files[0].read_bytes() == data
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    other = start_app()  # another session: another folder
    other.sidebar.radio(key="sidebar_dataset_kind").set_value("upload").run()
    other.sidebar.file_uploader(key="sidebar_upload").set_value(("pool.jsonl", data, "application/jsonl")).run()
    assert other.session_state["upload_folder"].path != folder
    del at  # the session ends: its state goes, and its uploads with it
    gc.collect()
    assert not folder.exists() and other.session_state["upload_folder"].path.exists()


def test_upload_with_unrecognised_columns_uses_the_pickers():
    frame = pd.DataFrame({"q": ["What is 2 + 3?", "What is 7 - 4?"], "a": ["2 + 3 = 5.", "7 - 4 = 3."],
                          "cot": ["Add them.", "Subtract."], "teacher": ["t1", "t2"]})
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("upload").run()
    at.sidebar.file_uploader(key="sidebar_upload").set_value(("plain.csv", frame.to_csv(index=False).encode(),
                                                               "text/csv")).run()
    assert not at.exception, at.exception[0].message
    assert at.session_state["dataset"].trajectories == []
    assert any("2 record(s) could not be read" in w.value for w in at.sidebar.warning)
    assert any("plain" in m.value and "line 2: cannot tell the schema" in m.value for m in at.sidebar.markdown)
    assert at.sidebar.selectbox(key="sidebar_prompt_field").options == ["(auto-detect)", "q", "a", "cot", "teacher"]
    at.sidebar.selectbox(key="sidebar_prompt_field").set_value("q")
    at.sidebar.multiselect(key="sidebar_response_fields").set_value(["a"]).run()
    trajectories = at.session_state["dataset"].trajectories
    assert [t.response for t in trajectories] == ["2 + 3 = 5.", "7 - 4 = 3."]
    assert [t.teacher for t in trajectories] == ["t1", "t2"]
    assert not at.sidebar.warning
    # the reasoning column is scored as the thinking before the answer
    at.sidebar.selectbox(key="sidebar_reasoning_field").set_value("cot").run()
    trajectories = at.session_state["dataset"].trajectories
    assert trajectories[0].response == "<think>\nAdd them.\n</think>\n\n2 + 3 = 5."
    # several response columns: one teacher per column
    at.sidebar.selectbox(key="sidebar_reasoning_field").set_value("(auto-detect)")
    at.sidebar.multiselect(key="sidebar_response_fields").set_value(["a", "cot"]).run()
    assert sorted({t.teacher for t in at.session_state["dataset"].trajectories}) == ["a", "cot"]


def test_hub_unreachable_is_explained(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("hub").run()
    at.sidebar.text_input(key="sidebar_hub_repo").input("Umean/RSR_data").run()
    assert any("cannot be reached" in w.value for w in at.sidebar.warning)


def test_unknown_student_is_an_error_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pool = tmp_path / "pool.jsonl"
    write_pool(pool, bad=False)
    at = start_app()
    at.sidebar.selectbox(key="sidebar_student").set_value("other").run()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    at.sidebar.text_input(key="sidebar_path").input(str(pool)).run()
    for spec, message in (("nobody-here/no-such-model", "cannot be reached"),
                          (str(tmp_path / "x.gguf"), "no GGUF file"), (str(tmp_path / "no/such/folder"),
                                                                       "neither a model folder")):
        at.sidebar.text_input(key="sidebar_student_spec").input(spec).run()
        at.sidebar.button(key="sidebar_score").click().run()
        assert not at.exception, at.exception[0].message
        assert any(message in e.value for e in at.sidebar.error), [e.value for e in at.sidebar.error]
        assert "scoring_job" not in at.session_state
    # a local model outside the server's model folders (here the data roots) is refused as it is typed
    at.sidebar.text_input(key="sidebar_student_spec").input("./no/such/folder").run()
    assert any("is not a model this server may load" in e.value for e in at.sidebar.error)
    assert at.sidebar.button(key="sidebar_score").disabled
    assert len(at.session_state["dataset"].trajectories) == 2  # the data stays usable


def wait_for_job(at: AppTest, timeout: float = 600) -> None:
    job = at.session_state["scoring_job"]
    assert job.wait(timeout), "scoring did not finish"
    at.run()  # redraw, as the progress fragment does when results land


def test_score_and_stop_with_the_embedded_student(tmp_path):
    """Score one short trajectory with the real student, stop a second run early, resume: the results go to the
    dataset's own store, batch by batch, and come back when the dataset is opened again."""
    pool = tmp_path / "pool.jsonl"
    rows = write_pool(pool, n_good=4, bad=False)
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    at.sidebar.text_input(key="sidebar_path").input(str(pool)).run()
    assert app_table(at).empty
    at.sidebar.number_input(key="sidebar_score_limit").set_value(1).run()
    at.sidebar.button(key="sidebar_score").click().run()
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    wait_for_job(at)
    assert app_table(at)["trajectory_id"].tolist() == [rows[0]["id"]]
    assert any("1 of 4 trajectories have scores" in c.value for c in at.sidebar.caption)
    assert not at.sidebar.button(key="sidebar_score").disabled and at.sidebar.button(key="sidebar_stop").disabled

    at.sidebar.number_input(key="sidebar_score_limit").set_value(0).run()
    at.sidebar.button(key="sidebar_score").click().run()
    job = at.session_state["scoring_job"]
    assert job.running and at.sidebar.button(key="sidebar_score").disabled
    at.sidebar.button(key="sidebar_stop").click().run()
    assert job.stop_requested
    wait_for_job(at)
    assert job.stopped and job.written < 3
    assert any("Stopped" in i.value for i in at.sidebar.info)
    n_done = len(app_table(at))
    assert 1 <= n_done < 4

    at.sidebar.button(key="sidebar_score").click().run()  # resumes with the rest
    wait_for_job(at)
    table = app_table(at)
    assert sorted(table["trajectory_id"]) == sorted(r["id"] for r in rows)
    assert at.session_state["scoring_job"].progress.total == 4 - n_done  # only the unscored ones were sent
    demo_table, demo_scores = load_demo()
    for tid in table["trajectory_id"]:  # the same numbers as the precomputed demo scores
        got = at.session_state["dataset"].stores[0]
        from rsr_core.data.store import ResultsStore
        np.testing.assert_allclose(ResultsStore(got).token_scores("smollm2-135m-instruct", tid).surprisal,
                                   demo_scores[tid].surprisal, rtol=1e-4, atol=1e-4)
    inspector(at)
    tid = at.session_state["selected_trajectory"]
    assert metric(at, "tokens") == f"{len(demo_scores[tid]):,}"

    # leave the dataset and come back: the results are in its store, no scoring run needed
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("demo").run()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    assert sorted(app_table(at)["trajectory_id"]) == sorted(r["id"] for r in rows)
    assert any("4 of 4 trajectories have scores" in c.value for c in at.sidebar.caption)


def test_the_trajectory_list_filters_and_sorts_like_pandas():
    """`list_rows` (the Inspector's list as row positions) against a plain pandas filter and stable sort."""
    rng = np.random.default_rng(1)
    n = 300
    table = pd.DataFrame({
        "trajectory_id": [f"T{k}/run{k % 3}/{k:05d}" for k in range(n)],
        "problem_id": pd.Categorical([f"p{k % 17:03d}" for k in range(n)]),
        "teacher": pd.Categorical(rng.choice(["QwQ", "R1", "Phi"], n)),
        "rsr": np.where(rng.random(n) < 0.1, np.nan, rng.choice([1.5, 2.0, 2.5, 3.0], n)),
        "n_tokens": rng.integers(1, 100, n)})
    for teacher, problem, sort, desc, search in [(ui.ALL, ui.ALL, "rsr", False, ""), ("R1", "", "rsr", True, ""),
                                                  (ui.ALL, "p003", "n_tokens", False, ""),
                                                  (ui.ALL, ui.ALL, "teacher", True, "RUN1"),
                                                  ("Phi", ui.ALL, "rsr", False, "p01"),
                                                  (ui.ALL, ui.ALL, "rsr", False, "no such id")]:
        rows = ui.list_rows(table, teacher, problem, sort, desc, search)
        view = table.assign(_pos=np.arange(n))
        if teacher != ui.ALL:
            view = view[view["teacher"].astype(str) == teacher]
        if problem and problem != ui.ALL:
            view = view[view["problem_id"].astype(str) == problem]
        if search:
            hay = (view["trajectory_id"] + " " + view["problem_id"].astype(str)).str.lower()
            view = view[hay.str.contains(search.lower(), regex=False)]
        view = view.sort_values(sort, ascending=not desc, kind="stable", na_position="last")
        assert rows.tolist() == view["_pos"].tolist()
        page = ui.list_page(table, rows, 1, size=20)  # the second page, or the last when there is no second
        first = 20 if len(rows) > 20 else 0
        assert page["trajectory_id"].tolist() == table["trajectory_id"].iloc[rows[first:first + 20]].tolist()
        assert list(page.columns) == [c for c in ui.LIST_COLUMNS if c in table]
