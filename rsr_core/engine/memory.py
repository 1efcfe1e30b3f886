"""Keep the resident memory of a long CPU forward pass close to what it really uses (glibc only).

glibc's malloc raises its mmap threshold as large blocks are freed, up to 32 MB. The many 1-32 MB activations of a
16k-token forward pass then come from the heap, which fragments: the peak resident memory of the same pass varied
from 1.4 GB to over 7 GB between runs. Pinning the threshold at 1 MB for a long pass returns such blocks to the
system as soon as they are freed (peak 1.4-1.5 GB every run, same speed); afterwards it is set to 32 MB, where short
passes take their blocks from the heap without page faults. Elsewhere (macOS, musl, Windows) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from contextlib import contextmanager
from typing import Iterator

M_MMAP_THRESHOLD = -3
LONG_PASS_THRESHOLD = 1 << 20
SHORT_PASS_THRESHOLD = 32 << 20


def _mallopt():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt if hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


_MALLOPT = _mallopt()


@contextmanager
def returned_promptly(active: bool = True) -> Iterator[None]:
    """Within the block, freed blocks of 1 MB and more go straight back to the system."""
    if not (active and _MALLOPT):
        yield
        return
    _MALLOPT(M_MMAP_THRESHOLD, LONG_PASS_THRESHOLD)
    try:
        yield
    finally:
        _MALLOPT(M_MMAP_THRESHOLD, SHORT_PASS_THRESHOLD)
