"""Ragged arrays: the elements of N rows stored flat with [N + 1] offsets (the rank aggregates' bins and singles,
the part aggregates' triples), concatenated and gathered without a Python object per row."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def lengths_to_offsets(lengths: np.ndarray) -> np.ndarray:
    """[N] lengths -> [N + 1] int64 offsets."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def concat_offsets(offsets: Sequence[np.ndarray]) -> np.ndarray:
    """The offsets of several ragged arrays laid one after the other (each may start past 0, e.g. a slice)."""
    shifted, base = [np.zeros(1, np.int64)], 0
    for a in offsets:
        shifted.append(a[1:] - a[0] + base)
        base = int(shifted[-1][-1]) if a.size > 1 else base
    return np.concatenate(shifted)


def gather(offsets: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new [K + 1] offsets, [E] element positions) of rows `index` ([K], in that order) of a ragged array."""
    index = np.asarray(index, dtype=np.int64)
    starts, lengths = offsets[index], offsets[index + 1] - offsets[index]
    new_offsets = lengths_to_offsets(lengths)
    seg = np.repeat(np.arange(index.size, dtype=np.int64), lengths)
    return new_offsets, starts[seg] + (np.arange(seg.size, dtype=np.int64) - new_offsets[seg])
