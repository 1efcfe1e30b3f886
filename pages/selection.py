"""Selection page: keep one trajectory per problem by a rule, override any choice by hand, and export.

The rule (lowest RSR by default, min or max of any metric, or random with a seed) and the correct-only filter go
to `rsr_core.analysis.selection.select`; manual choices are kept in the session (`state.SELECTION_OVERRIDES`:
({problem or pool id: trajectory id}) and win over the rule. The summary compares the selected set with random
selection and each single teacher; the export is the training file `python -m rsr_core select` writes.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rsr_core.analysis.pools import POOL_BY
from rsr_core.data.labels import label_from_references, unlabelled_with_reference
from rsr_core.ui import state
from rsr_core.ui.analysis_cache import cached_pools, cached_problem_rows, cached_selection, cached_selection_summary
from rsr_core.ui.layout import CONTROL_PX, button_row, chart, control_row, metric_row
from rsr_core.ui.markdown import md_message, md_text
from rsr_core.ui.metric_labels import count, metric_label
from rsr_core.ui.selection_widgets import (EXPORT_FORMATS, RULE_MODES, candidate_rows, comparison_display,
                                           export_bytes, filter_problems, picks_figure, rule_description,
                                           rule_student, selectable_metrics, valid_overrides)
from rsr_core.ui.navigation import ensure_app_runs

ensure_app_runs()

OVERRIDES = state.SELECTION_OVERRIDES  # {problem or pool id: trajectory id}, chosen by hand
RESULT = state.SELECTION_RESULT  # the current Selection (rsr_core.analysis.selection.Selection), for other pages
RULE_WIDGETS = ("selection_mode", "selection_metric", "selection_seed", "selection_pool_by", "selection_correct_only",
                "selection_keep_without_correct", "selection_include_incomplete")
PROBLEM = "selection_problem"  # the problem whose candidates are shown (selectbox; a table click sets it)
CANDIDATE = "selection_candidate"  # the candidate the buttons act on (selectbox; a table click sets it)
CHECKED = "_selection_checked"  # counts of the last check of answers against references
NUM = {c: st.column_config.NumberColumn(metric_label(c), format="%.3f")
       for c in ("avg_surprisal", "avg_rank_clipped", "avg_length", "correct_rate", "rsr vs selected")}
TRAJECTORY_NUM = {c: st.column_config.NumberColumn(metric_label(c, "trajectory"), format="%.3f")
                  for c in ("avg_surprisal", "avg_rank_clipped")}
RSR_TRAJECTORY = {"rsr": st.column_config.NumberColumn("RSR", format="%.3f",
                                                      help="RSR of the trajectory (Eq. 7)")}
RSR_DATASET = {"rsr": st.column_config.NumberColumn("RSR (Eq. 9)", format="%.3f",
                                                   help="Dataset RSR of the set: ratio of the per-trajectory means")}


def overrides() -> dict[str, str]:
    return dict(state.get(OVERRIDES, {}))


# --- callbacks (run before the page, so the selection below already reflects them) ---------------------------------

def _set_override(pool: str, tid: str) -> None:
    state.put(OVERRIDES, {**{k: v for k, v in overrides().items() if k != pool}, pool: tid})


def _drop_override(pool: str, problem: str) -> None:
    state.put(OVERRIDES, {k: v for k, v in overrides().items() if k not in (pool, problem)})


def _clear_overrides(keys: list[str] | None = None) -> None:
    state.put(OVERRIDES, {k: v for k, v in overrides().items() if keys is not None and k not in keys})


def _row_to_state(table_key: str, target: str, ids: list[str]) -> None:
    rows = (state.get(table_key) or {}).get("selection", {}).get("rows", [])
    if rows:
        state.put(target, ids[rows[0]])


# --- sections ------------------------------------------------------------------------------------------------------

def rule_controls(table) -> dict:
    st.subheader("Rule")
    metrics = selectable_metrics(table)
    by = "random"
    with control_row():
        mode = st.selectbox("keep per problem the", list(RULE_MODES), format_func=RULE_MODES.get,
                            key=state.keep("selection_mode"), width=CONTROL_PX)
        if mode != "random":  # per trajectory: RSR of Eq. 7, mean surprisal, ...
            by = st.selectbox("metric", metrics, format_func=lambda m: metric_label(m, "trajectory"),
                              key=state.keep("selection_metric"), width=CONTROL_PX,
                              help="The trajectories' own values; lowest RSR (Eq. 7) is the paper's selection "
                                   "(one of 33 candidates per problem).")
        seed = int(st.number_input("seed", 0, 2**31 - 1, 0, 1, key=state.keep("selection_seed"),
                                   disabled=mode != "random", width=CONTROL_PX - 60))
        pool_by = st.selectbox("pool candidates by", POOL_BY, key=state.keep("selection_pool_by"),
                               width=CONTROL_PX - 40,
                               help="auto: the problem id when every row has one, else the normalised prompt text.")
    has_correct = "correct" in table and table["correct"].notna().any()
    with control_row():
        correct_only = st.checkbox("correct only", key=state.keep("selection_correct_only"),
                                   disabled=not has_correct,
                                   help="Keep only trajectories marked correct; a problem without one is dropped. "
                                        "A choice made by hand is kept whatever its correctness (with a warning)."
                                   if has_correct else "The data has no correctness information.")
        keep = st.checkbox("keep problems without a correct candidate (marked fallback)",
                           key=state.keep("selection_keep_without_correct"), disabled=not correct_only)
        incomplete = int((table["complete"] == False).sum()) if "complete" in table else 0  # noqa: E712
        include = st.checkbox(f"include incomplete generations ({incomplete:,})",
                              key=state.keep("selection_include_incomplete"), disabled=not incomplete,
                              help="Generations the data marks unfinished (cut off at the length limit, reasoning "
                                   "not complete) are never picked unless this is on.")
    state.remember(*RULE_WIDGETS)
    return {"by": by, "mode": mode, "seed": seed if mode == "random" else None,
            "correct_only": bool(correct_only and has_correct), "keep_pools_without_correct": bool(keep),
            "pool_by": pool_by, "include_incomplete": bool(include and incomplete)}


def reference_section(table) -> None:
    """Labels from reference answers (math-verify) for a dataset that has references but no labels."""
    todo = unlabelled_with_reference(table)
    if todo.empty:
        return
    path, dataset = state.student_store(), state.current_dataset()
    writable = path is not None and dataset is not None and path == dataset.writable
    st.info(f"{count(len(todo), 'trajectory', 'trajectories')} {'has' if len(todo) == 1 else 'have'} a reference "
            "answer but no correctness label. math-verify can check each final answer (the last \\boxed{} of the "
            "answer, else the answer's own) against the reference; the labels go to the dataset's results store "
            "(`correct_source` = math-verify).")
    if st.button("Check the answers against the references", key="selection_check_answers", disabled=not writable,
                 help=None if writable else "This dataset's results store is read-only here."):
        bar = st.progress(0.0, text="Starting math-verify…")
        counts = label_from_references(path, todo, progress=lambda done, total: bar.progress(
            done / total, text=f"{done:,} / {total:,} answers checked"))
        state.put(CHECKED, counts)
        st.rerun()


def checked_message() -> None:
    """What the last check of answers found (shown once, after the page has been redrawn with its labels)."""
    counts = state.pop(CHECKED)
    if counts:
        st.success(f"math-verify: {counts['correct']:,} correct, {counts['wrong']:,} wrong, {counts['unknown']:,} "
                   "unknown (no answer found, not understood or too slow to check).")


def counts_line(sel, summary) -> None:
    c = summary.counts
    with metric_row():
        st.metric("problems", c["pools"], width="content")
        st.metric("selected", c["selected"], width="content")
        st.metric("dropped", c["dropped"], help="Pools left out by the correct filter (see the table).",
                  width="content")
        st.metric("manual", c["manual"], help="Choices made by hand; they win over the rule.", width="content")
        st.metric("undefined", c["undefined_metric"], width="content",
                  help="Pools whose candidates all have an undefined value of the rule's metric (e.g. zero "
                       "surprisal).")
    if c.get("inconsistent_pools"):
        st.warning(f"{c['inconsistent_pools']} problem ids cover different prompts: the ids may be record numbers. "
                   "Pool by prompt instead.")


def incorrect_manual_choices(sel) -> list[str]:
    """Trajectory ids chosen by hand that are not marked correct (kept even under "correct only")."""
    chosen = sel.selected
    if chosen.empty or "manual" not in chosen or "correct" not in chosen:
        return []
    wrong = chosen["manual"].astype(bool) & ~chosen["correct"].astype("boolean").fillna(False).astype(bool)
    return chosen.loc[wrong, "trajectory_id"].astype(str).tolist()


def manual_warning(sel, settings: dict) -> None:
    """Under "correct only", say which manual choices are not marked correct: they are kept and exported with
    `correct: false`."""
    wrong = incorrect_manual_choices(sel) if settings["correct_only"] else []
    if wrong:
        st.warning(f"**correct only** is on, but {count(len(wrong), 'manual choice')} "
                   f"{'is' if len(wrong) == 1 else 'are'} not marked correct: {md_text(', '.join(wrong[:10]))}. "
                   "A choice made by hand wins over the rule, so "
                   f"{'it is' if len(wrong) == 1 else 'they are'} kept and exported with `correct: false`. Choose a "
                   "correct candidate, or press **Back to the rule**.")


def problem_prompt(pooled, pool: str) -> str:
    """The problem text of a pool, from one candidate's conversation (store tables carry no text)."""
    tid = pooled.loc[pooled["pool_id"] == pool, "trajectory_id"].iloc[0]
    return next((m["content"] for m in state.trajectory_messages(str(tid)) if m["role"] == "user"), "")


def problems_section(rows) -> list[str]:
    st.subheader("One row per problem")
    with control_row():
        text = st.text_input("filter", key="selection_filter_text", placeholder="problem id, prompt or trajectory id",
                             width=CONTROL_PX + 40)
        teachers = st.multiselect("chosen teacher", sorted(t for t in rows["teacher"].unique() if t),
                                  key="selection_filter_teachers", width=CONTROL_PX + 40)
        kinds = st.multiselect("how chosen", ["rule", "manual", "fallback", "dropped"], key="selection_filter_choice",
                               width=CONTROL_PX + 40)
    shown = filter_problems(rows, text, teachers, kinds)
    ids = shown["pool_id"].tolist()
    key = "selection_problems_table"
    st.dataframe(shown.drop(columns=["pool_id"]), key=key, hide_index=True, width="stretch",
                 selection_mode="single-row", on_select=lambda: _row_to_state(key, PROBLEM, ids),
                 column_config={"value": st.column_config.NumberColumn("rule's value", format="%.3f"),
                                "rsr": st.column_config.NumberColumn("RSR", format="%.3f"),
                                "choice": st.column_config.TextColumn("chosen by"),
                                "candidates": st.column_config.TextColumn("candidates (RSR)", width="large")})
    st.caption(f"{len(shown)} of {len(rows)} problems. Click a column header to sort; click a row to see its "
               "candidates below.")
    return ids


def problem_detail(rows, pooled, by: str, correct_only: bool = False) -> None:
    st.subheader("Candidates of a problem")
    pools = rows["pool_id"].tolist()
    labels = dict(zip(rows["pool_id"], rows["problem_id"]))
    if state.get(PROBLEM) not in pools:
        state.put(PROBLEM, pools[0])
    pool = st.selectbox("problem", pools, key=PROBLEM, format_func=lambda p: labels.get(p, p))
    row = rows[rows["pool_id"] == pool].iloc[0]
    st.markdown(f"> {md_text(row['prompt'] or problem_prompt(pooled, pool))}")
    cands = candidate_rows(pooled, pool, row["chosen"] or None, by)
    ids = cands["trajectory_id"].astype(str).tolist()
    key = "selection_candidates_table"
    st.dataframe(cands, key=key, hide_index=True, width="stretch", selection_mode="single-row",
                 on_select=lambda: _row_to_state(key, CANDIDATE, ids),
                 column_config={**NUM, **TRAJECTORY_NUM, **RSR_TRAJECTORY})
    if state.get(CANDIDATE) not in ids:
        state.put(CANDIDATE, row["chosen"] or ids[0])
    tid = st.selectbox("candidate", ids, key=CANDIDATE,
                       format_func=lambda t: f"{t} (chosen)" if t == row["chosen"] else t)
    with button_row():
        if st.button("Open in the inspector", key="selection_open"):
            state.select_trajectory(tid, open_inspector=True)
        st.button("Choose it by hand", key="selection_choose", disabled=tid == row["chosen"] and
                  row["choice"] == "manual", on_click=_set_override, args=(pool, tid),
                  help="Keep this candidate for the problem whatever the rule says (marked manual in the export).")
        st.button("Back to the rule", key="selection_unchoose", disabled=row["choice"] != "manual",
                  on_click=_drop_override, args=(pool, row["problem_id"]))
    st.caption(f"Chosen: **{md_text(row['chosen'] or 'none')}** ({row['choice']}).")
    correct = cands.set_index("trajectory_id")["correct"].get(tid) if "correct" in cands else None
    if correct_only and tid != row["chosen"] and not (correct is not None and pd.notna(correct) and bool(correct)):
        st.caption(f":orange[**{md_text(tid)}** is not marked correct: chosen by hand it is kept despite **correct "
                   "only** and exported with `correct: false`.]")


def summary_section(summary) -> None:
    st.subheader("The selected set")
    comp = comparison_display(summary)
    random_rows = comp[comp["set"].str.startswith("random")]
    sel_rsr = comp["rsr"].iloc[0]
    rate = comp["correct_rate"].iloc[0]
    with metric_row():
        st.metric("RSR of the selection", f"{sel_rsr:.3f}", width="content",
                  delta=f"{sel_rsr - random_rows['rsr'].iloc[0]:+.3f} vs random" if len(random_rows) else None,
                  delta_color="inverse", help="Dataset RSR (Eq. 9) of the selected trajectories")
        st.metric("mean length (tokens)", f"{comp['avg_length'].iloc[0]:.1f}", width="content",
                  delta=f"{comp['avg_length'].iloc[0] - random_rows['avg_length'].iloc[0]:+.1f} vs random"
                  if len(random_rows) else None, delta_color="off")
        st.metric("correct rate", "-" if rate != rate else f"{rate:.0%}", width="content")
    st.dataframe(comp, hide_index=True, width="stretch", column_config={**NUM, **RSR_DATASET},
                 key="selection_comparison")
    st.caption("Random selection uses the same problems and the same filter (mean of 5 seeds); each teacher row "
               "is all of that teacher's trajectories. RSR is the dataset RSR (Eq. 9).")
    chart(picks_figure(summary.picks), key="selection_chart_picks")


def export_section(sel) -> None:
    st.subheader("Export")
    if sel.selected.empty:
        st.info("Nothing is selected: nothing to export.")
        return
    st.caption(f"{count(len(sel.selected), 'record')}, one per problem: `messages` (ready for TRL's SFTTrainer and "
               "LLaMA-Factory) plus where each came from and how it was chosen (`rule`, `manual`).")
    with button_row():
        for fmt in EXPORT_FORMATS:
            name, mime = EXPORT_FORMATS[fmt]
            st.download_button(f"Download {name}", file_name=name, mime=mime, key=f"selection_download_{fmt}",
                               data=lambda f=fmt: export_bytes(sel.selected, f, state.trajectory_messages),
                               on_click="ignore")


# --- page ----------------------------------------------------------------------------------------------------------

st.title("Selection: one trajectory per problem")
table = state.scored_table_or_stop()
student = state.current_student()
st.markdown(f"Student **{md_text(student)}**, r_max = {state.current_r_max()}. Candidates of every teacher and run are "
            "pooled per problem, and the rule keeps one of each pool.")
one_student = rule_student(table, student)
checked_message()
reference_section(table)
settings = rule_controls(table)
try:
    pooled = cached_pools(table, one_student, settings["pool_by"])
except ValueError as e:
    st.error(md_message(e))
    st.stop()
valid, stale = valid_overrides(pooled, overrides())
if stale:
    one = len(stale) == 1
    names = "names a trajectory that is" if one else "name trajectories that are"
    st.warning(f"{count(len(stale), 'manual choice')} {names} not a candidate of that problem here (another "
               f"dataset or pooling): {md_text(', '.join(stale[:10]))}. {'It is' if one else 'They are'} not applied.")
    st.button("Forget them", key="selection_forget_stale", on_click=_clear_overrides, args=(stale,))
try:
    sel = cached_selection(table, settings, valid, one_student)
except ValueError as e:
    st.error(md_message(e))
    st.stop()
state.put(RESULT, sel)
summary = cached_selection_summary(table, settings, valid, one_student)
st.caption(f"Rule: **{md_text(rule_description(settings['mode'], settings['by'], settings['seed']))}**"
           + (", correct only" if settings["correct_only"] else "") + f" · pooled by {sel.pool_by}")
counts_line(sel, summary)
manual_warning(sel, settings)
if valid:
    st.button(f"Forget {'the' if len(valid) == 1 else 'all'} {count(len(valid), 'manual choice')}",
              key="selection_clear_manual", on_click=_clear_overrides)
rows = cached_problem_rows(table, settings, valid, one_student)
problems_section(rows)
problem_detail(rows, pooled, settings["by"], settings["correct_only"])
summary_section(summary)
export_section(sel)
