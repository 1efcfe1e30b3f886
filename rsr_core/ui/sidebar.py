"""The sidebar every page shares: the student, the dataset, r_max and the zone thresholds, and Score / Stop with
live progress. Everything it decides goes to `st.session_state` through `rsr_core.ui.state`.

The model is loaded once per process (`st.cache_resource`) and shared by every session; it is never changed per
session, and forward passes run one at a time under a process-wide lock. Scoring runs in a background thread
(`ScoringJob`), so pages stay usable while it runs and Stop takes effect after the trajectory in flight.
"""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from rsr_core.data import demo
from rsr_core.data.formats import read_trajectories
from rsr_core.analysis.metrics import R_MAX
from rsr_core.data.sources import download_hub_dataset, hub_model_cached, hub_reachable, record_fields, save_upload
from rsr_core.data.students import EMBEDDED, EMBEDDED_STUDENTS, is_hub_id, student_name
from rsr_core.engine.student import Student, StudentError, load_student
from rsr_core.data.tables import trajectory_table
from rsr_core.ui import state
from rsr_core.ui.demo import demo_trajectories, load_demo_scores
from rsr_core.engine.job import ScoringJob
from rsr_core.analysis.zones import RANK_THRESHOLD, SURPRISAL_THRESHOLD

OTHER_STUDENT = "other"
DATASET_KINDS = {"demo": "bundled demo", "upload": "upload a file", "path": "file or folder on the server",
                 "hub": "Hugging Face dataset"}
AUTO = "(auto-detect)"
MAX_ERRORS_SHOWN = 200
REFRESH_SECONDS = 5.0  # while scoring, the page is redrawn with partial results at most this often

# widget keys (the sidebar is drawn on every run, so their values persist across pages)
W_STUDENT = "sidebar_student"
W_STUDENT_SPEC = "sidebar_student_spec"
W_KIND = "sidebar_dataset_kind"
W_RMAX = "sidebar_r_max"
W_S0 = "sidebar_zone_s0"
W_K = "sidebar_zone_k"
W_LIMIT = "sidebar_score_limit"


# --- shared resources ------------------------------------------------------------------------------------------

_LOADED_SPECS: set[str] = set()  # students loaded in this process: their cached results are looked up at once


@st.cache_resource(show_spinner=False, max_entries=4)
def get_student(spec: str) -> Student:
    """The student, loaded once per process and shared by every session (read-only)."""
    student = load_student(spec)
    _LOADED_SPECS.add(spec)
    return student


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


def _keep(key: str) -> str:
    """Restore a text input's value that Streamlit dropped while the input was hidden (e.g. another dataset kind
    was picked); returns the key, for `key=_keep(...)`. `_remember` stores the value after drawing."""
    ss = st.session_state
    if key not in ss and f"_kept_{key}" in ss:
        ss[key] = ss[f"_kept_{key}"]
    return key


def _remember(key: str, value: str) -> str:
    st.session_state[f"_kept_{key}"] = value
    return value


# --- the sidebar -----------------------------------------------------------------------------------------------

def render_sidebar() -> None:
    """Draw the sidebar and bring the session state in line with it (call once per run, before the page)."""
    ss = st.session_state
    ss.setdefault(state.RMAX, R_MAX)
    with st.sidebar:
        spec = _student_picker()
        dataset = _dataset_picker()
        name = student_name(spec) if spec else None
        if _sync_results(dataset, name) and spec in _LOADED_SPECS and dataset and dataset.trajectories:
            _start_job(spec, name, dataset, dataset.trajectories, cache_only=True)
        _settings()
        _score_controls(spec, name, dataset)
        _dataset_messages(dataset)


def _student_picker() -> str | None:
    options = installed_embedded_students() + [OTHER_STUDENT]
    choice = st.selectbox("Student", options, key=W_STUDENT,
                          format_func=lambda o: "other: Hugging Face id, folder or .gguf" if o == OTHER_STUDENT else o,
                          help="The model whose ranks and surprisals RSR is computed from. The embedded "
                               "SmolLM2-135M-Instruct runs on a laptop CPU.")
    if choice != OTHER_STUDENT:
        return choice
    spec = _remember(W_STUDENT_SPEC, st.text_input(
        "Model", key=_keep(W_STUDENT_SPEC), placeholder="Qwen/Qwen2.5-0.5B-Instruct or /models/x.gguf",
        help="A Hugging Face model id, a local model folder or a .gguf file.")).strip()
    return spec or None


def _dataset_picker() -> state.Dataset | None:
    kind = st.radio("Dataset", list(DATASET_KINDS), format_func=DATASET_KINDS.get, key=W_KIND)
    if kind == "demo":
        if _dataset_changed("demo"):
            trajectories, errors = demo_trajectories()
            state.set_dataset(state.Dataset("demo", "bundled demo pool", trajectories, errors, is_demo=True))
        return state.current_dataset()
    path, label = _source_path(kind)
    if path is None:
        if _dataset_changed(f"{kind}:none"):
            state.set_dataset(state.Dataset(f"{kind}:none", "no data yet"))
        return state.current_dataset()
    prompt_field, response_fields, reasoning_field = _field_pickers(path)
    key = f"{kind}:{path}:{prompt_field}:{response_fields}:{reasoning_field}"
    if _dataset_changed(key):
        with st.spinner("Reading trajectories…"):
            try:
                trajectories, errors = read_trajectories(path, prompt_field=prompt_field,
                                                         response_field=response_fields,
                                                         reasoning_field=reasoning_field)
            except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
                trajectories, errors = [], [f"{path}: cannot read: {type(e).__name__}: {e}"]
        state.set_dataset(state.Dataset(key, label, trajectories, errors))
    return state.current_dataset()


def _dataset_changed(key: str) -> bool:
    current = state.current_dataset()
    return current is None or current.key != key


def _source_path(kind: str) -> tuple[Path | None, str | None]:
    """The local file or folder of a non-demo dataset source, and a label; (None, None) until one is given."""
    if kind == "upload":
        up = st.file_uploader("Trajectories", type=["jsonl", "json", "parquet", "csv"], key="sidebar_upload",
                              help="messages, ShareGPT, Alpaca or plain prompt/response columns")
        if up is None:
            return None, None
        try:
            return save_upload(up.name, up.getvalue()), up.name
        except (OSError, ValueError) as e:
            st.error(str(e))
            return None, None
    if kind == "path":
        text = _remember("sidebar_path", st.text_input(
            "File or folder on the server", key=_keep("sidebar_path"),
            placeholder="/data/pool.jsonl or a folder with one subfolder per teacher")).strip()
        if not text:
            return None, None
        path = Path(text).expanduser()
        if not path.exists():
            st.error(f"{path}: no such file or folder on the server")
            return None, None
        return path, str(path)
    return _hub_source()


def _hub_source() -> tuple[Path | None, str | None]:
    repo = _remember("sidebar_hub_repo", st.text_input("Dataset id", key=_keep("sidebar_hub_repo"),
                                                       placeholder="Umean/RSR_data")).strip()
    pattern = _remember("sidebar_hub_pattern", st.text_input(
        "Files to fetch (optional glob)", key=_keep("sidebar_hub_pattern"), placeholder="qwq-32b/*")).strip() or None
    if not repo:
        return None, None
    fetched = st.session_state.setdefault("_hub_folders", {})
    if (repo, pattern) in fetched:
        return fetched[(repo, pattern)], repo
    if not _hub_is_reachable():
        st.warning("The Hugging Face hub cannot be reached from this server (no network, or HF_HUB_OFFLINE is "
                   "set). Download the files elsewhere and open them as a file or folder on the server.")
        return None, None
    if st.button("Fetch", key="sidebar_hub_fetch"):
        with st.spinner(f"Downloading {repo}…"):
            try:
                fetched[(repo, pattern)] = download_hub_dataset(repo, pattern)
            except RuntimeError as e:
                st.error(str(e))
                return None, None
        return fetched[(repo, pattern)], repo
    return None, None


def _field_pickers(path: Path) -> tuple[str | None, list[str] | None, str | None]:
    """Prompt, response and reasoning columns for data whose schema is not detected (auto-detection by default).

    Several response columns make one teacher each; a reasoning column is scored as the thinking before the
    answer (detected when exactly one column is named like one)."""
    current = state.current_dataset()
    failed = bool(current and current.key.split(":")[1:2] == [str(path)] and not current.trajectories
                  and any("cannot tell the schema" in str(e) for e in current.errors))
    fields = record_fields(path)
    with st.expander("Columns", expanded=failed):
        if failed:
            st.caption("The format was not recognised: pick the prompt and the response columns.")
        prompt = st.selectbox("Prompt column", [AUTO] + fields, key="sidebar_prompt_field")
        responses = st.multiselect("Response column(s)", fields, key="sidebar_response_fields",
                                   placeholder=AUTO, help="Several columns: one teacher per column.")
        reasoning = st.selectbox("Reasoning column", [AUTO] + fields, key="sidebar_reasoning_field",
                                 help="The thinking before the answer, scored as <think>…</think> in front of it.")
    if prompt == AUTO or not responses:
        return None, None, None
    return prompt, list(responses), None if reasoning == AUTO else reasoning


def _sync_results(dataset: state.Dataset | None, name: str | None) -> bool:
    """Make the active results those of (dataset, student): precomputed demo scores, or results of this session.

    Returns True when the (dataset, student) pair changed and nothing is known for it yet."""
    ss = st.session_state
    target = (dataset.key if dataset else None, name)
    if ss.get("_results_for") == target:
        return False
    previous = ss.get("_results_for")
    job = ss.get(state.JOB)
    if job is not None and job.running:
        job.stop()  # the data or the student changed under it
    if dataset is not None and dataset.is_demo and (previous is None or previous[0] != dataset.key):
        for student in demo.available_demo_students():
            try:
                state.set_other_student(student, *load_demo_scores(student))
            except (OSError, ValueError) as e:
                st.warning(f"Precomputed demo scores for {student} cannot be read: {e}")
    known = state.switch_student(name) if name is not None else True
    ss["_results_for"] = target
    return not known and not (dataset and dataset.is_demo and name in demo.available_demo_students())


def _settings() -> None:
    ss = st.session_state
    ss.setdefault(W_RMAX, state.current_r_max())
    st.number_input("r_max (rank clipping)", min_value=1, max_value=1_000_000, step=10, key=W_RMAX,
                    help="Clipped rank = min(rank, r_max); the paper uses 100. Changing it recomputes every "
                         "number from the stored ranks at once, without running the model.")
    state.set_r_max(int(ss[W_RMAX]))
    ss.setdefault(W_S0, float(ss.get(state.ZONE_S0, SURPRISAL_THRESHOLD)))
    ss.setdefault(W_K, int(ss.get(state.ZONE_K, RANK_THRESHOLD)))
    with st.expander("Zone thresholds"):
        st.number_input("surprisal threshold (nats)", min_value=0.05, max_value=20.0, step=0.25, key=W_S0,
                        help="At or above it a token is informative (surprisal = −ln p).")
        st.number_input("rank threshold", min_value=1, max_value=100_000, step=1, key=W_K,
                        help="An informative token ranked at or above it (1 = top) is in the zone; below it, alien.")
    ss[state.ZONE_S0], ss[state.ZONE_K] = float(ss[W_S0]), int(ss[W_K])


def _score_controls(spec: str | None, name: str | None, dataset: state.Dataset | None) -> None:
    ss = st.session_state
    job: ScoringJob | None = ss.get(state.JOB)
    running = job is not None and job.running
    scored = state.current_scores()
    todo = [t for t in dataset.trajectories if t.trajectory_id not in scored] if dataset else []
    if dataset is not None and dataset.trajectories and name:
        st.caption(f"{len(dataset.trajectories) - len(todo)} of {len(dataset.trajectories)} trajectories have "
                   f"scores under **{name}**.")
    limit = st.number_input("Score at most (0 = all)", min_value=0, value=0, step=10, key=W_LIMIT,
                            help="Trajectories to score in this run, in input order; cached ones cost nothing.")
    left, right = st.columns(2)
    start = left.button("Score", type="primary", key="sidebar_score", disabled=running or not todo or not spec,
                        help="Score the trajectories that have no results yet under this student.")
    stop = right.button("Stop", key="sidebar_stop", disabled=not running,
                        help="Stop after the trajectory in flight; what is scored so far is kept and cached.")
    if stop and job is not None:
        job.stop()
    if start and spec and dataset is not None and _start_job(spec, name, dataset, todo[:limit] if limit else todo):
        st.rerun()  # redraw the sidebar with Stop enabled and the progress ticking
    _job_status()


def _start_job(spec: str, name: str | None, dataset: state.Dataset, todo: list, cache_only: bool = False) -> bool:
    ss = st.session_state
    if is_hub_id(spec) and not _hub_is_reachable() and not hub_model_cached(spec):
        st.error(f"The Hugging Face hub cannot be reached from this server and {spec!r} is not in the local Hugging "
                 "Face cache. Download the model elsewhere and give its folder, or a .gguf file.")
        return False
    try:
        with st.spinner(f"Loading {spec}…"):
            student = get_student(spec)
    except StudentError as e:
        st.error(str(e))
        return False
    except Exception as e:  # noqa: BLE001 - any failure to load is the user's to read, not a traceback
        st.error(f"cannot load the student {spec!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return False
    job = ScoringJob(list(todo), student, scoring_lock(), cache_only=cache_only).start()
    ss[state.JOB] = job
    ss["_job_for"] = (dataset.key, name or student.name, student.name)
    ss["_job_applied"] = 0
    ss["_job_applied_at"] = time.monotonic()
    return True


def _job_status() -> None:
    job: ScoringJob | None = st.session_state.get(state.JOB)
    if job is None:
        return
    st.fragment(run_every=1.0 if job.running else None)(_job_status_body)()


def _job_status_body() -> None:
    ss = st.session_state
    job: ScoringJob | None = ss.get(state.JOB)
    if job is None:
        return
    p = job.progress
    if job.cache_only and job.finished:
        text = "cache checked"
    else:
        text = ("checking the cache… " if job.cache_only else "") + p.describe()
    if job.running and job.stop_requested:
        text = "stopping after the trajectory in flight… " + text
    st.progress(min(1.0, p.done / p.total) if p.total else 1.0, text=text)
    if job.revision > ss.get("_job_applied", 0) and (
            job.finished or time.monotonic() - ss.get("_job_applied_at", 0.0) > REFRESH_SECONDS):
        _apply_job(job)
        st.rerun()
    if job.finished:
        if job.failure:
            st.error(f"Scoring failed: {job.failure}")
        elif job.cache_only:
            st.caption(f"{len(job.scores)} of {p.total} trajectories were already in the cache.")
        elif job.stopped:
            st.info(f"Stopped: {len(job.scores)} of {p.total} trajectories scored; the rest resumes from the cache "
                    "with Score.")
        else:
            st.success(f"Scored {len(job.scores)} trajectories.")
        if job.errors:
            st.warning(f"{len(job.errors)} trajectories could not be scored:\n\n"
                       + "\n".join(f"- {e}" for e in job.errors[:20]))


def _apply_job(job: ScoringJob) -> None:
    """Merge the job's results so far into the session: the active student's table, or another student's."""
    ss = st.session_state
    revision, new_scores = job.snapshot()
    ss["_job_applied"], ss["_job_applied_at"] = revision, time.monotonic()
    dataset = state.current_dataset()
    dataset_key, filed_as, _ = ss.get("_job_for", (None, None, None))
    if dataset is None or dataset.key != dataset_key:
        return  # the dataset changed since the run started
    active = filed_as == state.current_student()
    if active:
        table, scores = state.current_table(), dict(state.current_scores())
    else:
        known = state.other_students().get(filed_as)
        table, scores = (known.table, dict(known.scores)) if known else (pd.DataFrame(), {})
    fresh = {tid: s for tid, s in new_scores.items() if tid not in scores}
    if not fresh:
        return
    added = trajectory_table([t for t in dataset.trajectories if t.trajectory_id in fresh], fresh, filed_as,
                             state.current_r_max())
    scores.update(fresh)
    order = {t.trajectory_id: i for i, t in enumerate(dataset.trajectories)}
    table = pd.concat([table, added], ignore_index=True) if not table.empty else added
    table = table.sort_values("trajectory_id", key=lambda c: c.map(order)).reset_index(drop=True)
    (state.set_results if active else state.set_other_student)(filed_as, table, scores)


def _dataset_messages(dataset: state.Dataset | None) -> None:
    """Unreadable records as a warning listing file, record and problem; the readable ones stay usable."""
    if dataset is None:
        return
    if dataset.errors:
        n_ok = len(dataset.trajectories)
        st.warning(f"{len(dataset.errors)} record(s) could not be read and are left out; "
                   f"{n_ok} readable trajectories are used.")
        with st.expander("Unreadable records"):
            shown = dataset.errors[:MAX_ERRORS_SHOWN]
            st.markdown("\n".join(f"- `{e}`" for e in shown)
                        + (f"\n\n… and {len(dataset.errors) - len(shown)} more" if len(dataset.errors) > len(shown)
                           else ""))
    elif dataset.key.endswith(":none"):
        st.caption("Give a file to open.")
