"""Shared fixtures: the real embedded student (loaded once) and the shared real data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def student():
    from rsr_core.engine.student import load_student

    return load_student(dtype="float32")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (real teacher trajectories)")
    return SHARED_DATA


def eit_messages(shared: Path, n: int, file: str = "math_gemini_level6_ranked.json", field: str = "gemini_output"):
    """The first n real trajectories of one EIT teacher file as messages records."""
    rows = json.loads((shared / "eit_math" / file).read_text())[:n]
    return [{"id": f"{Path(file).stem}-{i}", "teacher": field.split("_")[0],
             "messages": [{"role": "user", "content": r["problem"]}, {"role": "assistant", "content": r[field]}]}
            for i, r in enumerate(rows)]


def default_sigint() -> None:
    """`preexec_fn` of a child that a test interrupts: SIGINT back to its default, so that Python in the child turns
    it into KeyboardInterrupt even when the test runner was started with SIGINT ignored (a shell starts background
    jobs that way, and children inherit it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def keep_app_navigation(monkeypatch) -> None:
    """Run app.py on every AppTest run, as the server does.

    The server runs a script beside a `pages/` folder in the legacy multipage mode only until `st.navigation` is
    called, which turns that mode off for the process. AppTest resets the flag before each run, so from the second
    run on it would execute the page file alone, without app.py and its sidebar. Keep the flag off, as after the
    server's first run.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def demo_flat_files(folder: Path, student: str = "smollm2-135m-instruct") -> tuple[Path, Path]:
    """The demo store's scores of one student as the flat files `score --out X.parquet --tokens-out Y.parquet`
    writes (trajectory table with conversations, token table)."""
    from rsr_core.data.demo import DEMO_STORE
    from rsr_core.data.exports import write_token_table, write_trajectory_table
    from rsr_core.data.store import ResultsStore

    store = ResultsStore(DEMO_STORE)
    folder.mkdir(parents=True, exist_ok=True)
    table, tokens = folder / f"{student}-trajectories.parquet", folder / f"{student}-tokens.parquet"
    write_trajectory_table(store, student, table)
    write_token_table(store, student, tokens, store.trajectory_table(student)["trajectory_id"].tolist())
    return table, tokens


@contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """A tmpfs mounted at `folder` for the block (`options` such as "size=160k" or "ro,size=64k"): a small disk
    that fills up, or a read-only one. Skips the test where that is not possible (not root, no mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs (a full or read-only disk) needs root and mount")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount(folder: Path, options: str) -> None:
    """Change a tmpfs mounted by `mounted_tmpfs` (a larger size, read-only)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True, capture_output=True)


def fill(folder: Path) -> None:
    """Fill the disk under `folder` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: closing has nothing left to flush
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
