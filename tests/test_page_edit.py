"""The inspector's Edit mode and the teaching page's guided rewrite in AppTest, on the bundled demo with the real
embedded student: a quick edit, Rescore in the background from the prepared prefix, the comparison with the
original, and Add as a candidate into the dataset's store (the demo's own store stays as shipped)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from app_pages import open_page
from rsr_core.analysis.metrics import trajectory_metrics
from rsr_core.data import demo
from rsr_core.data.store import ResultsStore
from rsr_core.ui import edit_mode
from rsr_core.ui import inspector as ui

TID = "p01-calculus"


def run_ok(at):
    at.run()
    assert not at.exception, at.exception[0].message
    return at


def store_digest() -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(demo.DEMO_STORE.rglob("*")) if p.is_file()))\
        .hexdigest()


def test_edit_rescore_and_add_a_candidate(monkeypatch, tmp_path, student):
    shipped = store_digest()
    at = open_page("pages/inspector.py", monkeypatch, tmp_path)
    at.text_input(key=ui.K_SEARCH).input(TID)
    run_ok(at)
    at.toggle(key=edit_mode.K_EDIT).set_value(True)
    run_ok(at)
    prepared = at.session_state[edit_mode.K_PREPARED]
    assert prepared.wait(300) and prepared.failure is None  # the original's cache, made when Edit opened
    boxes = {t.label: t for t in at.text_area}
    assert list(boxes) == ["Response"]
    original = boxes["Response"].value
    at.button(key="edit_remove_top").click()
    run_ok(at)
    edited = at.text_area[0].value
    assert len(edited) < len(original) and edited.startswith(original[:40])
    at.button(key="edit_rescore").click()
    run_ok(at)
    job = at.session_state[edit_mode.K_JOB]
    assert job.wait(300) and job.failure is None, job.failure
    run_ok(at)
    result = job.result
    assert result.reused > 0 and result.start > 0  # the prefix was not run again
    after = trajectory_metrics(result.scores.surprisal, result.scores.rank, result.scores.entropy)
    metrics = {m.label: m for m in at.metric}
    assert metrics["tokens"].value == f"{after['n_tokens']:,}"
    assert float(metrics["mean surprisal"].value) == pytest.approx(after["avg_surprisal"], abs=1e-3)
    strips = [h.value for h in at.html if "rsr-strip" in h.value]
    assert len(strips) >= 3  # the page's text, then the original and the edited strips side by side
    assert any("kept their numbers from the unchanged prefix" in c.value for c in at.caption)
    # equal numbers before the edit: the first tokens are the same context
    ts = ResultsStore(demo.DEMO_STORE).token_scores(str(at.session_state["student_name"]), TID)
    k = edit_mode.first_change(ts, result.scores)
    assert k > 0
    np.testing.assert_array_equal(result.scores.rank[:k], ts.rank[:k])
    np.testing.assert_allclose(result.scores.surprisal[:k], ts.surprisal[:k], rtol=1e-5, atol=1e-5)

    at.button(key="edit_add").click()
    run_ok(at)
    assert any("p01-calculus\\~edit1" in s.value for s in at.success), [s.value for s in at.success]
    at.button(key="edit_open").click()
    run_ok(at)
    assert at.session_state["selected_trajectory"] == f"{TID}~edit1"
    # the candidate is in the dataset's own store (for the demo, a copy of the bundled one in the user cache)
    store = ResultsStore(next(p for p in (tmp_path / "cache" / "stores").iterdir()))
    student_name = str(at.session_state["student_name"])
    frame = store.trajectory_table(student_name).set_index("trajectory_id")
    row = frame.loc[f"{TID}~edit1"]
    assert row.problem_id == frame.loc[TID].problem_id and row.edited_from == TID
    assert row.teacher == f"{frame.loc[TID].teacher} (edited)" and row.edit.startswith("removed")
    assert len(frame) == len(ResultsStore(demo.DEMO_STORE).trajectory_table(student_name)) + 1
    assert store_digest() == shipped  # the bundled store is never written


def test_the_guided_rewrite_on_the_teaching_page(monkeypatch, tmp_path, student):
    at = open_page("pages/zone.py", monkeypatch, tmp_path)
    assert any(m.value.startswith("Could the *too informative* solution") for m in at.markdown)
    at.button(key="zpd_rewrite").click()
    run_ok(at)
    frame = next(d.value for d in at.dataframe if "as written" in list(d.value.get("", [])))
    assert list(frame[""]) == ["as written", "edited"]
    before, after = frame["RSR"]
    verdict = next(m.value for m in at.markdown if m.value.startswith("RSR "))
    assert verdict.startswith(f"RSR {'fell' if after < before else 'rose'} from {before:.3f} to {after:.3f}")
    assert frame["tokens"][1] < frame["tokens"][0]
