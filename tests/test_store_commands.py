"""A results store is an input everywhere: `report`, `teachers` and `select` read a store as they read the flat
table of the same run, `export` writes the flat tables back, and a store made by `import-scores` records the
settings that let `score` add to it."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from rsr_core.data.store import ResultsStore
from rsr_core.data.tables import read_table
from tests.conftest import ROOT, write_jsonl

STUDENT = "smollm2-135m-instruct"


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "rsr_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One input scored into a store and into flat files (the same numbers: one cache)."""
    d = tmp_path_factory.mktemp("store-commands")
    recs = [json.loads(line) for line in (ROOT / "data" / "demo" / "candidates.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r["problem_id"] in ("p01", "p02", "p03")]
    pool = write_jsonl(d / "pool.jsonl", recs)
    cache = ("--cache-dir", d / "cache", "--dtype", "float32")
    flat = cli("score", pool, "--out", d / "flat.parquet", "--tokens-out", d / "tokens.parquet", *cache)
    store = cli("score", pool, "--out", d / "store", *cache)
    assert flat.returncode == 0 and store.returncode == 0, flat.stderr + store.stderr
    return d, pool, recs


def numbers(text: str) -> list[str]:
    import re

    return re.findall(r"-?\d+\.\d+", text)


@pytest.mark.parametrize("command", [("report",), ("teachers", "--bootstrap", "0")])
def test_reports_read_a_store_as_the_flat_table(runs, command):
    d, _, _ = runs
    on_store, on_flat = cli(*command[:1], d / "store", *command[1:]), cli(*command[:1], d / "flat.parquet",
                                                                          *command[1:])
    assert on_store.returncode == 0 and on_flat.returncode == 0, on_store.stderr
    assert numbers(on_store.stdout) == numbers(on_flat.stdout) and numbers(on_store.stdout)


def test_select_reads_a_store_and_exports_its_conversations(runs):
    d, _, recs = runs
    for source, out in ((d / "store", d / "sel_store.jsonl"), (d / "flat.parquet", d / "sel_flat.jsonl")):
        done = cli("select", source, "--by", "rsr", "--out", out)
        assert done.returncode == 0, done.stderr
    a = [json.loads(line) for line in (d / "sel_store.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (d / "sel_flat.jsonl").read_text().splitlines()]
    assert len(a) == 3 and a == b  # the same records, conversations and provenance, byte for byte
    by_id = {r["id"]: r for r in recs}
    assert all(r["messages"][-1]["content"] == by_id[r["id"]]["messages"][-1]["content"] for r in a)
    by_prompt = cli("select", d / "store", "--pool-by", "prompt", "--out", d / "sel_prompt.jsonl")
    assert by_prompt.returncode == 0, by_prompt.stderr


def test_a_store_of_several_students_asks_which(tmp_path):
    done = cli("report", ROOT / "data" / "demo" / "store")
    if "gemma-3-270m" not in done.stderr:
        pytest.skip("the demo store holds one student here")
    assert done.returncode == 2 and "choose one with --student" in done.stderr
    assert cli("select", ROOT / "data" / "demo" / "store", "--student", "ghost", "--out",
               tmp_path / "s.jsonl").stderr.count("no results of student 'ghost'") == 1


def test_export_writes_the_flat_tables_of_the_same_run(runs, tmp_path):
    d, _, recs = runs
    done = cli("export", d / "store", "--out", tmp_path / "table.csv", "--tokens-out", tmp_path / "tokens.parquet")
    assert done.returncode == 0 and f"exported {len(recs)} trajectories of student" in done.stderr, done.stderr
    exported, flat = read_table(tmp_path / "table.csv"), read_table(d / "flat.parquet")
    merged = flat.merge(exported, on="trajectory_id", suffixes=("", "_e"))
    assert len(merged) == len(flat) == len(recs)
    assert (merged["n_tokens"] == merged["n_tokens_e"]).all()
    assert (merged["rsr"] - merged["rsr_e"]).abs().max() < 1e-9 and (merged["messages"] == merged["messages_e"]).all()
    tokens, want = pd.read_parquet(tmp_path / "tokens.parquet"), pd.read_parquet(d / "tokens.parquet")
    key = ["trajectory_id", "position"]
    pd.testing.assert_frame_equal(tokens.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True))
    assert cli("export", d / "flat.parquet", "--out", tmp_path / "x.csv").returncode == 2


def test_an_imported_store_records_its_settings_and_score_extends_it(runs, tmp_path):
    d, pool, recs = runs
    first, rest = write_jsonl(tmp_path / "first.jsonl", recs[:9]), write_jsonl(tmp_path / "rest.jsonl", recs[9:])
    cache = ("--cache-dir", d / "cache", "--dtype", "float32")
    assert cli("score", first, "--out", tmp_path / "f.parquet", "--tokens-out", tmp_path / "f_tokens.parquet",
               *cache).returncode == 0
    imported = cli("import-scores", tmp_path / "f.parquet", tmp_path / "f_tokens.parquet", "--out", tmp_path / "st")
    assert imported.returncode == 0, imported.stderr
    assert "recorded the settings of student 'smollm2-135m-instruct'" in imported.stderr
    settings = ResultsStore(tmp_path / "st").settings(STUDENT)
    assert settings.known and settings.dtype == "float32" and settings.max_len == 32768
    extended = cli("score", rest, "--out", tmp_path / "st", *cache)
    assert extended.returncode == 0, extended.stderr
    table = ResultsStore(tmp_path / "st").trajectory_table(STUDENT)
    assert len(table) == len(recs)


def test_an_import_without_settings_is_refused_until_they_are_recorded(runs, tmp_path):
    from rsr_core.data.store_import import import_flat_files

    d, pool, recs = runs
    import_flat_files(d / "flat.parquet", d / "tokens.parquet", tmp_path / "st")  # as imports before: no settings
    assert not ResultsStore(tmp_path / "st").settings(STUDENT).known
    cache = ("--cache-dir", d / "cache", "--dtype", "float32")
    refused = cli("score", pool, "--out", tmp_path / "st", *cache)
    assert refused.returncode == 2 and "imported without the settings" in refused.stderr
    assert "import-scores ... --student NAME_OR_PATH" in refused.stderr and "Traceback" not in refused.stderr
    recorded = cli("import-scores", d / "flat.parquet", d / "tokens.parquet", "--out", tmp_path / "st")
    assert recorded.returncode == 0 and f"{len(recs)} already there" in recorded.stderr, recorded.stderr
    assert ResultsStore(tmp_path / "st").settings(STUDENT).known
    extended = cli("score", pool, "--out", tmp_path / "st", *cache)
    assert extended.returncode == 0 and f"{len(recs)} already in" in extended.stderr, extended.stderr


def test_a_student_that_cannot_be_found_is_recorded_as_unknown_and_said(runs, tmp_path):
    d, _, _ = runs
    table = read_table(d / "flat.parquet").assign(student="someone-else")
    table.to_parquet(tmp_path / "t.parquet")
    imported = cli("import-scores", tmp_path / "t.parquet", d / "tokens.parquet", "--out", tmp_path / "st")
    assert imported.returncode == 0 and "cannot be loaded here" in imported.stderr, imported.stderr
    assert "name the student with --student NAME_OR_PATH" in imported.stderr
    assert not ResultsStore(tmp_path / "st").settings("someone-else").known
