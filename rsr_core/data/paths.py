"""Where the project's own files and the user's caches live, which file suffixes name a table, and which server
paths the app may read.

The app's sidebar opens files, folders and results stores *on the server* by a path typed in the browser. Such a
path is confined to the data roots (`allowed_path`): `$RSR_DATA_ROOTS` (folders separated by `os.pathsep`), by
default the project's `data/` folder and the folder the server was started in, plus the folder of `$RSR_STORE`
when whoever started the server set one. Anything else, `/etc/passwd` or `../../` included, is refused before
it is read, after `~`, `..` and symbolic links are resolved. A local student typed in the app (a model folder or a
`.gguf` file) is confined the same way, to `$RSR_MODEL_ROOTS` or else the data roots (`model_roots`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
PAPER_METRICS = DATA_DIR / "paper_teacher_metrics.csv"  # the paper's published per-teacher numbers
ROOTS_ENV = "RSR_DATA_ROOTS"
STORE_ENV = "RSR_STORE"
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")  # what `tables.TableFileWriter` writes


def cache_root() -> Path:
    """Where converted models, scores and downloads live: `$RSR_CACHE_DIR` or `~/.cache/rsr-explorer`."""
    return Path(os.environ.get("RSR_CACHE_DIR") or Path.home() / ".cache" / "rsr-explorer")


class PathRefused(ValueError):
    """A server path outside the data roots; the message names the roots and how to add one."""


def data_roots(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> list[Path]:
    """The folders whose contents the app may read by a typed path, resolved, without duplicates.

    `RSR_DATA_ROOTS` (os.pathsep-separated) replaces the default (the project's `data/` and the server's working
    folder); the store named by `RSR_STORE` is always added, since whoever started the server chose it."""
    env = os.environ if environ is None else environ
    base = Path(cwd if cwd is not None else os.getcwd())
    configured = [p for p in env.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = [Path(p.strip()).expanduser() for p in configured] if configured else [DATA_DIR, base]
    store = env.get(STORE_ENV, "").strip()
    if store:
        roots.append(Path(store).expanduser())
    out: list[Path] = []
    for root in roots:
        resolved = (base / root).resolve()
        if resolved not in out:
            out.append(resolved)
    return out


MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_NAME_CHARS = 255  # NAME_MAX: one folder or file name


def allowed_path(text: str | Path, roots: Iterable[Path], cwd: str | Path | None = None) -> Path:
    """The resolved path of `text` (`~` expanded, relative to `cwd`, `..` and symbolic links resolved) when it
    lies in one of `roots`; raises PathRefused otherwise (also for a path no file system takes: a NUL character,
    a name or path too long). Pure apart from resolving links on disk."""
    roots = [Path(r).resolve() for r in roots]
    text = str(text).strip()
    problem = path_text_problem(text)
    if problem:
        raise PathRefused(f"this path cannot be opened: {problem}")
    raw = Path(text).expanduser()
    try:
        path = (Path(cwd if cwd is not None else os.getcwd()) / raw).resolve()
    except (OSError, ValueError, RuntimeError) as e:  # a loop of links, a name the file system refuses
        raise PathRefused(f"`{raw}` cannot be resolved: {getattr(e, 'strerror', None) or e}") from None
    if any(path == root or path.is_relative_to(root) for root in roots):
        return path
    raise PathRefused(refusal(raw, roots))


def path_text_problem(text: str) -> str | None:
    """Why a typed path is not one any file system takes (a NUL character, too long), or None."""
    if "\x00" in text:
        return "it holds a NUL character"
    if len(text) > MAX_PATH_CHARS:
        return f"it is {len(text):,} characters long (at most {MAX_PATH_CHARS:,})"
    if any(len(part) > MAX_NAME_CHARS for part in text.split("/")):
        return f"one of its names is longer than {MAX_NAME_CHARS} characters"
    return None


MODEL_ROOTS_ENV = "RSR_MODEL_ROOTS"


def model_roots(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> list[Path]:
    """The folders a student typed in the app may be loaded from when it is a local model folder or .gguf file:
    `RSR_MODEL_ROOTS` (os.pathsep-separated), else the data roots; the user cache (where the embedded students'
    converted copies live) always."""
    env = os.environ if environ is None else environ
    configured = [p for p in env.get(MODEL_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    base = Path(cwd if cwd is not None else os.getcwd())
    roots = ([(base / Path(p.strip()).expanduser()).resolve() for p in configured] if configured
             else data_roots(env, cwd))
    cache = cache_root().expanduser().resolve()
    return roots + ([cache] if cache not in roots else [])


def refusal(path: str | Path, roots: Iterable[Path]) -> str:
    """Why a path is refused and how to open it on purpose."""
    listed = ", ".join(f"`{r}`" for r in roots) or "(none)"
    return (f"`{path}` is outside the folders this server may read: {listed}. To open it, restart the server "
            f"with the folder added, e.g. `{ROOTS_ENV}={_example(roots)} streamlit run app.py` (folders separated "
            f"by `{os.pathsep}`), or start it from that folder.")


def _example(roots: Iterable[Path]) -> str:
    return os.pathsep.join([str(r) for r in roots][:2] + ["/path/to/your/data"])
