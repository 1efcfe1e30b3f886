"""The token strip: a response as it reads, each token coloured by one per-token view, with a hover card.

`token_strip_html` is pure (testable without Streamlit); `render_token_strip` hands its output to `st.html`.
Views (`colour_by`): "rank" (clipped rank, log scale), "surprisal" (nats), "zone" (see `rsr_core.analysis.zones`) and
"gltr" (GLTR's rank bins). The hover card is CSS only (st.html strips scripts). Every token is a
`<span class="rsr-tok" data-t="INDEX">` whose card is its child `<span class="rsr-tip">`; INDEX is the token's
position in the whole trajectory, also when only a window [start, stop) is rendered.
"""
from __future__ import annotations

import html
from typing import Iterable

import numpy as np

from rsr_core.analysis.metrics import clipped_rank
from rsr_core.data.token_scores import TokenScores
from rsr_core.analysis.zones import (RANK_BIN_COLOURS, RANK_BIN_LABELS, RANK_SCALE, SURPRISAL_MAX, SURPRISAL_SCALE,
                                     ZONE_COLOURS, ZONE_LABELS, ZONES, ZoneThresholds, classify_zones, rank_bins,
                                     rank_colours, surprisal_colours, text_colour, zone_colour)

VIEWS = {
    "rank": "clipped rank",
    "surprisal": "surprisal",
    "zone": "zone",
    "gltr": "GLTR rank bins",
}

STRIP_CSS = """
.rsr-strip-wrap { font-size: 0.95rem; line-height: 1.9; }
.rsr-legend { font-size: 0.8rem; line-height: 1.5; margin-bottom: 0.5rem; color: inherit; }
.rsr-legend .rsr-swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
  vertical-align: middle; margin: 0 0.25em 0 0.6em; border: 1px solid rgba(0,0,0,0.2); }
.rsr-legend .rsr-gradient { display: inline-block; width: 9em; height: 0.8em; vertical-align: middle;
  margin: 0 0.4em; border-radius: 2px; border: 1px solid rgba(0,0,0,0.2); }
.rsr-legend .rsr-conventions { opacity: 0.8; }
.rsr-strip { white-space: pre-wrap; word-wrap: break-word; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, monospace; }
.rsr-tok { position: relative; border-radius: 2px; padding: 1px 0; cursor: default; }
.rsr-tok:hover { outline: 2px solid #333; z-index: 20; }
.rsr-tok.rsr-hl { outline: 2px solid #6a00ff; outline-offset: 1px; }
.rsr-nl { opacity: 0.45; font-size: 0.8em; }
.rsr-tip { display: none; position: absolute; left: 0; top: 1.6em; z-index: 1000; min-width: 15em; max-width: 22em;
  white-space: normal; font-family: sans-serif; font-size: 0.78rem; line-height: 1.35; text-align: left;
  background: #ffffff; color: #111111; border: 1px solid #999; border-radius: 6px; padding: 0.45em 0.6em;
  box-shadow: 0 2px 8px rgba(0,0,0,0.25); }
.rsr-tok:hover > .rsr-tip { display: block; }
.rsr-tip b { font-weight: 600; }
.rsr-tip .rsr-tip-head { display: block; font-weight: 600; margin-bottom: 0.2em; }
.rsr-tip .rsr-tip-row { display: block; }
.rsr-tip .rsr-tip-alts { display: block; margin-top: 0.3em; border-top: 1px solid #ddd; padding-top: 0.25em; }
.rsr-tip .rsr-alt { display: block; }
.rsr-tip .rsr-alt.rsr-self { font-weight: 600; }
.rsr-turn { display: block; font-family: sans-serif; font-size: 0.75rem; opacity: 0.7; margin: 0.4em 0;
  border-top: 1px dashed #aaa; }
.rsr-part { display: block; font-family: sans-serif; font-size: 0.75rem; font-weight: 600; color: #5a3e9b;
  margin: 0.5em 0 0.3em; border-top: 2px solid #8e6fd1; }
.rsr-window { display: block; font-family: sans-serif; font-size: 0.75rem; opacity: 0.7; }
"""


def visible(text: str) -> str:
    """Token text with whitespace made visible for the hover card: space -> ␣, newline -> ↵, tab -> ⇥."""
    return text.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"


def token_colours(scores: TokenScores, colour_by: str, r_max: int = 100,
                  thresholds: ZoneThresholds = ZoneThresholds(),
                  surprisal_max: float = SURPRISAL_MAX) -> list[str]:
    """[T] background colour of every token under one view."""
    if colour_by not in VIEWS:
        raise ValueError(f"colour_by must be one of {sorted(VIEWS)}, not {colour_by!r}")
    if colour_by == "rank":
        return rank_colours(scores.rank, r_max)
    if colour_by == "surprisal":
        return surprisal_colours(scores.surprisal, surprisal_max)
    if colour_by == "zone":
        return [zone_colour(z) for z in classify_zones(scores.rank, scores.surprisal, thresholds)]
    return [RANK_BIN_COLOURS[b] for b in rank_bins(scores.rank).tolist()]


def _fmt_prob(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2e}"


def _tooltip(scores: TokenScores, t: int, zone: str, r_max: int) -> str:
    """The hover card of token t: its text, every per-token value and the student's top alternatives."""
    s = float(scores.surprisal[t])
    r = int(scores.rank[t])
    p = float(np.exp(-s))
    rows = [
        f'<span class="rsr-tip-head">{html.escape(visible(scores.tokens[t]))} '
        f'<span style="font-weight:400;opacity:0.7">#{t}</span></span>',
        f'<span class="rsr-tip-row">surprisal <b>{s:.3f}</b> nats &middot; p <b>{_fmt_prob(p)}</b></span>',
        f'<span class="rsr-tip-row">rank <b>{r}</b> &middot; clipped rank <b>{int(clipped_rank(r, r_max))}</b> '
        f'(r_max {r_max})</span>',
        f'<span class="rsr-tip-row">entropy <b>{float(scores.entropy[t]):.3f}</b> nats &middot; '
        f'{html.escape(ZONE_LABELS[zone])}</span>',
    ]
    alts = []
    own_id = int(scores.token_ids[t])
    for k, (alt, prob) in enumerate(zip(scores.top_tokens[t], scores.top_probs[t].tolist())):
        own = int(scores.top_ids[t][k]) == own_id
        alts.append(f'<span class="rsr-alt{" rsr-self" if own else ""}">{k + 1}. '
                    f'{html.escape(visible(alt))} &nbsp;{_fmt_prob(float(prob))}</span>')
    rows.append(f'<span class="rsr-tip-alts">student\'s top {len(alts)}:{"".join(alts)}</span>')
    return f'<span class="rsr-tip">{"".join(rows)}</span>'


def _token_text(text: str) -> str:
    """Escaped token text; a whitespace-only token with a newline gets a faint ↵ so it can be hovered."""
    escaped = html.escape(text)
    if "\n" in text and not text.strip():
        return f'<span class="rsr-nl">\u21b5</span>{escaped}'
    return escaped


def legend_html(colour_by: str, r_max: int = 100, thresholds: ZoneThresholds = ZoneThresholds(),
                surprisal_max: float = SURPRISAL_MAX) -> str:
    """The key of one view plus the metric's conventions and the thresholds in use."""
    if colour_by == "rank":
        key = (f'clipped rank 1<span class="rsr-gradient" style="background:linear-gradient(to right, '
               f'{", ".join(RANK_SCALE)})"></span>{r_max} (log scale; ranks above r_max share its colour)')
    elif colour_by == "surprisal":
        key = (f'surprisal 0<span class="rsr-gradient" style="background:linear-gradient(to right, '
               f'{", ".join(SURPRISAL_SCALE)})"></span>{surprisal_max:g} nats and above')
    elif colour_by == "zone":
        key = "".join(f'<span class="rsr-swatch" style="background:{ZONE_COLOURS[z]}"></span>'
                      f'{html.escape(ZONE_LABELS[z])}' for z in ZONES)
    elif colour_by == "gltr":
        key = "rank bins" + "".join(f'<span class="rsr-swatch" style="background:{c}"></span>{b}'
                                    for c, b in zip(RANK_BIN_COLOURS, RANK_BIN_LABELS))
    else:
        raise ValueError(f"colour_by must be one of {sorted(VIEWS)}, not {colour_by!r}")
    s0, k = thresholds.surprisal, thresholds.rank
    conventions = (
        f"Ranks start at 1 (the student's top choice has rank 1; GLTR's ranks start at 0). "
        f"Clipped rank = min(rank, r_max), r_max = {r_max}. Surprisal = &minus;ln p, in nats. "
        f"Zones: too familiar = rank 1 and surprisal &lt; {s0:g}; in the zone = surprisal &ge; {s0:g} and "
        f"rank &le; {k}; alien = surprisal &ge; {s0:g} and rank &gt; {k}; near-tie = surprisal &lt; {s0:g} "
        f"and rank &gt; 1."
    )
    return (f'<div class="rsr-legend"><div><b>{html.escape(VIEWS[colour_by])}</b>: {key}</div>'
            f'<div class="rsr-conventions">{conventions}</div></div>')


def token_strip_html(scores: TokenScores, colour_by: str = "rank", r_max: int = 100,
                     thresholds: ZoneThresholds = ZoneThresholds(), highlight: Iterable[int] | None = None,
                     start: int = 0, stop: int | None = None, surprisal_max: float = SURPRISAL_MAX,
                     legend: bool = True, answer_starts: Iterable[int] = ()) -> str:
    """HTML of tokens [start, stop) of one trajectory, coloured by `colour_by`, with hover cards and a legend.

    highlight: token indices (whole-trajectory positions) to outline, e.g. those selected in a scatter.
    answer_starts: positions of the first answer token after a turn's thinking, marked by a divider.
    A new assistant turn starts with a divider; newlines are kept as they are (white-space: pre-wrap).
    """
    n = len(scores)
    start = max(0, int(start))
    stop = n if stop is None else min(int(stop), n)
    marked = set(int(i) for i in highlight) if highlight else set()
    answers = {int(i) for i in answer_starts}
    colours = token_colours(scores, colour_by, r_max, thresholds, surprisal_max)
    zones = classify_zones(scores.rank, scores.surprisal, thresholds)
    parts = []
    if start > 0 or stop < n:
        parts.append(f'<span class="rsr-window">showing tokens {start}&ndash;{max(stop - 1, start)} '
                     f'of {n} (0-based positions)</span>')
    for t in range(start, stop):
        if t > start and int(scores.turn[t]) != int(scores.turn[t - 1]):
            parts.append(f'<span class="rsr-turn">assistant turn {int(scores.turn[t]) + 1}</span>')
        if t in answers:
            parts.append('<span class="rsr-part">answer (the thinking ends here)</span>')
        bg = colours[t]
        cls = "rsr-tok rsr-hl" if t in marked else "rsr-tok"
        parts.append(f'<span class="{cls}" data-t="{t}" data-zone="{zones[t]}" '
                     f'style="background:{bg};color:{text_colour(bg)}">{_token_text(scores.tokens[t])}'
                     f'{_tooltip(scores, t, zones[t], r_max)}</span>')
    body = "".join(parts)
    head = legend_html(colour_by, r_max, thresholds, surprisal_max) if legend else ""
    return (f'<div class="rsr-strip-wrap" data-view="{colour_by}">{head}<style>{STRIP_CSS}</style>'
            f'<div class="rsr-strip">{body}</div></div>')


def render_token_strip(scores: TokenScores, colour_by: str = "rank", r_max: int = 100,
                       thresholds: ZoneThresholds = ZoneThresholds(), highlight: Iterable[int] | None = None,
                       start: int = 0, stop: int | None = None, surprisal_max: float = SURPRISAL_MAX,
                       legend: bool = True, answer_starts: Iterable[int] = ()) -> None:
    """Draw the strip in the current Streamlit container (st.html; no JavaScript needed)."""
    import streamlit as st

    st.html(token_strip_html(scores, colour_by, r_max, thresholds, highlight, start, stop, surprisal_max, legend,
                             answer_starts))
