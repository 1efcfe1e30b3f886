"""The output layer's reductions on a CPU in one compiled kernel (`cpu_head.c`), built on first use.

On a CPU the reductions of the logits (log-sum-exp, the strict-greater count, entropy, top-k, the Brier terms)
cost as much as the output layer's matmul when they run as a sequence of tensor operations, each a pass over
[C, V] with its own temporary. The kernel computes all of them per row, the row read from memory once and kept in
cache for its sweeps, rows in parallel. It is compiled with the system's C compiler (`$CC`, else `cc`) the first
time it is needed, for this machine (`-march=native`), into the user cache (`kernels/`, named by a digest of the
source, the flags, the compiler and the CPU), and loaded with ctypes; later processes load the built file. Without
a compiler, or when the build or a first self-check fails, `available()` is False (said once, as a warning) and
`scoring` reduces with torch as before: the numbers are the same either way (tested).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from rsr_core.data.paths import cache_root

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("cpu_head.c")
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC"]
LIBS = ["-lmvec", "-lm"]
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _cpu_key() -> str:
    """What the built code depends on in this machine: the CPU's model and features."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [line for line in info.splitlines() if line.startswith(("model name", "flags", "Features"))][:2]
    except OSError:
        lines = []
    return "\n".join(lines) or platform.processor()


def _kernel_folder() -> Path:
    """Where built kernels live: the cache folder's `kernels/`, else (a cache that cannot be written) a private
    folder of this user in the temporary folder. A folder someone else owns or may write is never used: a library
    loaded from it would run their code."""
    for folder in (cache_root() / "kernels", Path(tempfile.gettempdir()) / f"rsr-explorer-kernels-{os.getuid()}"):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.stat()
        except OSError:
            continue
        if info.st_uid == os.getuid() and not info.st_mode & 0o022 and os.access(folder, os.W_OK):
            return folder
    raise RuntimeError("no private folder to build the CPU kernel in (the cache folder cannot be written)")


def _build() -> Path:
    """The shared library for this machine, compiled once into the user cache."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc) on this machine")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    digest = hashlib.sha256("\n".join([SOURCE.read_text(), *FLAGS, *LIBS, *version, _cpu_key()]).encode())
    target = _kernel_folder() / f"cpu_head-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".cpu_head-", suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp, *LIBS], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the C compiler failed: {done.stderr.strip()[-400:]}")
        os.replace(tmp, target)  # atomic: another process building the same file at once is harmless
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_build()))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.row_statistics.argtypes = [p, i64, i64, p, i64, i64, ctypes.c_int, p, p, p, p, p, p, p, p, p, p]
    lib.row_statistics.restype = None
    return lib


def available() -> bool:
    """Whether the compiled kernel runs here (built, loaded and checked against the eager reduction once per
    process; a failure is a warning and keeps the eager path)."""
    with _LOCK:
        if "ok" not in _STATE:
            try:
                _STATE["lib"] = _load()
                _STATE["ok"] = _self_check()
            except (OSError, RuntimeError) as e:
                log.warning("the compiled CPU reduction is unavailable (%s); reducing with torch", e)
                _STATE["ok"] = False
        return bool(_STATE["ok"])


def row_statistics(logits: torch.Tensor, targets: torch.Tensor, k: int,
                   lark: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-row statistics of fp32 logits [C, V] on the CPU for targets [C] (`scoring.token_statistics`' keys and
    units, with `brier` and `lark_brier`), and bad [C] bool: rows the eager path must redo (a NaN or +inf logit,
    fewer finite logits than kept)."""
    lib = _STATE["lib"]
    x = logits.detach().to(torch.float32).contiguous().numpy()
    c, v = x.shape
    t = np.ascontiguousarray(targets.cpu().numpy(), dtype=np.int64)
    threads = max(1, torch.get_num_threads())
    keep = max(k, min(lark, v))
    out = {"surprisal": np.empty(c, np.float32), "rank": np.empty(c, np.int64), "entropy": np.empty(c, np.float32),
           "top_ids": np.empty((c, k), np.int64), "top_probs": np.empty((c, k), np.float32),
           "brier": np.empty(c, np.float32), "lark_brier": np.empty(c, np.float32)}
    bad = np.zeros(c, np.int32)
    scratch_v, scratch_i = np.empty(threads * keep, np.float32), np.empty(threads * keep, np.int64)
    if c:
        lib.row_statistics(x.ctypes.data, c, v, t.ctypes.data, k, min(lark, v), threads,
                           *(out[n].ctypes.data for n in ("surprisal", "rank", "entropy", "top_ids", "top_probs",
                                                          "brier", "lark_brier")),
                           bad.ctypes.data, scratch_v.ctypes.data, scratch_i.ctypes.data)
    return {n: torch.from_numpy(a) for n, a in out.items()}, torch.from_numpy(bad.astype(bool))


def _self_check() -> bool:
    """The kernel against the eager reduction on `scoring.self_check_logits` (ties and -inf entries)."""
    from rsr_core.engine.scoring import LARK_K, TOP_K, agrees, self_check_logits

    logits, targets = self_check_logits()
    got, bad = row_statistics(logits, targets, TOP_K, LARK_K)
    same = agrees(got, bad, logits, targets, rtol=1e-5, atol=1e-6)
    if not same:
        log.warning("the compiled CPU reduction disagrees with the eager one; reducing with torch")
    return same
