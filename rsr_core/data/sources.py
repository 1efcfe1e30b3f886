"""Where the app's datasets come from besides the demo: an uploaded file, a path on the server, a Hugging Face
dataset. Pure helpers (no Streamlit): save an upload, list a file's fields for the column pickers, check that the
hub is reachable and download a dataset's data files.
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from rsr_core.data.formats import SUFFIXES, raw_records
from rsr_core.data.paths import cache_root

HUB_ENDPOINT = "https://huggingface.co"
DATA_PATTERNS = ["*.jsonl", "*.json", "*.parquet", "*.csv", "**/*.jsonl", "**/*.json", "**/*.parquet", "**/*.csv"]


def save_upload(name: str, data: bytes, folder: str | Path | None = None) -> Path:
    """Write uploaded bytes to a temp file that keeps the original suffix (the reader picks the format by it).

    The file name includes a digest of the content, so re-running the app does not write the same upload twice.
    """
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{name}: unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)")
    folder = Path(folder or Path(tempfile.gettempdir()) / "rsr-explorer-uploads")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = folder / f"{Path(name).stem}-{digest}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def first_data_file(path: str | Path) -> Path | None:
    """The file itself, or the first data file under a folder (sorted), or None."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        return next((p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in SUFFIXES), None)
    return None


def record_fields(path: str | Path) -> list[str]:
    """Field names of the first record of a data file (or of the first file under a folder), for column pickers.

    Read as `read_trajectories` reads it (the first record that is an object; lines that are not text or not JSON
    are passed over). Returns [] when the file cannot be read; nested values are offered too, as-is.
    """
    f = first_data_file(path)
    if f is None:
        return []
    try:
        if f.suffix.lower() == ".parquet":  # the schema alone, not the rows
            import pyarrow.parquet as pq

            return list(pq.read_schema(f).names)
        return next((list(rec) for _, rec, _ in raw_records(f) if isinstance(rec, dict)), [])
    except Exception:  # noqa: BLE001 - any unreadable file just offers no fields
        return []


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (False in offline mode: HF_HUB_OFFLINE=1)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
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
    if first_data_file(local) is None:
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
