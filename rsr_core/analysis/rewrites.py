"""Character edits of a response from what the token view knows: a span of tokens to remove, a token to replace by
one of the student's alternatives. Pure functions over token offsets ([T, 2] character spans in their turn's text)
and the text's part boundaries, so the inspector and the teaching page suggest the same edits.

A removal never cuts the markers between thinking and answer (`<think>` ... `</think>`): it is clipped to the part
where the span starts, so the edited trace keeps its shape. With `sentences=True` it is widened to whole sentences
(from after the previous sentence end to the end of its last sentence), which reads as an edit a writer would make.
"""
from __future__ import annotations

import re

import numpy as np

SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def part_bounds(text: str, answer_start: int, thinking_start: int = 0) -> list[tuple[int, int]]:
    """[(start, stop)] of the editable parts of a response: its thinking (between the think markers) and its
    answer; the whole text when it has no thinking (answer_start 0)."""
    if not answer_start:
        return [(0, len(text))]
    open_tag, close = "<think>\n", "\n</think>"
    a = len(open_tag) if text.startswith(open_tag) else thinking_start
    b = text.rfind(close, 0, answer_start)
    return [(a, b if b >= a else answer_start), (answer_start, len(text))]


def token_chars(offsets: np.ndarray, start: int, stop: int) -> tuple[int, int]:
    """Characters [a, b) covered by tokens [start, stop) (offsets: [T, 2])."""
    return int(offsets[start, 0]), int(offsets[stop - 1, 1])


def removal(text: str, a: int, b: int, parts: list[tuple[int, int]], sentences: bool = False) -> tuple[int, int]:
    """The characters to remove for a span [a, b): clipped to the part holding a, widened to whole sentences with
    `sentences`, and taking the whitespace after it so that the text closes up. (a, a) when nothing is left."""
    lo, hi = next(((x, y) for x, y in parts if x <= a < y), (0, len(text)))
    a, b = max(a, lo), min(b, hi)
    if b <= a:
        return a, a
    if sentences:
        ends = [m.end() for m in SENTENCE_END.finditer(text, lo, hi)]
        a = max([e for e in ends if e <= a], default=lo)
        b = min([e for e in ends if e >= b], default=hi)
    while a < b and text[a].isspace() and a > lo:  # keep the whitespace that separates it from what precedes
        a += 1
    closes = a == lo or text[a - 1] == "\n"  # it starts a line: the line breaks after it go too
    while b < hi and (text[b] in " \t" or (closes and text[b] == "\n")):
        b += 1
    return a, b


def replacement_at(offsets: np.ndarray, index: int) -> tuple[int, int]:
    """Characters [a, b) of token `index` (what an alternative token replaces)."""
    return token_chars(offsets, index, index + 1)
