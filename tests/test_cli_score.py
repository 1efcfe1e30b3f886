"""`python -m rsr_core score` and `report` end to end on the real student, with a bad record in the input."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from rsr_core.data.tables import read_table
from tests.conftest import ROOT, default_sigint, write_jsonl

REQUIRED = {"trajectory_id", "problem_id", "teacher", "student", "n_tokens", "rsr", "avg_surprisal",
            "avg_rank_clipped", "avg_rank", "avg_entropy", "truncated"}


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rsr_core", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    recs = [json.loads(line) for line in (ROOT / "data" / "demo" / "candidates.jsonl").read_text().splitlines()[:4]]
    path = write_jsonl(d / "pool.jsonl", recs)
    with open(path, "a") as f:
        f.write('{"id": "bad", "messages": 3}\n')
    proc = cli("score", path, "--out", d / "traj.parquet", "--tokens-out", d / "tokens.parquet",
               "--cache-dir", d / "cache", "--dtype", "float32")
    return d, proc, recs


def test_score_writes_the_trajectory_table_and_names_the_bad_record(scored):
    d, proc, recs = scored
    assert proc.returncode == 0, proc.stderr
    assert f"{d / 'pool.jsonl'}, line 5: `messages` is not a non-empty list" in proc.stderr
    table = read_table(d / "traj.parquet")
    assert REQUIRED <= set(table.columns)
    assert table["trajectory_id"].tolist() == [r["id"] for r in recs]
    assert (table["student"] == "smollm2-135m-instruct").all() and not table["truncated"].any()
    assert (table["rsr"] > 0).all() and (table["avg_rank"] >= table["avg_rank_clipped"]).all()
    tokens = pd.read_parquet(d / "tokens.parquet")
    assert tokens.groupby("trajectory_id").size().to_dict() == table.set_index("trajectory_id")["n_tokens"].to_dict()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_other_output_formats_come_from_the_cache(scored, suffix):
    d, _, _ = scored
    out = d / f"again{suffix}"
    proc = cli("score", d / "pool.jsonl", "--out", out, "--cache-dir", d / "cache", "--dtype", "float32",
               "--r-max", 10)
    assert proc.returncode == 0 and "4 from cache" in proc.stderr
    again = read_table(out)
    assert REQUIRED <= set(again.columns) and (again["r_max"] == 10).all()
    first = read_table(d / "traj.parquet")
    assert (again["avg_rank_clipped"].to_numpy() <= first["avg_rank_clipped"].to_numpy() + 1e-12).all()
    assert again["avg_surprisal"].tolist() == pytest.approx(first["avg_surprisal"].tolist(), rel=1e-9)


def test_report_prints_teachers_sorted_by_rsr(scored):
    d, _, _ = scored
    proc = cli("report", d / "traj.parquet")
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()[1:] if line.strip()]
    table = read_table(d / "traj.parquet")
    expected = table.sort_values("rsr")["teacher"].tolist()  # one trajectory per teacher here
    assert [line[1] for line in lines] == expected


def test_nothing_scorable_exits_non_zero(tmp_path):
    f = tmp_path / "junk.jsonl"
    f.write_text("not json\n")
    proc = cli("score", f, "--out", tmp_path / "o.csv", "--cache-dir", tmp_path / "c")
    assert proc.returncode != 0 and f"{f}, line 1: invalid JSON" in proc.stderr
    assert not (tmp_path / "o.csv").exists()


def test_an_unknown_student_is_a_clear_message(tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": "hello"}]}])
    proc = cli("score", f, "--out", tmp_path / "o.csv", "--student", str(tmp_path / "missing.gguf"))
    assert proc.returncode == 2 and "no GGUF file at" in proc.stderr and "Traceback" not in proc.stderr


def test_score_into_a_store_equals_the_flat_table_and_resumes(scored, tmp_path):
    """`--out FOLDER` writes a results store with the same numbers; a second run finds them there and scores
    nothing (no cache: the store itself resumes)."""
    from rsr_core.data.store import ResultsStore

    d, _, recs = scored
    store = tmp_path / "store"
    proc = cli("score", d / "pool.jsonl", "--out", store, "--no-cache", "--dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 4 trajectories to the store {store}" in proc.stderr
    got = ResultsStore(store).trajectory_table("smollm2-135m-instruct").set_index("trajectory_id")
    flat = read_table(d / "traj.parquet").set_index("trajectory_id")
    assert list(got.index) == [r["id"] for r in recs]
    for col in ("rsr", "avg_surprisal", "avg_rank", "coverage"):
        assert got[col].tolist() == pytest.approx(flat.loc[got.index, col].tolist(), rel=1e-12)
    again = cli("score", d / "pool.jsonl", "--out", store, "--no-cache", "--dtype", "float32",
                "--tokens-out", tmp_path / "tokens.parquet")
    assert again.returncode == 0 and "4 already in the store" in again.stderr, again.stderr
    tokens = pd.read_parquet(tmp_path / "tokens.parquet")
    first = pd.read_parquet(d / "tokens.parquet")
    assert tokens["token"].tolist() == first["token"].tolist()
    assert tokens["rank"].tolist() == first["rank"].tolist()


def test_an_interrupted_store_run_resumes_without_duplicates(tmp_path):
    """Ctrl-C while scoring into a store keeps every committed batch; the same command finishes the rest."""
    import signal
    import time

    from rsr_core.data.store import ResultsStore

    recs = [json.loads(line) for line in (ROOT / "data" / "demo" / "candidates.jsonl").read_text().splitlines()[:10]]
    pool = write_jsonl(tmp_path / "pool.jsonl", recs)
    store = tmp_path / "store"
    args = [sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(store), "--no-cache",
            "--dtype", "float32"]
    child = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    held = set()
    while time.monotonic() < deadline and not held:
        time.sleep(0.5)
        try:
            held = ResultsStore(store).scored_ids("smollm2-135m-instruct")
        except Exception:  # noqa: BLE001 - the store is being created
            held = set()
    child.send_signal(signal.SIGINT)
    err = child.communicate(timeout=300)[1]
    partial = ResultsStore(store).scored_ids("smollm2-135m-instruct")
    assert 0 < len(partial) <= len(recs)
    if len(partial) < len(recs):
        assert child.returncode == 130 and "interrupted" in err and "Traceback" not in err
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = ResultsStore(store).trajectory_table("smollm2-135m-instruct")
    assert sorted(table["trajectory_id"]) == sorted(r["id"] for r in recs)  # each once
