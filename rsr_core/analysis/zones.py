"""Per-token zones, GLTR-style rank bins and colour scales for the token views. Pure: no Streamlit.

Zones (RSR's reading of the zone of proximal development), from a token's 1-based rank r and surprisal s (nats),
with a surprisal threshold s0 and a rank threshold k:

| zone | rule | reading |
| --- | --- | --- |
| `too_familiar` | r = 1 and s < s0 | the student's own top choice, confidently: little to learn |
| `zone` | s >= s0 and r <= k | unlikely yet near the top: stretch but reachable (low r/s) |
| `alien` | s >= s0 and r > k | unlikely and far down the student's ranking: misaligned |
| `neutral` | s < s0 and r > 1 | likely yet not the top choice: a near-tie between two or more candidates |

Every (r, s) falls in exactly one zone. `neutral` is rare at s0 = 1 nat (the token and a better-ranked rival
must both have p > e^-1 = 0.37) and grows as s0 rises. A rank-1 token with s >= s0 (an uncertain top choice)
is in the `zone`. Ranks are compared unclipped; r_max matters only for the colour scale and for RSR.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from rsr_core.analysis.metrics import clipped_rank

ZONES = ("too_familiar", "zone", "alien", "neutral")
ZONE_LABELS = {
    "too_familiar": "too familiar",
    "zone": "in the zone",
    "alien": "alien",
    "neutral": "near-tie (neutral)",
}
ZONE_COLOURS = {
    "too_familiar": "#9ecae1",  # light blue
    "zone": "#74c476",  # green
    "alien": "#fb6a4a",  # red
    "neutral": "#e0e0e0",  # light grey
}
SURPRISAL_THRESHOLD = 1.0  # nats
RANK_THRESHOLD = 10

# GLTR-style bins over 1-based ranks (GLTR's own ranks start at 0: its "< 10" is our 1-10).
RANK_BIN_EDGES = (10, 100, 1000)
RANK_BIN_LABELS = ("1-10", "11-100", "101-1000", ">1000")
RANK_BIN_COLOURS = ("#adff80", "#ffea80", "#ff9280", "#e5b0ff")  # GLTR's green, yellow, red, purple

RANK_SCALE = ("#1a9850", "#fee08b", "#d73027")  # rank 1 -> r_max, on a log axis
SURPRISAL_SCALE = ("#fff7ec", "#fdbb84", "#d7301f", "#7f0000")  # 0 -> surprisal_max nats
SURPRISAL_MAX = 10.0


@dataclass(frozen=True)
class ZoneThresholds:
    """The two thresholds of the zone view; the UI lets the user edit both."""

    surprisal: float = SURPRISAL_THRESHOLD  # nats
    rank: int = RANK_THRESHOLD


def zone_of(rank: int, surprisal: float, thresholds: ZoneThresholds = ZoneThresholds()) -> str:
    """The zone of one token (see the module docstring)."""
    if surprisal < thresholds.surprisal:
        return "too_familiar" if rank <= 1 else "neutral"
    return "zone" if rank <= thresholds.rank else "alien"


def classify_zones(rank: np.ndarray, surprisal: np.ndarray,
                   thresholds: ZoneThresholds = ZoneThresholds()) -> np.ndarray:
    """[T] rank, [T] surprisal -> [T] zone names (object array of `ZONES` entries)."""
    r = np.asarray(rank)
    s = np.asarray(surprisal, dtype=np.float64)
    low = s < thresholds.surprisal
    out = np.where(low, np.where(r <= 1, "too_familiar", "neutral"),
                   np.where(r <= thresholds.rank, "zone", "alien"))
    return out.astype(object)


def zone_summary(rank: np.ndarray, surprisal: np.ndarray, r_max: int = 100,
                 thresholds: ZoneThresholds = ZoneThresholds()) -> dict[str, dict[str, float]]:
    """Per zone: token count, share of tokens, and share of the RSR numerator (clipped ranks) and denominator
    (surprisals) it supplies, so a page can say which zone drives a trajectory's RSR. rank, surprisal: [T]."""
    zones = classify_zones(rank, surprisal, thresholds)
    rc = clipped_rank(rank, r_max)
    s = np.asarray(surprisal, dtype=np.float64)
    n, rank_total, s_total = len(s), rc.sum(), s.sum()
    out = {}
    for z in ZONES:
        m = zones == z
        out[z] = {
            "n_tokens": int(m.sum()),
            "token_share": float(m.mean()) if n else float("nan"),
            "rank_share": float(rc[m].sum() / rank_total) if rank_total > 0 else float("nan"),
            "surprisal_share": float(s[m].sum() / s_total) if s_total > 0 else float("nan"),
        }
    return out


def rank_bin(rank: int) -> int:
    """GLTR-style bin index of a 1-based rank: 0 for 1-10, 1 for 11-100, 2 for 101-1000, 3 for > 1000.

    GLTR's ranks are 0-based (its top bin is "rank < 10"), so the bins cover the same tokens.
    """
    for i, edge in enumerate(RANK_BIN_EDGES):
        if rank <= edge:
            return i
    return len(RANK_BIN_EDGES)


def rank_bins(rank: np.ndarray) -> np.ndarray:
    """[T] 1-based ranks -> [T] int bin indices (see `rank_bin`)."""
    return np.searchsorted(np.asarray(RANK_BIN_EDGES), np.asarray(rank), side="left").astype(np.int64)


# --- colours ---------------------------------------------------------------------------------------------------

def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _rgb_to_hex(rgb) -> str:
    return "#" + "".join(f"{int(round(min(max(v, 0), 255))):02x}" for v in rgb)


def interpolate(scale: tuple[str, ...], t: float) -> str:
    """Colour at position t in [0, 1] (clipped) along evenly spaced stops of `scale`."""
    return interpolate_many(scale, np.array([t], dtype=np.float64))[0]


def interpolate_many(scale: tuple[str, ...], t: np.ndarray) -> list[str]:
    """[T] colours at positions t [T] in [0, 1] (clipped; NaN and inf: 1) along evenly spaced stops of `scale`."""
    t = np.asarray(t, dtype=np.float64)
    t = np.clip(np.where(np.isfinite(t), t, 1.0), 0.0, 1.0)
    stops = np.array([_hex_to_rgb(c) for c in scale], dtype=np.float64)  # [K, 3]
    pos = t * (len(scale) - 1)
    i = np.minimum(pos.astype(np.int64), len(scale) - 2)
    f = (pos - i)[:, None]
    rgb = np.rint(np.clip(stops[i] + (stops[i + 1] - stops[i]) * f, 0, 255)).astype(np.int64)  # [T, 3]
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.tolist()]


def rank_colour(rank: float, r_max: int = 100) -> str:
    """Clipped-rank view: green at rank 1, yellow around sqrt(r_max), red at r_max and beyond (log scale)."""
    return rank_colours(np.array([rank], dtype=np.float64), r_max)[0]


def rank_colours(rank: np.ndarray, r_max: int = 100) -> list[str]:
    """[T] `rank_colour` of ranks [T]."""
    r_max = max(int(r_max), 2)
    r = np.clip(np.asarray(rank, dtype=np.float64), 1.0, float(r_max))
    return interpolate_many(RANK_SCALE, np.log(r) / np.log(r_max))


def surprisal_colour(surprisal: float, surprisal_max: float = SURPRISAL_MAX) -> str:
    """Surprisal view: near white at 0 nats, dark red at surprisal_max nats and beyond (linear)."""
    return surprisal_colours(np.array([surprisal], dtype=np.float64), surprisal_max)[0]


def surprisal_colours(surprisal: np.ndarray, surprisal_max: float = SURPRISAL_MAX) -> list[str]:
    """[T] `surprisal_colour` of surprisals [T] (nats)."""
    return interpolate_many(SURPRISAL_SCALE, np.asarray(surprisal, dtype=np.float64) / surprisal_max)


def zone_colour(zone: str) -> str:
    """Zone view: one colour per zone (`ZONE_COLOURS`)."""
    return ZONE_COLOURS[zone]


def rank_bin_colour(rank: int) -> str:
    """GLTR view: GLTR's green / yellow / red / purple for the bins of `rank_bin`."""
    return RANK_BIN_COLOURS[rank_bin(rank)]


@functools.lru_cache(maxsize=4096)
def text_colour(background: str) -> str:
    """Black or white, whichever reads better on `background` (WCAG relative luminance); remembered per colour
    (a page of text has a few hundred distinct ones)."""
    def channel(v: int) -> float:
        c = v / 255.0
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in _hex_to_rgb(background))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#000000" if luminance > 0.179 else "#ffffff"
