"""Per-token results in columns, as the results store writes them, and the checks that make its round trip exact.

`TokenColumns` holds N trajectories' tokens as flat arrays (T tokens, K alternatives), so that the import of flat
files and the benchmark generator never build a Python object per token; `StoreWriter.append` converts
TokenScores to it. The store keeps no per-token strings: before a batch is committed, `token_problems` checks
that each token's text is the conversation text at its offsets, and `Vocabulary` that each alternative's text is
the vocabulary's text for its id (or learns it, when importing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis.metrics import SAME_PASS_METRICS, same_pass_columns
from rsr_core.data.store_files import StoreError
from rsr_core.data.token_scores import SAME_PASS_TERMS, TokenScores

INT32_MAX = int(np.iinfo(np.int32).max)


@dataclass
class TokenColumns:
    """Per-token results of N trajectories, concatenated: T tokens, K alternatives each."""

    trajectory_id: list[str]  # [N]
    lengths: np.ndarray  # [N] int64, tokens of each trajectory
    token_id: np.ndarray  # [T] int64
    start: np.ndarray  # [T] int64, character offsets into the text of assistant turn `turn`
    end: np.ndarray  # [T] int64
    turn: np.ndarray  # [T] int32
    surprisal: np.ndarray  # [T] float32
    rank: np.ndarray  # [T] int64, unclipped
    entropy: np.ndarray  # [T] float32
    top_ids: np.ndarray  # [T, K] int64
    top_probs: np.ndarray  # [T, K] float32
    truncated: np.ndarray  # [N] bool
    n_context: np.ndarray  # [N] int64
    tokens: list[str] | pa.Array | None = None  # [T] text of each token; None: not checked
    top_tokens: list[str] | pa.Array | None = None  # [T * K] text of each alternative; None: ids must be known
    brier: np.ndarray | None = None  # [T] float32 Brier terms (full vocabulary); None: no trajectory has them
    lark_brier: np.ndarray | None = None  # [T] float32 LARK's top-50 Brier terms
    terms_known: np.ndarray | None = None  # [N] bool, the trajectories whose Brier terms are known (else NaN there)

    @property
    def offsets(self) -> np.ndarray:
        """[N + 1] offsets of the trajectories' tokens."""
        out = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=out[1:])
        return out

    def owners(self, rows: np.ndarray) -> np.ndarray:
        """[n] trajectory position of each of [n] token rows."""
        return np.searchsorted(self.offsets, rows, side="right") - 1

    @classmethod
    def from_scores(cls, ids: Sequence[str], scores: Sequence[TokenScores], top_k: int) -> "TokenColumns":
        """Columns of TokenScores that passed `scores_problem` (K = top_k alternatives each)."""
        def cat(arrays, dtype, shape=(-1,)):
            return (np.concatenate([np.asarray(a, dtype=dtype).reshape(shape) for a in arrays]) if arrays
                    else np.zeros((0, *shape[1:]), dtype))
        return cls(
            trajectory_id=list(ids), lengths=np.array([len(s) for s in scores], dtype=np.int64),
            token_id=cat([s.token_ids for s in scores], np.int64),
            start=cat([np.reshape(s.offsets, (-1, 2))[:, 0] for s in scores], np.int64),
            end=cat([np.reshape(s.offsets, (-1, 2))[:, 1] for s in scores], np.int64),
            turn=cat([s.turn for s in scores], np.int32), surprisal=cat([s.surprisal for s in scores], np.float32),
            rank=cat([s.rank for s in scores], np.int64), entropy=cat([s.entropy for s in scores], np.float32),
            top_ids=cat([s.top_ids for s in scores], np.int64, (-1, top_k)),
            top_probs=cat([s.top_probs for s in scores], np.float32, (-1, top_k)),
            truncated=np.array([bool(s.truncated) for s in scores], dtype=bool),
            n_context=np.array([int(s.n_context) for s in scores], dtype=np.int64),
            tokens=[t for s in scores for t in s.tokens],
            top_tokens=[t for s in scores for row in s.top_tokens for t in row],
            **_terms(scores))

    def take(self, index: Sequence[int]) -> "TokenColumns":
        """The trajectories at positions `index`, in that order."""
        index = np.asarray(index, dtype=np.int64)
        if index.size == len(self.lengths) and (index == np.arange(index.size)).all():
            return self
        offsets, k = self.offsets, self.top_ids.shape[1]
        rows = (np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in index]) if index.size
                else np.zeros(0, np.int64))
        top_rows = (rows[:, None] * k + np.arange(k)).ravel()
        return TokenColumns(
            trajectory_id=[self.trajectory_id[j] for j in index.tolist()], lengths=self.lengths[index],
            token_id=self.token_id[rows], start=self.start[rows], end=self.end[rows], turn=self.turn[rows],
            surprisal=self.surprisal[rows], rank=self.rank[rows], entropy=self.entropy[rows],
            top_ids=self.top_ids[rows], top_probs=self.top_probs[rows], truncated=self.truncated[index],
            n_context=self.n_context[index], tokens=_pick(self.tokens, rows),
            top_tokens=_pick(self.top_tokens, top_rows),
            brier=None if self.brier is None else self.brier[rows],
            lark_brier=None if self.lark_brier is None else self.lark_brier[rows],
            terms_known=None if self.terms_known is None else self.terms_known[index])

    def aggregates(self) -> agg.RankAggregates:
        """The rank aggregates of the N trajectories."""
        return agg.batch_aggregates(self.surprisal, self.rank, self.entropy, self.lengths)

    def same_pass(self) -> dict[str, np.ndarray]:
        """{name: [N] float64} of `metrics.SAME_PASS_METRICS` per trajectory, NaN where the terms are unknown
        (`known_terms`)."""
        n = len(self.lengths)
        if self.brier is None or self.lark_brier is None:
            return {name: np.full(n, np.nan) for name in SAME_PASS_METRICS}
        owner = np.repeat(np.arange(n), self.lengths)

        def sums(values: np.ndarray) -> np.ndarray:
            return np.bincount(owner, weights=values.astype(np.float64), minlength=n)
        columns = same_pass_columns(self.lengths, sums(self.surprisal), sums(self.brier), sums(self.lark_brier))
        known = self.known_terms()
        return {name: np.where(known, v, np.nan) for name, v in zip(SAME_PASS_METRICS, columns)}

    def known_terms(self) -> np.ndarray:
        """[N] bool: the trajectories whose Brier terms are known."""
        if self.brier is None or self.lark_brier is None:
            return np.zeros(len(self.lengths), bool)
        return np.ones(len(self.lengths), bool) if self.terms_known is None else self.terms_known

    def arrow(self) -> pa.Table:
        """[T] token rows as tokens.parquet holds them (`store_files.token_schema`)."""
        k = self.top_ids.shape[1]
        return pa.table({
            "token_id": self.token_id.astype(np.int32), "start": self.start.astype(np.int32),
            "end": self.end.astype(np.int32), "turn": self.turn.astype(np.int32),
            "surprisal": self.surprisal.astype(np.float32), "rank": self.rank.astype(np.int32),
            "entropy": self.entropy.astype(np.float32),
            "top_ids": pa.FixedSizeListArray.from_arrays(pa.array(self.top_ids.astype(np.int32).ravel()), k),
            "top_probs": pa.FixedSizeListArray.from_arrays(pa.array(self.top_probs.astype(np.float32).ravel()), k),
            "lark_brier": self._token_terms(),
        })

    def _token_terms(self) -> pa.Array:
        """[T] LARK's Brier term of each token, null where unknown."""
        if self.lark_brier is None:
            return pa.nulls(int(self.lengths.sum()), pa.float32())
        known = ~np.isnan(self.lark_brier)
        if self.terms_known is not None:
            known &= np.repeat(self.terms_known, self.lengths)
        return pa.array(self.lark_brier.astype(np.float32), mask=~known)


def _terms(scores: Sequence[TokenScores]) -> dict:
    """brier, lark_brier [T] and terms_known [N] of TokenScores, NaN for the tokens of those without them."""
    known = np.array([s.brier is not None and s.lark_brier is not None for s in scores], dtype=bool)
    if not known.any():
        return {}
    out = {}
    for name in SAME_PASS_TERMS:
        pieces = [np.asarray(getattr(s, name), np.float32) if ok else np.full(len(s), np.nan, np.float32)
                  for s, ok in zip(scores, known)]
        out[name] = np.concatenate(pieces)
    return {**out, "terms_known": known}


def _pick(values: list[str] | pa.Array | None, rows: np.ndarray):
    if values is None:
        return None
    if isinstance(values, pa.Array):
        return values.take(pa.array(rows))
    return [values[i] for i in rows.tolist()]


def scores_problem(s: TokenScores, top_k: int) -> str | None:
    """Why one TokenScores cannot be stored (inconsistent shapes, another K), or None."""
    t = len(s)
    bad = [f"{name} has shape {np.shape(getattr(s, name))}" for name in ("token_ids", "turn", "rank", "entropy")
           if np.shape(getattr(s, name)) != (t,)]
    for name, width in (("offsets", 2), ("top_ids", top_k), ("top_probs", top_k)):
        shape = np.shape(getattr(s, name))
        if shape != (t, width) and not (t == 0 and np.size(getattr(s, name)) == 0):
            bad.append(f"{name} has shape {shape}, expected ({t}, {width})")
    if len(s.tokens) != t:
        bad.append(f"{len(s.tokens)} token texts for {t} tokens")
    if len(s.top_tokens) != t or any(len(row) != top_k for row in s.top_tokens):
        bad.append(f"top_tokens is not {t} rows of {top_k}")
    return "; ".join(bad) or None


def range_problems(columns: TokenColumns) -> dict[int, str]:
    """{position: problem} for ids, ranks or offsets that do not fit the store's int32 columns."""
    problems = {}
    for name in ("token_id", "rank", "start", "end", "top_ids"):
        values = getattr(columns, name)
        bad = (values < 0) | (values > INT32_MAX)
        rows = np.flatnonzero(bad.any(axis=1) if bad.ndim == 2 else bad)
        for j in np.unique(columns.owners(rows)).tolist():
            problems.setdefault(j, f"{name} outside 0 .. 2**31 - 1")
    return problems


def token_problems(columns: TokenColumns, texts: Sequence[list[str]]) -> dict[int, str]:
    """{position: problem} for the trajectories whose tokens do not fit their conversation text.

    texts: [N] the assistant turn texts of each trajectory. The store rebuilds a token's text as
    texts[turn][start:end], so that must be the token text the scorer recorded.
    """
    problems = {}
    offsets = columns.offsets
    tokens = columns.tokens.to_pylist() if isinstance(columns.tokens, pa.Array) else columns.tokens
    for j, turns in enumerate(texts):
        a, b = int(offsets[j]), int(offsets[j + 1])
        if a == b:
            continue
        turn, start, end = columns.turn[a:b], columns.start[a:b], columns.end[a:b]
        if turn.min() < 0 or turn.max() >= len(turns):
            problems[j] = (f"its tokens refer to assistant turns {int(turn.min())}-{int(turn.max())}, the "
                           f"conversation has {len(turns)}")
            continue
        sizes = np.array([len(t) for t in turns], dtype=np.int64)[turn]
        outside = (start < 0) | (end < start) | (end > sizes)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            problems[j] = (f"token {i}: offsets {int(start[i])}-{int(end[i])} lie outside the text of assistant "
                           f"turn {int(turn[i])} ({int(sizes[i])} characters)")
        elif tokens is not None:
            rebuilt = [turns[k][x:y] for k, x, y in zip(turn.tolist(), start.tolist(), end.tolist())]
            if rebuilt != tokens[a:b]:
                i = next(i for i, (u, v) in enumerate(zip(rebuilt, tokens[a:b])) if u != v)
                problems[j] = (f"token {i} is {tokens[a + i]!r} but the conversation text at its offsets is "
                               f"{rebuilt[i]!r} (offsets must index the text of its assistant turn)")
    return problems


class Vocabulary:
    """A student's vocabulary in memory: token id -> decoded text, and the entries not committed yet."""

    def __init__(self, texts: list[str | None], fixed: bool = False):
        self.texts = texts  # [V] text of each id, None where unknown
        self.fixed = fixed  # given by the writer: not learnt from what is appended
        self.pending: dict[int, str] = {}
        self._known: np.ndarray | None = None
        self._arrow: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, entries: dict[int, str]) -> None:
        """Add entries; StoreError when one gives another text for a known id."""
        for i, text in entries.items():
            if i < len(self.texts) and self.texts[i] is not None and self.texts[i] != text:
                raise StoreError(f"the vocabulary differs from the stored one at token {i}: {text!r} against "
                                 f"{self.texts[i]!r}")
        new = {i: t for i, t in entries.items() if i >= len(self.texts) or self.texts[i] is None}
        if new:
            self.texts += [None] * max(0, max(new) + 1 - len(self.texts))
            for i, t in new.items():
                self.texts[i] = t
            self.pending.update(new)
            self._known = self._arrow = None

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """[n] whether each of [n] non-negative ids has a text."""
        if self._known is None:
            self._known = np.array([t is not None for t in self.texts] + [False], dtype=bool)
        return self._known[np.minimum(ids, len(self.texts))]

    def arrow(self) -> pa.Array:
        """[V] texts as an Arrow array ("" where unknown)."""
        if self._arrow is None:
            self._arrow = pa.array([t if t is not None else "" for t in self.texts], pa.string())
        return self._arrow

    def problems(self, columns: TokenColumns) -> dict[int, str]:
        """{position: problem} where an alternative's text is not the vocabulary's text for its id. Learns the
        texts of ids it does not know first (the text most of the batch gives an id, so that one bad record does not
        make the others wrong), unless it is fixed."""
        flat = columns.top_ids.ravel()
        if flat.size == 0:
            return {}
        k = columns.top_ids.shape[1]
        known = self.contains(flat)
        if columns.top_tokens is None:
            return {int(j): "alternatives without their text, and not in the vocabulary"
                    for j in np.unique(columns.owners(np.flatnonzero(~known) // k))}
        texts = (columns.top_tokens.cast(pa.string()) if isinstance(columns.top_tokens, pa.Array)
                 else pa.array(columns.top_tokens, pa.string()))
        if not self.fixed and not known.all():  # learn each new id's most frequent text in the batch
            rows = np.flatnonzero(~known)
            pairs = pa.table({"id": pa.array(flat[rows]), "text": texts.take(pa.array(rows))})
            counts = pairs.group_by(["id", "text"], use_threads=False).aggregate([([], "count_all")]).to_pandas()
            best = counts.sort_values(["id", "count_all"], ascending=[True, False], kind="stable").drop_duplicates("id")
            self.add(dict(zip(best["id"].astype(np.int64).tolist(), best["text"].tolist())))
            known = self.contains(flat)
        expected = self.arrow().take(pa.array(np.where(known, flat, 0)))
        same = pc.equal(expected, texts).fill_null(False).to_numpy(zero_copy_only=False) & known
        problems = {}
        bad = np.flatnonzero(~same)
        for row, j in zip(bad.tolist(), columns.owners(bad // k).tolist()):
            if j not in problems:
                problems[j] = (f"alternative id {int(flat[row])} is outside the student's vocabulary of {len(self)} "
                               f"entries" if not known[row] else
                               f"alternative id {int(flat[row])} has the text {texts[row].as_py()!r}, the "
                               f"vocabulary's is {expected[row].as_py()!r}")
        return problems
