"""Where the project's own files and the user's caches live, and which file suffixes name a table."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")  # what `tables.TableFileWriter` writes


def cache_root() -> Path:
    """Where converted models, scores and downloads live: `$RSR_CACHE_DIR` or `~/.cache/rsr-explorer`."""
    return Path(os.environ.get("RSR_CACHE_DIR") or Path.home() / ".cache" / "rsr-explorer")
