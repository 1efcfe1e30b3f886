"""Faults and holes: a damaged store is a message naming the file and what to do (from every command, before any
model is loaded), paths no file system takes and models outside the allowed folders are refused, a folder's
files are exactly the checked listing, notes come from the cache too, logs get plain progress lines, and the small
things (file modes, leftovers, wording)."""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rsr_core import cli
from rsr_core.data.demo import DEMO_STORE
from rsr_core.data.formats import read_inputs
from rsr_core.data.paths import PathRefused, allowed_path
from rsr_core.data.store import ResultsStore, StoreWriter
from rsr_core.data.students import allowed_student
from rsr_core.engine.cpu import has_bf16_units, slow_dtype_warning
from tests.conftest import ROOT, write_jsonl
from tests.test_tool_calls import AGENT

STUDENT = "smollm2-135m-instruct"


def run_cli(capsys, *args) -> tuple[int, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model's weights fails the test: a refusal must come before."""
    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the store was checked")
    monkeypatch.setattr("rsr_core.engine.student.load_model", forbidden)


@pytest.fixture
def store(tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(DEMO_STORE, copy)
    return copy


@pytest.fixture
def pool(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pool.jsonl", [json.loads(line) for line in
                                                 (ROOT / "data/demo/candidates.jsonl").read_text().splitlines()[:2]])


def manifest(store: Path) -> Path:
    return store / "students" / STUDENT / "manifest.json"


DAMAGE = {
    "random bytes": lambda m: m.write_bytes(os.urandom(2000) + b"\xff\xfe"),
    "no settings": lambda m: m.write_text(json.dumps({k: v for k, v in json.loads(m.read_text()).items()
                                                      if k != "settings"})),
    "garbage parts": lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "parts": "garbage"})),
    "unknown version": lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "version": 99})),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_manifest_is_a_message_from_every_command(capsys, no_model, store, pool, kind):
    DAMAGE[kind](manifest(store))
    for args in (("score", pool, "--out", store), ("compact", store), ("report", store, "--student", STUDENT),
                 ("select", store, "--student", STUDENT, "--out", store.parent / "s.jsonl")):
        code, err = run_cli(capsys, *args)
        assert code == 2 and "Traceback" not in err, (args, err)
        assert str(manifest(store)) in err or (kind == "unknown version" and "version 99" in err), (args, err)
    reader = ResultsStore(store)
    assert STUDENT not in reader.students() and str(manifest(store)) in reader.problems()[0]
    assert "gemma-3-270m" not in ResultsStore(DEMO_STORE).problems()


def test_a_missing_part_names_the_trajectories_it_held(capsys, no_model, store, pool):
    meta = next((store / "students" / STUDENT / "parts").glob("*.meta.parquet"))
    tokens = meta.with_name(meta.name.replace(".meta.parquet", ".tokens.parquet"))
    held = pq.read_table(meta, columns=["trajectory_id"]).column(0).to_pylist()
    tokens.unlink()
    code, err = run_cli(capsys, "score", pool, "--out", store)
    assert code == 2 and f"{tokens} is missing: the store is damaged" in err
    assert f"that part held {len(held)} trajectories of student '{STUDENT}' ({', '.join(held[:5])}" in err
    assert "nothing was committed" not in err
    reader = ResultsStore(store)
    assert STUDENT not in reader.students() and "trajectories of student" in reader.problems()[0]
    meta.unlink()
    code, err = run_cli(capsys, "report", store, "--student", STUDENT)
    assert code == 2 and "is missing: the store is damaged" in err and "Traceback" not in err


def test_a_missing_vocabulary_file_is_named(capsys, no_model, store, pool):
    next((store / "students" / STUDENT / "vocab").glob("*.parquet")).unlink()
    code, err = run_cli(capsys, "score", pool, "--out", store)
    assert code == 2 and "the student's vocabulary (the texts of the alternatives) cannot be read" in err


def test_a_locked_store_is_refused_before_the_model_loads(capsys, no_model, store, pool):
    settings = ResultsStore(store).settings(STUDENT)
    with StoreWriter(store, settings):
        code, err = run_cli(capsys, "score", pool, "--out", store)
    assert code == 2 and "is being written by another process" in err


def test_paths_no_file_system_takes_are_refused(tmp_path):
    for text, why in (("data/\x00x", "NUL character"), ("a" * 6000, "characters long"),
                      ("/" + "b" * 300, "longer than 255")):
        with pytest.raises(PathRefused, match=why):
            allowed_path(text, [tmp_path])


def test_local_models_obey_the_model_roots(tmp_path):
    inside, outside = tmp_path / "models" / "m", tmp_path / "elsewhere" / "m"
    inside.mkdir(parents=True)
    outside.mkdir(parents=True)
    assert allowed_student(str(inside), [tmp_path / "models"]) == str(inside)
    messages = set()
    for spec in (str(outside), str(tmp_path / "elsewhere" / "missing"), str(outside) + ".gguf", "/etc"):
        with pytest.raises(PathRefused) as refused:
            allowed_student(spec, [tmp_path / "models"])
        messages.add(str(refused.value).replace(spec, "SPEC"))
    assert len(messages) == 1  # the same words whether the path exists or not: no probe of the server's files
    assert allowed_student(STUDENT, []) == STUDENT and allowed_student("Qwen/Qwen2.5-0.5B", []) == "Qwen/Qwen2.5-0.5B"


def test_a_folder_reads_exactly_its_checked_listing(tmp_path):
    from rsr_core.data.sources import list_data_files

    root, secret = tmp_path / "root", tmp_path / "secret.jsonl"
    (root / "t").mkdir(parents=True)
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    write_jsonl(root / "t" / "run1.jsonl", [record])
    write_jsonl(secret, [{**record, "messages": [record["messages"][0], {"role": "assistant", "content": "s"}]}])
    listing = list_data_files(root, [root])
    (root / "t" / "late.jsonl").symlink_to(secret)  # added after the listing was checked
    read = read_inputs([root], roots=[root], listing=listing)
    assert [t.messages[-1]["content"] for t in read.trajectories] == ["a"] and read.errors == []
    (root / "t" / "run1.jsonl").unlink()
    (root / "t" / "run1.jsonl").symlink_to(secret)  # a listed file replaced by a link out of the roots
    read = read_inputs([root], roots=[root], listing=listing)
    assert read.trajectories == [] and "leads outside the folders this server may read" in str(read.errors[0])


def test_the_rendering_note_comes_from_the_cache_too(tmp_path):
    agent = write_jsonl(tmp_path / "agent.jsonl", [AGENT])
    notes = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "rsr_core", "score", agent, "--out", tmp_path / "o.csv",
                               "--cache-dir", tmp_path / "cache", "--dtype", "float32"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        notes.append([line for line in done.stderr.splitlines() if line.startswith("note:")])
    assert "(1 from cache" in done.stderr and notes[0] == notes[1] and "does not write tool calls" in notes[1][0]


def test_a_log_file_gets_plain_progress_lines(capsys, monkeypatch, pool, tmp_path):
    monkeypatch.setattr("rsr_core.commands.score.LOG_EVERY_S", 0.0)
    code, err = run_cli(capsys, "score", pool, "--out", tmp_path / "o.csv", "--no-cache", "--dtype", "float32")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("scoring: ")]
    assert lines and "\r" not in err and "trajectories" in lines[-1] and "tokens/s" in lines[-1]
    assert any("; pass of " in line and "layer" in line for line in lines)  # a long pass is followed in the log


def test_small_things(capsys, tmp_path, pool):
    out = tmp_path / "o.csv"
    stale = tmp_path / ".o.csv.abc123.store" / "students" / STUDENT
    stale.mkdir(parents=True)
    (stale / ".lock").write_text("12345")
    with open(pool, "a") as f:
        f.write('{"id": "x", "messages": "unterminated')  # the last line, cut off inside a string
    old = os.umask(0o022)
    try:
        code, err = run_cli(capsys, "score", pool, "--out", out, "--cache-dir", tmp_path / "cache", "--dtype",
                            "float32")
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # as a plain open makes it, not 0600
    assert not (tmp_path / ".o.csv.abc123.store").exists()  # a killed run's leftover, removed
    assert "Unterminated string starting at column" in err and "at at" not in err
    assert "1 record skipped" in err


def test_bf16_on_a_cpu_without_bf16_units_is_said():
    import torch

    cpu = torch.device("cpu")
    assert "about a hundred times slower" in slow_dtype_warning(cpu, torch.bfloat16, {"avx2", "fma"})
    assert slow_dtype_warning(cpu, torch.bfloat16, {"avx2", "avx512_bf16"}) is None
    assert slow_dtype_warning(cpu, torch.float32, {"avx2"}) is None
    assert slow_dtype_warning(torch.device("cuda"), torch.bfloat16, {"avx2"}) is None
    said = slow_dtype_warning(cpu, torch.bfloat16) is not None
    assert said == (not has_bf16_units() and bool(__import__("rsr_core.engine.cpu", fromlist=["x"]).cpu_flags()))
