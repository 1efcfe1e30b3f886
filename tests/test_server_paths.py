"""What the app may read on the server and where uploads go, on real files: paths confined to the data roots
(`/etc/passwd`, `..` and links out refused), bounded folder walks, private upload folders removed with their
session, leftovers of a killed server swept."""
from __future__ import annotations

import gc
import json
import os
import stat
import time
from pathlib import Path

import pytest

from rsr_core.data.formats import iter_input_files
from rsr_core.data.paths import DATA_DIR, PathRefused, allowed_path, data_roots
from rsr_core.data.sources import (SESSION_PREFIX, FolderTooLarge, UploadFolder, first_data_file, list_data_files,
                                   record_fields, save_upload, sweep_uploads)

RECORD = {"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- data roots ----------------------------------------------------------------------------------------------------

def test_default_roots_are_the_project_data_and_the_working_folder(tmp_path):
    assert data_roots({}, cwd=tmp_path) == [DATA_DIR.resolve(), tmp_path.resolve()]
    store = tmp_path / "store"
    assert data_roots({"RSR_STORE": str(store)}, cwd=tmp_path)[-1] == store.resolve()


def test_configured_roots_replace_the_default(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    roots = data_roots({"RSR_DATA_ROOTS": f"{a}{os.pathsep}{b}{os.pathsep}{os.pathsep}rel"}, cwd=tmp_path)
    assert roots == [a.resolve(), b.resolve(), (tmp_path / "rel").resolve()]
    assert DATA_DIR.resolve() not in roots


def test_etc_passwd_is_refused_with_the_roots_and_how_to_add_one(tmp_path):
    roots = data_roots({}, cwd=tmp_path)
    with pytest.raises(PathRefused) as e:
        allowed_path("/etc/passwd", roots, cwd=tmp_path)
    message = str(e.value)
    assert "/etc/passwd" in message and str(tmp_path.resolve()) in message and "RSR_DATA_ROOTS" in message


def test_dot_dot_and_links_out_of_a_root_are_refused(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "pool.jsonl").write_text(json.dumps(RECORD) + "\n")
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    assert allowed_path("sub/pool.jsonl", [root], cwd=root) == (root / "sub" / "pool.jsonl").resolve()
    assert allowed_path(str(root / "sub" / ".." / "sub"), [root]) == (root / "sub").resolve()
    for outside in ("../secret.csv", str(root / "sub" / ".." / ".." / "secret.csv"), str(root / "link.csv"), "/"):
        with pytest.raises(PathRefused):
            allowed_path(outside, [root], cwd=root)


def test_a_root_given_as_a_link_is_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    (real / "x.csv").write_text("a\n1\n")
    assert allowed_path(str(tmp_path / "alias" / "x.csv"), [tmp_path / "alias"]) == (real / "x.csv").resolve()


# --- folder walks --------------------------------------------------------------------------------------------------

def write_teacher_folders(root: Path, teachers: int, runs: int) -> None:
    for t in range(teachers):
        (root / f"t{t}").mkdir(parents=True)
        for r in range(runs):
            (root / f"t{t}" / f"run{r}.jsonl").write_text(json.dumps(RECORD) + "\n")
    (root / "notes.txt").write_text("not data")


def test_a_folder_lists_the_files_the_reader_reads(tmp_path):
    write_teacher_folders(tmp_path, 3, 2)
    files = list_data_files(tmp_path, [tmp_path])
    assert files == [f for f, _, _ in iter_input_files(tmp_path)]
    assert len(files) == 6 and first_data_file(tmp_path, files) == tmp_path / "t0" / "run0.jsonl"
    assert record_fields(tmp_path) == ["messages"]


def test_a_folder_with_too_many_entries_is_refused_before_any_read(tmp_path):
    write_teacher_folders(tmp_path, 4, 30)  # 4 folders + 120 files + notes.txt
    assert len(list_data_files(tmp_path, max_entries=125)) == 120
    with pytest.raises(FolderTooLarge, match="more than 100 files and folders"):
        list_data_files(tmp_path, max_entries=100)
    assert record_fields(tmp_path / "t0" / "run0.jsonl") == ["messages"]


def test_a_folder_too_deep_is_refused(tmp_path):
    deep = tmp_path.joinpath(*[f"d{k}" for k in range(5)])
    deep.mkdir(parents=True)
    (deep / "x.jsonl").write_text(json.dumps(RECORD) + "\n")
    assert list_data_files(tmp_path, max_depth=5) == [deep / "x.jsonl"]
    with pytest.raises(FolderTooLarge, match="more than 4 levels deep"):
        list_data_files(tmp_path, max_depth=4)


def test_links_inside_a_folder_are_not_followed_out_of_the_roots(tmp_path):
    root = tmp_path / "root"
    write_teacher_folders(root, 1, 1)
    outside = tmp_path / "outside"
    write_teacher_folders(outside, 2, 2)
    (root / "folder-link").symlink_to(outside, target_is_directory=True)
    assert list_data_files(root, [root]) == [root / "t0" / "run0.jsonl"]  # a linked folder is not walked
    (root / "file-link.jsonl").symlink_to(outside / "t0" / "run0.jsonl")
    with pytest.raises(PathRefused, match="file-link.jsonl"):
        list_data_files(root, [root])


# --- uploads -------------------------------------------------------------------------------------------------------

def test_an_upload_is_private_and_keeps_only_the_latest_file(tmp_path):
    folder = UploadFolder(tmp_path / "uploads")
    assert mode(tmp_path / "uploads") == 0o700 and mode(folder.path) == 0o700
    assert folder.path.name.startswith(SESSION_PREFIX)
    first = folder.save("pool.jsonl", b'{"a": 1}\n')
    assert first.parent == folder.path and first.suffix == ".jsonl" and mode(first) == 0o600
    assert folder.save("pool.jsonl", b'{"a": 1}\n') == first  # the same bytes: the same file
    second = folder.save("../../elsewhere/other.csv", b"a\n1\n")
    assert second.parent == folder.path  # a name with folders stays in the session's folder
    assert sorted(folder.path.iterdir()) == [second]
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        save_upload("notes.txt", b"x", folder.path)


def test_two_sessions_have_separate_folders_removed_with_them(tmp_path):
    a, b = UploadFolder(tmp_path), UploadFolder(tmp_path)
    assert a.path != b.path
    kept = a.save("x.jsonl", b"{}\n")
    b_path = b.path
    del b
    gc.collect()
    assert not b_path.exists() and kept.exists()  # a session that ends takes its uploads with it
    a.remove()
    assert not a.path.exists() and not a.alive
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_removes_only_folders_left_unused(tmp_path):
    old, recent = UploadFolder(tmp_path), UploadFolder(tmp_path)
    old.save("x.jsonl", b"{}\n")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old.path, (day_ago, day_ago))
    (tmp_path / "unrelated").mkdir()
    os.utime(tmp_path / "unrelated", (day_ago, day_ago))
    assert sweep_uploads(tmp_path) == [old.path]
    assert not old.path.exists() and recent.path.exists() and (tmp_path / "unrelated").exists()
    assert sweep_uploads(tmp_path / "missing") == []
