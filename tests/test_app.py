"""The app in AppTest, on the bundled demo and from an empty cache: every page renders; the inspector picks,
recolours, rescoring on r_max, highlights selected tokens, jumps to the worst span, pages through a 16k-token
trajectory and compares side by side; the sidebar reports unreadable records and scores with Score / Stop."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from rsr_core.analysis import explain
from rsr_core.data.demo import CANDIDATES, available_demo_students, load_demo
from rsr_core.data.formats import read_trajectories
from rsr_core.analysis.metrics import trajectory_rsr
from rsr_core.data.tables import rescore_table, trajectory_table
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory
from rsr_core.ui import inspector as ui
from rsr_core.ui.inspector_figures import token_positions
from rsr_core.ui.navigation import available_pages
from tests.conftest import keep_app_navigation
from rsr_core.ui.state import StudentResults

pytestmark = pytest.mark.skipif(not available_demo_students(), reason="no precomputed demo scores")
INSPECTOR = "pages/inspector.py"
APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _app_script_every_run(monkeypatch):
    keep_app_navigation(monkeypatch)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rsr-cache")


@pytest.fixture(autouse=True)
def empty_cache(cache_dir, monkeypatch):
    monkeypatch.setenv("RSR_CACHE_DIR", str(cache_dir))


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


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def strips(at: AppTest) -> list[str]:
    return [h.value for h in at.html if "rsr-strip" in h.value]


def highlighted(html: str) -> set[int]:
    return {int(t) for t in re.findall(r'class="rsr-tok rsr-hl" data-t="(\d+)"', html)}


def test_every_page_renders(demo):
    at = start_app()
    table, _ = demo
    assert len(at.session_state["table"]) == len(table)
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
    at.selectbox(key=ui.K_PICK).set_value(tid).run()
    assert at.session_state["selected_trajectory"] == tid
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
    assert (at.session_state["table"]["r_max"] == 10).all()


def test_reasoning_trace_shows_prompt_boundary_and_parts(demo):
    table, scores = demo
    tid = "p06-r1-style"
    at = inspector(start_app())
    at.selectbox(key=ui.K_PICK).set_value(tid).run()
    assert not at.exception, at.exception[0].message
    messages = json.loads(table.set_index("trajectory_id").at[tid, "messages"])
    assert messages[1]["reasoning_content"]
    prompt = next(e for e in at.expander if e.label == "Prompt")
    assert any(messages[0]["content"] in tx.value for tx in prompt.text)
    ts = scores[tid]
    mask, answers = ui.answer_starts(ts, messages)
    assert 0 < len(answers) and mask[:answers[0]].all() and not mask[answers[0]:].any()
    assert "".join(ts.tokens[answers[0]:]).lstrip("\n") == messages[1]["content"].lstrip("\n")
    parts = next(df.value for df in at.dataframe if list(df.value.get("part", [])) == ["thinking", "answer"])
    assert parts["tokens"].tolist() == [int(mask.sum()), int((~mask).sum())]
    thinking_rsr = trajectory_rsr(ts.surprisal[mask], ts.rank[mask], 100)
    assert parts["rsr"].iloc[0] == pytest.approx(thinking_rsr)
    assert strips(at)[0].count('class="rsr-part"') == 1
    assert any("coverage 100.0%" in c.value for c in at.caption)


def test_filters_narrow_the_list(demo):
    table, _ = demo
    at = inspector(start_app())
    teacher = sorted(table["teacher"].unique())[-1]
    at.selectbox(key=ui.K_TEACHER).set_value(teacher).run()
    options = at.selectbox(key=ui.K_PICK).options
    assert all(f" · {teacher} · " in o for o in options)
    assert len(options) == int((table["teacher"] == teacher).sum())
    assert at.session_state["selected_trajectory"] in set(table.loc[table["teacher"] == teacher, "trajectory_id"])


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


def test_jump_to_worst_span(demo):
    table, scores = demo
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    window = int(at.number_input(key=ui.window_key(tid)).value)
    worst = explain.top_spans(scores[tid].surprisal, scores[tid].rank, 100, window, k=1)[0]
    at.button(key="inspector_jump_worst").click().run()
    assert at.session_state["selected_tokens"][tid] == list(range(worst.start, worst.stop))
    assert at.session_state["token_window_start"][tid] == ui.window_for(worst.start)
    assert highlighted(strips(at)[0]) == set(range(worst.start, worst.stop))


def long_trajectory(scores: dict[str, TokenScores], n: int = 16_000) -> TokenScores:
    """A 16k-token trajectory stitched from real per-token scores (turn 0 throughout)."""
    parts, total = [], 0
    while total < n:
        for ts in scores.values():
            parts.append(ts)
            total += len(ts)
            if total >= n:
                break
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])[:n]  # noqa: E731
    return TokenScores(token_ids=cat("token_ids"), tokens=[t for p in parts for t in p.tokens][:n],
                       offsets=cat("offsets"), turn=np.zeros(n, np.int32), surprisal=cat("surprisal"),
                       rank=cat("rank"), entropy=cat("entropy"), top_ids=cat("top_ids"),
                       top_tokens=[t for p in parts for t in p.top_tokens][:n], top_probs=cat("top_probs"),
                       n_context=n + 40)


def test_long_trajectory_renders_one_page_at_a_time(demo):
    table, scores = demo
    at = inspector(start_app())
    ts = long_trajectory(scores)
    traj = Trajectory("long-16k", "p-long", "stitched", [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "".join(ts.tokens)}])
    at.session_state["table"] = pd.concat([at.session_state["table"],
                                           trajectory_table([traj], {"long-16k": ts}, "smollm2-135m-instruct")],
                                          ignore_index=True)
    at.session_state["scores"] = {**at.session_state["scores"], "long-16k": ts}
    at.session_state["selected_trajectory"] = "long-16k"
    t = time.perf_counter()
    at.run()
    assert not at.exception, at.exception[0].message
    assert metric(at, "tokens") == "16,000"
    html = strips(at)[0]
    assert html.count('class="rsr-tok') == ui.DEFAULT_PAGE and 'data-t="0"' in html
    at.number_input(key=ui.K_START).set_value(9000).run()
    html = strips(at)[0]
    assert 'data-t="9000"' in html and 'data-t="10499"' in html and 'data-t="10500"' not in html
    at.button(key="inspector_jump_worst").click().run()
    worst = explain.top_spans(ts.surprisal, ts.rank, 100, ui.default_window(len(ts)), k=1)[0]
    assert f'data-t="{worst.start}"' in strips(at)[0]
    assert at.session_state["token_window_start"]["long-16k"] == ui.window_for(worst.start)
    assert time.perf_counter() - t < 120  # three full runs of the page with 16k tokens


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


def test_side_by_side_two_students(demo):
    table, scores = demo
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    # a second student's results on the same data: the same tokens with every rank doubled
    b_scores = {k: TokenScores(**{**v.__dict__, "rank": v.rank * 2}) for k, v in scores.items()}
    trajectories, _ = read_trajectories(CANDIDATES)
    b_table = trajectory_table(trajectories, b_scores, "student-b")
    at.session_state["other_students"] = {"student-b": StudentResults(b_table, b_scores)}
    at.run()
    at.toggle(key=ui.K_COMPARE).set_value(True).run()
    at.radio(key=ui.K_COMPARE_MODE).set_value("student").run()
    assert at.selectbox(key=ui.K_COMPARE_STUDENT).options == ["student-b"]
    rsrs = [m for m in at.metric if m.label == "RSR"]
    b_rsr = trajectory_rsr(b_scores[tid].surprisal, b_scores[tid].rank, 100)
    a_rsr = trajectory_rsr(scores[tid].surprisal, scores[tid].rank, 100)
    assert rsrs[-1].value == f"{b_rsr:.3f}" and rsrs[-2].value == f"{a_rsr:.3f}"
    assert b_rsr > a_rsr
    # the overview reports both students
    at.switch_page("pages/overview.py").run()
    assert set(at.dataframe[0].value["student"]) == {"smollm2-135m-instruct", "student-b"}


@pytest.mark.skipif(len(available_demo_students()) < 2, reason="precomputed demo scores for one student only")
def test_demo_second_student_side_by_side_and_switch():
    first, second = available_demo_students()[:2]
    b_table, b_scores = load_demo(second)
    at = inspector(start_app())
    tid = at.session_state["selected_trajectory"]
    at.toggle(key=ui.K_COMPARE).set_value(True).run()
    at.radio(key=ui.K_COMPARE_MODE).set_value("student").run()
    assert second in at.selectbox(key=ui.K_COMPARE_STUDENT).options
    at.selectbox(key=ui.K_COMPARE_STUDENT).set_value(second).run()
    expected = trajectory_rsr(b_scores[tid].surprisal, b_scores[tid].rank, 100)
    assert [m.value for m in at.metric if m.label == "RSR"][-1] == f"{expected:.3f}"
    if second not in at.sidebar.selectbox(key="sidebar_student").options:
        return  # its package is not installed: it can be compared, not picked
    # making the second student active uses its precomputed scores (no model is loaded)
    at.sidebar.selectbox(key="sidebar_student").set_value(second).run()
    assert at.session_state["student_name"] == second
    assert set(at.session_state["table"]["student"]) == {second}
    assert metric(at, "RSR") == f"{b_table.set_index('trajectory_id').at[tid, 'rsr']:.3f}"
    assert first in at.session_state["other_students"]
    assert "scoring_job" not in at.session_state


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
                          (str(tmp_path / "x.gguf"), "no GGUF file"), ("./no/such/folder", "neither a model folder")):
        at.sidebar.text_input(key="sidebar_student_spec").input(spec).run()
        at.sidebar.button(key="sidebar_score").click().run()
        assert not at.exception, at.exception[0].message
        assert any(message in e.value for e in at.sidebar.error), [e.value for e in at.sidebar.error]
        assert "scoring_job" not in at.session_state
    assert len(at.session_state["dataset"].trajectories) == 2  # the data stays usable


def wait_for_job(at: AppTest, timeout: float = 600) -> None:
    job = at.session_state["scoring_job"]
    assert job.wait(timeout), "scoring did not finish"
    at.run()  # collect the results, as the progress fragment does


def test_score_and_stop_with_the_embedded_student(tmp_path):
    """Score 3 short trajectories with the real student, stop a second run early, and resume from the cache."""
    pool = tmp_path / "pool.jsonl"
    rows = write_pool(pool, n_good=4, bad=False)
    at = start_app()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    at.sidebar.text_input(key="sidebar_path").input(str(pool)).run()
    assert at.session_state["table"].empty
    at.sidebar.number_input(key="sidebar_score_limit").set_value(1).run()
    at.sidebar.button(key="sidebar_score").click().run()
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    wait_for_job(at)
    table = at.session_state["table"]
    assert table["trajectory_id"].tolist() == [rows[0]["id"]]

    at.sidebar.number_input(key="sidebar_score_limit").set_value(0).run()
    at.sidebar.button(key="sidebar_score").click().run()
    job = at.session_state["scoring_job"]
    assert job.running
    at.sidebar.button(key="sidebar_stop").click().run()
    assert job.stop_requested
    wait_for_job(at)
    assert job.stopped and len(job.scores) < 3
    assert any("Stopped" in i.value for i in at.sidebar.info)
    n_done = len(at.session_state["table"])
    assert 1 <= n_done < 4

    at.sidebar.button(key="sidebar_score").click().run()  # resumes: the finished ones come from the cache
    wait_for_job(at)
    table = at.session_state["table"]
    assert table["trajectory_id"].tolist() == [r["id"] for r in rows]  # input order
    assert at.session_state["scoring_job"].progress.cached == 0  # only the unscored ones were sent
    demo_table, demo_scores = load_demo()
    for tid in table["trajectory_id"]:  # the same numbers as the precomputed demo scores
        np.testing.assert_allclose(at.session_state["scores"][tid].surprisal, demo_scores[tid].surprisal,
                                   rtol=1e-4, atol=1e-4)
    inspector(at)
    assert metric(at, "tokens") == f"{len(at.session_state['scores'][at.session_state['selected_trajectory']]):,}"

    # leave the dataset and come back: the loaded student's cached results come back without pressing Score
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("demo").run()
    at.sidebar.radio(key="sidebar_dataset_kind").set_value("path").run()
    job = at.session_state["scoring_job"]
    assert job.cache_only
    wait_for_job(at)
    assert at.session_state["table"]["trajectory_id"].tolist() == [r["id"] for r in rows]
    assert job.progress.tokens == 0 and job.progress.cached == 4
