"""Hugging Face datasets as they are stored: a folder of hub shards is one dataset (not a teacher per subfolder), a
`datasets.save_to_disk` folder reads with `datasets`, and records are read in batches so a large corpus never sits
in memory at once."""
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq

from rsr_core.data import formats
from rsr_core.data.formats import InputSet, input_files, read_inputs, read_trajectories
from rsr_core.data.sources import record_fields


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"uuid": f"u{i}", "problem": f"What is {i} + {i}?", "generations": [f"It is {2 * i}.", f"{2 * i}"],
             "correctness_math_verify": [True, True]} for i in range(start, start + n)]


def test_a_folder_of_hub_shards_is_one_dataset(tmp_path):
    root = tmp_path / "OpenR1-Math-220k"
    (root / "data").mkdir(parents=True)
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(rows(3, 3 * k)), root / "data" / f"train-{k:05d}-of-00002.parquet")
    (root / "README.md").write_text("# a dataset card\n")
    files = input_files(root)
    assert [(f.path.name, f.teacher, f.run) for f in files] == [
        ("train-00000-of-00002.parquet", "OpenR1-Math-220k", None),
        ("train-00001-of-00002.parquet", "OpenR1-Math-220k", None)]
    ts, errors = read_trajectories(root, prompt_field="problem", response_field="generations")
    assert errors == [] and len(ts) == 12 and {t.teacher for t in ts} == {"OpenR1-Math-220k"}
    assert len({t.trajectory_id for t in ts}) == 12 and all(t.correct for t in ts)
    # one shard given alone is still named after its dataset
    assert input_files(root / "data" / "train-00001-of-00002.parquet")[0].teacher == "OpenR1-Math-220k"


def test_a_saved_dataset_and_a_dataset_dict_read_with_datasets(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list(rows(4)).save_to_disk(str(tmp_path / "pool"))
    DatasetDict({"train": Dataset.from_list(rows(2)), "test": Dataset.from_list(rows(1, 10))}).save_to_disk(
        str(tmp_path / "splits"))
    ts, errors = read_trajectories(tmp_path / "pool", prompt_field="problem", response_field="generations")
    assert errors == [] and len(ts) == 8 and {t.teacher for t in ts} == {"pool"}
    assert [t.record for t in ts[::2]] == [0, 1, 2, 3] and ts[0].source == str(tmp_path / "pool")
    ts, errors = read_trajectories(tmp_path / "splits", prompt_field="problem", response_field="generations")
    assert errors == [] and len(ts) == 6 and {t.teacher for t in ts} == {"splits"}
    assert record_fields(tmp_path / "pool") == ["uuid", "problem", "generations", "correctness_math_verify"]
    # a folder holding saved datasets: one teacher each
    found = input_files(tmp_path)
    assert sorted({(f.teacher, f.saved) for f in found}) == [("pool", True), ("splits", True)]


def test_records_arrive_in_batches(tmp_path, monkeypatch):
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows(40)), path, row_group_size=10)
    monkeypatch.setattr(formats, "BATCH_ROWS", 7)
    sizes = [len(batch) for batch, _ in InputSet([path], formats.RecordOptions("problem", ("generations",))).batches(
        size=25)]
    assert sizes == [25, 25, 25, 5]
    assert len(read_inputs([path], prompt_field="problem", response_field="generations").trajectories) == 80


def test_reading_in_batches_holds_one_batch_at_a_time(tmp_path):
    """The peak memory of streaming a corpus batch by batch is a small part of holding it whole."""
    path = tmp_path / "corpus.parquet"
    long = [{**r, "generations": [g * 40 for g in r["generations"]]} for r in rows(6000)]
    pq.write_table(pa.Table.from_pylist(long), path, row_group_size=500)
    options = formats.RecordOptions("problem", ("generations",))

    def peak(fn) -> int:
        tracemalloc.start()
        fn()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    streamed = peak(lambda: sum(len(b) for b, _ in InputSet([path], options).batches(size=1000)))
    whole = peak(lambda: InputSet([path], options).read_all())
    assert streamed < whole / 4, (streamed, whole)
