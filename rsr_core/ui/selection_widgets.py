"""Tables, figures and export bytes of the Selection page: pure functions of the pooled table and a selection.

`pooled` is `rsr_core.analysis.pools.assign_pools(table)` (the trajectory table with `pool_id`); a selection is
`rsr_core.analysis.selection.select(...)`. Nothing here reads session state.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rsr_core.analysis.pools import POOL_BY, students_of
from rsr_core.analysis.selection import Selection, SelectionSummary, pool_sort_codes
from rsr_core.analysis.table import text_matches
from rsr_core.data.exports import write_selection
from rsr_core.ui.metric_labels import metric_label

RULE_MODES = {"min": "lowest value of a metric", "max": "highest value of a metric", "random": "random (seeded)"}
PREFERRED_METRICS = ("rsr", "avg_surprisal", "avg_rank_clipped", "avg_rank", "n_tokens", "avg_entropy",
                     "avg_rsr_token", "filtered_rsr_token", "rank_entropy_ratio")
NOT_METRICS = {"r_max", "record", "n_context", "truncated", "correct", "pool_size", "n_eligible", "candidate",
               "complete"}
EXPORT_FORMATS = {"jsonl": ("selected.jsonl", "application/jsonl"),
                  "parquet": ("selected.parquet", "application/vnd.apache.parquet")}
CHOICE_RULE, CHOICE_MANUAL, CHOICE_FALLBACK = "rule", "manual", "fallback (no correct candidate)"


def selectable_metrics(table: pd.DataFrame) -> list[str]:
    """Numeric per-trajectory columns a rule can minimise or maximise, the paper's metrics first."""
    numeric = [c for c in table.columns if c not in NOT_METRICS and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    if "lark_rho" in numeric and "avg_surprisal" in numeric:  # LARK's g_hat: computed over the pools
        numeric.append("lark_g")
    return [c for c in PREFERRED_METRICS if c in numeric] + [c for c in numeric if c not in PREFERRED_METRICS]


def default_rule(table: pd.DataFrame) -> dict:
    """The rule the Selection page starts with, its widgets untouched: the lowest value of the first selectable
    metric (RSR, Eq. 7), candidates pooled automatically, no correct filter (`select`'s keyword arguments)."""
    metrics = selectable_metrics(table)
    return {"by": metrics[0] if metrics else "rsr", "mode": next(iter(RULE_MODES)), "seed": None,
            "correct_only": False, "keep_pools_without_correct": False, "pool_by": POOL_BY[0],
            "include_incomplete": False}


def rule_student(table: pd.DataFrame, student: str | None) -> str | None:
    """The student whose rows a selection pools: `student` when the table holds several, else None (all rows)."""
    return student if len(students_of(table)) > 1 else None


def valid_overrides(pooled: pd.DataFrame, overrides: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the overrides that name a trajectory of the table in that problem's pool, the keys left out).

    Overrides made on another dataset or under another pooling no longer apply; they are reported, not an error.
    """
    by_id = pooled.drop_duplicates("trajectory_id").set_index("trajectory_id")
    valid, stale, pools = {}, [], set()
    for key, tid in overrides.items():
        key, tid = str(key), str(tid)
        ok = tid in by_id.index and key in (by_id.at[tid, "pool_id"], by_id.at[tid, "problem_id"])
        pool = by_id.at[tid, "pool_id"] if ok else None
        if ok and pool not in pools:
            valid[key] = tid
            pools.add(pool)
        else:
            stale.append(key)
    return valid, stale


SHOWN_CANDIDATES = 8  # candidates listed in a problem's row (all of them in the problem's own table)


def _fmt(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "-"


def problem_rows(pooled: pd.DataFrame, selection: Selection, by: str = "rsr",
                 shown: int = SHOWN_CANDIDATES) -> pd.DataFrame:
    """One row per problem (pool), in the selection's order: its candidates, and the chosen one with how it was
    chosen.

    Columns: problem_id, pool_id, chosen (trajectory id, '' when the pool was dropped), teacher, run, `value` (the
    rule's metric of the chosen one; NaN for random), rsr, n_tokens, correct, choice ('rule', 'manual',
    'fallback ...' or 'dropped: <reason>'), n_candidates, n_eligible, candidates ('teacher run: rsr' for the best
    `shown` by RSR, then '+N more'; 33 labels for each of 5,000 problems would be megabytes for the browser),
    prompt (its first 120 characters).
    """
    pool_codes, id_codes = pool_sort_codes(pooled)
    order = np.lexsort((id_codes, pooled["rsr"].to_numpy(float), pool_codes))  # NaN last
    shown_columns = [c for c in ("pool_id", "problem_id", "prompt", "teacher", "run", "rsr") if c in pooled]
    ordered = pooled[shown_columns].iloc[order]
    codes = pool_codes[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    place = np.arange(len(codes)) - np.maximum.accumulate(np.where(first, np.arange(len(codes)), 0))
    listed = place < shown
    top = ordered[listed]
    labels = [f"{t}{' ' + r if r else ''}: {_fmt(v)}" for t, r, v in
              zip(top["teacher"].astype(str).tolist(), top["run"].tolist(), top["rsr"].tolist())]
    starts = np.flatnonzero(first[listed])  # each pool's labels are contiguous, best first
    ends = np.r_[starts[1:], len(labels)]
    grouped = ordered.groupby("pool_id", sort=False)
    pools = pd.DataFrame({
        "problem_id": grouped["problem_id"].first(),
        "prompt": grouped["prompt"].first().astype(str).str.slice(0, 120) if "prompt" in ordered else "",
        "n_candidates": grouped.size(),
        "candidates": pd.Series([" · ".join(labels[a:b]) for a, b in zip(starts, ends)],
                                index=top["pool_id"].to_numpy()[starts], dtype=object),
    })
    more = pools["n_candidates"] - shown
    pools["candidates"] = pools["candidates"].where(more <= 0,
                                                    pools["candidates"] + " · +" + more.astype(str) + " more")
    pools.index.name = "pool_id"
    pools["problem_id"] = pools["problem_id"].where(pools["problem_id"] != "", pools.index.to_series())

    sel = selection.selected
    metric = by if by in sel and by != "random" else None
    chosen = pd.DataFrame({
        "pool_id": sel["pool_id"].astype(str), "n_eligible": sel["n_eligible"].astype(int),
        "chosen": sel["trajectory_id"].astype(str), "teacher": sel["teacher"].astype(str),
        "run": sel["run"].map(lambda r: r or ""),
        "value": pd.to_numeric(sel[metric], errors="coerce") if metric else np.nan,
        "rsr": sel["rsr"].astype(float), "n_tokens": sel["n_tokens"].astype(int),
        "correct": sel["correct"].astype("boolean"),
        "choice": np.where(sel["manual"].astype(bool), CHOICE_MANUAL,
                           np.where(sel["correct_filter_fallback"].astype(bool), CHOICE_FALLBACK, CHOICE_RULE)),
    })
    chosen_pools = set(chosen["pool_id"])
    order = list(chosen["pool_id"]) + [p for p in pools.index if p not in chosen_pools]
    out = pools.reindex(order).reset_index().merge(chosen, on="pool_id", how="left")
    reasons = dict(zip(selection.dropped["pool_id"], selection.dropped["reason"])) if len(selection.dropped) else {}
    missing = out["chosen"].isna()
    out.loc[missing, "choice"] = [f"dropped: {reasons.get(p, 'no candidate')}" for p in out.loc[missing, "pool_id"]]
    out["n_eligible"] = out["n_eligible"].fillna(0).astype(int)
    out["n_tokens"] = out["n_tokens"].fillna(0).astype(int)
    for col in ("chosen", "teacher", "run"):
        out[col] = out[col].fillna("").astype(str)
    cols = ["problem_id", "pool_id", "chosen", "teacher", "run", "value", "rsr", "n_tokens", "correct", "choice",
            "n_candidates", "n_eligible", "candidates", "prompt"]
    return out[cols]


def filter_problems(rows: pd.DataFrame, text: str = "", teachers: Sequence[str] = (),
                    choices: Sequence[str] = ()) -> pd.DataFrame:
    """The problem rows matching a text (problem id, prompt or chosen id, case-insensitive), the chosen teachers
    and the kinds of choice ('rule', 'manual', 'fallback', 'dropped'); empty filters keep everything."""
    keep = np.ones(len(rows), dtype=bool)
    if text.strip():
        keep &= text_matches([rows["problem_id"], rows["prompt"], rows["chosen"]], text)
    if teachers:
        keep &= rows["teacher"].isin(list(teachers)).to_numpy()
    if choices:
        kinds = rows["choice"].str.split(r"[ :]", n=1, regex=True).str[0]
        keep &= kinds.isin(list(choices)).to_numpy()
    return rows[keep].reset_index(drop=True)


def candidate_rows(pooled: pd.DataFrame, pool_id: str, chosen: str | None, by: str = "rsr") -> pd.DataFrame:
    """The candidates of one pool, best RSR first: trajectory_id, teacher, run, the rule's metric, rsr, length,
    correct, and `chosen` (True for the selected one)."""
    group = pooled[pooled["pool_id"] == pool_id]
    cols = ["trajectory_id", "teacher", "run"] + ([by] if by in group and by not in ("rsr", "n_tokens") else []) + \
        [c for c in ("rsr", "avg_surprisal", "avg_rank_clipped", "n_tokens", "correct", "truncated") if c in group]
    out = group[cols].sort_values(["rsr", "trajectory_id"], na_position="last", kind="stable")
    out.insert(0, "chosen", out["trajectory_id"] == (chosen or ""))
    return out.reset_index(drop=True)


def comparison_display(summary: SelectionSummary) -> pd.DataFrame:
    """The summary's comparison (selected set, random selection, each teacher) with the RSR difference to the
    selected set (negative: the selected set is better)."""
    out = summary.comparison.copy()
    out["rsr vs selected"] = out["rsr"] - out["rsr"].iloc[0]
    return out


def picks_figure(picks: pd.DataFrame) -> go.Figure:
    """Where the selected trajectories come from: picks per teacher (the paper's Table 17)."""
    frame = picks.sort_values("picks", ascending=True, kind="stable")
    fig = go.Figure(go.Bar(x=frame["picks"], y=frame["teacher"].astype(str), orientation="h",
                           text=[f"{s:.0%}" for s in frame["share"]], textposition="auto",
                           customdata=frame["teacher"].astype(str),
                           hovertemplate="%{y}: %{x} picks (%{text})<extra></extra>"))
    fig.update_layout(title="Picks per teacher", xaxis_title="selected trajectories",
                      height=max(220, 60 + 30 * len(frame)), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def export_bytes(selected: pd.DataFrame, fmt: str, messages_of: Callable[[str], list] | None = None) -> bytes:
    """The selected rows as a training file: JSONL `messages` records or Parquet, exactly as
    `rsr_core.analysis.selection.write_selection` writes them (one record per problem, with provenance).

    messages_of: the conversation of a trajectory id, for tables that carry none (those of a results store)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {tuple(EXPORT_FORMATS)}, not {fmt!r}")
    if "messages" not in selected and messages_of is not None:
        selected = selected.assign(messages=[messages_of(str(t)) for t in selected["trajectory_id"]])
    with tempfile.TemporaryDirectory() as tmp:
        path = write_selection(selected, Path(tmp) / EXPORT_FORMATS[fmt][0])
        return path.read_bytes()


def rule_description(mode: str, by: str, seed: int | None) -> str:
    """The rule in words, e.g. 'lowest RSR (Eq. 7)' (the rule compares trajectories) or 'random, seed 3'."""
    if mode == "random":
        return f"random, seed {seed}"
    return f"{'lowest' if mode == 'min' else 'highest'} {metric_label(by, 'trajectory')}"
