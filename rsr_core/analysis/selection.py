"""Keep one trajectory per problem (or the B best): selection rules, manual overrides, a summary, and an export
to train on.

The paper's "33 to 1" selection keeps, per problem, the candidate with the lowest RSR among every teacher and
run (Sec. 5). Here the rule is any of:
- `min` / `max` of a numeric column of the trajectory table (`rsr` by default, lowest first);
- `random` with a seed (the paper's random-selection baseline);
- `lark`: the highest `lark_g`, LARK's per-problem score g_hat (`rsr_core.analysis.lark`), computed from the
  table's `avg_surprisal` and `lark_rho` over the pools the selection uses.
NaN values never win a min/max rule: a pool whose candidates are all undefined still keeps one (the first by
trajectory id) so the output has one record per problem, and the summary counts it. Ties go to the smallest
trajectory id, so a selection does not depend on the row order of the input.

`top_b=B` keeps the B best eligible candidates of each pool with a defined value instead of one (best first, same
ties; a pool with none defined keeps one as above), each with a `train_weight`: LARK's chi-square weights of
g_hat under `lark`, else 1/(number kept); the weights of a pool sum to 1. One per pool has `train_weight` 1.

Incomplete generations (`complete` False: a trace cut off at the generation limit, `is_reasoning_complete` false)
are never picked unless asked (`include_incomplete`): they are not eligible, like wrong answers under correct-only.

Correct-only: applied first, keeping candidates whose `correct` is True. A pool with no verified-correct
candidate is **dropped** by default: someone who asks for correct-only wants a training file without a single
known-wrong (or unverified) answer, and silently filling the gap with a wrong one would defeat that. With
`keep_pools_without_correct=True` the pool instead keeps its best candidate over all, marked
`correct_filter_fallback=True`, for those who want one record per problem and will filter later. A table with no
correctness information at all is an error under correct-only (there is nothing to filter by).

Manual overrides map a problem id (or pool id) to the trajectory id to keep; they win over the rule and the
correct filter, and are marked `manual=True`. Under top-B the overridden pool keeps only that trajectory (weight 1).

Export records are flat: `messages` (the conversation as scored: system, user and assistant turns) plus the
provenance fields at top level (see `EXPORT_FIELDS`), which TRL's SFTTrainer and LLaMA-Factory's `messages`
format leave alone and which read back as columns in Parquet.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rsr_core.analysis import lark
from rsr_core.analysis.metrics import group_rows, metric_columns, metrics_of_columns
from rsr_core.analysis.pools import assign_pools, for_student, pool_summary, sort_codes

MODES = ("min", "max", "random")
LARK = "lark"  # `by` value of LARK's rule: max `lark_g`
LARK_COLUMNS = ("avg_surprisal", "lark_rho")  # what g_hat is computed from
DEFAULT_RANDOM_SEEDS = (0, 1, 2, 3, 4)
EXPORT_FIELDS = (
    "id", "problem_id", "pool_id", "teacher", "run", "student", "r_max", "rsr", "rule", "train_weight", "manual",
    "correct_filter_fallback", "correct", "correct_source", "complete", "candidate", "edited_from", "edit",
    "n_tokens", "avg_surprisal", "avg_rank_clipped", "lark_g", "truncated", "source", "record",
)
MESSAGE_KEYS = ("reasoning_content", "tool_calls", "tool_call_id", "name")  # kept beside role and content
_HELPER_COLUMNS = ["_order", "_value", "_nan", "_pool", "_id_rank"]


@dataclass
class Selection:
    """The outcome of `select`: one row per kept pool (up to `top_b` with it), and the pools left out with the
    reason."""

    selected: pd.DataFrame  # table rows + pool_id, pool_size, n_eligible, rule, manual, fallback, train_weight
    dropped: pd.DataFrame  # pool_id, n_candidates, reason
    rule: str
    by: str
    mode: str
    seed: int | None
    correct_only: bool
    keep_pools_without_correct: bool
    pool_by: str
    n_pools: int
    student: str | None = None
    inconsistent_pools: int = 0  # pools whose candidates carry different prompts (see pools.pool_summary)
    include_incomplete: bool = False
    top_b: int | None = None  # candidates kept per pool; None: one


@dataclass
class SelectionSummary:
    """Picks per teacher (the paper's Table 17) and the selected set against random and single teachers."""

    rule: str
    picks: pd.DataFrame  # teacher, picks, share
    comparison: pd.DataFrame  # set, n_trajectories, rsr, avg_length, correct_rate
    counts: dict[str, int] = field(default_factory=dict)
    top_b: int | None = None

    def to_text(self) -> str:
        """A plain-text report for the terminal."""
        c = self.counts
        selected = f"{c['selected']}" if self.top_b is None else \
            f"{c['selected']} trajectories in {c['selected_pools']} pools (up to {self.top_b} per pool)"
        lines = [f"rule: {self.rule}",
                 f"pools: {c['pools']}  selected: {selected}  dropped: {c['dropped']}  "
                 f"manual: {c['manual']}  correct-filter fallbacks: {c['fallback']}  "
                 f"undefined metric: {c['undefined_metric']}"]
        if c.get("inconsistent_pools"):
            lines.append(f"warning: {c['inconsistent_pools']} pools mix different prompts under one problem id; "
                         "consider pooling by prompt")
        lines += ["", "picks per teacher:", self.picks.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
                  "", "selected set against random selection and single teachers:",
                  self.comparison.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
        return "\n".join(lines)


def rule_label(by: str = "rsr", mode: str = "min", seed: int | None = None, correct_only: bool = False,
               top_b: int | None = None) -> str:
    """The rule as stored in every exported record, e.g. 'min rsr', 'random seed=3, correct only',
    'max lark_g (LARK), top 2, chi-square weights'."""
    label = f"random seed={seed}" if mode == "random" else "max lark_g (LARK)" if by == LARK else f"{mode} {by}"
    if top_b is not None:
        label += f", top {top_b}, " + ("chi-square weights" if by == LARK and mode != "random" else "equal weights")
    return label + (", correct only" if correct_only else "")


def lark_values(pooled: pd.DataFrame) -> np.ndarray:
    """[n] `lark_g` of a pooled table, computed over its pools; ValueError when it has no LARK columns."""
    missing = [c for c in LARK_COLUMNS if c not in pooled]
    if missing or (len(pooled) and not pd.to_numeric(pooled["lark_rho"], errors="coerce").notna().any()):
        raise ValueError("selecting by LARK's score needs the columns avg_surprisal and lark_rho (Brier score / "
                         "cross-entropy), which this table does not have (stores and tables written before them); "
                         "rescore with `python -m rsr_core score ... --out STORE`, which fills them")
    return lark.with_lark_g(pooled)["lark_g"].to_numpy(float)


def _metric_values(pooled: pd.DataFrame, by: str, mode: str) -> np.ndarray:
    """[n] values to sort ascending: the metric, negated for max."""
    if by == LARK:
        return -lark_values(pooled)
    if by not in pooled:
        raise ValueError(f"no column {by!r} in the table to select by")
    numeric = pd.to_numeric(pooled[by], errors="coerce").astype("Float64")
    if pooled[by].notna().any() and not numeric.notna().any():
        raise ValueError(f"column {by!r} is not numeric; it cannot be selected by")
    values = numeric.to_numpy(dtype=float, na_value=np.nan)
    return -values if mode == "max" else values


def _pool_order(pooled: pd.DataFrame) -> np.ndarray:
    """[n] row positions in (pool_id, trajectory_id) order: the order random draws are assigned in."""
    return np.lexsort((pooled["_id_rank"].to_numpy(), pooled["_pool"].to_numpy()))


def _random_values(pooled: pd.DataFrame, seed: int | None) -> np.ndarray:
    """[n] uniform draws assigned in (pool_id, trajectory_id) order, so the pick ignores the input row order."""
    values = np.empty(len(pooled))
    values[_pool_order(pooled)] = np.random.default_rng(seed).random(len(pooled))
    return values


def _random_picks(pooled: pd.DataFrame, seeds: list[int], eligible: np.ndarray,
                  keep_pools_without_correct: bool, top_b: int | None = None) -> list[np.ndarray]:
    """Per seed, the row positions `_picks` keeps under random selection (the eligible picks in pool order, then
    the fallbacks; up to `top_b` per pool), drawing the same values as `_random_values`; one sort for all the
    seeds."""
    order = _pool_order(pooled)
    codes, ok = pooled["_pool"].to_numpy()[order], eligible[order]
    if not len(order):
        return [order for _ in seeds]
    if top_b is not None:
        return [order[_random_top_b(codes, ok, np.random.default_rng(seed).random(order.size), top_b,
                                    keep_pools_without_correct)] for seed in seeds]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    segment = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, codes.size]))

    def first_minimum(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([pools] position in `order` of each pool's first smallest value, [pools] whether it is finite)."""
        low = np.minimum.reduceat(values, starts)
        hit = np.where(values == low[segment], np.arange(values.size), values.size)
        return np.minimum.reduceat(hit, starts), np.isfinite(low)

    picks = []
    for seed in seeds:
        draws = np.random.default_rng(seed).random(order.size)
        at, found = first_minimum(np.where(ok, draws, np.inf))
        kept = at[found]
        if keep_pools_without_correct and not found.all():
            kept = np.r_[kept, first_minimum(draws)[0][~found]]
        picks.append(order[kept])
    return picks


def _random_top_b(codes: np.ndarray, ok: np.ndarray, draws: np.ndarray, b: int, fallback: bool) -> np.ndarray:
    """[n] bool: the `b` smallest eligible draws of each pool ([n] pool codes in pool order), and with `fallback`
    the `b` smallest of all draws of the pools without an eligible one."""
    tie = np.arange(draws.size)
    kept = lark.top_b(-draws, codes, tie, b, chi2=False, eligible=ok)[0]
    if fallback:
        segment = np.cumsum(np.r_[True, codes[1:] != codes[:-1]]) - 1
        found = np.bincount(segment, weights=kept) > 0
        kept |= lark.top_b(-draws, codes, tie, b, chi2=False, eligible=~found[segment])[0]
    return kept


def _best_per_pool(frame: pd.DataFrame) -> pd.DataFrame:
    """The first row of each pool after sorting by (defined first, value, trajectory id)."""
    order = np.lexsort((frame["_id_rank"].to_numpy(), frame["_value"].to_numpy(float),
                        frame["_nan"].to_numpy(bool), frame["_pool"].to_numpy()))
    codes = frame["_pool"].to_numpy()[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    return frame.iloc[order[first]]


def _kept_per_pool(frame: pd.DataFrame, top_b: int | None, chi2: bool) -> pd.DataFrame:
    """`_best_per_pool` with `train_weight` 1 (top_b None), else each pool's `top_b` best rows with a defined value,
    best first, weighted by `lark.top_b` (chi-square weights of the rule's values with `chi2`, else equal); a pool
    without a defined value keeps its `_best_per_pool` row, weight 1."""
    if top_b is None:
        return _best_per_pool(frame).assign(train_weight=1.0)
    pools, ties, value = frame["_pool"].to_numpy(), frame["_id_rank"].to_numpy(), frame["_value"].to_numpy(float)
    scores = np.where(frame["_nan"].to_numpy(bool), np.nan, -value)  # higher is better
    kept, weight = lark.top_b(scores, pools, ties, top_b, chi2=chi2)
    order = np.lexsort((ties, value, pools))
    order = order[kept[order]]
    rows = frame.iloc[order].assign(train_weight=weight[order])
    undefined = frame[~np.isin(pools, pools[kept])]
    if undefined.empty:
        return rows
    return pd.concat([rows, _best_per_pool(undefined).assign(train_weight=1.0)])


def _with_codes(pooled: pd.DataFrame) -> pd.DataFrame:
    """The pooled table with integer codes that sort as `pool_id` and `trajectory_id` do (sorting strings once)."""
    if "_pool" in pooled and "_id_rank" in pooled:
        return pooled
    return pooled.assign(_pool=sort_codes(pooled["pool_id"]), _id_rank=sort_codes(pooled["trajectory_id"]))


def pool_sort_codes(pooled: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """([n] codes that sort as `pool_id`, [n] codes that sort as `trajectory_id`) of a pooled table: the ones
    `prepare_pools` left in it, else computed."""
    coded = _with_codes(pooled)
    return coded["_pool"].to_numpy(), coded["_id_rank"].to_numpy()


def _apply_overrides(pooled: pd.DataFrame, chosen: pd.DataFrame, overrides: Mapping[str, str]) -> pd.DataFrame:
    """Replace each overridden pool's pick by the named trajectory, marked manual."""
    by_id = pooled.set_index("trajectory_id", drop=False)
    seen: dict[str, str] = {}
    rows = []
    for key, tid in overrides.items():
        key, tid = str(key), str(tid)
        if tid not in by_id.index:
            raise ValueError(f"override {key!r}: no trajectory with id {tid!r}")
        row = by_id.loc[[tid]]
        if len(row) > 1:
            raise ValueError(f"override {key!r}: trajectory id {tid!r} is not unique in the table")
        pool, problem = row["pool_id"].iloc[0], row["problem_id"].iloc[0]
        if key not in (pool, problem):
            raise ValueError(f"override {key!r}: trajectory {tid!r} belongs to problem {problem!r}")
        if pool in seen:
            raise ValueError(f"two overrides for problem {pool!r}: {seen[pool]!r} and {tid!r}")
        seen[pool] = tid
        rows.append(row.assign(manual=True, correct_filter_fallback=False, train_weight=1.0))
    if not rows:
        return chosen
    kept = chosen[~chosen["pool_id"].isin(seen)]
    return pd.concat([kept, *rows], ignore_index=True)


def _eligible(pooled: pd.DataFrame, correct_only: bool, include_incomplete: bool = False) -> np.ndarray:
    """[n] bool: the candidates a rule may keep: complete ones (all with `include_incomplete`), and of those the
    ones marked correct under correct-only."""
    eligible = np.ones(len(pooled), dtype=bool)
    if not include_incomplete and "complete" in pooled:
        eligible &= pooled["complete"].astype("boolean").fillna(True).to_numpy(bool)
    if not correct_only:
        return eligible
    if len(pooled) and pooled["correct"].notna().sum() == 0:
        raise ValueError("correct-only selection, but the table has no correctness information")
    return eligible & pooled["correct"].fillna(False).astype(bool).to_numpy()


def _picks(pooled: pd.DataFrame, by: str, mode: str, seed: int | None, correct_only: bool,
           keep_pools_without_correct: bool, summary: pd.DataFrame,
           include_incomplete: bool = False, top_b: int | None = None) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """The rule's picks of each pool, before overrides: (the pooled table with the helper columns, [n] eligible
    mask, the picked rows with `correct_filter_fallback` and `train_weight`)."""
    pooled = pooled.copy(deep=False)
    pooled["_order"] = np.arange(len(pooled))
    if mode == "random":
        pooled["_value"], pooled["_nan"] = _random_values(pooled, seed), False
    else:
        values = _metric_values(pooled, by, mode)
        pooled["_value"], pooled["_nan"] = values, ~np.isfinite(values)
        if by == LARK:
            pooled["lark_g"] = -values  # the g_hat of these pools, exported with the picks
    eligible = _eligible(pooled, correct_only, include_incomplete)
    chi2 = by == LARK and mode != "random"
    chosen = _kept_per_pool(pooled[eligible], top_b, chi2).assign(correct_filter_fallback=False)
    missing = summary.index.difference(pd.Index(chosen["pool_id"]))
    if keep_pools_without_correct and len(missing):
        fallback = _kept_per_pool(pooled[pooled["pool_id"].isin(missing)], top_b, chi2).assign(
            correct_filter_fallback=True)
        chosen = pd.concat([chosen, fallback], ignore_index=True)
    return pooled, eligible, chosen


def select(table: pd.DataFrame, *, by: str = "rsr", mode: str = "min", seed: int | None = None,
           correct_only: bool = False, keep_pools_without_correct: bool = False,
           overrides: Mapping[str, str] | None = None, pool_by: str = "auto",
           student: str | None = None, include_incomplete: bool = False, top_b: int | None = None) -> Selection:
    """Pick one trajectory per candidate pool of a trajectory table by `mode` ('min', 'max', 'random') of `by`,
    or the `top_b` best with their `train_weight`.

    `by='random'` is the same as `mode='random'`; `by='lark'` is max `lark_g` (LARK's g_hat over these pools; the
    mode is ignored) and weighs top-B by LARK's chi-square weights. See the module docstring for NaN, ties, the
    correct filter and overrides. Pools of one keep their only candidate (unless the correct filter drops it). A
    table scored under several students needs `student` (scores of different students are not comparable).
    """
    return select_pooled(prepare_pools(table, pool_by, student), by=by, mode=mode, seed=seed,
                         correct_only=correct_only, keep_pools_without_correct=keep_pools_without_correct,
                         overrides=overrides, student=student, include_incomplete=include_incomplete, top_b=top_b)


def prepare_pools(table: pd.DataFrame, pool_by: str = "auto", student: str | None = None) -> pd.DataFrame:
    """The table of one student with its pools assigned and the sort codes of pool and trajectory ids: what
    `select_pooled` and `selection_summary` work on, so an app computes it once for both. With `lark_rho` and
    `avg_surprisal`, also `lark_g`: LARK's g_hat over these pools (another pooling gives other values)."""
    pooled = _with_codes(assign_pools(for_student(table, student), pool_by))
    return lark.with_lark_g(pooled) if all(c in pooled for c in LARK_COLUMNS) else pooled


def select_pooled(pooled: pd.DataFrame, *, by: str = "rsr", mode: str = "min", seed: int | None = None,
                  correct_only: bool = False, keep_pools_without_correct: bool = False,
                  overrides: Mapping[str, str] | None = None, student: str | None = None,
                  include_incomplete: bool = False, top_b: int | None = None) -> Selection:
    """`select` on a table `prepare_pools` made (left unchanged)."""
    if by == "random":
        mode = "random"
    elif by == LARK:
        mode = "max"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return _select_pooled(pooled, by=by, mode=mode, seed=seed, correct_only=correct_only,
                          keep_pools_without_correct=keep_pools_without_correct, overrides=overrides,
                          student=student, include_incomplete=include_incomplete, top_b=top_b)


def _select_pooled(pooled: pd.DataFrame, *, by: str, mode: str, seed: int | None, correct_only: bool,
                   keep_pools_without_correct: bool, overrides: Mapping[str, str] | None,
                   student: str | None, summary: pd.DataFrame | None = None,
                   include_incomplete: bool = False, top_b: int | None = None) -> Selection:
    """`select` on a table `assign_pools` and `_with_codes` have prepared (left unchanged); `summary`: its
    `pool_summary` indexed by pool_id, when already computed."""
    if top_b is not None:
        top_b = lark.check_b(top_b)
    pool_by = pooled.attrs["pool_by"]
    if summary is None:
        summary = pool_summary(pooled).set_index("pool_id")
    pooled, eligible, chosen = _picks(pooled, by, mode, seed, correct_only, keep_pools_without_correct, summary,
                                      include_incomplete, top_b)
    chosen = chosen.assign(manual=False)
    chosen = _apply_overrides(pooled, chosen, overrides or {})

    first_seen = pooled.groupby("pool_id")["_order"].min()
    n_eligible = pd.Series(eligible, index=pooled.index).groupby(pooled["pool_id"]).sum()
    label = rule_label(by, mode, seed, correct_only, top_b)
    chosen = chosen.assign(
        pool_size=chosen["pool_id"].map(summary["n_candidates"]).astype(int),
        n_eligible=chosen["pool_id"].map(n_eligible).astype(int),
        metric_defined=~chosen["_nan"].astype(bool),
        rule=label,
        _first=chosen["pool_id"].map(first_seen),
    ).sort_values("_first", kind="stable").drop(columns=[*_HELPER_COLUMNS, "_first"]).reset_index(drop=True)

    left_out = summary.loc[summary.index.difference(pd.Index(chosen["pool_id"]))]
    dropped = pd.DataFrame({
        "pool_id": left_out.index.astype(str),
        "n_candidates": left_out["n_candidates"].to_numpy(int),
        "reason": np.where(
            (left_out["n_incomplete"].to_numpy() == left_out["n_candidates"].to_numpy()) & (not include_incomplete),
            "only incomplete generations",
            np.where(left_out["n_known_correct"].to_numpy() > 0, "no correct candidate", "correctness unknown")),
    })
    return Selection(selected=chosen, dropped=dropped, rule=label, by=by, mode=mode, seed=seed,
                     correct_only=correct_only, keep_pools_without_correct=keep_pools_without_correct,
                     pool_by=pool_by, n_pools=int(len(summary)), student=student,
                     inconsistent_pools=int((summary["n_prompts"] > 1).sum()), include_incomplete=include_incomplete,
                     top_b=top_b)


def set_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """n_trajectories, dataset RSR (Eq. 9), mean length and correct rate of a set of trajectories."""
    return _set_row(metric_columns(frame), None, len(frame))


def _set_row(columns: dict[str, np.ndarray], rows: np.ndarray | None, n: int) -> dict[str, float]:
    """`set_metrics` of the `n` rows at positions `rows` (None: all) of `metrics.metric_columns`."""
    m = metrics_of_columns(columns, rows) if n else {}
    nan = float("nan")
    return {"n_trajectories": int(n), "rsr": m.get("rsr", nan), "avg_length": m.get("avg_length", nan),
            "correct_rate": m.get("correct_rate", nan)}


def picks_per_teacher(selected: pd.DataFrame) -> pd.DataFrame:
    """teacher, picks, share: where the selected trajectories come from (the paper's Table 17)."""
    counts = selected["teacher"].value_counts()
    total = max(int(counts.sum()), 1)
    return pd.DataFrame({"teacher": counts.index.astype(str), "picks": counts.to_numpy(int),
                         "share": counts.to_numpy(float) / total}).reset_index(drop=True)


def selection_summary(table: pd.DataFrame, selection: Selection, *,
                      random_seeds: Iterable[int] = DEFAULT_RANDOM_SEEDS,
                      pooled: pd.DataFrame | None = None) -> SelectionSummary:
    """Compare the selected set with random selection (mean over `random_seeds`) and each teacher's full set.

    Random selection uses the same pools, the same correct filter and the same number kept per pool (`top_b`) as
    the selection itself; every kept trajectory counts once (`train_weight` is not applied). `pooled`: the table
    as `prepare_pools` made it for this selection, when already at hand.
    """
    full = prepare_pools(table, selection.pool_by, selection.student) if pooled is None else pooled
    rows = [{"set": f"selected ({selection.rule})", **set_metrics(selection.selected)}]
    seeds = list(random_seeds)
    columns = metric_columns(full)
    if seeds:
        runs = [_set_row(columns, picks, len(picks)) for picks in _random_picks(
            full, seeds, _eligible(full, selection.correct_only, selection.include_incomplete),
            selection.keep_pools_without_correct, selection.top_b)]
        rows.append({"set": f"random (mean of {len(seeds)} seeds)",
                     **{k: float(np.nanmean([r[k] for r in runs])) if any(np.isfinite(r[k]) for r in runs)
                        else float("nan") for k in runs[0]}})
    for (teacher,), group in group_rows(full, ["teacher"]):
        rows.append({"set": f"teacher {teacher} (all)", **_set_row(columns, group, len(group))})
    comparison = pd.DataFrame(rows)
    comparison["n_trajectories"] = comparison["n_trajectories"].round().astype(int)
    sel = selection.selected
    counts = {"pools": selection.n_pools, "selected": int(len(sel)), "selected_pools": int(sel["pool_id"].nunique()),
              "dropped": int(len(selection.dropped)),
              "manual": int(sel["manual"].sum()), "fallback": int(sel["correct_filter_fallback"].sum()),
              "undefined_metric": int((~sel["metric_defined"]).sum()),
              "inconsistent_pools": selection.inconsistent_pools}
    return SelectionSummary(rule=selection.rule, picks=picks_per_teacher(sel), comparison=comparison,
                            counts=counts, top_b=selection.top_b)


def _plain(value: object) -> object:
    """A JSON-safe Python value: None for NaN/NA, int/float/bool for numpy scalars."""
    if isinstance(value, (list, dict, str)):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _messages(value: object, trajectory_id: str) -> list[dict[str, str]]:
    """The conversation list from the table's `messages` cell (a JSON string, or a list read from Parquet), the
    reasoning of assistant turns kept in `reasoning_content`."""
    if isinstance(value, str) and value.strip():
        value = json.loads(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ValueError(f"trajectory {trajectory_id!r} has no messages to export")
    return [{"role": str(m["role"]), "content": str(m["content"]),
             **{k: m[k] for k in MESSAGE_KEYS if m.get(k)}} for m in value]


def selection_records(selected: pd.DataFrame) -> list[dict[str, object]]:
    """One training record per selected row: `messages` plus the flat provenance fields of `EXPORT_FIELDS`."""
    if "messages" not in selected:
        raise ValueError("the table has no 'messages' column; it cannot be exported for training")
    records = []
    for row in selected.to_dict(orient="records"):
        tid = str(row["trajectory_id"])
        record: dict[str, object] = {"messages": _messages(row["messages"], tid), "id": tid}
        tools = row.get("tools")
        if isinstance(tools, str) and tools.strip():
            record["tools"] = json.loads(tools)
        for name in EXPORT_FIELDS[1:]:
            record[name] = _plain(row.get(name))
        if not record["problem_id"]:
            record["problem_id"] = record["pool_id"]
        records.append(record)
    return records


def read_overrides(path: str | Path) -> dict[str, str]:
    """Manual overrides from a JSON object {problem_id: trajectory_id} (or a list of such pairs)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = {str(item["problem_id"]): str(item["trajectory_id"]) for item in data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: overrides must be a JSON object mapping problem ids to trajectory ids")
    return {str(k): str(v) for k, v in data.items()}
