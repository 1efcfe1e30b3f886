"""The sidebar every page shares: the dataset, the student, r_max and the zone thresholds, and Score / Stop with
live progress. Everything it decides goes to the session through `rsr_core.ui.state`.

Results live in results stores (`rsr_core.data.store`), read through `rsr_core.ui.results` once per process:
the bundled demo's store, a store opened from a folder on the server (or `RSR_STORE` at start-up), or for an
uploaded or server-side file a store of its own in the cache that Score fills. The model is loaded once per
process (`st.cache_resource`) and only to score: results already in a store need none; the engine (torch,
transformers) is imported only then, so a page that shows results never pays for it. Scoring runs in a background
thread (`ScoringJob`) that commits batch by batch, so pages show partial results while it runs and Stop takes
effect after the forward pass in flight.

Paths typed in the sidebar (a file or folder, a results store) are confined to the data roots
(`rsr_core.data.paths.allowed_path`); a folder is walked within bounds and its listing cached; uploads go to the
session's private folder (`rsr_core.data.sources.UploadFolder`), removed with the session.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from rsr_core.analysis.metrics import R_MAX
from rsr_core.analysis.zones import RANK_THRESHOLD, SURPRISAL_THRESHOLD
from rsr_core.data import demo
from rsr_core.data.formats import read_inputs
from rsr_core.data.paths import STORE_ENV, PathRefused, allowed_path, cache_root, data_roots, model_roots
from rsr_core.data.sources import (FolderTooLarge, download_hub_dataset, first_data_file, hub_model_cached,
                                   hub_reachable, list_data_files, record_fields, sweep_uploads, upload_root)
from rsr_core.data.store import ResultsStore, StoreError, writer_problem
from rsr_core.data.students import (EMBEDDED, EMBEDDED_STUDENTS, allowed_student, is_hub_id, is_local_spec,
                                    student_name)
from rsr_core.ui import results, state
from rsr_core.ui.markdown import md_code, md_message, md_text
from rsr_core.ui.metric_labels import count
from rsr_core.ui.demo import demo_trajectories

if TYPE_CHECKING:  # the engine imports torch: only when Score is pressed
    from rsr_core.engine.job import ScoringJob
    from rsr_core.engine.student import Student

OTHER_STUDENT = "other"
DATASET_KINDS = {"demo": "bundled demo", "store": "results store on the server", "upload": "upload a file",
                 "path": "file or folder on the server", "hub": "Hugging Face dataset"}
AUTO = "(auto-detect)"
MAX_ERRORS_SHOWN = 200
REFRESH_SECONDS = 3.0  # while scoring, the page is redrawn with partial results at most this often
CAPTION_BUSY_S, CAPTION_IDLE_S = 2.0, 10.0  # "N of M have scores" is read again this often (a run on it / none)
LISTING_TTL = 60  # seconds a folder's listing and a file's fields are reused (also renewed when the folder changes)

# widget keys (the sidebar is drawn on every run, so their values persist across pages)
W_STUDENT = "sidebar_student"
W_STUDENT_SPEC = "sidebar_student_spec"
W_KIND = "sidebar_dataset_kind"
W_STORE = "sidebar_store_path"
W_RMAX = "sidebar_r_max"
W_S0 = "sidebar_zone_s0"
W_K = "sidebar_zone_k"
W_LIMIT = "sidebar_score_limit"
# the sidebar's own bookkeeping in the session
SEEN_GENERATION = "_sidebar_seen_generation"
SEEN_AT = "_sidebar_seen_at"
FINAL_RERUN = "_sidebar_final_rerun"
HUB_FOLDERS = "_sidebar_hub_folders"


# --- shared resources ------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False, max_entries=4)
def get_student(spec: str) -> Student:
    """The student, loaded once per process and shared by every session (read-only)."""
    from rsr_core.engine.student import load_student

    return load_student(spec)


@st.cache_resource(show_spinner=False)
def _swept(root: str) -> int:
    """Once per server process and upload root: remove session upload folders a killed server left behind."""
    return len(sweep_uploads(root))


@st.cache_data(ttl=LISTING_TTL, max_entries=64, show_spinner="Listing the folder…")
def _folder_files(folder: str, stamp: int, roots: tuple[str, ...]) -> list[str]:
    """A folder's data files (bounded walk), cached per folder and modification time, so reruns do not walk it."""
    return [str(f) for f in list_data_files(folder, [Path(r) for r in roots])]


@st.cache_data(ttl=LISTING_TTL, max_entries=64, show_spinner=False)
def _fields(file: str, stamp: int, size: int) -> list[str]:
    """The first record's fields of a data file, cached per file version (a .json file is parsed whole)."""
    return record_fields(file)


@st.cache_resource(show_spinner=False)
def scoring_lock() -> threading.Lock:
    """One forward pass at a time per process: the shared model is used by every session."""
    return threading.Lock()


@st.cache_data(ttl=60, show_spinner=False)
def _hub_is_reachable() -> bool:
    return hub_reachable()


def installed_embedded_students() -> list[str]:
    """Embedded students whose package is installed (the default one is always offered)."""
    return [n for n, (pkg, _) in EMBEDDED_STUDENTS.items()
            if n == EMBEDDED or importlib.util.find_spec(pkg) is not None]


def own_store(key: str) -> str:
    """Where the results of a dataset that is not a store itself go: a store of its own in the user cache."""
    return str(cache_root() / "stores" / hashlib.sha256(key.encode()).hexdigest()[:16])


def _demo_key() -> str:
    return "demo:" + hashlib.sha256(demo.CANDIDATES.read_bytes()).hexdigest()[:16]


# --- the sidebar -----------------------------------------------------------------------------------------------

def render_sidebar() -> None:
    """Draw the sidebar and bring the session state in line with it (call once per run, before the page)."""
    state.setdefault(state.RMAX, R_MAX)
    _swept(str(upload_root()))
    with st.sidebar:
        student_box = st.container()
        dataset = _dataset_picker()
        with student_box:
            spec, name = _student_picker()
        state.set_student(name)
        _settings()
        _score_controls(spec, name, dataset)
        _dataset_messages(dataset)


def default_student(scored: list[str]) -> str:
    """The student a dataset opens with: the embedded one when it has results there (or nothing has), else the
    first student with results."""
    return EMBEDDED if EMBEDDED in scored or not scored else scored[0]


def _student_picker() -> tuple[str | None, str | None]:
    """(spec to load the student by, name its results are filed under)."""
    scored = state.students()
    options = scored + [n for n in installed_embedded_students() if n not in scored] + [OTHER_STUDENT]
    if state.get(W_STUDENT) not in options:
        state.put(W_STUDENT, default_student(scored))
    choice = st.selectbox(
        "Student", options, key=W_STUDENT,
        format_func=lambda o: ("other: Hugging Face id, folder or .gguf" if o == OTHER_STUDENT
                               else f"{o} · scored" if o in scored else o),
        help="The model whose ranks and surprisals RSR is computed from; 'scored' students have results on this "
             "dataset and need no model to show them. The embedded SmolLM2-135M-Instruct runs on a laptop CPU.")
    if choice != OTHER_STUDENT:
        return (scored_spec(choice) if choice in scored else choice), choice
    spec = st.text_input("Model", key=state.keep(W_STUDENT_SPEC),
                         placeholder="Qwen/Qwen2.5-0.5B-Instruct or /models/x.gguf",
                         help="A Hugging Face model id, or a local model folder or .gguf file in the server's "
                              "model folders (RSR_MODEL_ROOTS; by default its data folders).").strip()
    state.remember(W_STUDENT_SPEC)
    if not spec:
        return None, None
    try:
        return allowed_student(spec, model_roots()), student_name(spec)
    except PathRefused as e:
        st.error(md_message(e))
        return None, None


def scored_spec(name: str) -> str | None:
    """What a student with results is loaded from to score more: where its results say it was loaded from (a
    model folder, a .gguf file, a hub id), else its name. None, with a caption, when that is a local model this
    server cannot load (gone, or outside its model folders)."""
    path = state.student_store(name)
    try:
        source = results.store(path).settings(name).source if path else ""
    except (StoreError, KeyError, OSError):
        return name
    if not source or not is_local_spec(source):
        return source or name
    try:
        allowed = allowed_student(source, model_roots())
    except PathRefused:
        allowed = None
    if allowed is None or not Path(allowed).exists():
        st.caption(f"{md_text(name)} was scored from a local model ({md_code(source)}) that this server cannot load "
                   "now; to score more, choose *other* and give its folder or .gguf file.")
        return None
    return allowed


def _dataset_picker() -> state.Dataset | None:
    env_store = os.environ.get(STORE_ENV, "").strip()
    state.setdefault(W_KIND, "store" if env_store else "demo")
    kind = st.radio("Dataset", list(DATASET_KINDS), format_func=DATASET_KINDS.get, key=W_KIND)
    if kind == "demo":
        key = _demo_key()
        if _dataset_changed(key):
            trajectories, errors = demo_trajectories()
            mine = own_store(key)
            state.set_dataset(state.Dataset(key, "bundled demo pool", (mine, str(demo.DEMO_STORE)), mine,
                                            trajectories, errors, is_demo=True))
        return state.current_dataset()
    if kind == "store":
        return _store_dataset(env_store)
    source = _source_path(kind)
    if source is None:
        if _dataset_changed(f"{kind}:none"):
            state.set_dataset(state.Dataset(f"{kind}:none", "no data yet"))
        return state.current_dataset()
    path, label = source.path, source.label
    fields = _field_pickers(path, source.first)
    stamp = path.stat().st_mtime_ns if path.exists() else 0
    key = f"{kind}:{path}:{stamp}:" + ":".join(str(v) for v in fields.values())
    if _dataset_changed(key):
        with st.spinner("Reading trajectories…"):
            try:  # references are kept; the Selection page checks the answers against them
                read = read_inputs([path], **fields, check_answers=False, roots=source.roots,
                                   listing=source.listing)
                trajectories, errors, notes = read.trajectories, read.errors, read.notes
            except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
                trajectories, errors, notes = [], [f"{path}: cannot read: {type(e).__name__}: {e}"], []
        mine = own_store(key)
        state.set_dataset(state.Dataset(key, label, (mine,), mine, trajectories, errors, notes=notes))
    return state.current_dataset()


def _store_dataset(env_store: str) -> state.Dataset | None:
    """A results store opened as the dataset: its students' results, its conversations to score."""
    if env_store:
        state.setdefault(state.KEPT + W_STORE, env_store)
    text = st.text_input("Results store folder", key=state.keep(W_STORE),
                         placeholder="/data/rsr-store (written by `python -m rsr_core score ... --out FOLDER`)",
                         help="A folder written by `score --out FOLDER` or `import-scores`.").strip()
    state.remember(W_STORE)
    if not text:
        if _dataset_changed("store:none"):
            state.set_dataset(state.Dataset("store:none", "no data yet"))
        return state.current_dataset()
    try:
        path = str(allowed_path(text, data_roots()))
    except PathRefused as e:
        st.error(md_message(e))
        if _dataset_changed("store:refused"):
            state.set_dataset(state.Dataset("store:refused", "no data yet"))
        return state.current_dataset()
    key = f"store:{path}"
    if _dataset_changed(key):
        try:
            ResultsStore(path)
        except (StoreError, OSError) as e:
            st.error(f"{md_text(path)}: {md_message(e)}")
            state.set_dataset(state.Dataset(f"{key}:bad", "no data yet"))
            return state.current_dataset()
        state.set_dataset(state.Dataset(key, path, (path,), path, from_store=True))
    return state.current_dataset()


def _dataset_changed(key: str) -> bool:
    current = state.current_dataset()
    return current is None or current.key != key


@dataclass(frozen=True)
class Source:
    """A file dataset's local file or folder, its label, its first data file, and what the reader must keep to:
    the folders it may read (`roots`, resolved again as each file opens) and, for a folder, the checked listing of
    its files (nothing added since is read)."""

    path: Path
    label: str
    first: Path | None
    roots: tuple[Path, ...] | None = None
    listing: tuple[str, ...] | None = None


def _source_path(kind: str) -> Source | None:
    """The source of a file dataset; None until one is given, or when it is refused (the reason is shown)."""
    if kind == "upload":
        up = st.file_uploader("Trajectories", type=["jsonl", "json", "parquet", "csv"], key="sidebar_upload",
                              help="messages, ShareGPT, Alpaca or plain prompt/response columns. The file is kept "
                                   "in a private folder of this session and removed when the session ends.")
        if up is None:
            return None
        try:
            path = state.upload_folder().save(up.name, up.getvalue())
        except (OSError, ValueError) as e:
            st.error(md_message(e))
            return None
        return Source(path, up.name, path)
    if kind == "path":
        text = st.text_input("File or folder on the server", key=state.keep("sidebar_path"),
                             placeholder="data/pool.jsonl or a folder with one subfolder per teacher",
                             help="Within the server's data folders (RSR_DATA_ROOTS; by default the project's "
                                  "data/ folder and the folder the server was started in).").strip()
        state.remember("sidebar_path")
        if not text:
            return None
        roots = tuple(data_roots())
        try:
            path = allowed_path(text, roots)
        except PathRefused as e:
            st.error(md_message(e))
            return None
        if not path.exists():
            st.error(f"{md_text(path)}: no such file or folder on the server")
            return None
        if path.is_file():
            return Source(path, str(path), path, roots)
        try:
            files = _folder_files(str(path), path.stat().st_mtime_ns, tuple(str(r) for r in roots))
        except (FolderTooLarge, PathRefused) as e:
            st.error(md_message(e))
            return None
        if not files:
            st.error(f"{md_text(path)}: no .jsonl, .json, .parquet or .csv files in this folder")
            return None
        return Source(path, str(path), first_data_file(path, [Path(f) for f in files]), roots, tuple(files))
    path, label = _hub_source()
    if path is None:
        return None
    try:
        files = _folder_files(str(path), path.stat().st_mtime_ns, (str(path),))
        return Source(path, label, first_data_file(path, [Path(f) for f in files]), (path,), tuple(files))
    except (FolderTooLarge, PathRefused, OSError) as e:
        st.error(md_message(e))
        return None


def _hub_source() -> tuple[Path | None, str | None]:
    repo = st.text_input("Dataset id", key=state.keep("sidebar_hub_repo"), placeholder="Umean/RSR_data").strip()
    pattern = st.text_input("Files to fetch (optional glob)", key=state.keep("sidebar_hub_pattern"),
                            placeholder="qwq-32b/*").strip() or None
    state.remember("sidebar_hub_repo", "sidebar_hub_pattern")
    if not repo:
        return None, None
    fetched = state.get(HUB_FOLDERS) or {}
    if (repo, pattern) in fetched:
        return fetched[(repo, pattern)], repo
    if not _hub_is_reachable():
        st.warning("The Hugging Face hub cannot be reached from this server (no network, or HF_HUB_OFFLINE is "
                   "set). Download the files elsewhere and open them as a file or folder on the server.")
        return None, None
    if st.button("Fetch", key="sidebar_hub_fetch"):
        with st.spinner(f"Downloading {md_text(repo)}…"):
            try:
                fetched[(repo, pattern)] = download_hub_dataset(repo, pattern)
            except RuntimeError as e:
                st.error(md_message(e))
                return None, None
        state.put(HUB_FOLDERS, fetched)
        return fetched[(repo, pattern)], repo
    return None, None


def _field_pickers(path: Path, first: Path | None) -> dict:
    """The reader's field options (`formats.read_inputs`): prompt, response and reasoning columns for data whose
    layout is not detected (auto-detection by default), and the correctness and reference-answer columns.

    Several response columns make one teacher each; a reasoning column is scored as the thinking before the
    answer (detected when exactly one column is named like one); a response column holding a list gives one
    trajectory per candidate."""
    current = state.current_dataset()
    failed = bool(current and current.key.split(":")[1:2] == [str(path)] and not current.trajectories
                  and any("cannot tell the schema" in str(e) for e in current.errors))
    try:
        info = first.stat() if first is not None else None
    except OSError:
        info = None
    fields = _fields(str(first), info.st_mtime_ns, info.st_size) if info is not None else []
    with st.expander("Columns", expanded=failed):
        if failed:
            st.caption("The format was not recognised: pick the prompt and the response columns.")
        prompt = st.selectbox("Prompt column", [AUTO] + fields, key="sidebar_prompt_field")
        responses = st.multiselect("Response column(s)", fields, key="sidebar_response_fields",
                                   placeholder=AUTO, help="Several columns: one teacher per column.")
        reasoning = st.selectbox("Reasoning column", [AUTO] + fields, key="sidebar_reasoning_field",
                                 help="The thinking before the answer, scored as <think>…</think> in front of it.")
        correct = st.selectbox("Correctness column", [AUTO] + fields, key="sidebar_correct_field",
                               help="One label per record, or a list aligned with a list of candidates "
                                    "(detected: correctness_math_verify, is_correct, correct).")
        reference = st.selectbox("Reference answer column", ["(none)"] + fields, key="sidebar_reference_field",
                                 help="Kept with each trajectory; the Selection page checks the answers against it "
                                      "with math-verify where the data has no label.")
    out = {"correct_field": None if correct == AUTO else correct,
           "reference_field": None if reference == "(none)" else reference}
    if prompt == AUTO or not responses:
        return {"prompt_field": None, "response_field": None, "reasoning_field": None, **out}
    return {"prompt_field": prompt, "response_field": list(responses),
            "reasoning_field": None if reasoning == AUTO else reasoning, **out}


def _settings() -> None:
    state.setdefault(W_RMAX, state.current_r_max())
    st.number_input("r_max (rank clipping)", min_value=1, max_value=1_000_000, step=10, key=W_RMAX,
                    help="Clipped rank = min(rank, r_max); the paper uses 100. Changing it recomputes every "
                         "number from the stored rank aggregates at once, without running the model.")
    state.set_r_max(int(state.get(W_RMAX)))
    state.setdefault(W_S0, float(state.get(state.ZONE_S0, SURPRISAL_THRESHOLD)))
    state.setdefault(W_K, int(state.get(state.ZONE_K, RANK_THRESHOLD)))
    with st.expander("Zone thresholds"):
        st.number_input("surprisal threshold (nats)", min_value=0.05, max_value=20.0, step=0.25, key=W_S0,
                        help="At or above it a token is informative (surprisal = −ln p).")
        st.number_input("rank threshold", min_value=1, max_value=100_000, step=1, key=W_K,
                        help="An informative token ranked at or above it (1 = top) is in the zone; below it, alien.")
    state.put(state.ZONE_S0, float(state.get(W_S0)))
    state.put(state.ZONE_K, int(state.get(W_K)))


# --- scoring ---------------------------------------------------------------------------------------------------

def _todo(dataset: state.Dataset | None, name: str | None) -> tuple[list[str], int]:
    """(ids without results under `name`, trajectories in the dataset)."""
    if dataset is None or not name:
        return [], 0
    if dataset.from_store:
        return results.unscored_ids(dataset.stores[0], state.student_store(name), name)
    done = state.scored_ids(name)
    ids = [t.trajectory_id for t in dataset.trajectories]
    return [tid for tid in ids if tid not in done], len(ids)


def _score_controls(spec: str | None, name: str | None, dataset: state.Dataset | None) -> None:
    job: ScoringJob | None = state.current_job()
    running = job is not None and job.running
    todo, total = _todo(dataset, name)
    if total and name:  # redrawn on its own, so that it follows a run another session started on this dataset
        busy = any(dataset is not None and str(j.store) == str(dataset.writable) for j in _running_jobs())
        st.fragment(run_every=CAPTION_BUSY_S if busy else CAPTION_IDLE_S)(_scores_caption)(dataset, name)
    limit = st.number_input("Score at most (0 = all)", min_value=0, value=0, step=10, key=W_LIMIT,
                            help="Trajectories to score in this run, in input order; cached ones cost nothing.")
    left, right = st.columns(2)
    start = left.button("Score", type="primary", key="sidebar_score",
                        disabled=running or not todo or not spec or dataset is None or not dataset.writable,
                        help="Score the trajectories that have no results yet under this student.")
    stop = right.button("Stop", key="sidebar_stop", disabled=not running,
                        help="Stop after the forward pass in flight; what is scored so far is kept.")
    if stop and job is not None:
        job.stop()
    if start and spec and dataset is not None and _start_job(spec, dataset, todo[:limit] if limit else todo):
        st.rerun()  # redraw the sidebar with Stop enabled and the progress ticking
    _job_status()


def _scores_caption(dataset: state.Dataset, name: str) -> None:
    """How many of the dataset's trajectories have scores under the student (read again at each call)."""
    todo, total = _todo(dataset, name)
    st.caption(f"{total - len(todo):,} of {count(total, 'trajectory', 'trajectories')} "
               f"{'has' if total == 1 else 'have'} scores under **{md_text(name)}**.")


@st.cache_resource(show_spinner=False)
def _jobs() -> list:
    """Every scoring run started in this server process, by any session (the finished ones are dropped)."""
    return []


def _running_jobs() -> list:
    jobs = _jobs()
    jobs[:] = [j for j in jobs if j.running]
    return list(jobs)


def _start_job(spec: str, dataset: state.Dataset, todo: list[str]) -> bool:
    problem = writer_problem(dataset.writable, student_name(spec)) if dataset.writable else None
    if problem:  # a damaged or locked store says so before the model is loaded
        st.error(md_message(problem))
        return False
    if is_hub_id(spec) and not _hub_is_reachable() and not hub_model_cached(spec):
        st.error(f"The Hugging Face hub cannot be reached from this server and {md_text(repr(spec))} is not in the "
                 "local Hugging Face cache. Download the model elsewhere and give its folder, or a .gguf file.")
        return False
    from rsr_core.engine.job import ScoringJob  # the engine (torch) is imported here, when Score is pressed
    from rsr_core.engine.student import StudentError

    try:
        with st.spinner(f"Loading {md_text(spec)}…"):
            student = get_student(spec)
    except StudentError as e:
        st.error(md_message(e))
        return False
    except Exception as e:  # noqa: BLE001 - any failure to load is the user's to read, not a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        st.error(f"cannot load the student {md_text(repr(spec))}: {type(e).__name__}: {md_message(first)}")
        return False
    if dataset.from_store:
        source, known = dataset.stores[0], state.students()
        job = ScoringJob([], student, scoring_lock(), dataset.writable,
                         load=lambda: results.store(source).trajectories(todo, known[0] if known else None))
        job.progress.total = len(todo)
    else:
        wanted = set(todo)
        job = ScoringJob([t for t in dataset.trajectories if t.trajectory_id in wanted], student, scoring_lock(),
                         dataset.writable)
    state.set_job(job.start())
    _jobs().append(job)
    state.put(FINAL_RERUN, False)
    return True


def _job_status() -> None:
    job: ScoringJob | None = state.current_job()
    if job is None:
        return
    st.fragment(run_every=1.0 if job.running else None)(_job_status_body)()


def _job_status_body() -> None:
    job: ScoringJob | None = state.current_job()
    if job is None:
        return
    p = job.progress
    text = p.describe()
    if job.running and job.stop_requested:
        text = "stopping after the forward pass in flight… " + text
    st.progress(p.fraction, text=text)  # the pass in flight counted too: the bar moves inside a long trajectory
    if job.finished:
        if job.failure:
            st.error(f"Scoring failed: {md_message(job.failure)}")
        elif job.stopped:
            st.info(f"Stopped: {p.done:,} of {count(p.total, 'trajectory', 'trajectories')} "
                    f"{'has' if p.total == 1 else 'have'} scores; Score resumes with the rest.")
        else:
            st.success(f"Scored {count(job.written, 'trajectory', 'trajectories')}.")
        for note in job.notes:
            st.info(md_message(note))
        if job.errors:
            st.warning(f"{count(len(job.errors), 'trajectory', 'trajectories')} could not be scored:\n\n"
                       + "\n".join(f"- {md_message(e)}" for e in job.errors[:20]))
    _refresh_pages(job)


def _refresh_pages(job: ScoringJob) -> None:
    """Redraw the whole page when new results landed (at most every REFRESH_SECONDS), and once at the end, so
    the pages show partial results and the Score button comes back."""
    name = state.current_student()
    try:
        gen = results.generation(str(job.store), name) if name and name == job.student.name else None
    except (StoreError, OSError, KeyError):
        gen = None
    if job.finished and not state.get(FINAL_RERUN):
        state.put(FINAL_RERUN, True)
        state.put(SEEN_GENERATION, gen)
        st.rerun()
    if gen is not None and gen != state.get(SEEN_GENERATION) and \
            time.monotonic() - (state.get(SEEN_AT) or 0.0) > REFRESH_SECONDS:
        state.put(SEEN_GENERATION, gen)
        state.put(SEEN_AT, time.monotonic())
        st.rerun()


def _dataset_messages(dataset: state.Dataset | None) -> None:
    """Unreadable records as a warning listing file, record and problem (the readable ones stay usable), and the
    reader's notes (ids qualified, candidates left in a list column)."""
    if dataset is None:
        return
    for problem in state.store_problems():
        st.error(md_message(problem))
    for note in dataset.notes:
        st.info(md_message(note))
    if dataset.errors:
        n_ok = len(dataset.trajectories)
        st.warning(f"{len(dataset.errors)} record(s) could not be read and are left out; "
                   f"{n_ok} readable trajectories are used.")
        with st.expander("Unreadable records"):
            shown = dataset.errors[:MAX_ERRORS_SHOWN]
            st.markdown("\n".join(f"- {md_code(e)}" for e in shown)
                        + (f"\n\n… and {len(dataset.errors) - len(shown)} more" if len(dataset.errors) > len(shown)
                           else ""))
    elif dataset.key.endswith(":none"):
        st.caption("Give a file to open.")
