"""Score an edited conversation from the point where it changed, reusing the student's key/value cache.

An edit leaves the tokens before it as they were, and a causal model's states there do not see what follows: the
statistics of every response token before the first changed token are those of the last scored version, and the
key/value cache of that prefix is all the model needs to continue. `PrefixCache` keeps, per trajectory, the cache
of the last version scored and its per-token statistics (bounded in bytes, least recently used dropped first);
`rescore` crops the cache to the common prefix and runs the body only over the rest, then the output layer on the
new rows. The numbers equal a full pass of the edited text (tested: ranks and top ids exactly, surprisal to 1e-5).

Without a cache entry (a trajectory's first edit) the pass is a full one that keeps its cache, so the next edit of
the same trajectory is fast; the inspector's Edit mode runs that pass when it opens, ahead of the first edit.
A student whose cache cannot be cropped back (sliding-window attention layers) rescores with full passes.
"""
from __future__ import annotations

import inspect
import time
from contextlib import nullcontext
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rsr_core.data.store import AppendResult, StoreWriter
from rsr_core.data.tables import pairs_table
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory
from rsr_core.engine.chat_format import MAX_LEN, Encoded, encode
from rsr_core.engine.memory import returned_promptly
from rsr_core.engine.pipeline import store_settings
from rsr_core.engine.scoring import (LARK_K, LONG_PASS_TOKENS, TOP_K, PassCallback, PassMeter, default_chunk_rows,
                                     fused_ready, head_statistics, to_token_scores)
from rsr_core.engine.student import Student

PREFIX_CACHE_BYTES = 2 << 30  # key/value caches kept at once (the embedded student: 46 kB per token in fp32)


@dataclass
class PrefixState:
    """The last scored version of one trajectory: its context ids [L], the model's cache of them, and the
    statistics of its response tokens at their context positions [T]."""

    ids: list[int]
    cache: object
    positions: np.ndarray  # [T] int64, ascending
    stats: dict[str, np.ndarray]  # surprisal/rank/... [T], top_ids/top_probs [T, k]

    @property
    def nbytes(self) -> int:
        return cache_bytes(self.cache) + sum(v.nbytes for v in self.stats.values())


class PrefixCache:
    """Prefix states by key (one per open trajectory), within `max_bytes` all together: the least recently used
    go first; a state larger than the whole budget is not kept."""

    def __init__(self, max_bytes: int = PREFIX_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._states: OrderedDict[tuple, PrefixState] = OrderedDict()

    def get(self, key: tuple) -> PrefixState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, key: tuple, state: PrefixState) -> None:
        self._states.pop(key, None)
        if state.nbytes > self.max_bytes:
            return
        self._states[key] = state
        while sum(s.nbytes for s in self._states.values()) > self.max_bytes:
            self._states.popitem(last=False)

    def drop(self, key: tuple) -> None:
        self._states.pop(key, None)

    def __contains__(self, key: tuple) -> bool:
        return key in self._states

    def __len__(self) -> int:
        return len(self._states)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._states.values())


@dataclass
class Rescored:
    """An edited conversation's per-token results and what the pass cost."""

    scores: TokenScores
    reused: int  # response tokens whose numbers came from the unchanged prefix
    start: int  # first context position the body ran over (0: a full pass)
    tokens_run: int  # context tokens the body ran over
    seconds: float
    full_pass_reason: str = ""  # why the cache could not be used, when it could not (and there was one)
    encoded: Encoded | None = field(default=None, repr=False)


def prefix_key(student: Student, trajectory_id: str, plain_format: bool = False, max_len: int = MAX_LEN) -> tuple:
    return (student.name, student.fingerprint, trajectory_id, bool(plain_format), int(max_len))


def cache_bytes(cache: object) -> int:
    """Bytes held by a model's key/value cache (its tensors, wherever they are)."""
    seen, total = set(), 0
    for t in _cache_tensors(cache):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _cache_tensors(cache: object) -> list[torch.Tensor]:
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers >= 4.56
        return [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
                if isinstance(t, torch.Tensor)]
    return [t for name in ("key_cache", "value_cache") for t in getattr(cache, name, []) if isinstance(t, torch.Tensor)]


def crop_cache(cache: object, keep: int) -> bool:
    """Cut the cache back to its first `keep` positions; False when this cache cannot be cut back exactly (sliding
    window layers), in which case it must not be used."""
    if not getattr(cache, "is_croppable", True) or any(getattr(cache, "is_sliding", None) or []):
        return False
    have = int(cache.get_seq_length())
    if keep > have:
        return False
    if keep < have:
        cache.crop(keep - have)  # a negative count removes that many positions (every transformers version)
    return int(cache.get_seq_length()) == keep


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two id lists."""
    n = min(len(a), len(b))
    x, y = np.asarray(a[:n], dtype=np.int64), np.asarray(b[:n], dtype=np.int64)
    diff = np.nonzero(x != y)[0]
    return int(diff[0]) if diff.size else n


def context_ids(enc: Encoded) -> list[int]:
    """The context a pass runs over: the ids up to the last scored token's context (that token itself predicts
    nothing scored), as `scoring.padded_ids` cuts them."""
    return enc.input_ids[: int(enc.positions.max())] if len(enc.positions) else []


@torch.inference_mode()
def rescore(student: Student, trajectory: Trajectory, prefix: PrefixCache | None = None, key: tuple | None = None,
            *, plain_format: bool = False, max_len: int = MAX_LEN, k: int = TOP_K, lark: int = LARK_K,
            on_pass: PassCallback | None = None) -> Rescored:
    """Per-token results of `trajectory` under `student`, from the cached state under `key` where it shares a
    prefix with it; the state is then that of this trajectory. Raises what the pass raises (a stop asked through
    `on_pass` included), and the state is dropped then."""
    started = time.perf_counter()
    enc = encode(trajectory.messages, student.tokenizer, max_len, use_template=not plain_format,
                 tools=trajectory.tools)
    ids = context_ids(enc)
    state = prefix.get(key) if prefix is not None and key is not None else None
    start, reason = 0, ""
    if state is not None:
        start = max(0, min(common_prefix(state.ids, ids), len(ids)) - 1)
        # a response position p keeps its numbers when its context (p - 1) and its token are unchanged
        reusable = enc.positions[enc.positions <= start]
        found = np.searchsorted(state.positions, reusable)
        ok = (found < len(state.positions)) & (state.positions[np.minimum(found, len(state.positions) - 1)]
                                               == reusable) if len(state.positions) else np.zeros(0, bool)
        if reusable.size and not ok.all():  # not a response position before: run from there
            start = int(reusable[np.argmin(ok)]) - 1
        if start and not crop_cache(state.cache, start):
            start, reason = 0, "this student's key/value cache cannot be cut back (sliding-window attention)"
    if prefix is not None and key is not None:
        prefix.drop(key)  # in flux until the pass is done
    if not len(enc.positions):
        stats = {}
        new_state = None
    else:
        stats, new_state = _run(student, enc, ids, state if start else None, start, k, lark, on_pass)
    scores = to_token_scores(enc, stats or _empty(k, lark), student.tokenizer)
    if prefix is not None and key is not None and new_state is not None:
        prefix.put(key, new_state)
    reused = int((enc.positions <= start).sum()) if start else 0
    return Rescored(scores=scores, reused=reused, start=start, tokens_run=len(ids) - start,
                    seconds=time.perf_counter() - started, full_pass_reason=reason, encoded=enc)


def _run(student: Student, enc: Encoded, ids: list[int], state: PrefixState | None, start: int, k: int, lark: int,
         on_pass: PassCallback | None) -> tuple[dict[str, np.ndarray], PrefixState]:
    """The body over ids[start:] after the cached prefix, the output layer on the new rows, and the reused rows of
    the prefix: (statistics [T], the new state)."""
    model = student.model
    device = next(model.parameters()).device
    fused = fused_ready(device)
    chunk_rows = default_chunk_rows(model, fused)
    run = torch.tensor([ids[start:]], dtype=torch.long, device=device)  # [1, L - start]
    new_rows = enc.positions > start
    positions = enc.positions[new_rows]
    meter = None if on_pass is None else PassMeter(on_pass, model, run, int(new_rows.sum()), chunk_rows, device)
    with returned_promptly(device.type == "cpu" and run.numel() > LONG_PASS_TOKENS), meter or nullcontext():
        out = model.base_model(input_ids=run, use_cache=True,
                               **{_cache_argument(model): state.cache if state is not None else None})
        hidden = out.last_hidden_state  # [1, L - start, H]
        rows_t = torch.as_tensor(positions - 1 - start, dtype=torch.long)
        targets = torch.as_tensor([enc.input_ids[p] for p in positions.tolist()], dtype=torch.long)
        fresh = head_statistics(model, hidden, torch.zeros_like(rows_t), rows_t, targets, chunk_rows, k, fused,
                                meter, lark)
        del hidden
    if state is not None and start:
        old = np.searchsorted(state.positions, enc.positions[~new_rows])
        stats = {name: np.concatenate([state.stats[name][old], fresh[name]]) for name in fresh}
    else:
        stats = fresh
    cache = getattr(out, "cache", None) or out.past_key_values
    return stats, PrefixState(ids=list(ids), cache=cache, positions=enc.positions.copy(), stats=stats)


def _cache_argument(model: torch.nn.Module) -> str:
    """The body's keyword for a key/value cache: `cache` (transformers >= 5.2x), else `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.base_model.forward).parameters else "past_key_values"


def _empty(k: int, lark: int) -> dict[str, np.ndarray]:
    return {"surprisal": np.zeros(0, np.float32), "rank": np.zeros(0, np.int64), "entropy": np.zeros(0, np.float32),
            "top_ids": np.zeros((0, k), np.int64), "top_probs": np.zeros((0, k), np.float32),
            **({"brier": np.zeros(0, np.float32), "lark_brier": np.zeros(0, np.float32)} if lark else {})}



def student_format(settings) -> tuple[bool, int]:
    """(plain_format, max_len) a store's student was scored with (`StudentSettings`), so that a rescore writes
    numbers of the same kind beside them."""
    return settings.extra.get("rendering") == "plain", int(settings.max_len or MAX_LEN)


def keep_edited(store: str | Path, student: Student, pairs: list[tuple[Trajectory, TokenScores]],
                plain_format: bool = False, max_len: int = MAX_LEN) -> AppendResult:
    """Write edited trajectories and their scores into the results store at `store` (new candidates of their
    problems, `rsr_core.data.edits`); what the store refuses is in the result."""
    with StoreWriter(store, store_settings(student, max_len, plain_format)) as writer:
        return writer.append_pairs(pairs, pairs_table(pairs, student.name))
