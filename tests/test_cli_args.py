"""Bad arguments and unusable paths give a message and exit code 2 before anything is read, loaded or scored.

Most cases run `cli.main` in this process with the input reading and the model loading replaced by functions that
fail the test if called, so every refusal is shown to come first. A few run the real command in a subprocess (no
traceback, the exit code, Ctrl-C during start-up, a hub id that cannot be fetched).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from rsr_core import cli
from tests.conftest import ROOT, default_sigint, mounted_tmpfs, write_jsonl

RECORDS = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                        {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]}
           for i in range(2)]


def run_cli(capsys, *args) -> tuple[int, str]:
    """(exit code, stderr) of `python -m rsr_core ARGS` run in this process."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse's own exit
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def nothing_runs(monkeypatch):
    """Reading the inputs or loading a model fails the test: a refusal must come before either."""
    def forbidden(*a, **k):
        raise AssertionError("inputs read or model loaded before the arguments were checked")
    monkeypatch.setattr("rsr_core.commands.score.read_inputs", forbidden)
    monkeypatch.setattr("rsr_core.engine.student.load_student", forbidden)


@pytest.fixture
def pool(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pool.jsonl", RECORDS)


def refused(capsys, *args, expect: str) -> str:
    code, err = run_cli(capsys, *args)
    assert code == 2, err
    assert expect in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write into: chmod 0o555 for a normal user; as root (which permission bits do not stop)
    a tmpfs mounted read-only."""
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "ro,size=64k") as f:
        yield f


# --------------------------------------------------------------------------------------------- bad numbers

BAD_SCORE_ARGS = [
    (["--r-max", "0"], "argument --r-max: must be at least 1"),
    (["--r-max", "-3"], "argument --r-max: must be at least 1"),
    (["--r-max", "ten"], "argument --r-max: expected an integer, got 'ten'"),
    (["--max-len", "1"], "argument --max-len: must be at least 2"),
    (["--max-len", "0"], "argument --max-len: must be at least 2"),
    (["--max-len", "-5"], "argument --max-len: must be at least 2"),
    (["--token-budget", "0"], "argument --token-budget: must be at least 1"),
    (["--workers", "0"], "argument --workers: must be at least 1"),
    (["--device", "bogus"], "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'bogus'"),
    (["--device", "cuda:x"], "argument --device: must be auto, cpu, cuda, cuda:N or mps"),
    (["--dtype", "float128"], "argument --dtype: must be one of auto, float32"),
]


@pytest.mark.parametrize("args,expect", BAD_SCORE_ARGS, ids=[" ".join(a) for a, _ in BAD_SCORE_ARGS])
def test_bad_score_arguments_are_refused_before_anything_runs(capsys, nothing_runs, pool, tmp_path, args, expect):
    out = tmp_path / "o.csv"
    refused(capsys, "score", pool, "--out", out, "--cache-dir", tmp_path / "cache", *args, expect=expect)
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_message(capsys, nothing_runs, pool, tmp_path, device):
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--device", device,
            expect=f"--device {device}: CUDA is not available on this machine")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_device_beyond_the_last_is_a_message(capsys, nothing_runs, pool, tmp_path):
    n = torch.cuda.device_count()
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--device", f"cuda:{n}",
            expect=f"this machine has {n} CUDA device(s)")


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has MPS")
def test_mps_without_mps_is_a_message(capsys, nothing_runs, pool, tmp_path):
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--device", "mps",
            expect="--device mps: MPS (Apple GPU) is not available")


BAD_OTHER_ARGS = [
    (["teachers", "T", "--budget", "0"], "argument --budget: must be at least 1"),
    (["teachers", "T", "--top-k", "0"], "argument --top-k: must be at least 1"),
    (["teachers", "T", "--resamples", "0"], "argument --resamples: must be at least 1"),
    (["teachers", "T", "--bootstrap", "-1"], "argument --bootstrap: must be at least 0"),
    (["teachers", "T", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["select", "T", "--seed", "-2", "--out", "S.jsonl"], "argument --seed: must be at least 0"),
    (["select", "T", "--random-seeds", "0", "--out", "S.jsonl"], "argument --random-seeds: must be at least 1"),
    (["import-scores", "T", "K.parquet", "--out", "STORE", "--r-max", "0"], "argument --r-max: must be at least 1"),
    (["import-scores", "T", "K.parquet", "--out", "STORE", "--batch-tokens", "0"],
     "argument --batch-tokens: must be at least 1"),
]


@pytest.mark.parametrize("args,expect", BAD_OTHER_ARGS, ids=[" ".join(a) for a, _ in BAD_OTHER_ARGS])
def test_other_commands_refuse_bad_numbers(capsys, tmp_path, args, expect):
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    args = [str(table) if a == "T" else str(tmp_path / a) if a in ("S.jsonl", "K.parquet", "STORE") else a
            for a in args]
    refused(capsys, *args, expect=expect)
    assert not (tmp_path / "S.jsonl").exists() and not (tmp_path / "STORE").exists()


# -------------------------------------------------------------------------------------------------- paths


def test_out_equal_to_the_input_is_refused_and_the_input_untouched(capsys, nothing_runs, pool, tmp_path):
    before = pool.read_bytes()
    refused(capsys, "score", pool, "--out", pool, expect=f"--out {pool} is also an input")
    relative = os.path.relpath(pool)  # another spelling of the same file
    refused(capsys, "score", pool, "--out", relative, expect="is also an input")
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--tokens-out", pool, expect="is also an input")
    assert pool.read_bytes() == before


def test_out_inside_an_input_folder_is_refused(capsys, nothing_runs, tmp_path):
    folder = tmp_path / "teachers"
    (folder / "a").mkdir(parents=True)
    write_jsonl(folder / "a" / "r1.jsonl", RECORDS)
    refused(capsys, "score", folder, "--out", folder / "scores.parquet",
            expect=f"--out {folder / 'scores.parquet'} lies inside the input folder {folder}")
    refused(capsys, "score", folder, "--out", folder / "store", expect="lies inside the input folder")
    refused(capsys, "score", folder / "a" / "r1.jsonl", "--out", folder, expect="contains the input")
    assert sorted(p.name for p in folder.rglob("*")) == ["a", "r1.jsonl"]


@pytest.mark.parametrize("name,expect", [
    ("o.txt", "a table file must end in .parquet, .csv, .jsonl, and a results store is a folder without a suffix"),
    ("o.json", "(not '.json')"),
])
def test_an_output_suffix_that_is_no_table_is_refused(capsys, nothing_runs, pool, tmp_path, name, expect):
    refused(capsys, "score", pool, "--out", tmp_path / name, expect=expect)
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--tokens-out", tmp_path / name,
            expect="--tokens-out")
    assert not (tmp_path / name).exists() and not (tmp_path / "o.csv").exists()


def test_a_parent_that_is_a_file_is_refused(capsys, nothing_runs, pool, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    refused(capsys, "score", pool, "--out", blocker / "o.parquet",
            expect=f"--out {blocker / 'o.parquet'} cannot be written: {blocker} is a file, not a folder")
    refused(capsys, "score", pool, "--out", blocker / "sub" / "store", expect=f"{blocker} is a file, not a folder")
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--tokens-out", blocker / "t.parquet",
            expect=f"{blocker} is a file, not a folder")
    refused(capsys, "score", pool, "--out", blocker, expect=f"--out {blocker} is a file")


def test_an_existing_folder_must_be_a_store_or_empty(capsys, nothing_runs, pool, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    refused(capsys, "score", pool, "--out", other,
            expect="neither an RSR Explorer results store (no store.json) nor empty")
    bad = tmp_path / "future"
    bad.mkdir()
    (bad / "store.json").write_text(json.dumps({"format": "rsr-explorer-store", "version": 99}))
    refused(capsys, "score", pool, "--out", bad, expect="store format version 99 is not supported")
    assert sorted(p.name for p in other.iterdir()) == ["notes.md"]


def test_a_read_only_output_folder_is_refused(capsys, nothing_runs, pool, read_only_dir):
    refused(capsys, "score", pool, "--out", read_only_dir / "o.parquet", expect=f"--out {read_only_dir / 'o.parquet'} "
            "cannot be written")
    refused(capsys, "score", pool, "--out", read_only_dir / "store", expect="cannot be written")
    refused(capsys, "score", pool, "--out", read_only_dir.parent / "o.csv", "--tokens-out",
            read_only_dir / "t.parquet", expect="--tokens-out")


def test_a_cache_dir_that_is_a_file_is_refused_unless_no_cache(capsys, nothing_runs, pool, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    for where in (blocker, blocker / "cache"):
        refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--cache-dir", where,
                expect=f"--cache-dir {where} cannot be used: {blocker} is a file, not a folder")
    # with --no-cache the folder does not matter: the checks pass and the run reaches the inputs
    with pytest.raises(AssertionError, match="inputs read"):
        cli.main(["score", str(pool), "--out", str(tmp_path / "o.csv"), "--cache-dir", str(blocker), "--no-cache"])


def test_a_read_only_cache_dir_is_a_warning_and_the_run_goes_on(capsys, nothing_runs, pool, tmp_path,
                                                                 read_only_dir):
    """A cache that cannot be written is still read: one warning, then the run reaches its inputs."""
    for where, rest in ((read_only_dir, "its entries are used, new results are not cached"),
                        (read_only_dir / "cache", "going on without it")):
        with pytest.raises(AssertionError, match="inputs read"):
            cli.main(["score", str(pool), "--out", str(tmp_path / "o.csv"), "--cache-dir", str(where)])
        err = capsys.readouterr().err
        assert err.count("warning:") == 1 and f"warning: the score cache at {where} cannot be written (" in err, err
        assert rest in err


# ------------------------------------------------------------------------------------------------ students


def test_a_data_folder_as_student_says_what_a_model_folder_needs(capsys, nothing_runs, pool, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "x.jsonl", RECORDS)
    err = refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--student", data,
                  expect=f"{data} is not a model folder: it has no config.json and no weights")
    assert "a .gguf file" in err and "Hugging Face model id." in err  # the whole sentence, not cut off


def test_a_file_that_is_not_gguf_is_refused(capsys, nothing_runs, pool, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf file at all")
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--student", fake,
            expect=f"{fake} is not a readable GGUF file: it does not start with the GGUF signature")
    fake.write_bytes(b"")
    refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--student", fake, expect="(empty file)")


def test_a_truncated_gguf_is_a_message(tmp_path, pool, monkeypatch):
    """A GGUF file cut off after its header passes the quick check; its conversion says what is wrong."""
    from rsr_core.engine.student import StudentError, embedded_gguf, load_student

    monkeypatch.setenv("RSR_CACHE_DIR", str(tmp_path / "cache"))
    cut = tmp_path / "cut.gguf"
    with open(embedded_gguf(), "rb") as f:
        cut.write_bytes(f.read(200_000))
    with pytest.raises(StudentError, match=f"{cut} is not a readable GGUF file: "):
        load_student(str(cut))
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # nothing half-converted left behind
    done = subprocess.run([sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(tmp_path / "o.csv"),
                           "--student", str(cut)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RSR_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2 and "is not a readable GGUF file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline", "unreachable"])
def test_a_hub_id_that_cannot_be_fetched_fails_fast(capsys, nothing_runs, pool, tmp_path, monkeypatch, env):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    err = refused(capsys, "score", pool, "--out", tmp_path / "o.csv", "--student", "rsr-explorer-tests/no-such-model",
                  expect="'rsr-explorer-tests/no-such-model' is not in the local Hugging Face cache and")
    assert time.monotonic() - started < 5
    assert "hf download rsr-explorer-tests/no-such-model" in err
    assert ("HF_HUB_OFFLINE is set" if "HF_HUB_OFFLINE" in env else "http://127.0.0.1:9 cannot be reached") in err


def test_a_hub_id_offline_fails_fast_in_a_real_process(pool, tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(tmp_path / "o.csv"),
                           "--student", "rsr-explorer-tests/no-such-model"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    took = time.monotonic() - started
    assert done.returncode == 2 and "HF_HUB_OFFLINE is set" in done.stderr and "Traceback" not in done.stderr
    assert took < 30, f"{took:.1f} s (interpreter start-up included)"  # it took 46 s of hub retries before


# ------------------------------------------------------------------------------------- tables that are not


@pytest.mark.parametrize("command", ["report", "teachers", "select"])
def test_a_csv_that_is_no_trajectory_table_names_the_missing_columns(capsys, tmp_path, command):
    table = tmp_path / "accuracies.csv"
    pd.DataFrame({"teacher": ["a", "b"], "accuracy": [0.5, 0.7]}).to_csv(table, index=False)
    extra = ["--out", str(tmp_path / "s.jsonl")] if command == "select" else []
    err = refused(capsys, command, table, *extra,
                  expect=f"{table} is not a trajectory table: it has no n_tokens, rsr, avg_surprisal")
    assert "(its columns: teacher, accuracy)" in err and not (tmp_path / "s.jsonl").exists()


def test_report_and_select_refuse_an_out_that_is_their_input_or_no_table(capsys, tmp_path):
    table = tmp_path / "scores.parquet"
    table.write_bytes(b"x")
    refused(capsys, "report", table, "--out", tmp_path / "r.txt", expect="--out")
    refused(capsys, "report", table, "--out", table, expect="is also an input")
    refused(capsys, "select", table, "--out", table, expect="is also an input")
    assert table.read_bytes() == b"x"


# ---------------------------------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("after_s", [0.7, 3.0])
def test_ctrl_c_during_start_up_says_interrupted(tmp_path, after_s):
    """SIGINT while the command imports, reads its inputs or loads the student: 'interrupted', exit 130."""
    pool = write_jsonl(tmp_path / "pool.jsonl", RECORDS * 1)
    child = subprocess.Popen([sys.executable, "-m", "rsr_core", "score", str(pool), "--out", str(tmp_path / "o.csv"),
                              "--no-cache"], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
    time.sleep(after_s)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    if child.returncode == 0:
        pytest.skip("the run had finished before the signal")
    # 130, or death by SIGINT itself (which a shell also shows as 130): CPython 3.11 ends a process that way after
    # a KeyboardInterrupt raised inside exec() of a string (scipy runs one on import), even when it was handled
    assert child.returncode in (130, -signal.SIGINT), err
    assert "interrupted" in err and "Traceback" not in err, err
    assert not (tmp_path / "o.csv").exists()
