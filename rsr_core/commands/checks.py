"""Argument and path checks shared by the commands: they run while parsing or right after it, before any input is
read, any model loaded or anything scored, so that a bad argument costs a message and exit code 2, never minutes of
work and a traceback. Also the wording of write faults (a full disk, a read-only folder) for every command.

No torch here: the checks that need it import it only when asked (a CUDA or MPS device).
"""
from __future__ import annotations

import argparse
import errno
import os
import re
from pathlib import Path
from typing import Callable, Iterable

from rsr_core.data.paths import TABLE_SUFFIXES
from rsr_core.data.students import DTYPE_ALIASES

DTYPE_NAMES = ("auto", *DTYPE_ALIASES)
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class UsageError(Exception):
    """An argument or path that cannot work; `cli.main` prints it after the usage line and exits with 2."""


# ------------------------------------------------------------------------------------------ argparse types


def integer(minimum: int, why: str = "") -> Callable[[str], int]:
    """An argparse type: an integer >= minimum, else a message that says why the bound is there."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{f' ({why})' if why else ''}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def device_name(text: str) -> str:
    """An argparse type: auto, cpu, cuda, cuda:N or mps (whether it is there is checked by `check_device`)."""
    if not _DEVICE.match(text.strip()):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text.strip()


def dtype_name(text: str) -> str:
    """An argparse type: one of DTYPE_NAMES."""
    if text not in DTYPE_NAMES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(DTYPE_NAMES)}, got {text!r}")
    return text


def check_device(device: str) -> None:
    """UsageError when a cuda or mps device is asked for and this machine has none (or not that one)."""
    if not device.startswith(("cuda", "mps")):
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)")
            raise UsageError(f"--device {device}: CUDA is not available on this machine ({why}); use --device cpu "
                             "or --device auto")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    else:
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"--device {device}: MPS (Apple GPU) is not available on this machine; use --device "
                             "cpu or --device auto")


# ------------------------------------------------------------------------------------------------- paths


def _existing_ancestor(path: Path) -> Path:
    """`path` itself or its nearest ancestor that exists (what a mkdir -p would create under)."""
    p = path
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    return p


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (created with its parents where missing), or None."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    if _read_only_fs(base):
        return f"{base} is on a read-only file system"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"the folder {base} is not writable (permission denied)"
    return None


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_an_input(option: str, out: str | Path, inputs: Iterable[str | Path]) -> None:
    """UsageError when an output path is one of the inputs, lies inside an input folder, or holds an input."""
    target = _resolved(out)
    for given in inputs:
        source = _resolved(given)
        if target == source:
            raise UsageError(f"{option} {out} is also an input: writing it would replace the data being read; "
                             "choose another output path")
        if source.is_dir() and _inside(target, source):
            raise UsageError(f"{option} {out} lies inside the input folder {given}: it would be read as input "
                             "next time; choose an output path outside it")
        if _inside(source, target):
            raise UsageError(f"{option} {out} contains the input {given}; choose another output path")


def check_table_output(option: str, path: str | Path, suffixes: Iterable[str] = TABLE_SUFFIXES) -> None:
    """UsageError unless `path` can become a table file: a known suffix, not a folder, in a writable folder."""
    path = Path(path).expanduser()
    suffixes = tuple(suffixes)
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: a table file must end in {', '.join(suffixes)}, not "
                         f"{path.suffix or 'nothing'!r}")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder, not a table file")
    problem = folder_problem(path.parent)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}")


def is_store_target(path: str | Path) -> bool:
    """`score --out` names a results store (a folder) unless it has a table suffix."""
    path = Path(path).expanduser()
    return path.is_dir() or path.suffix.lower() not in TABLE_SUFFIXES


def check_store_output(option: str, path: str | Path) -> None:
    """UsageError unless `path` is, or can become, a results store: an existing store or an empty folder, or a
    new folder without a suffix in a writable place."""
    from rsr_core.data.store_files import FORMAT, StoreError, read_json

    path = Path(path).expanduser()
    if path.is_dir():
        marker = path / "store.json"
        if marker.exists():
            try:
                read_json(marker, FORMAT)
            except (StoreError, OSError, UnicodeDecodeError) as e:
                raise UsageError(f"{option} {path}: {e}") from None
        elif any(not p.name.startswith(".") for p in path.iterdir()):
            raise UsageError(f"{option} {path} is a folder that is neither an RSR Explorer results store (no "
                             "store.json) nor empty; give a table file (.parquet, .csv, .jsonl), a new folder "
                             "or an existing store")
        problem = folder_problem(path)
    elif os.path.lexists(path):
        raise UsageError(f"{option} {path} is a file: a results store is a folder, and a table file must end in "
                         f"{', '.join(TABLE_SUFFIXES)}")
    elif path.suffix:
        raise UsageError(f"{option} {path}: a table file must end in {', '.join(TABLE_SUFFIXES)}, and a results "
                         f"store is a folder without a suffix (not {path.suffix!r})")
    else:
        problem = folder_problem(path.parent)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}")


def check_cache_dir(path: str | Path, given: bool = True) -> str | None:
    """The score cache folder. UsageError when it was `given` (--cache-dir) and cannot be a folder at all (it, or a
    folder above it, is a file); else why new entries cannot be written there (read-only, permission denied), or
    None. A cache that cannot be written is still read: the entries it holds save their forward passes."""
    path = Path(path).expanduser()
    problem = folder_problem(path)
    if problem and given and not _existing_ancestor(path).is_dir():
        raise UsageError(f"--cache-dir {path} cannot be used: {problem}; give another --cache-dir or --no-cache")
    return problem


# ------------------------------------------------------------------------------------------- write faults


_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EFBIG: "file too large", errno.EIO: "input/output error"}
_TEXTS = {"no space left on device": errno.ENOSPC, "read-only file system": errno.EROFS,
          "permission denied": errno.EACCES, "disk quota exceeded": errno.EDQUOT}


def fault_errno(error: BaseException) -> int | None:
    """The errno of an OSError (pyarrow's carry it in their text at times)."""
    code = getattr(error, "errno", None)
    if code:
        return code
    text = str(error).lower()
    return next((c for t, c in _TEXTS.items() if t in text), None)


def fault_reason(error: BaseException) -> str:
    """'no space left on device', 'read-only file system', ... for an OSError raised while writing."""
    code = fault_errno(error)
    if code in _REASONS:
        return _REASONS[code]
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__).strip().rstrip(".")


def fault_advice(error: BaseException) -> str:
    """What to do about a write fault, as the start of a sentence."""
    code = fault_errno(error)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free space"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the folder writable (or choose another output)"
    return "fix the cause"
