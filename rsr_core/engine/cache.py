"""On-disk cache of per-token results, one file per (student, settings, conversation).

The key covers everything the numbers depend on: the student's name and weight fingerprint, its chat template,
the dtype, max_len, the number of alternatives and the exact conversation text. So a changed setting never reuses
stale results; each trajectory is written as soon as it is scored, so an interrupted run resumes where it stopped;
every entry carries a checksum, so a corrupt or truncated file is detected, dropped and recomputed.
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
FORMAT_VERSION = 2  # 2: verbatim traces spliced into the template, boundary tokens scored
ARRAYS = ("token_ids", "offsets", "turn", "surprisal", "rank", "entropy", "top_ids", "top_probs")


def entry_key(student_name: str, fingerprint: str, chat_template: str | None, dtype: str, max_len: int,
              top_k: int, messages: list[dict]) -> str:
    """Hex key of one conversation under one student and set of settings."""
    blob = json.dumps([FORMAT_VERSION, student_name, fingerprint, chat_template or "", dtype, max_len, top_k,
                       messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _checksum(arrays: dict[str, np.ndarray], text: str) -> str:
    h = hashlib.sha256(text.encode("utf-8"))
    for name in ARRAYS:
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


class ScoreCache:
    """Per-token results on disk under `root/scores/`, addressed by `entry_key`."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "scores"
        self.dropped = 0  # corrupt entries found and removed

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> TokenScores | None:
        """The stored result, or None when absent or corrupt (a corrupt file is removed)."""
        path = self.path(key)
        if not path.exists():
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
                               n_context=info["n_context"], **arrays)
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("cache entry %s is corrupt (%s); recomputing it", path, e)
            self.dropped += 1
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, scores: TokenScores) -> None:
        """Store atomically: a crash mid-write leaves no partial entry behind."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(scores, name) for name in ARRAYS}
        text = json.dumps({"tokens": scores.tokens, "top_tokens": scores.top_tokens,
                           "truncated": bool(scores.truncated), "n_context": int(scores.n_context)},
                          ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, text=np.array(text), checksum=np.array(_checksum(arrays, text)), **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
