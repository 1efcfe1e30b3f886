"""Score many trajectories under one student: cache look-up, length-bucketed batches, progress, early stop.

Results leave in batches through `sink` as soon as they are scored, so a caller that writes them out (the
results store) holds no more than one window of encoded conversations: batches are planned by length within
windows of about `WINDOW_TOKENS` tokens, whatever the number of trajectories.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rsr_core.analysis.metrics import R_MAX
from rsr_core.engine.cache import ScoreCache, entry_key
from rsr_core.engine.chat_format import MAX_LEN, Encoded, TemplateError, encode
from rsr_core.data.formats import RecordError
from rsr_core.engine.scoring import (TOP_K, MemoryBackoff, gpu_token_budget, plan_batches, score_batch_backoff,
                                     to_token_scores)
from rsr_core.data.paths import cache_root
from rsr_core.data.store import StoreWriter, StudentSettings
from rsr_core.data.students import student_source
from rsr_core.data.tables import pairs_table
from rsr_core.engine.student import Student
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory

Progress = Callable[["ScoringProgress"], None]
Sink = Callable[[list[tuple[Trajectory, TokenScores]]], None]
WINDOW_TOKENS = 1 << 21  # encoded tokens held at once; length bucketing happens within a window
CACHED_BATCH = 64  # cached results handed to the sink together
FILL_BUFFER_TOKENS = 1 << 22  # tokens of rescored trajectories gathered before the parts holding them are rewritten


@dataclass
class ScoringProgress:
    """Where a scoring run stands: trajectories done (cached ones included), the forward-pass rate, and how far
    the forward pass in flight is (so that one long conversation shows progress too).

    The pass fields are updated during a pass: per decoder layer on a CPU, per output-layer chunk everywhere
    (on a GPU only at chunk boundaries, where reporting costs no synchronisation). `pass_fraction` is an
    estimate from the pass's arithmetic (layers, attention, output layer), monotone from 0 to 1.
    """

    done: int = 0  # trajectories with results (cached and already stored included)
    total: int = 0
    cached: int = 0
    tokens: int = 0  # response tokens scored by finished forward passes so far
    seconds: float = 0.0  # time spent scoring so far
    pass_tokens: int = 0  # tokens in the forward pass in flight (padded batch); 0 when none
    pass_fraction: float = 0.0  # how far that pass is, in [0, 1]
    pass_stage: str = ""  # e.g. "layer 12/30", "output layer 3/44"
    pass_scored: int = 0  # response tokens that pass scores
    pass_trajectories: int = 0  # conversations in that pass

    @property
    def tokens_per_s(self) -> float:
        """Response tokens per second, the pass in flight counted by its fraction (so the rate moves during one
        long pass)."""
        tokens = self.tokens + self.pass_fraction * self.pass_scored
        return tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimate from the time per scored trajectory so far (the pass in flight counted by its fraction);
        None before the first forward pass has moved."""
        moved = self.pass_fraction * self.pass_trajectories
        scored = self.done - self.cached + moved
        if scored <= 0 or self.seconds <= 0:
            return None
        return self.seconds / scored * max(0.0, self.total - self.done - moved)

    @property
    def fraction(self) -> float:
        """Share of the run done, in [0, 1], the pass in flight counted by its fraction (for a progress bar that
        moves during one long conversation)."""
        if not self.total:
            return 1.0
        return min(1.0, (self.done + self.pass_fraction * self.pass_trajectories) / self.total)

    def describe_pass(self) -> str:
        """e.g. `pass of 60,000 tokens: layer 12/30 (35%)`; '' when no pass is in flight."""
        if not self.pass_tokens:
            return ""
        return f"pass of {self.pass_tokens:,} tokens: {self.pass_stage or 'starting'} ({self.pass_fraction:.0%})"

    def end_pass(self) -> None:
        """No pass in flight."""
        self.pass_tokens = self.pass_scored = self.pass_trajectories = 0
        self.pass_fraction, self.pass_stage = 0.0, ""


@dataclass
class ScoringResult:
    scores: dict[str, TokenScores] = field(default_factory=dict)  # trajectory_id -> per-token results
    errors: list[RecordError] = field(default_factory=list)
    cached: int = 0
    stopped: bool = False  # stopped early (should_stop or interrupt); what was scored is kept and cached
    rewritten_ids: set[str] = field(default_factory=set)  # the template would rewrite their assistant text
    canonical_tools_ids: set[str] = field(default_factory=set)  # tool calls scored in the canonical form
    n_scored: int = 0  # results handed to the sink and not kept (keep=False)
    cache_problem: str | None = None  # the cache could not be written or read (why); scoring went on without it

    @property
    def rewritten(self) -> int:
        return len(self.rewritten_ids)

    def notes(self) -> list[str]:
        """What a user should hear once per run."""
        return rewrite_notes(self.rewritten, len(self.canonical_tools_ids))

    def note(self, trajectory_id: str, flags: dict) -> None:
        """Count a conversation's rendering notes (`Encoded.rewritten`, `.canonical_tools`), from its encoding or
        its cache entry."""
        if flags.get("rewritten"):
            self.rewritten_ids.add(trajectory_id)
        if flags.get("canonical_tools"):
            self.canonical_tools_ids.add(trajectory_id)


def rewrite_notes(count: int, canonical_tools: int = 0) -> list[str]:
    """The notes for conversations whose template would rewrite the assistant text (scored verbatim anyway) and
    whose tool calls the template does not write as scored."""
    notes = []
    if count:
        notes.append(f"the student's chat template rewrites or drops part of the assistant text (such as the "
                     f"reasoning) in {count} conversation(s); the teacher's trace was scored verbatim in the "
                     "template's context")
    if canonical_tools:
        notes.append(f"the student's chat template does not write tool calls as scored in {canonical_tools} "
                     "conversation(s); their tool calls were scored in the canonical form "
                     '<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call> (as Qwen-family templates write '
                     "them)")
    return notes


def default_token_budget(student: Student) -> int:
    """Padded tokens per forward pass: on a GPU batches sized from its free memory (up to 16k tokens); one
    conversation at a time on a CPU, where padding costs more than batching gains."""
    return gpu_token_budget(student.model) if student.device.type == "cuda" else 1


def store_settings(student: Student, max_len: int = MAX_LEN, plain_format: bool = False) -> StudentSettings:
    """What identifies a run's numbers in a results store: the weights, dtype, max_len, top-k and the rendering
    (a hash of the chat template, or the plain format). Metric columns are stored at r_max = 100; the
    aggregates give any other."""
    template = None if plain_format else student.chat_template
    rendering = hashlib.sha256(template.encode()).hexdigest()[:16] if template else "plain"
    return StudentSettings(student=student.name, fingerprint=student.fingerprint,
                           dtype=str(student.dtype).replace("torch.", ""), max_len=max_len, top_k=TOP_K,
                           r_max=R_MAX, extra={"rendering": rendering}, source=student_source(student.spec))


def store_sink(writer: StoreWriter, student_name: str, refused: list[str]) -> Sink:
    """A sink that commits each batch to a results store, each trajectory with its own scores; what the store
    refuses is added to `refused`."""
    def sink(pairs: list[tuple[Trajectory, TokenScores]]) -> None:
        refused.extend(writer.append_pairs(pairs, pairs_table(pairs, student_name, R_MAX)).errors)
    return sink


class FillingSink:
    """`store_sink` that also fills: trajectories the store holds already (rescored because they lack the same-pass
    columns, `StoreWriter.lacking_ids`) have those columns added rather than being appended. Their scores are
    gathered (only the arrays a fill reads) and committed FILL_BUFFER_TOKENS tokens at a time and at `flush()`,
    since each fill rewrites the parts that hold them. `filled`: the ids filled so far."""

    def __init__(self, writer: StoreWriter, student_name: str, refused: list[str]):
        self.writer, self.refused = writer, refused
        self.append = store_sink(writer, student_name, refused)
        self.pending: dict[str, TokenScores] = {}
        self.tokens = 0
        self.filled: list[str] = []

    def __call__(self, pairs: list[tuple[Trajectory, TokenScores]]) -> None:
        held = [t.trajectory_id in self.writer for t, _ in pairs]
        for (t, s), fill in zip(pairs, held):
            if fill:
                self.pending[t.trajectory_id] = _slim(s)
                self.tokens += len(s)
        if not all(held):
            self.append([pair for pair, fill in zip(pairs, held) if not fill])
        if self.tokens >= FILL_BUFFER_TOKENS:
            self.flush()

    def flush(self) -> None:
        """Commit the gathered fills."""
        if self.pending:
            pending, self.pending, self.tokens = self.pending, {}, 0
            result = self.writer.fill_same_pass(pending)
            self.refused.extend(result.errors)
            self.filled += result.written


def _slim(s: TokenScores) -> TokenScores:
    """The arrays of a TokenScores a fill reads (token ids, surprisal, the Brier terms), without the texts."""
    return TokenScores(token_ids=s.token_ids, tokens=[], offsets=np.zeros((0, 2), np.int64), turn=s.turn,
                       surprisal=s.surprisal, rank=s.rank, entropy=s.entropy, top_ids=np.zeros((0, 0), np.int64),
                       top_tokens=[], top_probs=np.zeros((0, 0), np.float32), brier=s.brier,
                       lark_brier=s.lark_brier)


class _Stopped(Exception):
    """should_stop said so between two forward passes."""


def score_trajectories(trajectories: Iterable[Trajectory], student: Student, *, cache_dir: str | Path | None = None,
                       max_len: int = MAX_LEN, token_budget: int | None = None, progress: Progress | None = None,
                       should_stop: Callable[[], bool] | None = None, use_cache: bool = True,
                       plain_format: bool = False, sink: Sink | None = None, keep: bool = True,
                       cache: ScoreCache | None = None) -> ScoringResult:
    """Per-token results of every trajectory; cached ones cost no forward pass, new ones are cached at once.

    `sink` receives [(trajectory, scores)] per batch as soon as they are scored (cached ones included);
    `keep=False` leaves `result.scores` empty, so memory does not grow with the number of trajectories.
    `plain_format` scores in the plain format instead of the student's chat template. `cache`: a ScoreCache to use
    instead of one at `cache_dir` (the caller can then ask it whether it could be written). A cache that cannot be
    written or read is reported once (`result.cache_problem`) and scoring goes on without it."""
    trajectories = list(trajectories)
    if use_cache and cache is None:
        cache = ScoreCache(cache_dir or cache_root())
    elif not use_cache:
        cache = None
    result = ScoringResult()
    dtype = str(student.dtype).replace("torch.", "")
    template = None if plain_format else student.chat_template
    state = ScoringProgress(total=len(trajectories))
    run = _Run(student, token_budget or default_token_budget(student), cache, result, state, progress, sink, keep)
    window: list[tuple[Trajectory, str, Encoded]] = []
    hits: list[tuple[Trajectory, TokenScores]] = []
    size = 0
    if progress:
        progress(state)
    try:
        for t in trajectories:
            if should_stop and should_stop():
                raise _Stopped
            key = entry_key(student.name, student.fingerprint, template, dtype, max_len, TOP_K, t.identity)
            hit = cache.get(key) if cache else None
            if hit is not None:
                result.note(t.trajectory_id, hit.extra)
                hits.append((t, hit))
                state.cached += 1
                if len(hits) >= CACHED_BATCH:
                    run.deliver(hits)
                    hits = []
                continue
            try:
                enc = encode(t.messages, student.tokenizer, max_len, use_template=not plain_format, tools=t.tools)
            except (TemplateError, ValueError, TypeError) as e:
                result.errors.append(RecordError(t.source, t.record, f"cannot render with the student's template: {e}"))
                state.done += 1
                continue
            result.note(t.trajectory_id, {"rewritten": enc.rewritten, "canonical_tools": enc.canonical_tools})
            window.append((t, key, enc))
            size += len(enc.input_ids)
            if size >= WINDOW_TOKENS:
                run.deliver(hits)
                hits = []
                run.score_window(window, should_stop)
                window, size = [], 0
        run.deliver(hits)
        run.score_window(window, should_stop)
    except (_Stopped, KeyboardInterrupt):
        run.deliver(hits)
        result.stopped = True
    finally:
        state.end_pass()
        if cache is not None and (cache.unwritable or cache.unreadable):
            result.cache_problem = (
                f"the cache at {cache.base} could not be written ({cache.unwritable}); scoring went on without "
                "caching" if cache.unwritable else
                f"the cache at {cache.base} could not be read ({cache.unreadable}); scoring went on without it")
    result.cached = state.cached
    return result


@dataclass
class _Run:
    """One scoring run's moving parts: where results go and how progress is counted."""

    student: Student
    budget: int
    cache: ScoreCache | None
    result: ScoringResult
    state: ScoringProgress
    progress: Progress | None
    sink: Sink | None
    keep: bool
    backoff: MemoryBackoff = field(default_factory=MemoryBackoff)
    started: float = field(default_factory=time.perf_counter)

    def deliver(self, pairs: list[tuple[Trajectory, TokenScores]]) -> None:
        """Hand results over (sink, result.scores) and count them as done."""
        if not pairs:
            return
        if self.keep:
            self.result.scores.update((t.trajectory_id, s) for t, s in pairs)
        else:
            self.result.n_scored += len(pairs)
        if self.sink:
            self.sink(pairs)
        self.state.done += len(pairs)
        if self.progress:
            self.progress(self.state)

    def _on_pass(self, tokens: int, fraction: float, stage: str) -> None:
        """Progress inside a forward pass (from `scoring.score_batch`)."""
        self.state.pass_tokens, self.state.pass_fraction, self.state.pass_stage = tokens, fraction, stage
        self.state.seconds = time.perf_counter() - self.started
        self.progress(self.state)

    def score_window(self, window: list[tuple[Trajectory, str, Encoded]], should_stop) -> None:
        """Length-bucketed batches of one window, each scored, cached and delivered at once."""
        tok = self.student.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        for batch in plan_batches([len(e.input_ids) for _, _, e in window], self.budget):
            if should_stop and should_stop():
                raise _Stopped
            items = [window[i] for i in batch]
            self.state.pass_scored = sum(len(e.positions) for _, _, e in items)
            self.state.pass_trajectories = len(items)
            try:
                stats = score_batch_backoff(self.student.model, [e for _, _, e in items], self.backoff, pad_id=pad,
                                            on_pass=self._on_pass if self.progress else None)
            finally:
                self.state.end_pass()
            done = []
            for (t, key, enc), st in zip(items, stats):
                if st is None:
                    self.result.errors.append(RecordError(t.source, t.record, "does not fit in the device's memory"))
                    self.state.done += 1
                    continue
                scores = to_token_scores(enc, st, tok)
                if self.cache:
                    self.cache.put(key, scores)
                self.state.tokens += len(scores)
                done.append((t, scores))
            self.state.seconds = time.perf_counter() - self.started
            self.deliver(done)
