"""A scoring run in a background thread, so the app stays responsive and a Stop button takes effect at once.

The app's script only starts the job, reads its progress and collects its results; the thread never calls
Streamlit. Stop sets an event that `score_trajectories` reads through `should_stop` between forward passes, so the
run ends after the trajectory in flight; everything scored so far is kept (and is in the disk cache).
Trajectories go in chunks: cached ones first (no forward pass, shown at once), then `chunk` at a time, so partial
results reach the page while the run goes on. The shared model is used under `lock` (one forward pass at a time
per process, whichever session asks). No Streamlit import here.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rsr_core.data.formats import RecordError
from rsr_core.engine.pipeline import MAX_LEN, ScoringProgress, score_trajectories
from rsr_core.engine.student import Student
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory

CHUNK = 8


@dataclass
class JobProgress:
    """Where the whole job stands (all chunks together)."""

    done: int = 0  # trajectories with results (cached included)
    total: int = 0
    cached: int = 0
    tokens: int = 0  # response tokens scored by forward passes
    seconds: float = 0.0  # time spent in forward passes so far
    waiting: bool = False  # waiting for another session's forward pass

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimate from the time per scored trajectory so far; None before the first forward pass."""
        scored = self.done - self.cached
        if scored <= 0 or self.seconds <= 0:
            return None
        return self.seconds / scored * (self.total - self.done)

    def describe(self) -> str:
        """e.g. `12 / 79 trajectories · 35 tokens/s · about 2 min 10 s left`."""
        parts = [f"{self.done} / {self.total} trajectories"]
        if self.cached:
            parts.append(f"{self.cached} from the cache")
        if self.tokens_per_s:
            parts.append(f"{self.tokens_per_s:,.0f} tokens/s")
        left = self.seconds_left
        if left is not None:
            parts.append(f"about {format_seconds(left)} left")
        if self.waiting:
            parts.append("waiting for another scoring run to finish")
        return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


@dataclass
class ScoringJob:
    """Score `trajectories` under `student` in a thread. Read `progress`, `scores`, `errors`, `revision` at any time.

    With `cache_only`, only the results already in the cache are collected (no forward pass, no lock held long).

    `revision` grows each time new scores land, so a reader can tell whether anything changed since it last looked.
    """

    trajectories: list[Trajectory]
    student: Student
    lock: threading.Lock
    cache_dir: str | None = None
    max_len: int = MAX_LEN
    chunk: int = CHUNK
    progress: JobProgress = field(default_factory=JobProgress)
    scores: dict[str, TokenScores] = field(default_factory=dict)
    errors: list[RecordError] = field(default_factory=list)
    revision: int = 0
    cache_only: bool = False  # only collect what the cache holds (no forward pass)
    failure: str | None = None  # an unexpected error that ended the run
    stopped: bool = False
    finished: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "ScoringJob":
        self.progress.total = len(self.trajectories)
        self._thread = threading.Thread(target=self._run, name="rsr-scoring", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to end after the forward pass in flight."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.finished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (for tests and scripts); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    def snapshot(self) -> tuple[int, dict[str, TokenScores]]:
        """(revision, a copy of the scores so far), consistent with each other."""
        with self._guard:
            return self.revision, dict(self.scores)

    def _add(self, scores: dict[str, TokenScores], errors: list[RecordError]) -> None:
        with self._guard:
            self.scores.update(scores)
            self.errors.extend(errors)
            if scores:
                self.revision += 1

    def _run(self) -> None:
        try:
            with self.lock:  # cached results first: no forward pass, and every pending conversation is checked
                first = score_trajectories(self.trajectories, self.student, cache_dir=self.cache_dir,
                                           max_len=self.max_len, should_stop=lambda: True)
            self.progress.cached = self.progress.done = len(first.scores)
            self._add(first.scores, first.errors)
            if self.cache_only:
                return
            failed = {(e.source, e.record) for e in first.errors}
            todo = [t for t in self.trajectories
                    if t.trajectory_id not in first.scores and (t.source, t.record) not in failed]
            for a in range(0, len(todo), max(1, self.chunk)):
                if self._stop.is_set():
                    break
                self.progress.waiting = self.lock.locked()
                with self.lock:
                    self.progress.waiting = False
                    base = (self.progress.done, self.progress.tokens, self.progress.seconds)
                    started = time.perf_counter()

                    def report(p: ScoringProgress, base=base, started=started) -> None:
                        self.progress.done = base[0] + p.done
                        self.progress.tokens = base[1] + p.tokens
                        self.progress.seconds = base[2] + (time.perf_counter() - started)

                    part = score_trajectories(todo[a:a + self.chunk], self.student, cache_dir=self.cache_dir,
                                              max_len=self.max_len, progress=report, should_stop=self._stop.is_set)
                self._add(part.scores, part.errors)
                if part.stopped:
                    break
            self.stopped = self._stop.is_set() and len(self.scores) < len(self.trajectories)
        except Exception as e:  # noqa: BLE001 - reported to the user by the app, never a traceback
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            self.finished = True
