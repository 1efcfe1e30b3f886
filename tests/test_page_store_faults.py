"""The app on damaged stores and hostile paths (AppTest): a damaged student folder is a message naming the file on
every page (never a stack), NUL and over-long paths and models outside the allowed folders are refused with a
message, and a student scored from a local model folder is loaded from that folder to score more."""
import json
import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rsr_core.data.demo import DEMO_STORE
from rsr_core.data.paths import DATA_DIR
from rsr_core.ui.navigation import available_pages
from tests.conftest import ROOT, keep_app_navigation

APP = str(ROOT / "app.py")
STUDENT = "smollm2-135m-instruct"


@pytest.fixture(autouse=True)
def _app(monkeypatch, tmp_path_factory):
    keep_app_navigation(monkeypatch)
    monkeypatch.setenv("RSR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("RSR_DATA_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(DATA_DIR)]))
    monkeypatch.delenv("RSR_STORE", raising=False)
    monkeypatch.delenv("RSR_MODEL_ROOTS", raising=False)


def run(step) -> AppTest:
    at = step.run()
    assert not at.exception, at.exception[0].message
    return at


def errors(at: AppTest) -> list[str]:
    """Every error message on the page, the sidebar's included."""
    return [e.value for e in at.error]


@pytest.mark.parametrize("damage", ["random bytes", "unknown version"])
def test_every_page_says_what_is_damaged(tmp_path, monkeypatch, damage):
    store = tmp_path / "store"
    shutil.copytree(DEMO_STORE, store)
    for folder in (store / "students").iterdir():  # every student damaged: nothing to show, only why
        manifest = folder / "manifest.json"
        if damage == "random bytes":
            manifest.write_bytes(os.urandom(500) + b"\xff")
        else:
            manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 99}))
    monkeypatch.setenv("RSR_STORE", str(store))
    at = run(AppTest.from_file(APP, default_timeout=180))
    for page in (spec.path for spec in available_pages()):
        at = run(at.switch_page(page))
        said = " ".join(errors(at))
        assert "manifest.json" in said and ("not valid JSON" in said or "version 99" in said), (page, said)
        assert not any("No scores yet" in i.value for i in at.info), page


def test_one_damaged_student_leaves_the_others_readable(tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(DEMO_STORE, store)
    if len(list((store / "students").iterdir())) < 2:
        pytest.skip("the demo store holds one student here")
    next((store / "students" / STUDENT / "parts").glob("*.tokens.parquet")).unlink()
    monkeypatch.setenv("RSR_STORE", str(store))
    at = run(AppTest.from_file(APP, default_timeout=180))
    assert at.session_state["student_name"] == "gemma-3-270m"
    assert any("is missing: the store is damaged" in e for e in errors(at))
    run(at.switch_page("pages/inspector.py"))


@pytest.mark.parametrize("text,why", [("data/\x00x", "NUL character"), ("d" * 6000, "characters long")])
@pytest.mark.parametrize("kind,key", [("path", "sidebar_path"), ("store", "sidebar_store_path")])
def test_paths_no_file_system_takes_are_messages(text, why, kind, key):
    at = run(AppTest.from_file(APP, default_timeout=180))
    run(at.sidebar.radio(key="sidebar_dataset_kind").set_value(kind))
    run(at.sidebar.text_input(key=key).input(text))
    assert any(why in e for e in errors(at)), errors(at)


def test_a_model_outside_the_model_folders_is_refused_alike(tmp_path, monkeypatch):
    outside = tmp_path.parent / "not-a-root-model"
    outside.mkdir(exist_ok=True)
    monkeypatch.setenv("RSR_MODEL_ROOTS", str(tmp_path / "models"))
    said = []
    for spec in (str(outside), str(outside) + "-missing", "/etc/ssl"):
        at = run(AppTest.from_file(APP, default_timeout=180))
        run(at.sidebar.selectbox(key="sidebar_student").set_value("other"))
        run(at.sidebar.text_input(key="sidebar_student_spec").input(spec))
        (message,) = [e for e in errors(at) if "is not a model this server may load" in e]
        said.append(message.replace(spec.replace("/", "/"), "SPEC"))
        assert at.sidebar.button(key="sidebar_score").disabled
    assert len({m.split("` is not")[1] for m in said}) == 1  # the same words whether the path exists or not


def test_a_student_scored_from_a_local_folder_is_loaded_from_it(tmp_path, monkeypatch, student):
    """The store records where the student came from; the next session scores more with that folder, not by its
    name on the hub."""
    from rsr_core.data.formats import read_inputs
    from rsr_core.data.store import ResultsStore, StoreWriter
    from rsr_core.engine.pipeline import score_trajectories, store_settings, store_sink

    folder = tmp_path / "models" / "my-student"
    shutil.copytree(Path(student.location), folder)
    from rsr_core.engine.student import load_student

    mine = load_student(str(folder), dtype="float32")
    ts = read_inputs([DATA_DIR / "demo" / "candidates.jsonl"]).trajectories[:3]
    store = tmp_path / "store"
    refused: list[str] = []
    with StoreWriter(store, store_settings(mine)) as writer:
        score_trajectories(ts[:2], mine, use_cache=False, sink=store_sink(writer, mine.name, refused), keep=False)
    writer_store = ResultsStore(store)
    assert writer_store.settings("my-student").source == str(folder.resolve())
    # the third trajectory's conversation is in the store, unscored
    with StoreWriter(store, store_settings(mine)) as writer:
        writer.add_conversations(ts[2:])
    monkeypatch.setenv("RSR_STORE", str(store))
    monkeypatch.setenv("RSR_MODEL_ROOTS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a name looked up on the hub would fail at once
    at = run(AppTest.from_file(APP, default_timeout=240))
    assert at.session_state["student_name"] == "my-student"
    assert any("2 of 3 trajectories have scores" in c.value for c in at.sidebar.caption)
    run(at.sidebar.button(key="sidebar_score").click())
    job = at.session_state["scoring_job"]
    assert job.wait(180) and job.failure is None, job.failure
    assert job.student.location == folder.resolve() and ResultsStore(store).scored_ids("my-student") == {
        t.trajectory_id for t in ts}
    # moved away, it cannot be loaded: the page says so instead of trying the hub
    shutil.move(str(folder), str(tmp_path / "gone"))
    at = run(AppTest.from_file(APP, default_timeout=240))
    assert any("cannot load now" in c.value for c in at.sidebar.caption)
