"""What if it were written differently: the inspector's Edit mode, and the rescoring the teaching page shares.

Edit mode works on the open trajectory's last assistant turn (thinking and answer in their own boxes where the
trace has both). Quick actions come from what the page already knows (`rsr_core.analysis.rewrites`): remove the
span that raises RSR most, the outlined tokens or one of the top spans, or replace a token by one of the student's
top-5 alternatives. **Rescore** runs the student on the edited conversation in a background thread (`RescoreJob`,
the lock every scoring run takes, Stop), reusing the key/value cache of the unchanged prefix, which a pass started
when Edit mode opens has prepared. The result is shown against the original, and **Add as a candidate** writes it
into the dataset's store as `{id}~edit{n}` of the same problem (`rsr_core.data.edits`).

The model and the prefix cache are shared by the process (`st.cache_resource`); a session holds its edited text
and its last result only. The engine (torch) is imported when Edit mode opens, never by a page that only reads.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from rsr_core.analysis import explain
from rsr_core.analysis.metrics import trajectory_metrics
from rsr_core.analysis.rewrites import part_bounds, removal, replacement_at, token_chars
from rsr_core.analysis.zones import ZoneThresholds
from rsr_core.data import demo
from rsr_core.data.edits import (EDITED, Edit, EditError, Replacement, apply_replacements, edit_root,
                                 edited_trajectory, label_edited, message_with_text, turn_message)
from rsr_core.data.store import StoreError
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import REASONING_KEY, TOOL_CALLS_KEY, Trajectory, assistant_text, part_starts
from rsr_core.ui import results, state
from rsr_core.ui.layout import button_row, metric_row, stacking_columns
from rsr_core.ui.markdown import md_message, md_text
from rsr_core.ui.token_strip import render_token_strip

if TYPE_CHECKING:
    from rsr_core.engine.rescore_job import RescoreJob
    from rsr_core.engine.rescoring import PrefixCache, Rescored
    from rsr_core.engine.student import Student

K_EDIT = "inspector_edit"
K_JOB = "edit_job"
K_PREPARED = "edit_prepared"
K_ADDED = "edit_added"
K_SPAN = "edit_span_choice"
K_TOKEN = "edit_token"
K_ALT = "edit_alternative"
CONTEXT_TOKENS = 20  # tokens shown before the first change in the aligned strips
STRIP_TOKENS = 400
SPAN_CHOICES = 5


# --- shared with the teaching page ------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def prefix_cache() -> PrefixCache:
    """The key/value caches of the trajectories being edited, one per process, bounded in bytes."""
    from rsr_core.engine.rescoring import PrefixCache

    return PrefixCache()


def student_for(name: str) -> Student | None:
    """The student whose results are on screen, loaded once per process; None with a message when it cannot be."""
    from rsr_core.ui.sidebar import get_student, scored_spec

    spec = scored_spec(name)
    if spec is None:
        return None
    try:
        with st.spinner(f"Loading {md_text(spec)}…"):
            return get_student(spec)
    except Exception as e:  # noqa: BLE001 - any failure to load is the user's to read, not a traceback
        st.error(f"cannot load the student {md_text(repr(spec))}: {md_message(e)}")
        return None


def store_format(path: str, name: str) -> tuple[bool, int]:
    """(plain_format, max_len) the store's numbers of `name` were computed with."""
    from rsr_core.engine.rescoring import student_format

    return student_format(results.store(path).settings(name))


def rescore_now(student: Student, trajectory: Trajectory, key_id: str, plain: bool, max_len: int) -> Rescored:
    """Rescore in this script run (short texts: the teaching page), under the process's scoring lock."""
    from rsr_core.engine.rescoring import prefix_key, rescore
    from rsr_core.ui.sidebar import scoring_lock

    with scoring_lock():
        return rescore(student, trajectory, prefix_cache(), prefix_key(student, key_id, plain, max_len),
                       plain_format=plain, max_len=max_len)


def metrics_of(scores: TokenScores, r_max: int) -> dict:
    return trajectory_metrics(scores.surprisal, scores.rank, scores.entropy, r_max)


def first_change(before: TokenScores, after: TokenScores) -> int:
    """Index of the first token whose text or numbers differ between two versions of a trajectory."""
    n = min(len(before), len(after))
    same = [before.tokens[i] == after.tokens[i] and before.rank[i] == after.rank[i] for i in range(n)]
    return next((i for i, s in enumerate(same) if not s), n)


def comparison(before: TokenScores, after: TokenScores, r_max: int) -> pd.DataFrame:
    """Before and after, one row per quantity."""
    a, b = metrics_of(before, r_max), metrics_of(after, r_max)
    names = {"rsr": "RSR", "avg_rank_clipped": "mean clipped rank", "avg_surprisal": "mean surprisal",
             "n_tokens": "tokens"}
    return pd.DataFrame([{"quantity": label, "before": float(a[k]), "after": float(b[k]),
                          "change": float(b[k]) - float(a[k])} for k, label in names.items()])


# --- the inspector's Edit mode ----------------------------------------------------------------------------------

def edit_section(tid: str, ts: TokenScores, messages: list[dict], r_max: int, thresholds: ZoneThresholds,
                 view: str) -> None:
    """The Edit toggle and, when on, the editor, Rescore, the comparison and Add as a candidate."""
    if not st.toggle("Edit", key=K_EDIT, help="Try a rewrite of this trajectory's last answer: remove a span, "
                     "take the student's own word, and rescore it in seconds from the edit on."):
        return
    name, path = state.current_student(), state.student_store()
    try:
        at, message = turn_message(messages, None)
    except EditError as e:
        st.info(md_message(e))
        return
    student = student_for(name)
    if student is None or path is None:
        return
    plain, max_len = store_format(path, name)
    original = results.store(path).trajectories([tid], name)[0]
    _prepare(student, original, plain, max_len)
    last_turn = int(ts.turn.max()) if len(ts) else 0
    text = _current_text(tid, message)
    reps: list[Replacement] = state.get(_reps_key(tid)) or []
    quick = text == _apply(message, reps)
    _quick_actions(tid, ts, message, last_turn, r_max, quick)
    _editor(tid, message)
    text = _current_text(tid, message)
    changed = text != assistant_text(message)
    with button_row():
        st.button("Rescore", key="edit_rescore", type="primary", disabled=not changed,
                  on_click=_start, args=(tid, student, original, text, plain, max_len),
                  help="Score the edited text under the student, from the first changed token on.")
        st.button("Reset", key="edit_reset", on_click=_reset, args=(tid, message), disabled=not changed)
    _job_status(tid, ts, text, original, path, student, plain, max_len, r_max, thresholds, view)


def _reps_key(tid: str) -> str:
    return f"edit_reps:{tid}"


def _box_keys(tid: str) -> tuple[str, str]:
    return f"edit_thinking:{tid}", f"edit_answer:{tid}"


def _apply(message: dict, reps: list[Replacement]) -> str:
    return apply_replacements(assistant_text(message), reps)


def _current_text(tid: str, message: dict) -> str:
    """The edited text of the turn: the boxes put back together (thinking, answer, the tool calls unchanged)."""
    k_think, k_answer = _box_keys(tid)
    if state.get(k_answer) is None:
        return _apply(message, state.get(_reps_key(tid)) or [])
    thinking = state.get(k_think) if message.get(REASONING_KEY) else None
    edited = {k: v for k, v in message.items() if k not in ("content", REASONING_KEY)}
    edited["content"] = state.get(k_answer) or ""
    if thinking:
        edited[REASONING_KEY] = thinking
    return assistant_text(edited)


def _set_boxes(tid: str, message: dict, text: str) -> None:
    """Put a whole turn's text into the boxes (thinking and answer split as the trace stores them)."""
    k_think, k_answer = _box_keys(tid)
    try:
        edited = message_with_text(message, text)
    except EditError:
        edited = {"content": text}
    state.put(k_think, edited.get(REASONING_KEY) or "")
    state.put(k_answer, edited.get("content") or "")


def _editor(tid: str, message: dict) -> None:
    k_think, k_answer = _box_keys(tid)
    if state.get(k_answer) is None:
        _set_boxes(tid, message, _apply(message, state.get(_reps_key(tid)) or []))
    if message.get(REASONING_KEY):
        st.text_area("Thinking", key=k_think, height=220)
    st.text_area("Answer" if message.get(REASONING_KEY) else "Response", key=k_answer, height=160)
    if message.get(TOOL_CALLS_KEY):
        st.caption("The turn's tool calls stay as they are.")


def _quick_actions(tid: str, ts: TokenScores, message: dict, last_turn: int, r_max: int, enabled: bool) -> None:
    """Remove the top span, a chosen span or the outlined tokens; replace a token by an alternative."""
    rows = np.nonzero(ts.turn == last_turn)[0]
    if rows.size == 0:
        return
    text = assistant_text(message)
    parts = part_bounds(text, part_starts(message)[0])
    spans = [sp for sp in explain.top_spans(ts.surprisal, ts.rank, r_max, _window(tid, len(ts)), k=SPAN_CHOICES)
             if sp.start >= rows[0]]
    st.markdown("**Quick edits** (on the text as scored)")
    if not enabled:
        st.caption("The text was edited by hand: quick edits apply to the text as scored. Reset to use them.")
    with button_row():
        st.button("Remove the span that raises RSR most", key="edit_remove_top", disabled=not (enabled and spans),
                  on_click=_remove, args=(tid, ts, message, spans[0].start if spans else 0,
                                          spans[0].stop if spans else 0, parts),
                  help="Its whole sentences, within its part (thinking or answer).")
        outlined = [p for p in state.selected_tokens(tid) if p >= rows[0]]
        st.button("Remove the outlined tokens", key="edit_remove_outlined", disabled=not (enabled and outlined),
                  on_click=_remove, args=(tid, ts, message, min(outlined or [0]), max(outlined or [0]) + 1, parts),
                  help="The tokens outlined in the text (from a chart, a table row or the curve), whole sentences.")
    if spans:
        labels = {i: f"tokens {sp.start:,}-{sp.stop:,}: RSR {sp.rsr_without:.3f} without it" for i, sp in
                  enumerate(spans)}
        with button_row():
            choice = st.selectbox("Span", list(labels), format_func=labels.get, key=K_SPAN)
            sp = spans[int(choice)]
            st.button("Remove this span", key="edit_remove_span", disabled=not enabled, on_click=_remove,
                      args=(tid, ts, message, sp.start, sp.stop, parts))
    worst = int(rows[np.argmax(ts.rank[rows])])
    with button_row():
        index = int(st.number_input("Token", min_value=int(rows[0]), max_value=int(rows[-1]), value=worst,
                                    key=K_TOKEN, help="0-based position, as in the hover card; the default is "
                                    "the token the student ranked lowest."))
        alternatives = [a for a in ts.top_tokens[index] if a != ts.tokens[index]] if ts.top_tokens else []
        alt = st.selectbox(f"Replace {ts.tokens[index]!r} by", alternatives or ["(no alternative)"], key=K_ALT)
        st.button("Replace", key="edit_replace", disabled=not (enabled and alternatives), on_click=_replace,
                  args=(tid, ts, message, index, alt))


def _window(tid: str, n: int) -> int:
    """The span width the inspector's "Why this score" uses for this trajectory."""
    from rsr_core.ui.inspector import default_window, window_key

    return int(state.get(window_key(tid)) or default_window(n))


def _remove(tid: str, ts: TokenScores, message: dict, start: int, stop: int, parts: list[tuple[int, int]]) -> None:
    text = assistant_text(message)
    a, b = token_chars(ts.offsets, start, stop)
    a, b = removal(text, a, b, parts, sentences=True)
    _add_replacement(tid, message, Replacement(a, b, ""))


def _replace(tid: str, ts: TokenScores, message: dict, index: int, alternative: str) -> None:
    a, b = replacement_at(ts.offsets, index)
    _add_replacement(tid, message, Replacement(a, b, alternative))


def _add_replacement(tid: str, message: dict, new: Replacement) -> None:
    reps = list(state.get(_reps_key(tid)) or [])
    if new.start >= new.end and not new.text:
        return
    kept = [r for r in reps if r.end <= new.start or r.start >= new.end]  # a later edit of the same text wins
    kept.append(new)
    state.put(_reps_key(tid), kept)
    _set_boxes(tid, message, _apply(message, kept))


def _reset(tid: str, message: dict) -> None:
    state.put(_reps_key(tid), [])
    _set_boxes(tid, message, assistant_text(message))
    state.pop(K_JOB)


def _prepare(student: Student, original: Trajectory, plain: bool, max_len: int) -> None:
    """Start the pass that keeps the original's key/value cache, once per trajectory and process."""
    from rsr_core.engine.rescore_job import RescoreJob
    from rsr_core.engine.rescoring import prefix_key
    from rsr_core.ui.sidebar import scoring_lock

    key = prefix_key(student, edit_root(original), plain, max_len)
    job = state.get(K_PREPARED)
    if key in prefix_cache() or (job is not None and job.key == key and not job.failure):
        return
    state.put(K_PREPARED, RescoreJob(original, student, scoring_lock(), prefix_cache(), key, plain, max_len).start())


def _start(tid: str, student: Student, original: Trajectory, text: str, plain: bool, max_len: int) -> None:
    from rsr_core.engine.rescore_job import RescoreJob
    from rsr_core.engine.rescoring import prefix_key
    from rsr_core.ui.sidebar import scoring_lock

    try:
        edited = edited_trajectory(original, Edit(tid, response=text), taken=())
    except EditError as e:
        state.put(K_JOB, e)
        return
    key = prefix_key(student, edit_root(original), plain, max_len)
    job = RescoreJob(edited, student, scoring_lock(), prefix_cache(), key, plain, max_len)
    job.tid, job.text = tid, text
    state.put(K_JOB, job.start())
    state.pop(K_ADDED)


def _job_status(tid, ts, text, original, path, student, plain, max_len, r_max, thresholds, view) -> None:
    job = state.get(K_JOB)
    if isinstance(job, EditError):
        st.error(md_message(job))
        return
    if job is None or getattr(job, "tid", None) != tid:
        return
    st.fragment(run_every=1.0 if job.running else None)(_job_body)(tid, ts, text, original, path, student, plain,
                                                                   max_len, r_max, thresholds, view)


def _job_body(tid, ts, text, original, path, student, plain, max_len, r_max, thresholds, view) -> None:
    job: RescoreJob = state.get(K_JOB)
    if job is None:
        return
    if job.running:
        st.progress(job.progress.pass_fraction, text=("stopping… " if job.stop_requested else "rescoring: ")
                    + (job.progress.describe_pass() or "waiting for the model"))
        st.button("Stop", key="edit_stop", on_click=job.stop)
        return
    if job.failure:
        st.error(f"Rescoring failed: {md_message(job.failure)}")
        return
    if job.stopped or job.result is None:
        st.info("Stopped. Rescore starts again.")
        return
    if job.text != text:
        st.caption("The text has changed since this result: Rescore again.")
    result_view(tid, ts, job.result, r_max, thresholds, view)
    _keep(tid, job, original, path, student, plain, max_len)


def result_view(tid: str, ts: TokenScores, result: Rescored, r_max: int, thresholds: ZoneThresholds,
                view: str) -> None:
    """Before and after: the numbers, and the two token strips aligned from just before the first change."""
    after = result.scores
    table = comparison(ts, after, r_max)
    with metric_row():
        for row in table.itertuples():
            fmt = "{:,.0f}" if row.quantity == "tokens" else "{:.3f}"
            st.metric(row.quantity, fmt.format(row.after), delta=(fmt.format(row.change) if row.change < 0 else
                                                                   "+" + fmt.format(row.change)),
                      delta_color="off" if row.quantity == "tokens" else "inverse", width="content")
    st.caption(f"Before: RSR {table['before'][0]:.3f}. {result.reused:,} of {len(after):,} tokens kept their numbers "
               f"from the unchanged prefix; the student ran over {result.tokens_run:,} tokens in "
               f"{result.seconds:.1f} s." + (f" ({result.full_pass_reason}.)" if result.full_pass_reason else ""))
    start = max(0, first_change(ts, after) - CONTEXT_TOKENS)
    left, right = stacking_columns(2, key="edit_sides")
    with left:
        st.markdown("**As scored**")
        render_token_strip(ts, colour_by=view, r_max=r_max, thresholds=thresholds, start=start,
                           stop=start + STRIP_TOKENS, legend=False)
    with right:
        st.markdown("**Edited**")
        render_token_strip(after, colour_by=view, r_max=r_max, thresholds=thresholds, start=start,
                           stop=start + STRIP_TOKENS, legend=False)


def _keep(tid, job, original, path, student, plain, max_len) -> None:
    added = state.get(K_ADDED)
    if added and added[0] == tid:
        st.success(f"Added **{md_text(added[1])}** (teacher {md_text(original.teacher.removesuffix(EDITED) + EDITED)}) "
                   "to the store: it is a candidate of its problem on the Selection page.")
        st.button("Open it", key="edit_open", on_click=_open, args=(added[1],))
        return
    st.button("Add as a candidate", key="edit_add", disabled=job.text != _current_text(tid, turn_message(
        original.messages, None)[1]), on_click=_add, args=(tid, job, original, student, plain, max_len),
        help="Write the edited trajectory into the dataset's store as a new trajectory of the same problem, with "
             "where it came from and what changed.")


def _open(new_id: str) -> None:
    state.put(K_EDIT, False)
    state.select_trajectory(new_id)


def _add(tid, job, original, student, plain, max_len) -> None:
    from rsr_core.engine.rescoring import keep_edited

    try:
        target = editable_store(student.name)
        taken = set(results.store(target).conversation_ids()) if (Path(target) / "store.json").exists() else set()
        new = edited_trajectory(original, Edit(tid, response=job.text), taken)
        label_edited([new])  # a changed answer is checked against the reference, where there is one
        result = keep_edited(target, student, [(new, job.result.scores)], plain, max_len)
    except (StoreError, EditError, OSError) as e:
        state.put(K_JOB, EditError(f"could not add it: {e}"))
        return
    if result.errors:
        state.put(K_JOB, EditError("; ".join(result.errors)))
        return
    state.put(K_ADDED, (tid, new.trajectory_id))


def editable_store(student: str) -> str:
    """The store the student's results are served from, where this app may write: the dataset's own store. For
    the bundled demo, whose store ships read-only with the app, a copy of it in the user cache (made once)."""
    dataset = state.current_dataset()
    path = state.student_store(student)
    if dataset is None or dataset.writable is None:
        raise StoreError("this dataset has no store the app may write")
    if path == dataset.writable:
        return path
    if dataset.is_demo and path == str(demo.DEMO_STORE) and not results.students(dataset.writable):
        target = Path(dataset.writable)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(demo.DEMO_STORE, target)
        results.store.clear()
        return str(target)
    raise StoreError(f"the results of {student} are in {path}, which this app does not write")
