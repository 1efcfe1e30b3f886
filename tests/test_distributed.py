"""Scoring through Ray Data on a local CPU cluster: two actors give exactly the single-process numbers; a worker
killed mid-run is replaced with nothing lost or duplicated; a stopped run resumes from the store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ray")

from rsr_core.data.demo import CANDIDATES, DEMO_STORE, available_demo_students  # noqa: E402
from rsr_core.data.formats import read_trajectories  # noqa: E402
from rsr_core.data.store import ResultsStore  # noqa: E402
from tests.conftest import ROOT, default_sigint, write_jsonl  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not available_demo_students(), reason="no precomputed demo scores")]
STUDENT = "smollm2-135m-instruct"


def demo_records(n: int) -> list[dict]:
    """n demo records: short and long ones, R1-style traces among them."""
    recs = [json.loads(line) for line in CANDIDATES.read_text().splitlines() if line.strip()]
    return recs[:n - 2] + [r for r in recs if r["teacher"] == "r1-style"][:2]


def assert_same_as_demo(store_path, ids) -> None:
    """Every trajectory's per-token numbers equal the single-process demo scores (fp32, same student): the same
    tokens, ranks and alternatives; surprisal and entropy to fp32 rounding (an actor runs on fewer threads, so
    its matrix products sum in another order)."""
    got, ref = ResultsStore(store_path), ResultsStore(DEMO_STORE)
    for tid in ids:
        a, b = got.token_scores(STUDENT, tid), ref.token_scores(STUDENT, tid)
        assert a.tokens == b.tokens and a.top_tokens == b.top_tokens, tid
        np.testing.assert_array_equal(a.rank, b.rank)
        np.testing.assert_array_equal(a.top_ids, b.top_ids)
        np.testing.assert_allclose(a.surprisal, b.surprisal, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(a.entropy, b.entropy, rtol=1e-4, atol=1e-4)


def test_two_actors_give_the_single_process_numbers(tmp_path):
    from rsr_core.data.store import StoreWriter
    from rsr_core.engine import distributed
    from rsr_core.engine.pipeline import store_settings, store_sink
    from rsr_core.engine.student import load_student

    trajectories, _ = read_trajectories(write_jsonl(tmp_path / "in.jsonl", demo_records(8)))
    device, dtype = distributed.cluster_device(None, "auto", "auto")
    assert (device, dtype) == ("cpu", "float32")
    try:
        student = load_student(STUDENT, device="cpu", dtype=dtype, with_model=False)
        assert student.model is None
        run = distributed.RayRun(student=STUDENT, workers=2, device=device, dtype=dtype)
        refused: list[str] = []
        with StoreWriter(tmp_path / "store", store_settings(student)) as writer:
            result = distributed.score_with_ray(trajectories, run, student.tokenizer,
                                                store_sink(writer, STUDENT, refused))
    finally:
        distributed.shutdown()
    assert result.errors == [] and refused == []
    table = ResultsStore(tmp_path / "store").trajectory_table(STUDENT).set_index("trajectory_id")
    assert sorted(table.index) == sorted(t.trajectory_id for t in trajectories)
    demo = ResultsStore(DEMO_STORE).trajectory_table(STUDENT).set_index("trajectory_id").loc[table.index]
    assert (table["n_tokens"] == demo["n_tokens"]).all()
    np.testing.assert_allclose(table["rsr"], demo["rsr"], rtol=1e-6)
    assert_same_as_demo(tmp_path / "store", table.index)


def run_cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rsr_core", "score", *args], cwd=ROOT, text=True,
                            stderr=subprocess.PIPE, preexec_fn=default_sigint, **kw)


def wait_for_commits(store, least: int = 1, timeout: float = 300) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            held = ResultsStore(store).scored_ids(STUDENT)
            if len(held) >= least:
                return held
        except Exception:  # noqa: BLE001 - the store is being created
            pass
        time.sleep(0.5)
    raise AssertionError("nothing was committed in time")


def test_a_killed_worker_is_replaced_with_nothing_lost_or_duplicated(tmp_path):
    from rsr_core.engine.distributed import worker_processes

    recs = demo_records(40)
    pool = write_jsonl(tmp_path / "in.jsonl", recs)
    store = tmp_path / "store"
    child = run_cli([str(pool), "--out", str(store), "--ray", "--workers", "2", "--dtype", "float32"])
    wait_for_commits(store)
    victims = list(worker_processes())
    assert victims, "no scoring actor process found"
    os.kill(victims[0], signal.SIGKILL)
    err = child.communicate(timeout=600)[1]
    assert child.returncode == 0, err[-2000:]
    table = ResultsStore(store).trajectory_table(STUDENT)
    assert sorted(table["trajectory_id"]) == sorted(r["id"] for r in recs)  # each exactly once
    assert_same_as_demo(store, table["trajectory_id"])


def test_a_stopped_run_resumes_from_the_store(tmp_path):
    recs = demo_records(40)
    pool = write_jsonl(tmp_path / "in.jsonl", recs)
    store = tmp_path / "store"
    args = [str(pool), "--out", str(store), "--ray", "--workers", "2", "--dtype", "float32"]
    child = run_cli(args)
    wait_for_commits(store)
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=300)
    held = ResultsStore(store).scored_ids(STUDENT)
    assert 0 < len(held)
    done = subprocess.run([sys.executable, "-m", "rsr_core", "score", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    if len(held) < len(recs):
        assert f"{len(held)} already in {store}" in done.stderr
    table = ResultsStore(store).trajectory_table(STUDENT)
    assert sorted(table["trajectory_id"]) == sorted(r["id"] for r in recs)
    assert_same_as_demo(store, table["trajectory_id"])
