"""Two input files that number their records the same way: every record is scored under an id that tells them
apart, with the numbers it has when its file is scored alone, in either order, into a flat table or a store; the
message says so once. Scores always travel with their own trajectory."""
import subprocess
import sys

import pandas as pd
import pytest

from rsr_core.data.formats import read_inputs
from rsr_core.data.store import ResultsStore
from rsr_core.data.tables import read_table
from tests.conftest import ROOT, write_jsonl

P1, P2 = "What is 17 * 23 + 5?", "Solve for x: 2x + 6 = 14."
ANSWERS = {"teacherA": ("391 + 5 = 396.", "Subtract 6 and divide by 2: x = 4."),
           "teacherB": ("It is 396, because 17 * 23 = 391 and 391 + 5 = 396.", "x equals 4.")}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "rsr_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ids")
    paths = {t: write_jsonl(d / f"{t}.jsonl", [
        {"id": str(i), "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]}
        for i, (p, a) in enumerate(zip((P1, P2), answers))]) for t, answers in ANSWERS.items()}
    alone = {}
    for teacher, path in paths.items():
        proc = cli("score", path, "--out", d / f"{teacher}.csv", "--cache-dir", d / "cache", "--dtype", "float32")
        assert proc.returncode == 0, proc.stderr
        alone[teacher] = read_table(d / f"{teacher}.csv")
    return d, paths, pd.concat(alone.values(), ignore_index=True)


def test_the_reader_qualifies_shared_ids_by_teacher_whatever_the_order(files):
    d, paths, _ = files
    for order in (["teacherA", "teacherB"], ["teacherB", "teacherA"]):
        read = read_inputs([paths[t] for t in order])
        assert sorted(t.trajectory_id for t in read.trajectories) == ["teacherA/0", "teacherA/1", "teacherB/0",
                                                                      "teacherB/1"]
        (note,) = read.notes
        assert "share ids" in note and str(paths["teacherA"]) in note and str(paths["teacherB"]) in note


def test_a_file_alone_keeps_its_own_ids(files):
    _, paths, alone = files
    assert sorted(alone["trajectory_id"]) == ["0", "0", "1", "1"]
    assert read_inputs([paths["teacherA"]]).notes == []


@pytest.mark.parametrize("order", [("teacherA", "teacherB"), ("teacherB", "teacherA")])
@pytest.mark.parametrize("out", ["flat.csv", "store"])
def test_both_files_keep_the_numbers_of_each_alone(files, order, out):
    d, paths, alone = files
    target = d / f"{order[0]}-{out}"
    proc = cli("score", *(paths[t] for t in order), "--out", target, "--cache-dir", d / "cache", "--dtype",
               "float32")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("share ids") == 1 and "skipped" not in proc.stderr
    if out == "store":
        table = ResultsStore(target).trajectory_table("smollm2-135m-instruct")
    else:
        table = read_table(target)
    assert len(table) == 4 and table["trajectory_id"].nunique() == 4
    for _, row in table.iterrows():
        teacher, tid = str(row["trajectory_id"]).split("/")
        match = alone[(alone["teacher"] == teacher) & (alone["trajectory_id"] == tid)].iloc[0]
        assert str(row["teacher"]) == teacher and row["problem_id"] == match["problem_id"]
        assert int(row["n_tokens"]) == int(match["n_tokens"])
        assert float(row["rsr"]) == pytest.approx(float(match["rsr"]), rel=1e-9)
    if out == "store":  # the stored conversation is the record's own
        conv = ResultsStore(target).conversation("teacherB/1")
        assert conv["messages"][-1]["content"] == ANSWERS["teacherB"][1]


def test_the_store_refuses_scores_that_do_not_fit_the_conversation(files, student, tmp_path):
    """Pairs carry their own scores: a trajectory committed with the scores of another conversation is refused."""
    from rsr_core.data.store import StoreWriter, StudentSettings
    from rsr_core.data.tables import pairs_table
    from rsr_core.engine.pipeline import score_trajectories

    _, paths, _ = files
    a, b = read_inputs([paths["teacherA"], paths["teacherB"]]).trajectories[1::2][:2]  # teacherA/1, teacherB/1
    scores = score_trajectories([a, b], student, use_cache=False).scores
    swapped = [(a, scores[b.trajectory_id]), (b, scores[a.trajectory_id])]
    with StoreWriter(tmp_path / "s", StudentSettings(student=student.name, dtype="float32")) as writer:
        result = writer.append_pairs(swapped, pairs_table([(a, scores[a.trajectory_id]),
                                                           (b, scores[b.trajectory_id])], student.name))
    assert result.written == [] and len(result.errors) == 2
    assert all("the conversation text at its offsets" in e or "lie outside" in e or "n_tokens" in e
               for e in result.errors), result.errors
