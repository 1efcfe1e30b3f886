"""LARK's per-problem learnability score and its chi-square top-B weights (arXiv 2605.30651).

Per trajectory k, from one forward pass of the student: L_k = mean cross-entropy of the response tokens (the
table's `avg_surprisal`) and rho_k = Brier_k / L_k (`lark_rho`, 0 where L_k <= 1e-30). Per problem (a candidate
pool), over its candidates i:

    g_hat_k = (L_k / sum_i L_i) * (2 rho_k - sum_i rho_i L_i / sum_i L_i)

A pool of one candidate has g_hat = rho (NaN if its L <= 1e-30, as below). Higher is more learnable.

Chi-square top-B (LARK's `chi2_topb_weights`): with e the pool's g_hat sorted descending, A its B highest,
e_{B+1} the first left out and mean_A the mean over A,

    q_k = (e_k - e_{B+1}) / (B (mean_A - e_{B+1}))   for k in A, 0 otherwise,

the closed-form maximiser of <q, e> under a chi-square bound around uniform; 1/B each when mean_A - e_{B+1} <=
1e-12 (all of A equal). The weights of a pool sum to 1. When B >= the number of valid candidates, B_eff is that
number and the threshold is the lowest kept value minus 1e-8, exactly as LARK's script does: its lowest kept
candidate then gets a weight near 0 (not 1/B). A candidate tied with e_{B+1} may be kept with weight 0, as there.

NaN: a candidate whose L or rho is NaN (no scored tokens, a table without the column) is left out of its pool's
sums and gets g_hat NaN; a pool whose sum of L is <= 1e-30 gets NaN throughout, as LARK's script does. NaN (or
infinite) energies are never kept by the top-B rule and weigh 0. Pure numpy/pandas.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

EPS_L = 1e-30  # LARK: sums of L at or below this leave g_hat undefined
EPS_DENOM = 1e-12  # LARK: mean_A - e_{B+1} at or below this means all of A are equal -> 1/B each
BELOW_MIN = 1e-8  # LARK: with every valid candidate kept, the threshold is the lowest kept value minus this


def check_b(b: int) -> int:
    """b as an int >= 1, else ValueError."""
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"top-B needs an integer B >= 1, not {b!r}")
    return int(b)


def pool_g_hat(avg_surprisal: np.ndarray, rho: np.ndarray, pool_codes: np.ndarray) -> np.ndarray:
    """[n] g_hat of every trajectory, all pools at once (sums by `np.bincount`).

    avg_surprisal: [n] L_k; rho: [n] rho_k; pool_codes: [n] int, equal for the candidates of one pool (any ints).
    NaN where L or rho is NaN or infinite, and for every candidate of a pool whose sum of L is <= 1e-30.
    """
    loss = np.asarray(avg_surprisal, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    codes = np.asarray(pool_codes)
    if not loss.shape == rho.shape == codes.shape or loss.ndim != 1:
        raise ValueError(f"pool_g_hat needs three [n] arrays, got shapes {loss.shape}, {rho.shape}, {codes.shape}")
    if not loss.size:
        return np.empty(0)
    _, codes = np.unique(codes, return_inverse=True)
    valid = np.isfinite(loss) & np.isfinite(rho)
    n_pools = int(codes.max()) + 1
    at = codes[valid]
    sum_l = np.bincount(at, weights=loss[valid], minlength=n_pools)[codes]
    sum_rho_l = np.bincount(at, weights=(rho * loss)[valid], minlength=n_pools)[codes]
    alone = np.bincount(at, minlength=n_pools)[codes] == 1
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (loss / sum_l) * (2.0 * rho - sum_rho_l / sum_l)
    g = np.where(alone, rho, g)  # the formula's value, without its rounding
    g[~valid | ~(sum_l > EPS_L)] = np.nan
    return g


def chi2_weights(energies: np.ndarray, b: int) -> np.ndarray:
    """[m] LARK's chi-square top-B weights of one pool's energies [m] (any order; NaN or infinite: weight 0).

    Ties go to the earlier position (LARK's stable sort). All zeros when no energy is defined (LARK's script
    falls back to 1/m there; the selection keeps one candidate of such a pool instead, as for any undefined
    metric). Written as LARK's script is, to check `top_b` against.
    """
    b = check_b(b)
    e = np.asarray(energies, dtype=np.float64)
    weights = np.zeros(e.size)
    valid = np.flatnonzero(np.isfinite(e))
    if not valid.size:
        return weights
    ranked = valid[np.argsort(-e[valid], kind="stable")]
    b_eff = min(b, ranked.size)
    top = ranked[:b_eff]
    threshold = e[ranked[b_eff]] if b_eff < ranked.size else e[top[-1]] - BELOW_MIN
    denom = float(np.sum(e[top])) / b_eff - threshold
    weights[top] = 1.0 / b_eff if denom <= EPS_DENOM else (e[top] - threshold) / (denom * b_eff)
    return weights


def top_b(scores: np.ndarray, pool_codes: np.ndarray, tie_codes: np.ndarray, b: int, *, chi2: bool = True,
          eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([n] bool kept, [n] float64 weight): the `b` highest scores of every pool at once, weighted.

    scores: [n], higher is better; NaN or infinite never kept. pool_codes, tie_codes: [n] ints; equal scores go
    to the smaller tie code. eligible: [n] bool, the rows that may be kept (all when None). chi2: LARK's
    chi-square weights of the scores (`chi2_weights`), else 1/(number kept) each. Rows not kept weigh 0.
    """
    b = check_b(b)
    scores = np.asarray(scores, dtype=np.float64)
    pools, ties = np.asarray(pool_codes), np.asarray(tie_codes)
    ok = np.isfinite(scores) if eligible is None else np.isfinite(scores) & np.asarray(eligible, dtype=bool)
    kept, weight = np.zeros(scores.size, dtype=bool), np.zeros(scores.size)
    rows = np.flatnonzero(ok)
    if not rows.size:
        return kept, weight
    order = rows[np.lexsort((ties[rows], -scores[rows], pools[rows]))]
    codes, e = pools[order], scores[order]
    first = np.r_[True, codes[1:] != codes[:-1]]
    starts = np.flatnonzero(first)
    segment = np.cumsum(first) - 1
    count = np.diff(np.r_[starts, order.size])  # [pools] valid candidates
    b_eff = np.minimum(b, count)
    keep = np.arange(order.size) - starts[segment] < b
    kept[order[keep]] = True
    if not chi2:
        weight[order[keep]] = 1.0 / b_eff[segment[keep]]
        return kept, weight
    mean = np.bincount(segment[keep], weights=e[keep], minlength=starts.size) / b_eff
    after = np.minimum(starts + b_eff, order.size - 1)  # e_{B+1} where there is one
    threshold = np.where(b_eff < count, e[after], e[starts + b_eff - 1] - BELOW_MIN)
    denom = (mean - threshold)[segment]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(denom <= EPS_DENOM, 1.0 / b_eff[segment], (e - threshold[segment]) / (denom * b_eff[segment]))
    weight[order[keep]] = w[keep]
    return kept, weight


def with_lark_g(pooled: pd.DataFrame) -> pd.DataFrame:
    """The pooled table (`pool_id`, `avg_surprisal`, `lark_rho`) with `lark_g`: `pool_g_hat` over its pools (its
    `_pool` codes when it has them), replacing any `lark_g` it had (another pooling gives other values); all NaN
    without `lark_rho`."""
    if "lark_rho" not in pooled or "avg_surprisal" not in pooled:
        return pooled.assign(lark_g=np.full(len(pooled), np.nan))
    numbers = [pd.to_numeric(pooled[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
               for c in ("avg_surprisal", "lark_rho")]
    codes = pooled["_pool"].to_numpy() if "_pool" in pooled else pd.factorize(pooled["pool_id"].astype(str))[0]
    return pooled.assign(lark_g=pool_g_hat(*numbers, codes))
