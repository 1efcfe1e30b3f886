"""Where selection rules agree and disagree: picks per pool, pairwise agreement, the most disputed problems, and
the teacher ranking under each metric.

A selection rule keeps one trajectory per pool (problem) from the candidates of every teacher. Before trusting
one, it helps to see how often two rules keep the same trajectory (against the share two uniform random picks
would reach), which problems they disagree on most, and whether they rank the teachers alike.

Conventions are those of `rsr_core.analysis.selection`: a rule picks per pool the min (or max) of a column; a
non-finite value never wins; ties go to the smallest trajectory id; `random` is a seeded uniform draw assigned
in (pool_id, trajectory_id) order, so it keeps what `selection.select(mode='random', seed=...)` keeps on a table
of complete generations. Unlike `select`, a pool whose values are all undefined under a rule gets no pick
(`NO_PICK`) from that rule, and a rule whose column is absent or wholly undefined (LARK on old data) is reported
unavailable by `rule_availability` and picks nothing anywhere, rather than failing.

Input: a pooled trajectory table (one row per trajectory) with `pool_id`, `trajectory_id`, `teacher` and the
metric columns; the integer sort codes `selection.prepare_pools` leaves in it (`_pool`, `_id_rank`) are reused
when present. Everything is vectorised over pool codes: no Python loop over pools or rows.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from rsr_core.analysis.metrics import dataset_rsr, group_rows, metric_columns, scored_columns
from rsr_core.analysis.pools import sort_codes

NO_PICK = -1  # the row position a rule gives a pool where it picks nothing


@dataclass(frozen=True)
class Rule:
    """A selection rule: keep per pool the `direction` ('min', 'max' or 'random') of `column`."""

    name: str
    column: str | None  # None for random
    direction: str
    description: str = ""


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("RSR", "rsr", "min", "lowest trajectory Rank-Surprisal Ratio"),
    Rule("LARK", "lark_g", "max", "highest LARK g"),
    Rule("Avg-Surprisal", "avg_surprisal", "min", "lowest mean surprisal under the student"),
    Rule("Entropy", "avg_entropy", "min", "lowest mean student entropy"),
    Rule("Random", None, "random", "a seeded uniform draw"),
)}
DEFAULT_RULES = tuple(RULES)
TEACHER_METRICS = tuple(r for r in RULES.values() if r.column)  # a teacher's score under each metric rule
_PICK_BASE = ["pool_id", "pool_size"]
_AGREEMENT_COLUMNS = ["rule_a", "rule_b", "n_problems", "n_same", "share", "low", "high", "chance", "n_single",
                      "n_undefined"]
_DISAGREEMENT_COLUMNS = ["rule_a", "rule_b", "pool_id", "pool_size",
                         "a_trajectory_id", "a_teacher", "a_value_a", "a_value_b", "a_rank_b",
                         "b_trajectory_id", "b_teacher", "b_value_a", "b_value_b", "b_rank_a", "score"]


def _rule(rule: str | Rule) -> Rule:
    """The registry's rule of a name (a `Rule` passes through)."""
    if isinstance(rule, Rule):
        return rule
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
    return RULES[rule]


def _values(pooled: pd.DataFrame, column: str | None) -> np.ndarray:
    """[n] float64 of a column, NaN where missing or not numeric (all NaN without the column)."""
    if column is None or column not in pooled:
        return np.full(len(pooled), np.nan)
    numeric = pd.to_numeric(pooled[column], errors="coerce").astype("Float64")
    return numeric.to_numpy(dtype=float, na_value=np.nan)


def _oriented(pooled: pd.DataFrame, rule: Rule) -> np.ndarray:
    """[n] values of a metric rule to sort ascending (negated for max), NaN where not finite."""
    values = _values(pooled, rule.column)
    values = np.where(np.isfinite(values), values, np.nan)
    return -values if rule.direction == "max" else values


def rule_availability(pooled: pd.DataFrame, rules: Sequence[str | Rule] = DEFAULT_RULES) -> pd.DataFrame:
    """One row per rule: rule, column, direction, available, reason ('' when available).

    A metric rule is unavailable when its column is absent or has no finite value; random, when the table is empty.
    """
    rows = []
    for rule in map(_rule, rules):
        if not len(pooled):
            reason = "the table is empty"
        elif rule.column is None:
            reason = ""
        elif rule.column not in pooled:
            reason = f"no column {rule.column!r} in the table"
        elif not np.isfinite(_values(pooled, rule.column)).any():
            reason = f"no defined value in column {rule.column!r}"
        else:
            reason = ""
        rows.append({"rule": rule.name, "column": rule.column or "", "direction": rule.direction,
                     "available": reason == "", "reason": reason})
    return pd.DataFrame(rows, columns=["rule", "column", "direction", "available", "reason"])


def pool_codes(pooled: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """([n] int64 pool index 0..P-1 in pool_id order, [n] int64 codes that sort as trajectory_id): from the sort
    codes `selection.prepare_pools` left in the table, else from `pools.sort_codes` of the ids."""
    if not len(pooled):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pool = np.asarray(pooled["_pool"] if "_pool" in pooled else sort_codes(pooled["pool_id"]), dtype=np.int64)
    ids = np.asarray(pooled["_id_rank"] if "_id_rank" in pooled else sort_codes(pooled["trajectory_id"]), np.int64)
    pool = pool - pool.min()
    if not np.bincount(pool).all():  # not dense ranks: make them so
        pool = np.unique(pool, return_inverse=True)[1].ravel().astype(np.int64)
    return pool, ids


@dataclass(frozen=True)
class _PoolOrder:
    """The rows in (pool, trajectory id) order: order [n] row positions, starts [P] where each pool begins in
    it, segment [n] the pool index of each position (sorted)."""

    order: np.ndarray
    starts: np.ndarray
    segment: np.ndarray

    @classmethod
    def of(cls, pool: np.ndarray, ids: np.ndarray) -> _PoolOrder:
        order = np.lexsort((ids, pool))
        segment = pool[order]
        starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]]) if order.size else order
        return cls(order, starts, segment)

    def first_minimum(self, sorted_values: np.ndarray) -> np.ndarray:
        """[P] row position of each pool's smallest value (ties to the smallest trajectory id), NO_PICK where the
        pool has none. sorted_values: [n] in this order, NaN undefined."""
        n = self.order.size
        if not n:
            return np.zeros(0, np.int64)
        low = np.fmin.reduceat(sorted_values, self.starts)  # NaN only where the whole pool is
        hit = np.where(sorted_values == low[self.segment], np.arange(n), n)
        first = np.minimum.reduceat(hit, self.starts)
        return np.where(first < n, self.order[np.minimum(first, n - 1)], NO_PICK).astype(np.int64)


def picks(pooled: pd.DataFrame, rules: Sequence[str | Rule] = DEFAULT_RULES, seed: int | None = 0,
          codes: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per pool, in pool_id order: pool_id, pool_size, then one int64 column per rule (named by the rule)
    holding the row position (`iloc`) in `pooled` of the rule's pick, `NO_PICK` (-1) where it picks nothing.

    `seed` drives the random rule; `codes`: `pool_codes(pooled)` when already computed. Pools of one candidate are
    kept here (`pool_size` 1); the agreement statistics leave them out. `picked_ids` turns positions into ids.
    """
    rules = [_rule(r) for r in rules]
    pool, ids = codes if codes is not None else pool_codes(pooled)
    at = _PoolOrder.of(pool, ids)
    size = np.diff(np.r_[at.starts, pool.size]).astype(np.int64)
    out = {"pool_id": pooled["pool_id"].to_numpy(dtype=object)[at.order[at.starts]].astype(str).astype(object),
           "pool_size": size}
    for rule in rules:
        if rule.direction == "random":
            values = np.random.default_rng(seed).random(pool.size)  # already in (pool, trajectory id) order
        else:
            values = _oriented(pooled, rule)[at.order]
        out[rule.name] = at.first_minimum(values)
    return pd.DataFrame(out, columns=[*_PICK_BASE, *(r.name for r in rules)])


def rule_names(picks_frame: pd.DataFrame) -> list[str]:
    """The rule columns of a `picks` frame, in order."""
    return [c for c in picks_frame.columns if c not in _PICK_BASE]


def picked_ids(pooled: pd.DataFrame, picks_frame: pd.DataFrame, column: str = "trajectory_id") -> pd.DataFrame:
    """The `picks` frame with each rule's row position replaced by that row's `column` (None where no pick)."""
    values = pooled[column].to_numpy(dtype=object) if len(pooled) else np.zeros(0, dtype=object)
    out = picks_frame.copy()
    for name in rule_names(picks_frame):
        at = picks_frame[name].to_numpy(np.int64)
        ok = at != NO_PICK
        col = np.full(at.size, None, dtype=object)
        col[ok] = values[at[ok]]
        out[name] = pd.Series(col, index=out.index, dtype=object)
    return out


def wilson_interval(k: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """([m] low, [m] high): the Wilson score interval of k successes in n trials (closed form, the interval
    `scipy.stats.binomtest(k, n).proportion_ci(method='wilson')` gives); NaN where n = 0."""
    k, n = np.atleast_1d(np.asarray(k, dtype=float)), np.atleast_1d(np.asarray(n, dtype=float))
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    low[k <= 0], high[k >= n] = 0.0, 1.0  # exact at the ends (float rounding would leave 1e-17)
    empty = n <= 0
    low[empty], high[empty] = np.nan, np.nan
    return low, high


def pairwise_agreement(picks_frame: pd.DataFrame, rules: Sequence[str] | None = None,
                       confidence: float = 0.95) -> pd.DataFrame:
    """One row per pair of rules (in the given order, a before b): rule_a, rule_b, n_problems, n_same, share, low,
    high, chance, n_single, n_undefined.

    n_problems: pools with >= 2 candidates where both rules picked; n_same: those where they picked the same
    trajectory; share = n_same / n_problems with its Wilson score interval [low, high] at `confidence` (over
    problems); chance: the share two independent uniform picks would reach, the mean of 1 / pool size over the same
    pools. n_single: pools left out for having one candidate (they agree trivially); n_undefined: pools of >= 2
    left out because a rule picked nothing there. share, low, high and chance are NaN where n_problems is 0 (an
    unavailable rule). rules: columns of `picks_frame` (default all of them).
    """
    rules = list(rules) if rules is not None else rule_names(picks_frame)
    size = picks_frame["pool_size"].to_numpy(np.int64)
    several = size >= 2
    inverse = np.where(several, 1.0 / np.maximum(size, 1), 0.0)
    rows = []
    for i, a in enumerate(rules):
        pa = picks_frame[a].to_numpy(np.int64)
        for b in rules[i + 1:]:
            pb = picks_frame[b].to_numpy(np.int64)
            both = several & (pa != NO_PICK) & (pb != NO_PICK)
            n, same = int(both.sum()), int((both & (pa == pb)).sum())
            rows.append({"rule_a": a, "rule_b": b, "n_problems": n, "n_same": same,
                         "share": same / n if n else np.nan,
                         "chance": float(inverse[both].sum() / n) if n else np.nan,
                         "n_single": int((~several).sum()), "n_undefined": int((several & ~both).sum())})
    out = pd.DataFrame(rows, columns=[c for c in _AGREEMENT_COLUMNS if c not in ("low", "high")])
    out["low"], out["high"] = wilson_interval(out["n_same"].to_numpy(), out["n_problems"].to_numpy(), confidence)
    return out[_AGREEMENT_COLUMNS].astype({"n_problems": np.int64, "n_same": np.int64, "n_single": np.int64,
                                            "n_undefined": np.int64})


def pair_matrix(pairs: pd.DataFrame, value: str = "share", diagonal: float = 1.0) -> pd.DataFrame:
    """The square, symmetric form of a pairwise table (`pairwise_agreement` or `rank_correlations`: its first two
    columns name the pair) for a heatmap: names in order of appearance, `value` off the diagonal, `diagonal` on it
    (NaN for a name whose every pair has a NaN `value`, an unavailable rule)."""
    a, b = pairs.columns[:2]
    names = list(dict.fromkeys([*pairs[a], *pairs[b]]))
    matrix = pd.DataFrame(np.nan, index=pd.Index(names, name=None), columns=names)
    for x, y, v in zip(pairs[a], pairs[b], pairs[value]):
        matrix.loc[x, y] = matrix.loc[y, x] = v
    for name in names:
        mine = pairs[(pairs[a] == name) | (pairs[b] == name)][value]
        matrix.loc[name, name] = diagonal if mine.notna().any() or len(names) == 1 else np.nan
    return matrix


def _rank_in(pool: np.ndarray, value: np.ndarray, at: np.ndarray, n_pools: int) -> np.ndarray:
    """[P] where the row `at[p]` of each pool sits in the order of `value` ([n], lower better, NaN undefined):
    the share of the pool's other defined candidates strictly better than it, in [0, 1] (0: as good as the best,
    1: the worst defined candidate), 1 where the row is undefined. at: [P] row positions (NO_PICK rows give NaN)."""
    picked = at != NO_PICK
    threshold = np.full(n_pools, np.nan)
    threshold[picked] = value[at[picked]]
    better = np.bincount(pool, weights=value < threshold[pool], minlength=n_pools)  # NaN compares False
    n_defined = np.bincount(pool, weights=~np.isnan(value), minlength=n_pools)
    rank = np.where(np.isnan(threshold), 1.0, better / np.maximum(n_defined - 1, 1))
    return np.where(picked, rank, np.nan)


def disagreements(pooled: pd.DataFrame, picks_frame: pd.DataFrame, a: str = "RSR", b: str = "LARK",
                  n: int | None = 20, codes: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """The `n` pools (None: all) where rules `a` and `b` disagree most, most disputed first.

    Pools with >= 2 candidates where both rules picked, and picked different trajectories. Score (scale-free, in
    [0, 2]): a_rank_b + b_rank_a, where a_rank_b is where a's pick sits in b's order within the pool, the share of
    the pool's other defined candidates b strictly prefers to it (0: b rates it as high as its own pick, 1: b's
    worst candidate, or undefined under b). Ties in score go to the smaller pool_id.

    Columns: rule_a, rule_b, pool_id, pool_size; for each pick x in (a, b): x_trajectory_id, x_teacher, x_value_a
    and x_value_b (its values in rule a's and rule b's columns), a_rank_b / b_rank_a; score. Empty (same columns)
    when either rule is unavailable or the rules never disagree. Both rules must be metric rules (not random).
    `codes`: `pool_codes(pooled)` when already computed.
    """
    ra, rb = _rule(a), _rule(b)
    if ra.column is None or rb.column is None:
        raise ValueError("disagreements compares two metric rules; random has no order within a pool")
    missing = [r.name for r in (ra, rb) if r.name not in picks_frame]
    if missing:
        raise ValueError(f"the picks hold no rule {', '.join(map(repr, missing))}; pass it to `picks`")
    pool = (codes if codes is not None else pool_codes(pooled))[0]
    n_pools = len(picks_frame)
    pa, pb = picks_frame[ra.name].to_numpy(np.int64), picks_frame[rb.name].to_numpy(np.int64)
    va, vb = _oriented(pooled, ra), _oriented(pooled, rb)
    a_rank_b, b_rank_a = _rank_in(pool, vb, pa, n_pools), _rank_in(pool, va, pb, n_pools)
    size = picks_frame["pool_size"].to_numpy(np.int64)
    keep = np.flatnonzero((size >= 2) & (pa != NO_PICK) & (pb != NO_PICK) & (pa != pb))
    score = a_rank_b[keep] + b_rank_a[keep]
    keep = keep[np.lexsort((keep, -np.round(score, 12)))]  # pool index order is pool_id order
    if n is not None:
        keep = keep[:max(int(n), 0)]
    at_a, at_b = pa[keep], pb[keep]
    raw_a, raw_b = _values(pooled, ra.column), _values(pooled, rb.column)
    ids, teachers = (pooled[c].astype(str).to_numpy() for c in ("trajectory_id", "teacher"))
    out = pd.DataFrame({
        "rule_a": ra.name, "rule_b": rb.name,
        "pool_id": picks_frame["pool_id"].to_numpy()[keep], "pool_size": size[keep],
        "a_trajectory_id": ids[at_a], "a_teacher": teachers[at_a], "a_value_a": raw_a[at_a],
        "a_value_b": raw_b[at_a], "a_rank_b": a_rank_b[keep],
        "b_trajectory_id": ids[at_b], "b_teacher": teachers[at_b], "b_value_a": raw_a[at_b],
        "b_value_b": raw_b[at_b], "b_rank_a": b_rank_a[keep],
        "score": a_rank_b[keep] + b_rank_a[keep],
    }, columns=_DISAGREEMENT_COLUMNS)
    return out.reset_index(drop=True)


def _mean_known(values: np.ndarray) -> float:
    """Mean of the finite values, NaN when there is none (no warning)."""
    known = values[np.isfinite(values)]
    return float(known.mean()) if known.size else float("nan")


def teacher_rankings(pooled: pd.DataFrame, metrics: Sequence[str | Rule] = TEACHER_METRICS) -> pd.DataFrame:
    """One row per teacher (sorted by name): teacher, n_trajectories, one score column per metric (named by its
    column) and rank_<column> (Int64, 1 = best, ties share the better rank, <NA> where the score is undefined).

    Scores over the teacher's scored trajectories (n_tokens > 0): `rsr` is the dataset RSR (Eq. 9,
    `metrics.dataset_rsr`: mean avg_rank_clipped / mean avg_surprisal), lower better; any other column its mean
    (NaN ignored), better in the rule's direction (avg_surprisal, avg_entropy lower; lark_g higher). A metric whose
    column is absent scores NaN for every teacher.
    """
    metrics = [_rule(m) for m in metrics]
    columns = metric_columns(pooled)
    for rule in metrics:
        if rule.column not in columns:
            columns[rule.column] = _values(pooled, rule.column)
    columns.setdefault("avg_rank_clipped", np.full(len(pooled), np.nan))
    columns.setdefault("avg_surprisal", np.full(len(pooled), np.nan))
    frame = pd.DataFrame({"teacher": pooled["teacher"].astype(str).to_numpy(dtype=object)})
    rows = []
    for (teacher,), at in group_rows(frame, ["teacher"]):
        t = scored_columns(columns, at)
        row = {"teacher": teacher, "n_trajectories": int(at.size)}
        for rule in metrics:
            row[rule.column] = (dataset_rsr(t["avg_rank_clipped"], t["avg_surprisal"]) if rule.column == "rsr"
                                else _mean_known(t[rule.column]))
        rows.append(row)
    out = pd.DataFrame(rows, columns=["teacher", "n_trajectories", *(r.column for r in metrics)])
    for rule in metrics:
        scores = out[rule.column].astype(float)
        out[f"rank_{rule.column}"] = scores.rank(method="min", ascending=rule.direction != "max").astype("Int64")
    return out.astype({"n_trajectories": np.int64})


def rank_correlations(rankings: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of metrics of a `teacher_rankings` frame (its rank_<metric> columns): metric_a, metric_b,
    n_teachers, rho.

    rho: Spearman's rank correlation (`scipy.stats.spearmanr`, ties averaged) between the two metrics' teacher
    rankings (1 = best under each, so positive when they rank the teachers alike), over the teachers ranked under
    both. NaN, without a warning, with fewer than 3 such teachers or when one ranking puts them all level.
    """
    metrics = [c[len("rank_"):] for c in rankings.columns if c.startswith("rank_")]
    rows = []
    for i, a in enumerate(metrics):
        for b in metrics[i + 1:]:
            x, y = (rankings[f"rank_{m}"].to_numpy(dtype=float, na_value=np.nan) for m in (a, b))
            ok = np.isfinite(x) & np.isfinite(y)
            rows.append({"metric_a": a, "metric_b": b, "n_teachers": int(ok.sum()), "rho": _spearman(x[ok], y[ok])})
    return pd.DataFrame(rows, columns=["metric_a", "metric_b", "n_teachers", "rho"]).astype({"n_teachers": np.int64})


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two [t] arrays; NaN for fewer than 3 values or a constant one."""
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(x, y).statistic)


@dataclass(frozen=True)
class RuleComparison:
    """Everything the comparison of rules shows for one pooled table (`compare_rules`)."""

    availability: pd.DataFrame  # rule_availability
    picks: pd.DataFrame  # picks, one row per pool
    agreement: pd.DataFrame  # pairwise_agreement, the available rules
    disagreements: pd.DataFrame  # disagreements of RSR and LARK, all of them, most disputed first
    rankings: pd.DataFrame  # teacher_rankings
    correlations: pd.DataFrame  # rank_correlations

    def available(self) -> list[str]:
        """The rules that pick anything here."""
        return self.availability.loc[self.availability["available"], "rule"].tolist()


def compare_rules(pooled: pd.DataFrame, seed: int = 0, rules: Sequence[str | Rule] = DEFAULT_RULES,
                  a: str = "RSR", b: str = "LARK") -> RuleComparison:
    """The comparison of `rules` on a pooled table in one call, each step on the same pool codes: a page caches
    this per table and r_max (a few tenths of a second at 165,000 trajectories)."""
    availability = rule_availability(pooled, rules)
    usable = [r for r, ok in zip(availability["rule"], availability["available"]) if ok]
    codes = pool_codes(pooled)
    chosen = picks(pooled, usable, seed=seed, codes=codes)
    disputed = (disagreements(pooled, chosen, a, b, n=None, codes=codes) if a in usable and b in usable
                else pd.DataFrame(columns=_DISAGREEMENT_COLUMNS))
    metrics = [r for r in TEACHER_METRICS if r.name in usable]
    rankings = teacher_rankings(pooled, metrics)
    return RuleComparison(availability, chosen, pairwise_agreement(chosen, usable), disputed, rankings,
                          rank_correlations(rankings))
