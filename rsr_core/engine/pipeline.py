"""Score many trajectories under one student: cache look-up, length-bucketed batches, progress, early stop."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from rsr_core.engine.cache import ScoreCache, entry_key
from rsr_core.engine.chat_format import MAX_LEN, TemplateError, encode
from rsr_core.data.formats import RecordError
from rsr_core.engine.scoring import (TOP_K, MemoryBackoff, gpu_token_budget, plan_batches, score_batch_backoff,
                                     to_token_scores)
from rsr_core.data.paths import cache_root
from rsr_core.engine.student import Student
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory

Progress = Callable[["ScoringProgress"], None]


@dataclass
class ScoringProgress:
    """Where a scoring run stands: trajectories done (cached ones included) and the forward-pass rate."""

    done: int
    total: int
    cached: int
    tokens: int  # response tokens scored by forward passes so far
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimate from the rate so far; None before the first forward pass."""
        if self.tokens == 0 or self.done == self.cached:
            return None
        per_traj = self.seconds / (self.done - self.cached)
        return per_traj * (self.total - self.done)


@dataclass
class ScoringResult:
    scores: dict[str, TokenScores] = field(default_factory=dict)  # trajectory_id -> per-token results
    errors: list[RecordError] = field(default_factory=list)
    cached: int = 0
    stopped: bool = False  # stopped early (should_stop or interrupt); what was scored is kept and cached
    rewritten: int = 0  # conversations whose template would rewrite the assistant text: scored verbatim in its context

    def notes(self) -> list[str]:
        """What a user should hear once per run."""
        if not self.rewritten:
            return []
        return [f"the student's chat template rewrites or drops part of the assistant text (such as the reasoning) "
                f"in {self.rewritten} conversation(s); the teacher's trace was scored verbatim in the template's "
                "context"]


def default_token_budget(student: Student) -> int:
    """Padded tokens per forward pass: on a GPU batches sized from its free memory (up to 16k tokens); one
    conversation at a time on a CPU, where padding costs more than batching gains."""
    return gpu_token_budget(student.model) if student.device.type == "cuda" else 1


def score_trajectories(trajectories: Iterable[Trajectory], student: Student, *, cache_dir: str | Path | None = None,
                       max_len: int = MAX_LEN, token_budget: int | None = None, progress: Progress | None = None,
                       should_stop: Callable[[], bool] | None = None, use_cache: bool = True,
                       plain_format: bool = False) -> ScoringResult:
    """Per-token results of every trajectory; cached ones cost no forward pass, new ones are cached at once.

    `plain_format` scores in the plain format instead of the student's chat template."""
    trajectories = list(trajectories)
    cache = ScoreCache(cache_dir or cache_root()) if use_cache else None
    result = ScoringResult()
    dtype = str(student.dtype).replace("torch.", "")
    pending: list[tuple[Trajectory, str, object]] = []
    for t in trajectories:
        template = None if plain_format else student.chat_template
        key = entry_key(student.name, student.fingerprint, template, dtype, max_len, TOP_K, t.messages)
        hit = cache.get(key) if cache else None
        if hit is not None:
            result.scores[t.trajectory_id] = hit
            result.cached += 1
            continue
        try:
            enc = encode(t.messages, student.tokenizer, max_len, use_template=not plain_format)
        except (TemplateError, ValueError, TypeError) as e:
            result.errors.append(RecordError(t.source, t.record, f"cannot render with the student's template: {e}"))
            continue
        result.rewritten += enc.rewritten
        pending.append((t, key, enc))
    state = ScoringProgress(done=result.cached, total=len(result.scores) + len(pending), cached=result.cached,
                            tokens=0, seconds=0.0)
    if progress:
        progress(state)
    pad = student.tokenizer.pad_token_id if student.tokenizer.pad_token_id is not None else 0
    budget = token_budget or default_token_budget(student)
    backoff = MemoryBackoff()
    start = time.perf_counter()
    try:
        for batch in plan_batches([len(e.input_ids) for _, _, e in pending], budget):
            if should_stop and should_stop():
                result.stopped = True
                break
            items = [pending[i] for i in batch]
            stats = score_batch_backoff(student.model, [e for _, _, e in items], backoff, pad_id=pad)
            for (t, key, enc), st in zip(items, stats):
                if st is None:
                    result.errors.append(RecordError(t.source, t.record, "does not fit in the device's memory"))
                    continue
                scores = to_token_scores(enc, st, student.tokenizer)
                result.scores[t.trajectory_id] = scores
                if cache:
                    cache.put(key, scores)
                state.tokens += len(scores)
            state.done += len(items)
            state.seconds = time.perf_counter() - start
            if progress:
                progress(state)
    except KeyboardInterrupt:
        result.stopped = True
    return result
