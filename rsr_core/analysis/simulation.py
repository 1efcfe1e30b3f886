"""The paper's toy simulation of the zone of proximal development (arXiv 2601.14249, section 4 of the reference).

A student's next-token distribution over a toy vocabulary of V tokens is a two-mode mixture
Z = w * Z_A + (1 - w) * Z_B. Z_A is a Zipf(alpha) distribution over the token ids in their natural order
(token 0 most likely); Z_B is Z_A cyclically shifted by `shift` token ids (token `shift` most likely): a minor
but familiar mode. Tokens are sampled from four sources and scored under Z:

- A: the major mode Z_A (too familiar: high probability, little to learn);
- B: the minor mode Z_B (low probability, yet high rank: the effective kind);
- C: an unrelated distribution: Zipf(alpha) whose ranking is a fixed random permutation of the vocabulary;
- D: the mixture Z itself.

Conventions: rank is 1-based (1 + number of tokens with a strictly higher probability), surprisal in nats.
The paper's "RSR_token" column is the plain token average of rank / surprisal (mean of per-token ratios), not the
ratio of sums: with the defaults the ratio of sums (the Eq. 7 form) gives about 1.80, 1.59, 2.45 and 1.73
instead of the paper's 1.69, 1.30, 2.23 and 1.62. Both are returned (`rsr_token` and `rsr`); they order the four
sources the same way (B lowest).

Default variant, found by comparing exact expectations with the paper's table (see `PAPER_TABLE`): V = 50,
alpha = 2.3, w = 0.8, cyclic shift 15 (every A, B and D entry within 1.9 standard errors of a 10,000-token sample);
for C, the permutation drawn by `numpy.random.default_rng(89470)`. A typical random permutation makes C far less
aligned (mean probability near 1/V); the paper's C row (mean probability 0.08) needs C's second most likely token to
fall on Z's mode, which this permutation does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from rsr_core.analysis.metrics import clipped_rank

SOURCES = ("A", "B", "C", "D")
SOURCE_LABELS = {
    "A": "X_A: major mode (too familiar)",
    "B": "X_B: minor mode (stretch but reachable)",
    "C": "X_C: unrelated distribution (misaligned)",
    "D": "X_D: the student's own mixture",
}
# The paper's table: source -> (mean probability, mean surprisal, mean rank, RSR_token).
PAPER_TABLE = {
    "A": (0.41, 1.38, 2.49, 1.69),
    "B": (0.10, 2.73, 4.31, 1.30),
    "C": (0.08, 4.73, 11.57, 2.23),
    "D": (0.35, 1.67, 2.93, 1.62),
}
STAT_NAMES = ("mean_probability", "mean_surprisal", "mean_rank", "rsr_token")


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of the simulation; the defaults reproduce the paper's table."""

    vocab_size: int = 50
    alpha: float = 2.3  # Zipf exponent of both modes and of the unrelated distribution
    weight: float = 0.8  # w, the weight of the major mode Z_A
    shift: int = 15  # token ids by which Z_B is cyclically shifted from Z_A
    n_samples: int = 10_000  # tokens sampled per source
    seed: int = 0  # seed of the token sampling
    unrelated_seed: int = 89470  # seed of the permutation that defines the unrelated distribution C


@dataclass(frozen=True)
class SourceStats:
    """What the student sees, on average, for tokens from one source."""

    source: str
    mean_probability: float
    mean_surprisal: float
    mean_rank: float
    rsr_token: float  # mean of per-token rank / surprisal: the paper's column
    rsr: float  # sum of ranks / sum of surprisals: the Eq. 7 form
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def zipf(alpha: float, vocab_size: int) -> np.ndarray:
    """[V] Zipf(alpha) over token ids 0..V-1: p(i) proportional to (i + 1) ** -alpha."""
    p = np.arange(1, vocab_size + 1, dtype=np.float64) ** -float(alpha)
    return p / p.sum()


def unrelated_permutation(cfg: SimulationConfig) -> np.ndarray:
    """[V] token ids: entry j is the token that gets C's j-th largest probability."""
    return np.random.default_rng(cfg.unrelated_seed).permutation(cfg.vocab_size)


def source_distributions(cfg: SimulationConfig) -> dict[str, np.ndarray]:
    """The four sampling distributions, each [V]: A, B (A shifted by cfg.shift), C (unrelated), D (the mixture)."""
    p_a = zipf(cfg.alpha, cfg.vocab_size)
    p_b = np.roll(p_a, cfg.shift)
    p_c = np.empty_like(p_a)
    p_c[unrelated_permutation(cfg)] = p_a
    return {"A": p_a, "B": p_b, "C": p_c, "D": cfg.weight * p_a + (1.0 - cfg.weight) * p_b}


def student_distribution(cfg: SimulationConfig) -> np.ndarray:
    """[V] the student's next-token distribution Z = w * Z_A + (1 - w) * Z_B."""
    return source_distributions(cfg)["D"]


def ranks(dist: np.ndarray) -> np.ndarray:
    """[V] -> [V] int64 1-based rank of every token: 1 + number of tokens with a strictly higher probability."""
    d = np.asarray(dist, dtype=np.float64)
    return 1 + (d[None, :] > d[:, None]).sum(axis=1).astype(np.int64)


def token_stats(tokens: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probability, surprisal (nats) and 1-based rank of each token id under `dist`. tokens: [N] -> three [N]."""
    d = np.asarray(dist, dtype=np.float64)
    p = d[tokens]
    return p, -np.log(p), ranks(d)[tokens]


def summarise(source: str, probability: np.ndarray, surprisal: np.ndarray, rank: np.ndarray) -> SourceStats:
    """Means over tokens, the paper's mean per-token ratio and the ratio of sums. All inputs [N]."""
    r = rank.astype(np.float64)
    return SourceStats(source=source, mean_probability=float(probability.mean()),
                       mean_surprisal=float(surprisal.mean()), mean_rank=float(r.mean()),
                       rsr_token=float((r / surprisal).mean()), rsr=float(r.sum() / surprisal.sum()),
                       n=int(probability.size))


def sample_tokens(cfg: SimulationConfig) -> dict[str, np.ndarray]:
    """cfg.n_samples token ids per source, [N] each, from one seeded generator (sources drawn in order A-D)."""
    rng = np.random.default_rng(cfg.seed)
    dists = source_distributions(cfg)
    return {s: rng.choice(cfg.vocab_size, size=cfg.n_samples, p=dists[s]) for s in SOURCES}


def simulate(cfg: SimulationConfig = SimulationConfig()) -> dict[str, SourceStats]:
    """Sample every source and score its tokens under the student's mixture Z: the paper's table."""
    z = student_distribution(cfg)
    return {s: summarise(s, *token_stats(x, z)) for s, x in sample_tokens(cfg).items()}


def expected_stats(cfg: SimulationConfig = SimulationConfig()) -> dict[str, SourceStats]:
    """The exact expectations of `simulate` (infinitely many samples); `rsr` is E[rank] / E[surprisal]."""
    z = student_distribution(cfg)
    s, r = -np.log(z), ranks(z).astype(np.float64)
    out = {}
    for name, q in source_distributions(cfg).items():
        out[name] = SourceStats(source=name, mean_probability=float(q @ z), mean_surprisal=float(q @ s),
                                mean_rank=float(q @ r), rsr_token=float(q @ (r / s)),
                                rsr=float((q @ r) / (q @ s)), n=0)
    return out


def standard_errors(cfg: SimulationConfig = SimulationConfig()) -> dict[str, tuple[float, float, float, float]]:
    """Standard error of each `STAT_NAMES` mean for a sample of cfg.n_samples tokens, per source."""
    z = student_distribution(cfg)
    s, r = -np.log(z), ranks(z).astype(np.float64)
    per_token = np.stack([z, s, r, r / s], axis=1)  # [V, 4]
    out = {}
    for name, q in source_distributions(cfg).items():
        mean = q @ per_token
        var = q @ (per_token - mean) ** 2
        out[name] = tuple(float(v) for v in np.sqrt(var / cfg.n_samples))
    return out


def with_params(cfg: SimulationConfig, **changes) -> SimulationConfig:
    """A copy of cfg with some fields changed (for sliders)."""
    return replace(cfg, **changes)


# --- one token, for the "drag a token's probability" widget ---------------------------------------------------

@dataclass(frozen=True)
class TokenPlacement:
    """Where one token of probability p lands in the student's distribution."""

    probability: float
    surprisal: float  # -ln p, nats
    rank: int  # 1-based
    clipped_rank: int  # min(rank, r_max)
    ratio: float  # clipped_rank / surprisal: the token's own r/s (inf when p = 1)


def place_token(probability: float, others: np.ndarray, r_max: int = 100) -> TokenPlacement:
    """Rank and surprisal of a token with probability p when the rest of the mass, 1 - p, is spread like `others`.

    others: [V-1] non-negative weights of the other tokens (renormalised to sum to 1 - p). The rank is
    1 + the number of other tokens whose probability is strictly higher than p.
    """
    p = float(np.clip(probability, 1e-12, 1.0))
    o = np.asarray(others, dtype=np.float64)
    o = o / o.sum() * (1.0 - p) if o.sum() > 0 else o
    rank = 1 + int((o > p).sum())
    s = -np.log(p)
    clipped = int(clipped_rank(rank, r_max))
    return TokenPlacement(probability=p, surprisal=float(s), rank=rank, clipped_rank=clipped,
                          ratio=float(clipped / s) if s > 0 else float("inf"))


@dataclass(frozen=True)
class RsrContribution:
    """How one token moves a trajectory's RSR (Eq. 7)."""

    rsr_without: float  # RSR of the rest of the trajectory
    rsr_with: float  # RSR once the token is added
    delta: float  # rsr_with - rsr_without
    weight: float  # the token's weight s / (S + s) in the surprisal-weighted average of r/s


def rsr_contribution(clipped_rank: float, surprisal: float, rest_rank_sum: float,
                     rest_surprisal_sum: float) -> RsrContribution:
    """Eq. 7 with and without one token: (R + r) / (S + s) against R / S. R, S: sums over the other tokens.

    Because RSR is the surprisal-weighted average of the per-token ratios r/s, a token pulls the trajectory's RSR
    towards its own ratio with weight s / (S + s): low-surprisal tokens barely count, whatever their ratio.
    """
    total_s = rest_surprisal_sum + surprisal
    without = rest_rank_sum / rest_surprisal_sum if rest_surprisal_sum > 0 else float("nan")
    with_token = (rest_rank_sum + clipped_rank) / total_s if total_s > 0 else float("nan")
    return RsrContribution(rsr_without=float(without), rsr_with=float(with_token),
                           delta=float(with_token - without),
                           weight=float(surprisal / total_s) if total_s > 0 else float("nan"))


def sample_trajectory(cfg: SimulationConfig, n_tokens: int, source: str = "D",
                      r_max: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A toy trajectory of n_tokens from one source, scored under Z: ([N] clipped rank, [N] surprisal)."""
    rng = np.random.default_rng(cfg.seed + 1)
    z = student_distribution(cfg)
    x = rng.choice(cfg.vocab_size, size=n_tokens, p=source_distributions(cfg)[source])
    _, s, r = token_stats(x, z)
    return clipped_rank(r, r_max), s
