"""Editing a trajectory and rescoring it: the key/value cache of the unchanged prefix gives the numbers of a full
pass (real embedded student, fp32), edits become candidates of their problem with their provenance, `rescore`
on the command line, and a selection that picks an edit when it scores best."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.rewrites import part_bounds, removal
from rsr_core.data.edits import (Edit, EditError, Replacement, apply_replacements, edit_summary, edited_trajectory,
                                 label_edited, read_edits)
from rsr_core.data.trajectory import Trajectory, assistant_text, render_trace
from rsr_core.engine.chat_format import encode
from rsr_core.engine.rescoring import PrefixCache, cache_bytes, common_prefix, prefix_key, rescore
from rsr_core.engine.scoring import score_batch

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Find the minimum value of f(x) = x^2 - 4x + 3."
THINKING = ("The function is a parabola opening upwards, so it has one minimum. Let me differentiate: f'(x) = 2x - 4, "
            "which is zero at x = 2. Checking: f(2) = 4 - 8 + 3 = -1. I could also complete the square to be sure: "
            "(x - 2)^2 - 1, which is smallest at x = 2.")
ANSWER = "The minimum value is $-1$, reached at $x = 2$, so the answer is \\boxed{-1}."


def trajectory(reasoning: str | None = THINKING, answer: str = ANSWER, tid: str = "t1") -> Trajectory:
    message = {"role": "assistant", "content": answer}
    if reasoning:
        message["reasoning_content"] = reasoning
    return Trajectory(tid, "p1", "teacher", [{"role": "user", "content": PROMPT}, message],
                      meta={"reference": "-1"}, correct=True)


def full_pass(student, t: Trajectory, plain: bool) -> dict:
    return score_batch(student.model, [encode(t.messages, student.tokenizer, use_template=not plain,
                                              tools=t.tools)])[0]


def assert_same(got, want) -> None:
    np.testing.assert_array_equal(got.rank, want["rank"])
    np.testing.assert_array_equal(got.top_ids, want["top_ids"])
    np.testing.assert_allclose(got.surprisal, want["surprisal"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.entropy, want["entropy"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.brier, want["brier"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.lark_brier, want["lark_brier"], rtol=1e-5, atol=1e-5)


TEXT = render_trace(THINKING, ANSWER)
EDITS = {  # where the edit is: (start, end, new text) in the canonical text
    "start": (0, len("<think>\nThe function"), "<think>\nOur function"),
    "middle": (TEXT.index("Checking"), TEXT.index("Checking") + len("Checking"), "Let me verify"),
    "inside think": (TEXT.index("I could"), TEXT.index("</think>") - 1, "Done."),
    "across the boundary": (TEXT.index("(x - 2)^2"), TEXT.index("so the answer"), "Hence the minimum is -1, "),
    "end": (len(TEXT) - len("\\boxed{-1}."), len(TEXT), "-1."),
}


@pytest.mark.parametrize("plain", [False, True], ids=["chat template", "plain format"])
def test_prefix_reuse_equals_a_full_pass(student, plain):
    """Every edit position, under the chat template and the plain format: ranks and top ids exactly, surprisal and
    the other terms to 1e-5; the unchanged prefix keeps its numbers and is not run again."""
    original = trajectory()
    cache = PrefixCache()
    key = prefix_key(student, original.trajectory_id, plain)
    first = rescore(student, original, cache, key, plain_format=plain)
    assert first.start == 0 and first.reused == 0
    assert_same(first.scores, full_pass(student, original, plain))
    for where, (a, b, text) in EDITS.items():
        edited = edited_trajectory(original, Edit("t1", replacements=[Replacement(a, b, text)]), taken=())
        before = cache.get(key)
        shared = common_prefix(before.ids, encode(edited.messages, student.tokenizer, use_template=not plain).input_ids)
        got = rescore(student, edited, cache, key, plain_format=plain)
        assert_same(got.scores, full_pass(student, edited, plain))
        assert got.start == shared - 1 > 0, where
        assert got.tokens_run < len(got.encoded.input_ids) - got.start + 1
        if where != "start":
            assert got.reused > 0, where
        assert "".join(got.scores.tokens) == assistant_text(edited.messages[-1])


def test_an_edit_near_the_end_runs_only_the_end(student):
    original = trajectory(reasoning=THINKING * 4)
    cache = PrefixCache()
    key = prefix_key(student, "t1")
    full = rescore(student, original, cache, key)
    text = assistant_text(original.messages[-1])
    edited = edited_trajectory(original, Edit("t1", response=text.replace("\\boxed{-1}", "-1")), taken=())
    got = rescore(student, edited, cache, key)
    assert got.tokens_run < full.tokens_run / 10
    assert got.reused > 0.9 * len(got.scores)
    assert_same(got.scores, full_pass(student, edited, False))


def test_the_cache_is_bounded_and_dropped_after_a_failed_pass(student):
    a, b = trajectory(tid="a"), trajectory(reasoning=THINKING[:80], tid="b")
    probe = PrefixCache()
    rescore(student, a, probe, ("a",))
    one = probe.nbytes
    assert one > cache_bytes(probe.get(("a",)).cache) > 0
    cache = PrefixCache(max_bytes=int(one * 1.5))
    rescore(student, a, cache, ("a",))
    rescore(student, b, cache, ("b",))
    assert ("a",) not in cache and ("b",) in cache  # the least recently used went
    assert cache.nbytes <= cache.max_bytes

    class Stop(Exception):
        pass

    def stop(tokens, fraction, stage):
        if fraction > 0:
            raise Stop
    with pytest.raises(Stop):
        rescore(student, trajectory(reasoning=THINKING + " More.", tid="b"), cache, ("b",), on_pass=stop)
    assert ("b",) not in cache  # a pass cut short leaves no half-updated cache behind


def test_edits_apply_and_say_what_changed():
    text = "abcdefghij"
    assert apply_replacements(text, [Replacement(2, 4, "X"), Replacement(6, 6, "Y")]) == "abXefYghij"
    with pytest.raises(EditError, match="overlap"):
        apply_replacements(text, [Replacement(2, 5), Replacement(4, 6)])
    with pytest.raises(EditError, match="outside"):
        apply_replacements(text, [Replacement(8, 12)])
    summary = edit_summary(TEXT, TEXT.replace("Checking: ", ""), len(render_trace(THINKING, "")))
    assert summary.startswith('removed 10 characters at ') and "(thinking)" in summary
    assert summary.endswith(f"[{len(TEXT):,} -> {len(TEXT) - 10:,} characters]")


def test_the_edited_trajectory_carries_its_provenance():
    original = trajectory()
    text = assistant_text(original.messages[-1])
    thinking_only = edited_trajectory(original, Edit("t1", response=text.replace("Checking: ", "")), taken={"t1"})
    assert thinking_only.trajectory_id == "t1~edit1" and thinking_only.problem_id == "p1"
    assert thinking_only.teacher == "teacher (edited)"
    assert thinking_only.meta["edited_from"] == "t1" and "removed" in thinking_only.meta["edit"]
    assert thinking_only.correct is True  # the answer is unchanged
    assert thinking_only.messages[-1]["reasoning_content"] == THINKING.replace("Checking: ", "")
    again = edited_trajectory(thinking_only, Edit("t1~edit1", response=text), taken={"t1", "t1~edit1"})
    assert again.trajectory_id == "t1~edit2" and again.teacher == "teacher (edited)"
    assert again.meta["edited_from"] == "t1~edit1"
    answer_changed = edited_trajectory(original, Edit("t1", response=text.replace("\\boxed{-1}", "\\boxed{3}")),
                                       taken={"t1"})
    assert answer_changed.correct is None  # unknown until math-verify checks it (label_edited)
    with pytest.raises(EditError, match="changes nothing"):
        edited_trajectory(original, Edit("t1", response=text), taken=())


def test_a_changed_answer_is_checked_against_the_reference():
    """label_edited: math-verify decides the edited answers (reference "-1"); an unchanged answer keeps its label."""
    original = trajectory()
    text = assistant_text(original.messages[-1])
    wrong = edited_trajectory(original, Edit("t1", response=text.replace("\\boxed{-1}", "\\boxed{3}")), taken={"t1"})
    right = edited_trajectory(original, Edit("t1", response=text.replace("\\boxed{-1}.", "\\boxed{-1}. Done.")),
                              taken={"t1", wrong.trajectory_id})
    assert wrong.correct is None and right.correct is None
    assert label_edited([wrong, right]) == 2
    assert (wrong.correct, right.correct) == (False, True)
    assert wrong.meta["correct_source"] == right.meta["correct_source"] == "math-verify"


def test_a_removal_keeps_the_think_markers_and_whole_sentences():
    text = TEXT
    parts = part_bounds(text, len(render_trace(THINKING, "")))
    a = text.index("Checking")
    b = text.index("ANSWER") if "ANSWER" in text else text.index("The minimum value")
    x, y = removal(text, a + 3, b + 5, parts, sentences=True)
    edited = text[:x] + text[y:]
    assert "</think>" in edited and "Checking" not in edited and edited.endswith(ANSWER)
    assert text[x - 2:x] == ". "  # it starts after the previous sentence


def test_bad_edit_records_are_named_and_the_rest_read(tmp_path):
    path = tmp_path / "edits.jsonl"
    path.write_text("\n".join([
        json.dumps({"trajectory_id": "a", "response": "new"}),
        "{not json",
        json.dumps({"trajectory_id": "b"}),
        json.dumps({"trajectory_id": "c", "replace": [{"start": 5, "end": 2, "text": ""}]}),
        json.dumps({"trajectory_id": "d", "replace": [{"start": 0, "end": 2, "text": "x"}], "turn": 0}),
    ]) + "\n")
    edits, errors = read_edits(path)
    assert [e.trajectory_id for e in edits] == ["a", "d"] and edits[1].turn == 0
    assert [(e.record, e.source) for e in errors] == [(2, str(path)), (3, str(path)), (4, str(path))]
    assert "either response" in errors[1].message and "ends (2) before it starts (5)" in errors[2].message


def rsr(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rsr_core", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


def test_rescore_adds_candidates_that_selection_can_pick(tmp_path):
    """`rescore` on the command line: the edited trajectories join their problem with provenance and the numbers
    of a fresh score; a bad record is named and the others kept; a selection picks an edit that scores lowest."""
    records = [{"id": "t1", "problem_id": "p1", "teacher": "long",
                "messages": trajectory().messages[:1] + [{"role": "assistant", "content": TEXT}]},
               {"id": "t2", "problem_id": "p1", "teacher": "short",
                "messages": trajectory().messages[:1] + [{"role": "assistant", "content": ANSWER}]}]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    store, cache = tmp_path / "store", tmp_path / "cache"
    done = rsr("score", data, "--out", store, "--dtype", "float32", "--cache-dir", cache)
    assert done.returncode == 0, done.stderr
    before = pd.read_parquet(_export(store, tmp_path / "before.parquet"))
    best = before.set_index("trajectory_id")["rsr"]
    # the edit that brings t1 to the lowest RSR: keep only what the student finds most familiar
    new = "The minimum value is -1."
    edits = tmp_path / "edits.jsonl"
    edits.write_text(json.dumps({"trajectory_id": "t1", "response": new}) + "\n"
                     + json.dumps({"trajectory_id": "nope", "response": "x"}) + "\n"
                     + json.dumps({"trajectory_id": "t1", "replace": [{"start": 0, "end": 8, "text": ""}]}) + "\n")
    done = rsr("rescore", edits, "--store", store, "--cache-dir", cache)
    assert done.returncode == 0, done.stderr
    assert f"{edits}, line 2: no trajectory 'nope'" in done.stderr
    assert "2 edited trajectories added" in done.stderr
    after = pd.read_parquet(_export(store, tmp_path / "after.parquet")).set_index("trajectory_id")
    assert len(after) == 4 and {"t1~edit1", "t1~edit2"} <= set(after.index)
    first = after.loc["t1~edit1"]
    assert first.problem_id == "p1" and first.teacher == "long (edited)" and first.edited_from == "t1"
    assert first.edit.startswith("removed 268 characters at 0 (thinking)") and after.loc["t2"].rsr == best["t2"]
    fresh_in = tmp_path / "fresh.jsonl"
    fresh_in.write_text(json.dumps({"id": "x", "messages": [{"role": "user", "content": PROMPT},
                                                            {"role": "assistant", "content": new}]}) + "\n")
    done = rsr("score", fresh_in, "--out", tmp_path / "fresh.csv", "--dtype", "float32", "--no-cache")
    fresh = pd.read_csv(tmp_path / "fresh.csv").iloc[0]
    assert int(first.n_tokens) == int(fresh.n_tokens)
    assert first.rsr == pytest.approx(fresh.rsr, rel=1e-5)
    chosen = tmp_path / "chosen.jsonl"
    done = rsr("select", store, "--out", chosen)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in chosen.read_text().splitlines()]
    assert after["rsr"].idxmin() == "t1~edit1"  # the short rewrite is the student's own phrasing
    assert [k["id"] for k in kept] == ["t1~edit1"]
    assert kept[0]["edited_from"] == "t1" and kept[0]["teacher"] == "long (edited)" and kept[0]["edit"]


def _export(store: Path, out: Path) -> Path:
    done = rsr("export", store, "--out", out)
    assert done.returncode == 0, done.stderr
    return out
