"""Nothing is lost on faults: Ctrl-C, a full disk, a read-only or full cache; and progress inside one long pass.

Runs the real embedded student on a few demo trajectories. A full or read-only disk is a small tmpfs mounted for
the test (root only: skipped elsewhere, with the reason).
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsr_core.data.store import ResultsStore, StoreWriter
from rsr_core.data.tables import read_table, write_table
from rsr_core.data.trajectory import Trajectory
from rsr_core.engine.chat_format import MAX_LEN
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.engine.scoring import decoder_layers
from tests.conftest import ROOT, default_sigint, fill, mounted_tmpfs, remount, write_jsonl

STUDENT = "smollm2-135m-instruct"
DEMO = ROOT / "data" / "demo" / "candidates.jsonl"


def demo_records(n: int) -> list[dict]:
    return [json.loads(line) for line in DEMO.read_text().splitlines()[:n]]


def score(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsr_core", "score", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def trajectories(records: list[dict]) -> list[Trajectory]:
    return [Trajectory(r["id"], r.get("problem_id", r["id"]), r.get("teacher", ""), r["messages"]) for r in records]


def committed_parts(manifest: Path) -> int:
    """Parts a student manifest names (0 while it is being replaced or cannot be read yet)."""
    try:
        return len(json.loads(manifest.read_text())["parts"])
    except (OSError, ValueError, KeyError):
        return 0


def store_files_are_committed(store: Path) -> None:
    """Every file of the store is named by a manifest: no temporary file, no part that a failed commit left."""
    leftovers = [p for p in store.rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
    assert not leftovers, leftovers
    for folder in (store / "students").iterdir():
        manifest = json.loads((folder / "manifest.json").read_text())
        named = {f"{p['id']}.{k}" for p in manifest["parts"] for k in ("meta.parquet", "aggs.arrow", "tokens.parquet")}
        assert {p.name for p in (folder / "parts").iterdir()} <= named
        assert {p.stem for p in (folder / "vocab").iterdir()} == {v["id"] for v in manifest["vocab"]}
    conversations = json.loads((store / "conversations" / "manifest.json").read_text())
    assert {p.name for p in (store / "conversations").glob("*.parquet")} == \
        {f"{p['id']}.parquet" for p in conversations["parts"]}


# ------------------------------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.slow
def test_ctrl_c_never_replaces_a_complete_output_with_a_partial_one(tmp_path):
    """SIGINT part-way through a run of 20 trajectories: the existing complete 40-row --out stays byte for byte."""
    from rsr_core.data.demo import DEMO_STORE
    from rsr_core.data.exports import write_trajectory_table

    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    demo = ResultsStore(DEMO_STORE)
    ids = demo.trajectory_table(STUDENT)["trajectory_id"].tolist()[:40]
    assert write_trajectory_table(demo, STUDENT, out, ids) == 40
    before = out.read_bytes()
    pool = write_jsonl(tmp_path / "pool.jsonl", demo_records(20))
    child = subprocess.Popen([sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(out), "--no-cache",
                              "--dtype", "float32"], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if any(committed_parts(m) for m in out.parent.glob(f".{out.name}.*.store/students/*/manifest.json")):
            break  # the run has committed a batch to its temporary store (not just begun one): it is part-way
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert f"interrupted: {out} was not written (an existing file there is unchanged)" in err
    assert "Traceback" not in err
    assert out.read_bytes() == before and len(read_table(out)) == 40
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary store or partial file left


# ---------------------------------------------------------------------------------------------------- full disk


def test_a_full_disk_leaves_no_partial_table_and_the_old_one_intact(tmp_path):
    """TableFileWriter on a disk that fills up: the error reaches the caller, the existing file is unchanged and
    no temporary file is left, for every table format."""
    frame = pd.DataFrame({"trajectory_id": [f"t{i}" for i in range(20000)], "x": np.random.default_rng(0).random(20000),
                          "text": ["some words to fill the disk"] * 20000})
    with mounted_tmpfs(tmp_path / "disk", "size=128k") as disk:
        for suffix in (".parquet", ".csv", ".jsonl"):
            target = disk / f"table{suffix}"
            write_table(frame.head(3), target)
            before = target.read_bytes()
            with pytest.raises(OSError) as caught:
                write_table(frame, target)
            assert caught.value.errno == 28 or "No space left" in str(caught.value)
            assert target.read_bytes() == before
            assert sorted(p.name for p in disk.iterdir()) == sorted(f"table{s}" for s in (".parquet", ".csv",
                                                                                          ".jsonl")
                                                                    if (disk / f"table{s}").exists())


def test_a_store_commit_on_a_full_disk_leaves_the_store_as_it_was(tmp_path):
    """Appending to a store until the disk is full: every failed commit is undone (no file left that no manifest
    names), the store reads back the committed trajectories, and appending resumes once there is room."""
    from rsr_core.data.demo import DEMO_STORE, load_demo

    table, scores = load_demo(STUDENT)
    table = table.head(24).reset_index(drop=True)
    trajs = [Trajectory(r.trajectory_id, r.problem_id, r.teacher, json.loads(r.messages), run=r.run,
                        source=r.source, record=int(r.record)) for r in table.itertuples()]
    settings = ResultsStore(DEMO_STORE).settings(STUDENT)
    with mounted_tmpfs(tmp_path / "disk", "size=200k") as disk:
        store = disk / "store"
        writer = StoreWriter(store, settings)
        failed_at = None
        for i, t in enumerate(trajs):
            try:
                writer.append([t], {t.trajectory_id: scores[t.trajectory_id]}, table.iloc[[i]])
            except OSError as e:
                assert e.errno == 28 or "No space left" in str(e)
                failed_at = i
                break
        assert failed_at is not None, "the disk did not fill up"
        committed = set(writer.committed_ids)
        writer.close()
        assert committed and ResultsStore(store).scored_ids(STUDENT) == committed
        store_files_are_committed(store)
        got = ResultsStore(store).trajectory_table(STUDENT).set_index("trajectory_id")
        want = table.set_index("trajectory_id").loc[list(got.index)]
        assert got["rsr"].tolist() == pytest.approx(want["rsr"].tolist(), rel=1e-12)
        remount(disk, "size=8m")
        with StoreWriter(store, settings) as again:
            rest = [j for j, t in enumerate(trajs) if t.trajectory_id not in committed]
            again.append([trajs[j] for j in rest], {trajs[j].trajectory_id: scores[trajs[j].trajectory_id]
                                                     for j in rest}, table.iloc[rest])
        assert ResultsStore(store).scored_ids(STUDENT) == {t.trajectory_id for t in trajs}
        store_files_are_committed(store)


@pytest.mark.slow
def test_score_into_a_store_on_a_full_disk_keeps_what_was_committed_and_resumes(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", demo_records(8))
    cache = tmp_path / "cache"
    with mounted_tmpfs(tmp_path / "disk", "size=160k") as disk:
        store = disk / "store"
        proc = score(pool, "--out", store, "--cache-dir", cache, "--dtype", "float32")
        no_traceback(proc)
        assert proc.returncode == 1, proc.stderr
        held = ResultsStore(store).scored_ids(STUDENT)  # the store is readable
        assert 0 < len(held) < 8
        assert (f"error: no space left on device writing {store}; the {len(held)} trajectories committed before are "
                f"kept there, and the scored trajectories are in the cache at {cache}; free space and run the same "
                "command to resume") in proc.stderr
        store_files_are_committed(store)
        remount(disk, "size=16m")
        again = score(pool, "--out", store, "--cache-dir", cache, "--dtype", "float32")
        assert again.returncode == 0, again.stderr
        assert f"{len(held)} already in" in again.stderr
        cached = int(re.search(r"\((\d+) from cache", again.stderr).group(1))
        assert cached >= 1  # the trajectory whose commit failed was not scored again
        assert ResultsStore(store).scored_ids(STUDENT) == {r["id"] for r in demo_records(8)}


@pytest.mark.slow
def test_a_flat_output_on_a_full_disk_leaves_nothing_and_the_cache_keeps_the_work(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", demo_records(8))
    cache = tmp_path / "cache"
    with mounted_tmpfs(tmp_path / "disk", "size=96k") as disk:
        out = disk / "scores.parquet"
        proc = score(pool, "--out", out, "--cache-dir", cache, "--dtype", "float32")
        no_traceback(proc)
        assert proc.returncode == 1, proc.stderr
        assert (f"error: no space left on device writing {out}; {out} was not written (an existing file there is "
                f"unchanged); the scored trajectories are in the cache at {cache}; free space and run the same "
                "command: they will not be scored again") in proc.stderr
        assert list(disk.iterdir()) == []  # no partial table, no temporary store
        scored = len(list(cache.rglob("*.npz")))
        assert scored >= 1
        remount(disk, "size=16m")
        again = score(pool, "--out", out, "--cache-dir", cache, "--dtype", "float32")
        assert again.returncode == 0 and f"({scored} from cache" in again.stderr, again.stderr
        assert len(read_table(out)) == 8


@pytest.mark.parametrize("command,name", [("select", "selected.jsonl"), ("select", "selected.parquet"),
                                          ("report", "report.csv")])
def test_select_and_report_on_a_full_disk_keep_the_old_output(tmp_path, capsys, command, name):
    """The selection export and the report are written beside their target and moved into place: on a full disk
    the command says so (exit 1) and an existing output stays as it was, with no partial file beside it."""
    from rsr_core import cli
    from tests.test_cli_select import build_table

    scores = tmp_path / "scores.parquet"
    build_table().to_parquet(scores)
    extra = ["--by", "rsr"] if command == "select" else []
    with mounted_tmpfs(tmp_path / "disk", "size=64k") as disk:
        out = disk / name
        out.write_bytes(b"the complete output of an earlier run\n")
        fill(disk)
        code = cli.main([command, str(scores), *extra, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"error: no space left on device writing {out}" in err and "free space" in err, err
        assert out.read_bytes() == b"the complete output of an earlier run\n"
        assert sorted(p.name for p in disk.iterdir()) == sorted([name, "filler"])


# -------------------------------------------------------------------------------------------------- the cache


@pytest.mark.slow
def test_a_full_cache_warns_once_and_scoring_goes_on(tmp_path, student):
    records = demo_records(3)
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    out = tmp_path / "scores.parquet"
    with mounted_tmpfs(tmp_path / "cache", "size=64k") as cache:
        fill(cache)
        proc = score(pool, "--out", out, "--cache-dir", cache, "--dtype", "float32")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning: cache at") == 1, proc.stderr
    assert (f"warning: cache at {cache} is not writable (No space left on device); scoring goes on, new results "
            "are not cached") in proc.stderr
    got = read_table(out).set_index("trajectory_id")
    want = score_trajectories(trajectories(records), student, use_cache=False).scores
    for r in records:
        s = want[r["id"]]
        assert got.loc[r["id"], "n_tokens"] == len(s)
        assert got.loc[r["id"], "avg_surprisal"] == pytest.approx(float(np.mean(s.surprisal)), rel=1e-5)


def test_a_read_only_cache_serves_its_entries_and_scoring_goes_on(tmp_path, student, caplog):
    trajs = trajectories(demo_records(3))
    with mounted_tmpfs(tmp_path / "cache", "size=4m") as cache:
        first = score_trajectories(trajs[:2], student, cache_dir=cache)
        assert first.cache_problem is None
        remount(cache, "ro")
        with caplog.at_level(logging.WARNING, logger="rsr_core"):
            again = score_trajectories(trajs, student, cache_dir=cache)
    assert again.cached == 2 and len(again.scores) == 3 and not again.errors
    assert again.cache_problem and "Read-only file system" in again.cache_problem
    warnings = [r.getMessage() for r in caplog.records if "not writable" in r.getMessage()]
    assert warnings == [f"cache at {cache} is not writable (Read-only file system); scoring goes on, new "
                        "results are not cached"]
    alone = score_trajectories(trajs[2:], student, use_cache=False).scores[trajs[2].trajectory_id]
    np.testing.assert_array_equal(again.scores[trajs[2].trajectory_id].rank, alone.rank)
    np.testing.assert_allclose(again.scores[trajs[2].trajectory_id].surprisal, alone.surprisal, rtol=1e-6)


@pytest.mark.slow
def test_score_with_a_read_only_cache_dir_uses_its_entries(tmp_path, student):
    """`--cache-dir` on a read-only disk: one warning before scoring, the entries it holds are used, the rest is
    scored, the table is complete."""
    records = demo_records(3)
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    out = tmp_path / "scores.csv"
    with mounted_tmpfs(tmp_path / "cache", "size=4m") as cache:
        score_trajectories(trajectories(records[:2]), student, cache_dir=cache, max_len=MAX_LEN)
        remount(cache, "ro")
        proc = score(pool, "--out", out, "--cache-dir", cache, "--dtype", "float32")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning:") == 1, proc.stderr
    assert (f"warning: the score cache at {cache} cannot be written ({cache} is on a read-only file system); its "
            "entries are used, new results are not cached") in proc.stderr
    assert "(2 from cache" in proc.stderr, proc.stderr
    assert sorted(read_table(out)["trajectory_id"]) == sorted(r["id"] for r in records)


# -------------------------------------------------------------------------------------- progress inside a pass


def long_conversation(n_steps: int = 120) -> Trajectory:
    text = " ".join(f"Step {i}: add {i} and {i + 1} to get {2 * i + 1}." for i in range(n_steps))
    return Trajectory("long", "p", "t", [{"role": "user", "content": "Add the numbers."},
                                         {"role": "assistant", "content": text}])


def hooks(student) -> int:
    return sum(len(layer._forward_hooks) for layer in decoder_layers(student.model))


def test_progress_moves_inside_one_long_forward_pass(student):
    from rsr_core.engine.job import JobProgress

    seen = []

    def progress(p) -> None:
        seen.append((p.done, p.pass_tokens, p.pass_fraction, p.pass_stage, p.tokens_per_s, p.describe_pass(),
                     p.fraction))
        if 0 < p.pass_fraction < 1:
            assert hooks(student) == n_layers  # the hooks are on during the pass

    n_layers = len(decoder_layers(student.model))
    before = hooks(student)
    result = score_trajectories([long_conversation()], student, use_cache=False, progress=progress)
    assert hooks(student) == before == 0  # removed after the pass
    inside = [s for s in seen if s[1] > 0]
    fractions = [s[2] for s in inside]
    assert len(inside) >= n_layers  # at least one report per layer
    assert any(0 < f < 1 for f in fractions) and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(s[0] == 0 for s in inside)  # the one trajectory is not done while its pass runs
    assert len({s[1] for s in inside}) == 1 and inside[0][1] > len(result.scores["long"])  # the pass's tokens
    stages = [s[3] for s in inside]
    assert f"layer {n_layers // 2}/{n_layers}" in stages and any(st.startswith("output layer") for st in stages)
    assert any(s[4] > 0 for s in inside if s[2] < 1)  # the rate moves before the pass ends
    middle = next(s for s in inside if s[3] == f"layer {n_layers // 2}/{n_layers}")
    assert middle[5] == f"pass of {middle[1]:,} tokens: layer {n_layers // 2}/{n_layers} ({middle[2]:.0%})"
    assert [s[6] for s in inside] == fractions  # the run's share moves with the one pass
    assert seen[-1][1] == 0 and seen[-1][0] == 1 and seen[-1][6] == 1.0  # no pass in flight at the end
    job = JobProgress(total=1, pass_tokens=60000, pass_fraction=0.4, pass_stage="layer 12/30", seconds=10.0,
                      pass_scored=59000, pass_trajectories=1)
    assert "pass of 60,000 tokens: layer 12/30 (40%)" in job.describe() and "2,360 tokens/s" in job.describe()


def test_no_progress_callback_means_no_hooks(student):
    from rsr_core.engine import scoring

    registered = []
    original = scoring.PassMeter.__enter__
    scoring.PassMeter.__enter__ = lambda self: registered.append(1) or original(self)
    try:
        score_trajectories([long_conversation(10)], student, use_cache=False)
    finally:
        scoring.PassMeter.__enter__ = original
    assert registered == [] and hooks(student) == 0


def test_a_failing_pass_removes_its_hooks(student):
    from rsr_core.engine.chat_format import encode
    from rsr_core.engine.scoring import score_batch

    enc = encode(long_conversation(10).messages, student.tokenizer, 4096)

    def boom(tokens, fraction, stage) -> None:
        if stage.startswith("layer 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_batch(student.model, [enc], on_pass=boom)
    assert hooks(student) == 0


@pytest.mark.slow
def test_the_progress_bar_shows_the_pass_in_flight(tmp_path):
    """On a terminal (a pseudo-terminal here) the bar shows the pass in flight; in a log, plain lines do."""
    import fcntl
    import pty
    import struct
    import termios

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": "long", "messages": long_conversation(150).messages}])
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # a terminal 200 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(tmp_path / "o.csv"),
                             "--no-cache", "--dtype", "float32"], cwd=ROOT, stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal closed: the run ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(600) == 0, seen[-2000:]
    text = seen.decode(errors="replace")
    assert re.search(r"pass of [\d,]+ tokens: layer \d+/30 \(\d+%\)", text), text[-2000:]
