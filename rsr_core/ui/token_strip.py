"""The token strip: a response as it reads, each token coloured by one per-token view, with a hover card.

`token_strip_html` is pure (testable without Streamlit); `render_token_strip` hands its output to `st.html`.
Views (`colour_by`): "rank" (clipped rank, log scale), "surprisal" (nats), "zone" (see `rsr_core.analysis.zones`) and
"gltr" (GLTR's rank bins). Every token is one element, `<span class="rsr-tok" data-t="INDEX" ...>`, where INDEX is
its position in the whole trajectory, also when only a window [start, stop) is rendered.

The hover card is CSS only (st.html strips scripts): the token's values are data attributes (`CARD_FIELDS`) that
a `:hover::after` rule assembles into the card. A card of child elements per token made a page of 1,500 tokens
27,000 nodes and 2 MB of HTML, and the browser's sanitising of it took about a second on every rerun.
"""
from __future__ import annotations

import html
from typing import Iterable, Mapping

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
.rsr-tok:hover::after { display: block; position: absolute; left: 0; top: 1.6em; z-index: 1000; min-width: 15em;
  max-width: 24em; width: max-content; white-space: pre-wrap; font-family: sans-serif; font-size: 0.78rem;
  line-height: 1.35; text-align: left; font-weight: 400; background: #ffffff; color: #111111; border: 1px solid #999;
  border-radius: 6px; padding: 0.45em 0.6em; box-shadow: 0 2px 8px rgba(0,0,0,0.25);
  content: attr(data-h) "   #" attr(data-t) "\\A" "surprisal " attr(data-s) " nats \\00b7  p " attr(data-p) "\\A"
    "rank " attr(data-r) " \\00b7  clipped rank " attr(data-c) " (r_max " var(--rsr-rmax) ")\\A"
    "entropy " attr(data-e) " nats \\00b7  " var(--rsr-zone) attr(data-b) "\\A" "student's top choices:\\A"
    attr(data-a); }
.rsr-turn { display: block; font-family: sans-serif; font-size: 0.75rem; opacity: 0.7; margin: 0.4em 0;
  border-top: 1px dashed #aaa; }
.rsr-part { display: block; font-family: sans-serif; font-size: 0.75rem; font-weight: 600; color: #5a3e9b;
  margin: 0.5em 0 0.3em; border-top: 2px solid #8e6fd1; }
.rsr-window { display: block; font-family: sans-serif; font-size: 0.75rem; opacity: 0.7; }
.rsr-context { display: block; font-family: sans-serif; font-size: 0.78rem; color: #444; background: #f3f3f3;
  border-left: 3px solid #bbb; padding: 0.2em 0.5em; margin: 0.3em 0; white-space: pre-wrap; }
""" + "".join(f'.rsr-tok[data-zone="{z}"] {{ --rsr-zone: "{label}"; }}\n' for z, label in ZONE_LABELS.items())
CARD_FIELDS = {  # data attribute of a token: what its hover card shows there
    "data-h": "the token's text, whitespace made visible",
    "data-s": "surprisal (nats)", "data-p": "probability", "data-r": "rank", "data-c": "clipped rank",
    "data-e": "entropy (nats)", "data-a": "the student's top alternatives, one per line, ◂ marking the token itself",
    "data-b": "LARK's Brier term of the token (top 50), on a line of its own; empty where unknown",
}


def visible(text: str) -> str:
    """Token text with whitespace made visible for the hover card: space -> ␣, newline -> ↵, tab -> ⇥."""
    return text.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"


def token_colours(scores: TokenScores, colour_by: str, r_max: int = 100,
                  thresholds: ZoneThresholds = ZoneThresholds(),
                  surprisal_max: float = SURPRISAL_MAX, start: int = 0, stop: int | None = None) -> list[str]:
    """[stop - start] background colour of tokens [start, stop) (default: all) under one view."""
    if colour_by not in VIEWS:
        raise ValueError(f"colour_by must be one of {sorted(VIEWS)}, not {colour_by!r}")
    rank, surprisal = scores.rank[start:stop], scores.surprisal[start:stop]
    if colour_by == "rank":
        return rank_colours(rank, r_max)
    if colour_by == "surprisal":
        return surprisal_colours(surprisal, surprisal_max)
    if colour_by == "zone":
        return [zone_colour(z) for z in classify_zones(rank, surprisal, thresholds)]
    return [RANK_BIN_COLOURS[b] for b in rank_bins(rank).tolist()]


def _fmt_prob(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2e}"


def _attr(text: str) -> str:
    """Text as a double-quoted attribute value (newlines kept as character references)."""
    return html.escape(text, quote=True).replace("\n", "&#10;")


def _card_attributes(scores: TokenScores, t: int, rc: int, top_probs: list[float]) -> str:
    """The data attributes of token t that its hover card shows (`CARD_FIELDS`), as HTML; top_probs: [K] its
    alternatives' probabilities."""
    s = float(scores.surprisal[t])
    own_id = int(scores.token_ids[t])
    brier = ("" if scores.lark_brier is None else
             f"\nBrier term {float(scores.lark_brier[t]):.3f} (LARK, top 50)")
    alts = "\n".join(f"{k + 1}. {visible(alt)}  {_fmt_prob(prob)}"
                     + (" \u25c2" if int(scores.top_ids[t][k]) == own_id else "")
                     for k, (alt, prob) in enumerate(zip(scores.top_tokens[t], top_probs)))
    return (f' data-h="{_attr(visible(scores.tokens[t]))}" data-s="{s:.3f}" data-p="{_fmt_prob(float(np.exp(-s)))}"'
            f' data-r="{int(scores.rank[t])}" data-c="{rc}" data-e="{float(scores.entropy[t]):.3f}"'
            f' data-a="{_attr(alts)}" data-b="{_attr(brier)}"')


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
                     legend: bool = True, answer_starts: Iterable[int] = (), tool_starts: Iterable[int] = (),
                     between_turns: Mapping[int, str] | None = None) -> str:
    """HTML of tokens [start, stop) of one trajectory, coloured by `colour_by`, with hover cards and a legend.

    highlight: token indices (whole-trajectory positions) to outline, e.g. those selected in a scatter.
    answer_starts: positions of the first answer token after a turn's thinking, marked by a divider; tool_starts:
    the first token of a turn's tool calls, likewise. A new assistant turn starts with a divider, after the
    messages that came before it (`between_turns[turn]`: tool results, a user's reply), shown as plain context.
    Newlines are kept as they are (white-space: pre-wrap).
    """
    n = len(scores)
    start = max(0, int(start))
    stop = n if stop is None else min(int(stop), n)
    marked = set(int(i) for i in highlight) if highlight else set()
    answers = {int(i) for i in answer_starts}
    tools = {int(i) for i in tool_starts}
    between = between_turns or {}
    colours = token_colours(scores, colour_by, r_max, thresholds, surprisal_max, start, stop)  # the window's only
    zones = classify_zones(scores.rank[start:stop], scores.surprisal[start:stop], thresholds)
    clipped = clipped_rank(scores.rank[start:stop], r_max)
    top_probs = scores.top_probs[start:stop].tolist()
    parts = []
    if start > 0 or stop < n:
        parts.append(f'<span class="rsr-window">showing tokens {start}&ndash;{max(stop - 1, start)} '
                     f'of {n} (0-based positions)</span>')
    for t in range(start, stop):
        if t > start and int(scores.turn[t]) != int(scores.turn[t - 1]):
            context = between.get(int(scores.turn[t]))
            if context:
                parts.append(f'<span class="rsr-context">{html.escape(context)}</span>')
            parts.append(f'<span class="rsr-turn">assistant turn {int(scores.turn[t]) + 1}</span>')
        if t in answers:
            parts.append('<span class="rsr-part">answer (the thinking ends here)</span>')
        if t in tools:
            parts.append('<span class="rsr-part">tool calls</span>')
        bg = colours[t - start]
        cls = "rsr-tok rsr-hl" if t in marked else "rsr-tok"
        parts.append(f'<span class="{cls}" data-t="{t}" data-zone="{zones[t - start]}" '
                     f'style="background:{bg};color:{text_colour(bg)}"'
                     f'{_card_attributes(scores, t, int(clipped[t - start]), top_probs[t - start])}>'
                     f'{_token_text(scores.tokens[t])}</span>')
    body = "".join(parts)
    head = legend_html(colour_by, r_max, thresholds, surprisal_max) if legend else ""
    return (f'<div class="rsr-strip-wrap" data-view="{colour_by}" style="--rsr-rmax:&quot;{int(r_max)}&quot;">'
            f'{head}<style>{STRIP_CSS}</style>'
            f'<div class="rsr-strip">{body}</div></div>')


def render_token_strip(scores: TokenScores, colour_by: str = "rank", r_max: int = 100,
                       thresholds: ZoneThresholds = ZoneThresholds(), highlight: Iterable[int] | None = None,
                       start: int = 0, stop: int | None = None, surprisal_max: float = SURPRISAL_MAX,
                       legend: bool = True, answer_starts: Iterable[int] = (), tool_starts: Iterable[int] = (),
                       between_turns: Mapping[int, str] | None = None) -> None:
    """Draw the strip in the current Streamlit container (st.html; no JavaScript needed)."""
    import streamlit as st

    st.html(token_strip_html(scores, colour_by, r_max, thresholds, highlight, start, stop, surprisal_max, legend,
                             answer_starts, tool_starts, between_turns))
