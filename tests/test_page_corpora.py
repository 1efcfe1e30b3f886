"""The app on published corpora (AppTest, the real embedded student): the inspector shows an agent's system prompt,
the tools offered, its tool calls as scored tokens and the tool results between turns, with the numbers of each
part; the Selection page checks answers against reference answers with math-verify and leaves incomplete
generations out; a folder of files that reuse ids says so in the sidebar."""
import os

import pytest
from streamlit.testing.v1 import AppTest

from rsr_core.data.formats import read_inputs
from rsr_core.data.paths import DATA_DIR
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.ui import inspector as ui
from tests.app_pages import write_store
from tests.conftest import ROOT, keep_app_navigation, write_jsonl
from tests.test_tool_calls import AGENT

APP = str(ROOT / "app.py")


@pytest.fixture(autouse=True)
def _app(monkeypatch, tmp_path_factory):
    keep_app_navigation(monkeypatch)
    monkeypatch.setenv("RSR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("RSR_DATA_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(DATA_DIR)]))


def run(step) -> AppTest:
    """Run the app (an AppTest, or a widget after an interaction) and check it drew without an exception."""
    at = step.run()
    assert not at.exception, at.exception[0].message
    return at


POOL = [{"uuid": "u1", "problem": "What is 17 * 23 + 5?", "answer": "396",
         "generations": ["<think>\n17 * 23 = 391.\n</think>\n\n$\\boxed{396}$", "It is $\\boxed{386}$.",
                         "<think>\nLet me think about 17 times"],
         "is_reasoning_complete": [True, True, False], "finish_reasons": ["stop", "stop", "length"]},
        {"uuid": "u2", "problem": "Solve 2x + 6 = 14.", "answer": "4",
         "generations": ["x = $\\boxed{4}$", "x = $\\boxed{5}$"], "is_reasoning_complete": [True, True],
         "finish_reasons": ["stop", "stop"]}]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, student):
    d = tmp_path_factory.mktemp("corpora")
    agent = read_inputs([write_jsonl(d / "agent.jsonl", [AGENT])]).trajectories
    pool = read_inputs([write_jsonl(d / "pool.jsonl", POOL)], prompt_field="problem", response_field="generations",
                       reference_field="answer", check_answers=False).trajectories
    out = {}
    for name, ts in (("agent", agent), ("pool", pool)):
        out[name] = write_store(d / name, ts, score_trajectories(ts, student, use_cache=False).scores)
    return out


def test_the_inspector_shows_an_agent_trace(stores, monkeypatch):
    monkeypatch.setenv("RSR_STORE", str(stores["agent"]))
    at = run(AppTest.from_file(APP, default_timeout=180))
    run(at.switch_page("pages/inspector.py"))
    prompt = next(e for e in at.expander if e.label == "Prompt")
    assert any("You can use a calculator." in t.value for t in prompt.text)  # the system prompt
    assert any("tools offered" in m.value and "calc" in m.value for m in prompt.markdown)
    html = next(h.value for h in at.html if "rsr-strip" in h.value)
    assert html.count('<span class="rsr-part">tool calls</span>') == 2  # two turns call the calculator
    assert 'class="rsr-context">tool (call_1): 391</span>' in html and "tool (call_2): 396" in html
    n_tokens = int(next(m.value for m in at.metric if m.label == "tokens").replace(",", ""))
    assert html.count('class="rsr-turn"') == 2 and html.count('class="rsr-tok') == n_tokens  # calls included
    parts = next(df.value for df in at.dataframe if "part" in df.value.columns)
    assert parts["part"].tolist() == ["thinking", "answer", "tool_calls"]
    assert parts.set_index("part").loc["thinking", "tokens"] == 0
    sorts = at.selectbox(key=ui.K_SORT).options
    assert "RSR of the tool calls" in sorts and "RSR of the answer" in sorts


def test_the_selection_page_checks_answers_and_leaves_incomplete_generations_out(stores, monkeypatch):
    monkeypatch.setenv("RSR_STORE", str(stores["pool"]))
    at = run(AppTest.from_file(APP, default_timeout=180))
    run(at.switch_page("pages/selection.py"))
    assert any("have a reference answer but no correctness label" in i.value for i in at.info)
    assert at.checkbox(key="selection_correct_only").disabled  # no labels yet
    incomplete = at.checkbox(key="selection_include_incomplete")
    assert incomplete.label == "include incomplete generations (1)" and not incomplete.value
    chosen = set(at.session_state["selection_result"].selected["trajectory_id"])
    assert "u1/2" not in chosen and len(chosen) == 2
    run(at.button(key="selection_check_answers").click())
    assert any("math-verify: 2 correct, 3 wrong, 0 unknown" in s.value for s in at.success)
    assert not any("no correctness label" in i.value for i in at.info)
    run(at.checkbox(key="selection_correct_only").check())
    picked = at.session_state["selection_result"].selected.set_index("trajectory_id")
    assert sorted(picked.index) == ["u1/0", "u2/0"] and (picked["correct_source"] == "math-verify").all()
    run(at.checkbox(key="selection_include_incomplete").check())
    assert at.session_state["selection_result"].include_incomplete


def test_the_sidebar_says_when_files_share_ids(tmp_path):
    folder = tmp_path / "teachers"
    folder.mkdir()
    for teacher, answer in (("alpha", "It is 4."), ("beta", "Four.")):
        write_jsonl(folder / f"{teacher}.jsonl", [{"id": "0", "messages": [
            {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": answer}]}])
    at = run(AppTest.from_file(APP, default_timeout=180))
    run(at.sidebar.radio(key="sidebar_dataset_kind").set_value("path"))
    run(at.sidebar.text_input(key="sidebar_path").input(str(folder)))
    dataset = at.session_state["dataset"]
    assert sorted(t.trajectory_id for t in dataset.trajectories) == ["alpha/0", "beta/0"]
    assert any("share ids" in i.value for i in at.sidebar.info)
