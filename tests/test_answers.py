"""Correctness from reference answers with math-verify: labels, a parse or a comparison that hangs (run in a
thread, as the app's script threads and Ray actors run it) is an unknown label within our own timeout, labels read
with the data and labels added to a results store afterwards."""
import threading
import time

import pandas as pd

from rsr_core.analysis.answers import AnswerChecker, check_answers, verify_answer
from rsr_core.data.formats import read_inputs
from rsr_core.data.labels import label_from_references, unlabelled_with_reference
from rsr_core.data.store import ResultsStore, add_labels
from rsr_core.data.tables import trajectory_table
from tests.app_pages import write_store
from tests.conftest import write_jsonl

SLOW_PARSE = "$\\boxed{(" + "x+" * 12_000 + "1)^{100}}$"  # math-verify parses this for about 8 s
SLOW_VERIFY = "$\\boxed{10^{10^{10^{10}}}!}$"  # parsed at once; comparing it with 1 does not end


def test_final_answers_against_references():
    assert verify_answer("396", "17 * 23 + 5 = 391 + 5 = $\\boxed{396}$.").correct is True
    assert verify_answer("396", "The result is $\\boxed{386}$.").correct is False
    assert verify_answer("\\frac{1}{2}", "The fraction equals $\\boxed{0.5}$.").correct is True
    assert verify_answer("4", "First $\\boxed{3}$, no: the answer is $\\boxed{4}$.").correct is True  # the last box
    assert verify_answer("4", "so x = 4").correct is True  # no box: the answer's own final expression
    unknown = verify_answer("10", "I do not know.")
    assert unknown.correct is None and unknown.reason == "no answer found"


def test_a_hanging_parse_and_a_hanging_comparison_are_unknown_in_a_thread():
    pairs = [("396", "$\\boxed{396}$"), ("1", SLOW_PARSE), ("1", SLOW_VERIFY), ("4", "$\\boxed{5}$")]
    out = {}

    def run():
        started = time.monotonic()
        out["verdicts"] = check_answers(pairs, timeout=1.5)
        out["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run)  # math-verify's own timeouts would refuse to run here
    worker.start()
    worker.join(120)
    assert not worker.is_alive()
    verdicts = out["verdicts"]
    assert [v.correct for v in verdicts] == [True, None, None, False]
    assert verdicts[1].reason == verdicts[2].reason == "timeout"
    assert out["seconds"] < 60  # the hanging ones were stopped, not waited for


def test_a_checker_keeps_working_after_a_timeout():
    with AnswerChecker(timeout=1.0, workers=1) as checker:
        first = checker.check([("1", SLOW_VERIFY)])
        again = checker.check([("2", "$\\boxed{2}$"), ("2", "$\\boxed{3}$")])
    assert first[0].correct is None and [v.correct for v in again] == [True, False]


def records():
    return [{"problem": "What is 17 * 23 + 5?", "reference": "396", "response": "$\\boxed{396}$"},
            {"problem": "What is 2 + 2?", "reference": "4", "response": "It is $\\boxed{5}$."},
            {"problem": "Half of 1?", "reference": "\\frac{1}{2}", "response": "$\\boxed{0.5}$", "correct": False},
            {"problem": "Pick a number.", "reference": None, "response": "$\\boxed{7}$"}]


def test_reading_with_a_reference_field_labels_what_the_data_does_not(tmp_path):
    path = write_jsonl(tmp_path / "pool.jsonl", records())
    read = read_inputs([path], prompt_field="problem", response_field="response", reference_field="reference")
    ts = read.trajectories
    assert [t.correct for t in ts] == [True, False, False, None]
    assert [t.meta.get("correct_source") for t in ts] == ["math-verify", "math-verify", "data", None]
    assert [t.meta.get("reference") for t in ts] == ["396", "4", "\\frac{1}{2}", None]
    (note,) = read.notes
    assert note.startswith("correctness: 2 labelled by math-verify against `reference`")
    assert "1 labelled by the data" in note
    # kept for later, not checked now (the app labels from its Selection page)
    later = read_inputs([path], prompt_field="problem", response_field="response", reference_field="reference",
                        check_answers=False)
    assert [t.correct for t in later.trajectories] == [None, None, False, None] and later.notes == []


def test_a_missing_reference_field_is_a_named_problem(tmp_path):
    path = write_jsonl(tmp_path / "pool.jsonl", records()[:1])
    read = read_inputs([path], prompt_field="problem", response_field="response", reference_field="gold")
    assert read.trajectories == [] and "no field 'gold' for the reference answer" in str(read.errors[0])


def test_labels_added_to_a_store_fill_every_table(tmp_path, student):
    from rsr_core.engine.pipeline import score_trajectories

    path = write_jsonl(tmp_path / "pool.jsonl", records())
    ts = read_inputs([path], prompt_field="problem", response_field="response", reference_field="reference",
                     check_answers=False).trajectories
    scores = score_trajectories(ts, student, use_cache=False).scores
    store_path = write_store(tmp_path / "store", ts, scores)
    store = ResultsStore(store_path)
    table = store.trajectory_table(student.name)
    assert table["correct"].isna().sum() == 3 and "reference" in table
    todo = unlabelled_with_reference(table)
    assert sorted(todo["trajectory_id"]) == sorted(t.trajectory_id for t in ts[:2])
    before = store.generation(student.name)
    counts = label_from_references(store_path, table, timeout=10)
    assert counts == {"checked": 2, "correct": 1, "wrong": 1, "unknown": 0}
    assert store.generation(student.name) > before  # readers reload
    after = store.trajectory_table(student.name).set_index("trajectory_id")
    assert after.loc[ts[0].trajectory_id, "correct"] == True  # noqa: E712
    assert after.loc[ts[1].trajectory_id, "correct"] == False  # noqa: E712
    assert after.loc[ts[0].trajectory_id, "correct_source"] == "math-verify"
    assert after.loc[ts[2].trajectory_id, "correct"] == False and pd.isna(after.loc[ts[3].trajectory_id, "correct"])  # noqa: E712
    assert unlabelled_with_reference(after.reset_index()).empty
    # a check that found nothing is remembered (not asked again); a label of the data is never replaced
    add_labels(store_path, pd.DataFrame([{"trajectory_id": ts[2].trajectory_id, "correct": True,
                                          "correct_source": "math-verify"}]))
    kept = store.trajectory_table(student.name).set_index("trajectory_id").loc[ts[2].trajectory_id, "correct"]
    assert kept == False  # noqa: E712
    flat = trajectory_table(ts, scores, student.name)
    assert flat["reference"].tolist()[:3] == ["396", "4", "\\frac{1}{2}"]


def test_an_answer_without_a_number_is_remembered_as_unknown(tmp_path, student):
    from rsr_core.engine.pipeline import score_trajectories

    path = write_jsonl(tmp_path / "pool.jsonl", [{"problem": "2 + 2?", "reference": "4", "response": "No idea."}])
    ts = read_inputs([path], prompt_field="problem", response_field="response", reference_field="reference",
                     check_answers=False).trajectories
    store_path = write_store(tmp_path / "store", ts, score_trajectories(ts, student, use_cache=False).scores)
    table = ResultsStore(store_path).trajectory_table(student.name)
    assert label_from_references(store_path, table, timeout=10)["unknown"] == 1
    again = ResultsStore(store_path).trajectory_table(student.name)
    assert pd.isna(again["correct"].iloc[0])
    assert again["correct_source"].iloc[0] == "math-verify: unknown (no answer found)"
    assert unlabelled_with_reference(again).empty
