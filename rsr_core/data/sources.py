"""Where the app's datasets come from besides the demo: an uploaded file, a path on the server, a Hugging Face
dataset. Pure helpers (no Streamlit): keep a session's uploads in a private folder removed with the session, list a
folder's data files within bounds, list a file's fields for the column pickers, check that the hub is reachable and
download a dataset's data files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from rsr_core.data.formats import SUFFIXES, input_files, raw_records
from rsr_core.data.paths import PathRefused, cache_root

HUB_ENDPOINT = "https://huggingface.co"
DATA_PATTERNS = ["*.jsonl", "*.json", "*.parquet", "*.csv", "**/*.jsonl", "**/*.json", "**/*.parquet", "**/*.csv"]
MAX_FOLDER_ENTRIES = 10_000  # files and folders a folder dataset may hold (the reader walks all of them)
MAX_FOLDER_DEPTH = 6  # levels of subfolders (teacher/run/... layouts need 1 or 2)
UPLOAD_MAX_AGE = 24 * 3600  # seconds; leftover session folders older than this are removed at server start
SESSION_PREFIX = "session-"


# --- uploads: one private folder per session ---------------------------------------------------------------------

def upload_root() -> Path:
    """The private root of the sessions' upload folders: `<cache root>/uploads`, mode 0o700."""
    return _private_dir(cache_root() / "uploads")


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class UploadFolder:
    """One session's private folder (mode 0o700) for its uploaded files, removed with the session.

    Keep the object in the session's state: when the session ends and the object is collected, a
    `weakref.finalize` removes the folder (also at interpreter exit; `sweep_uploads` removes what a killed server
    left behind). Only the latest upload is kept in it."""

    def __init__(self, root: str | Path | None = None):
        root = _private_dir(Path(root)) if root is not None else upload_root()
        self.path = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=root))  # mkdtemp: mode 0o700
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self.path.is_dir()

    def save(self, name: str, data: bytes) -> Path:
        """Write an upload here (`save_upload`), drop the session's earlier uploads, and mark the folder used (the
        start-up sweep spares folders used within a day)."""
        path = save_upload(name, data, self.path)
        for other in self.path.iterdir():
            if other != path:
                other.unlink(missing_ok=True)
        os.utime(self.path)
        return path

    def remove(self) -> None:
        """Remove the folder now (what happens when the session ends)."""
        self._finalizer()


def save_upload(name: str, data: bytes, folder: str | Path) -> Path:
    """Write uploaded bytes into `folder` (mode 0o600), keeping the original suffix (the reader picks the format by
    it). The file name includes a digest of the content, so re-running the app does not write the same upload twice.
    """
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{name}: unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)")
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = folder / f"{Path(Path(name).name).stem}-{digest}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(suffix + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.replace(path)
    return path


def sweep_uploads(root: str | Path | None = None, max_age: float = UPLOAD_MAX_AGE,
                  now: float | None = None) -> list[Path]:
    """Remove session upload folders not used for `max_age` seconds (left by a server that was killed); returns
    what was removed."""
    root = Path(root) if root is not None else upload_root()
    now = time.time() if now is None else now
    removed = []
    for folder in root.glob(SESSION_PREFIX + "*") if root.is_dir() else ():
        try:
            if now - folder.stat().st_mtime > max_age:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:
            continue
    return removed


# --- folders and files on the server -------------------------------------------------------------------------------

class FolderTooLarge(ValueError):
    """A folder dataset with more entries or levels than the app walks."""


def list_data_files(folder: str | Path, roots: Iterable[Path] | None = None,
                    max_entries: int = MAX_FOLDER_ENTRIES, max_depth: int = MAX_FOLDER_DEPTH) -> list[Path]:
    """The data files (.jsonl, .json, .parquet, .csv) under `folder`, sorted, as the reader walks them (symbolic
    links to folders are not followed), within bounds: more than `max_entries` files and folders, or subfolders
    deeper than `max_depth`, raise FolderTooLarge before anything is read. With `roots`, a file that is a link
    out of them raises PathRefused."""
    folder = Path(folder)
    roots = [Path(r).resolve() for r in roots] if roots is not None else None
    found: list[Path] = []
    seen = 0
    stack = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (PermissionError, NotADirectoryError, FileNotFoundError):
            continue
        seen += len(entries)
        if seen > max_entries:
            raise FolderTooLarge(f"`{folder}` holds more than {max_entries:,} files and folders: open one of its "
                                 "subfolders, or a single file.")
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth + 1 > max_depth:
                        raise FolderTooLarge(f"`{folder}` has subfolders more than {max_depth} levels deep: open "
                                             "one of its subfolders, or a single file.")
                    stack.append((Path(entry.path), depth + 1))
                elif entry.is_file() and Path(entry.name).suffix.lower() in SUFFIXES:
                    found.append(Path(entry.path))
            except OSError:
                continue
    if roots is not None:
        outside = [f for f in found if not any(_inside(f.resolve(), r) for r in roots)]
        if outside:
            raise PathRefused(f"`{folder}` holds links to files outside the folders this server may read "
                              f"({', '.join(f'`{f.name}`' for f in outside[:5])}).")
    return sorted(found)


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def first_data_file(path: str | Path, files: list[Path] | None = None) -> Path | None:
    """The file itself, or the first file the reader reads under a folder (`formats.input_files`: a saved
    dataset's folder, a hub shard, ...; `files`: the folder's `list_data_files` when already known, checked
    first), or None. A folder too large to walk raises FolderTooLarge."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        files = list_data_files(path) if files is None else files
        if not files:
            return None
        found = input_files(path)
        return found[0].path if found else None
    return None


def record_fields(path: str | Path) -> list[str]:
    """Field names of the first record of a data file (or of the first file under a folder), for column pickers.

    Read as `read_trajectories` reads it (the first record that is an object; lines that are not text or not JSON
    are passed over). Returns [] when the file cannot be read; nested values are offered too, as-is.
    """
    try:
        f = first_data_file(path)
    except (FolderTooLarge, OSError):
        return []
    if f is None:
        return []
    try:
        if f.is_dir():  # a `datasets.save_to_disk` folder
            return next((list(rec) for _, rec, _ in raw_records(f) if isinstance(rec, dict)), [])
        if f.suffix.lower() == ".parquet":  # the schema alone, not the rows
            import pyarrow.parquet as pq

            return list(pq.read_schema(f).names)
        return next((list(rec) for _, rec, _ in raw_records(f) if isinstance(rec, dict)), [])
    except Exception:  # noqa: BLE001 - any unreadable file just offers no fields
        return []


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for offline mode (1, true, yes or on, any case), as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (False in offline mode, `hub_offline`)."""
    if hub_offline():
        return False
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def download_hub_dataset(repo_id: str, pattern: str | None = None, folder: str | Path | None = None) -> Path:
    """Download the data files of a Hugging Face dataset (only those matching `pattern`, e.g. `qwq-32b/*`, when
    given) and return the local folder, ready for `read_trajectories`. Raises RuntimeError with a readable reason.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - the venv has it
        raise RuntimeError("the package huggingface_hub is not installed") from e
    patterns = [pattern] if pattern else DATA_PATTERNS
    target = Path(folder or cache_root() / "datasets") / repo_id.replace("/", "--")
    try:
        local = snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns, local_dir=target)
    except Exception as e:  # noqa: BLE001 - hub errors have many types; the user needs the message
        raise RuntimeError(f"cannot download the dataset {repo_id!r}: {str(e).splitlines()[0]}") from e
    try:
        first = first_data_file(local)
    except FolderTooLarge as e:
        raise RuntimeError(f"the dataset {repo_id!r} is too large to open here: {e}") from e
    if first is None:
        raise RuntimeError(f"the dataset {repo_id!r} has no .jsonl/.json/.parquet/.csv files"
                           + (f" matching {pattern!r}" if pattern else ""))
    return Path(local)


def hub_model_cached(repo_id: str) -> bool:
    """Whether a hub model's config is in the local Hugging Face cache (so it can load without the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid id is simply not cached
        return False
