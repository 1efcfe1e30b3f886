"""The token strip's HTML: escaping, colours per view, hover cards, highlight and windows."""
import html
import re

import numpy as np
import pytest

from rsr_core.data.token_scores import TokenScores
from rsr_core.ui.token_strip import CARD_FIELDS, token_colours, token_strip_html, visible
from rsr_core.analysis.zones import ZONE_COLOURS, ZoneThresholds, rank_colour, surprisal_colour

VOCAB = ["<a>", " b&c", "\n", " x", "y", " Wait", " So", "2"]


def scores_from_logits(logits: np.ndarray, targets: list[int], turn=None) -> TokenScores:
    """TokenScores of a toy student: logits [T, V] over VOCAB, the teacher's tokens `targets` [T]."""
    logits = np.asarray(logits, dtype=np.float64)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    t_idx = np.arange(len(targets))
    tgt = np.asarray(targets)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    texts = [VOCAB[i] for i in targets]
    starts = np.cumsum([0] + [len(x) for x in texts[:-1]])
    return TokenScores(
        token_ids=tgt.astype(np.int64), tokens=texts,
        offsets=np.stack([starts, starts + [len(x) for x in texts]], axis=1).astype(np.int64),
        turn=np.zeros(len(targets), np.int32) if turn is None else np.asarray(turn, np.int32),
        surprisal=(-logp[t_idx, tgt]).astype(np.float32),
        rank=(1 + (logits > logits[t_idx, tgt][:, None]).sum(axis=1)).astype(np.int64),
        entropy=(-(p * logp).sum(axis=1)).astype(np.float32),
        top_ids=top.astype(np.int64), top_tokens=[[VOCAB[i] for i in row] for row in top],
        top_probs=np.take_along_axis(p, top, axis=1).astype(np.float32))


@pytest.fixture
def scores() -> TokenScores:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, len(VOCAB))) * 2
    logits[0, 0] += 9  # token 0: the student's confident top choice -> too familiar
    logits[1, 1] -= 9  # token 1 (" b&c"): far down -> alien at rank threshold 3
    return scores_from_logits(logits, [0, 1, 2, 3, 4, 5])


def spans(out: str) -> list[str]:
    return re.findall(r'<span class="rsr-tok[^"]*" data-t="\d+"', out)


def test_one_span_per_token_with_stable_index_and_text_escaped(scores):
    out = token_strip_html(scores)
    assert len(spans(out)) == len(scores)
    assert [int(i) for i in re.findall(r'data-t="(\d+)"', out)] == list(range(len(scores)))
    assert "&lt;a&gt;" in out and "<a>" not in out  # token text escaped
    assert " b&amp;c" in out and " b&c" not in out
    assert "<script" not in out


def test_newlines_are_kept_and_marked(scores):
    out = token_strip_html(scores)
    assert "white-space: pre-wrap" in out
    assert '<span class="rsr-nl">\u21b5</span>\n' in out


def token_attributes(out: str, t: int) -> dict[str, str]:
    """The attributes of token t's element, unescaped."""
    tag = re.search(rf'<span class="rsr-tok[^"]*" data-t="{t}"([^>]*)>', out).group(1)
    return {k: html.unescape(v) for k, v in re.findall(r'(data-[a-z]+)="([^"]*)"', tag)}


def test_hover_card_shows_every_value(scores):
    out = token_strip_html(scores, r_max=3)
    card = token_attributes(out, 1)
    s, r = float(scores.surprisal[1]), int(scores.rank[1])
    assert card["data-h"] == visible(scores.tokens[1])
    assert card["data-s"] == f"{s:.3f}"
    assert float(card["data-p"]) == pytest.approx(np.exp(-s), rel=1e-2)
    assert card["data-r"] == str(r) and card["data-c"] == str(min(r, 3))
    assert card["data-e"] == f"{float(scores.entropy[1]):.3f}"
    alts = card["data-a"].split("\n")
    assert len(alts) == len(scores.top_tokens[1])
    for line, alt, prob, tid in zip(alts, scores.top_tokens[1], scores.top_probs[1], scores.top_ids[1]):
        assert visible(alt) in line and f"{float(prob):.3g}" in line
        assert line.endswith("\u25c2") == (int(tid) == int(scores.token_ids[1]))  # the token itself is marked
    assert '--rsr-rmax:&quot;3&quot;' in out  # the card's r_max


def test_hover_card_shows_the_brier_term_where_known(scores):
    """LARK's Brier term on a line of its own where the scores carry it; nothing where they do not."""
    assert token_attributes(token_strip_html(scores), 1)["data-b"] == ""
    scores.lark_brier = np.linspace(0.1, 1.9, len(scores)).astype(np.float32)
    card = token_attributes(token_strip_html(scores), 2)
    assert card["data-b"] == f"\nBrier term {float(scores.lark_brier[2]):.3f} (LARK, top 50)"


def test_hover_card_css_shows_every_attribute(scores):
    """The card is the :hover::after of the token; its content names every attribute the token carries."""
    out = token_strip_html(scores)
    rule = re.search(r"\.rsr-tok:hover::after \{(.*?)\}", out, re.S).group(1)
    content = rule[rule.index("content:"):]
    assert set(token_attributes(out, 1)) == {"data-zone", *CARD_FIELDS}  # those after data-t
    for name in ("data-t", *CARD_FIELDS):
        assert f"attr({name})" in content, name
    assert "var(--rsr-zone)" in content and "var(--rsr-rmax)" in content
    assert re.search(r'\.rsr-tok\[data-zone="alien"\] \{ --rsr-zone: "alien', out)
    body = out[out.index('<div class="rsr-strip">'):]
    assert "<span" not in re.sub(r'<span class="rsr-(tok|nl|window)[^>]*>', "", body)  # one element per token


def test_colours_follow_the_chosen_view(scores):
    by_rank = token_colours(scores, "rank", r_max=100)
    assert by_rank == [rank_colour(r, 100) for r in scores.rank]
    by_s = token_colours(scores, "surprisal")
    assert by_s == [surprisal_colour(s) for s in scores.surprisal]
    t = ZoneThresholds(surprisal=1.0, rank=3)
    by_zone = token_colours(scores, "zone", thresholds=t)
    assert by_zone[0] == ZONE_COLOURS["too_familiar"]
    assert by_zone[1] == ZONE_COLOURS["alien"]
    out = token_strip_html(scores, "zone", thresholds=t)
    for colour in by_zone:
        assert f"background:{colour}" in out
    with pytest.raises(ValueError):
        token_colours(scores, "nonsense")


def test_legend_states_conventions_and_thresholds(scores):
    out = token_strip_html(scores, "gltr", r_max=50, thresholds=ZoneThresholds(surprisal=2.5, rank=7))
    assert "Ranks start at 1" in out and "GLTR" in out and "start at 0" in out
    assert "r_max = 50" in out and "nats" in out
    assert "&ge; 2.5" in out and "rank &le; 7" in out
    assert 'class="rsr-legend"' in out and 'class="rsr-legend"' not in token_strip_html(scores, legend=False)


def test_highlight_outlines_only_the_chosen_tokens(scores):
    out = token_strip_html(scores, highlight={2, 4})
    assert re.findall(r'class="rsr-tok rsr-hl" data-t="(\d+)"', out) == ["2", "4"]


def test_window_renders_a_slice_with_whole_trajectory_indices(scores):
    out = token_strip_html(scores, start=2, stop=5)
    assert [int(i) for i in re.findall(r'data-t="(\d+)"', out)] == [2, 3, 4]
    assert "showing tokens 2&ndash;4 of 6" in out
    assert "showing tokens" not in token_strip_html(scores)
    assert len(spans(token_strip_html(scores, start=4, stop=100))) == 2


def test_a_new_assistant_turn_gets_a_divider():
    rng = np.random.default_rng(1)
    s = scores_from_logits(rng.normal(size=(4, len(VOCAB))), [3, 4, 3, 4], turn=[0, 0, 1, 1])
    out = token_strip_html(s)
    assert out.count('class="rsr-turn"') == 1
    assert out.index("assistant turn 2") < out.index('data-t="2"')
