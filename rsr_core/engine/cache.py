"""On-disk cache of per-token results, one file per (student, settings, conversation).

The key covers everything the numbers depend on: the student's name and weight fingerprint, its chat template,
the dtype, max_len, the number of alternatives and the exact conversation text. So a changed setting never reuses
stale results; each trajectory is written as soon as it is scored, so an interrupted run resumes where it stopped;
every entry carries a checksum, so a corrupt or truncated file is detected, dropped and recomputed.

The cache only ever saves work: a cache folder that is full, read-only or unreadable is reported once (a warning
on this module's logger, and `ScoreCache.unwritable` / `unreadable`) and scoring goes on, the results in hand kept;
a cache that cannot be written is still read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from rsr_core.data.token_scores import TokenScores

log = logging.getLogger(__name__)
FORMAT_VERSION = 3  # 2: verbatim traces spliced into the template, boundary tokens scored; 3: Brier terms kept
NOTE_FLAGS = ("rewritten", "canonical_tools")  # kept with an entry, so a run served from the cache says its notes
ARRAYS = ("token_ids", "offsets", "turn", "surprisal", "rank", "entropy", "top_ids", "top_probs", "brier",
          "lark_brier")


def entry_key(student_name: str, fingerprint: str, chat_template: str | None, dtype: str, max_len: int,
              top_k: int, conversation: object) -> str:
    """Hex key of one conversation (`Trajectory.identity`: its messages, and tools where offered) under one student
    and set of settings."""
    blob = json.dumps([FORMAT_VERSION, student_name, fingerprint, chat_template or "", dtype, max_len, top_k,
                       conversation], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _checksum(arrays: dict[str, np.ndarray], text: str) -> str:
    h = hashlib.sha256(text.encode("utf-8"))
    for name in ARRAYS:
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


class ScoreCache:
    """Per-token results on disk under `root/scores/`, addressed by `entry_key`."""

    def __init__(self, root: str | Path):
        self.base = Path(root)
        self.root = self.base / "scores"
        self.dropped = 0  # corrupt entries found and removed
        self.unwritable: str | None = None  # why writing stopped (full, read-only, ...); None while it works
        self.unreadable: str | None = None  # why reading stopped; None while it works

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> TokenScores | None:
        """The stored result, or None when absent, corrupt (a corrupt file is removed) or unreadable."""
        if self.unreadable:
            return None
        path = self.path(key)
        try:
            if not path.exists():
                return None
        except OSError as e:  # a folder we may not enter
            self.unreadable = e.strerror or str(e)
            log.warning("cache at %s is not readable (%s); going on without it", self.base, self.unreadable)
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in ARRAYS}
                text = str(z["text"])
                checksum = str(z["checksum"])
            if _checksum(arrays, text) != checksum:
                raise ValueError("checksum mismatch")
            info = json.loads(text)
            return TokenScores(tokens=info["tokens"], top_tokens=info["top_tokens"], truncated=info["truncated"],
                               n_context=info["n_context"], extra=info.get("notes", {}), **arrays)
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("cache entry %s is corrupt (%s); recomputing it", path, e)
            self.dropped += 1
            try:
                path.unlink(missing_ok=True)
            except OSError:  # a read-only cache: the entry stays, and is recomputed each time
                pass
            return None

    def put(self, key: str, scores: TokenScores) -> bool:
        """Store atomically: a crash mid-write leaves no partial entry behind. False when the entry could not be
        written: the first failure (no space, read-only, ...) is logged once and the cache is not written again."""
        if self.unwritable:
            return False
        path = self.path(key)
        if any(getattr(scores, name) is None for name in ARRAYS):
            return False  # results without the Brier terms (an import) are not what this version of the cache holds
        arrays = {name: getattr(scores, name) for name in ARRAYS}
        text = json.dumps({"tokens": scores.tokens, "top_tokens": scores.top_tokens,
                           "truncated": bool(scores.truncated), "n_context": int(scores.n_context),
                           "notes": {k: v for k, v in scores.extra.items() if k in NOTE_FLAGS}},
                          ensure_ascii=False)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, text=np.array(text), checksum=np.array(_checksum(arrays, text)), **arrays)
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            self.unwritable = _reason(e)
            log.warning("cache at %s is not writable (%s); scoring goes on, new results are not cached", self.base,
                        self.unwritable)
            return False
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return True


def _reason(error: OSError) -> str:
    """'No space left on device', 'Read-only file system', ... of an OSError."""
    return error.strerror or str(error) or type(error).__name__
