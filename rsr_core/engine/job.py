"""A scoring run in a background thread, writing into a results store, so the app stays responsive.

The app's script only starts the job and reads its progress; the thread never calls Streamlit. Results are
committed to the store batch by batch, so every page sees them as soon as they land (the store's generation
grows) and nothing is held in memory. Stop sets an event that `score_trajectories` reads between forward passes:
the run ends after the pass in flight and everything scored so far is in the store. Trajectories go in chunks,
each under `lock` (one forward pass at a time per process, whichever session asks), so two sessions' runs
interleave. No Streamlit import here.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rsr_core.data.formats import RecordError
from rsr_core.data.store import StoreError, StoreWriter
from rsr_core.data.trajectory import Trajectory
from rsr_core.engine.pipeline import (MAX_LEN, ScoringProgress, rewrite_notes, score_trajectories, store_settings,
                                      store_sink)
from rsr_core.engine.student import Student

CHUNK = 16
PASS_FIELDS = ("pass_tokens", "pass_fraction", "pass_stage", "pass_scored", "pass_trajectories")


@dataclass
class JobProgress(ScoringProgress):
    """Where the whole job stands (all chunks together)."""

    waiting: bool = False  # waiting for another session's forward pass

    def describe(self) -> str:
        """e.g. `12 / 79 trajectories · 35 tokens/s · about 2 min 10 s left`, with the pass in flight when there is
        one (`pass of 60,000 tokens: layer 12/30 (35%)`)."""
        parts = [f"{self.done:,} / {self.total:,} trajectories"]
        if self.pass_tokens:
            parts.append(self.describe_pass())
        if self.cached:
            parts.append(f"{self.cached:,} from the cache")
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


class BackgroundRun:
    """A run in a daemon thread that the app starts, asks to stop and reads: the class gives `_run` (which sets
    `finished` when it ends), `thread_name`, and the fields `_thread`, `_stop` (an Event) and `finished`."""

    thread_name = "rsr-run"

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to end (after the forward pass in flight, or at the next layer: the run says which)."""
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


@dataclass
class ScoringJob(BackgroundRun):
    """Score `trajectories` (or what `load` returns, called in the thread) under `student` into the store at
    `store`. Read `progress`, `errors`, `notes`, `failure`, `stopped`, `finished` at any time."""

    trajectories: list[Trajectory]
    student: Student
    lock: threading.Lock
    store: Path
    cache_dir: str | None = None
    max_len: int = MAX_LEN
    chunk: int = CHUNK
    load: Callable[[], list[Trajectory]] | None = None
    progress: JobProgress = field(default_factory=JobProgress)
    errors: list[RecordError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: int = 0  # trajectories committed by this run
    failure: str | None = None  # an unexpected error that ended the run
    stopped: bool = False
    finished: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    thread_name = "rsr-scoring"

    def start(self) -> "ScoringJob":
        self.progress.total = len(self.trajectories)
        return super().start()

    def _run(self) -> None:
        try:
            if self.load is not None:
                self.trajectories = self.load()
                self.progress.total = len(self.trajectories)
            writer = StoreWriter(self.store, store_settings(self.student, self.max_len))
            try:
                self._score(writer)
            finally:
                writer.close()
        except StoreError as e:
            self.failure = str(e)
        except Exception as e:  # noqa: BLE001 - reported to the user by the app, never a traceback
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            self.finished = True

    def _score(self, writer: StoreWriter) -> None:
        held = writer.committed_ids
        changed = writer.changed(self.trajectories)  # refused up front, as `score` does: never scored for nothing
        self.errors.extend(RecordError(t.source or str(self.store), t.record if t.source else None,
                                       f"trajectory {t.trajectory_id}: {changed[t.trajectory_id]} in {self.store} "
                                       "(scored from another text: write to a new store)")
                           for t in self.trajectories if t.trajectory_id in changed)
        todo = [t for t in self.trajectories if t.trajectory_id not in held and t.trajectory_id not in changed]
        self.progress.done = len(self.trajectories) - len(todo)
        self.progress.cached = self.progress.done - len(changed)
        refused: list[str] = []
        rewritten = canonical_tools = 0
        for a in range(0, len(todo), max(1, self.chunk)):
            if self._stop.is_set():
                break
            self.progress.waiting = self.lock.locked()
            with self.lock:
                self.progress.waiting = False
                base = (self.progress.done, self.progress.cached, self.progress.tokens, self.progress.seconds)
                started = time.perf_counter()

                def report(p: ScoringProgress, base=base, started=started) -> None:
                    self.progress.done = base[0] + p.done
                    self.progress.cached = base[1] + p.cached
                    self.progress.tokens = base[2] + p.tokens
                    self.progress.seconds = base[3] + (time.perf_counter() - started)
                    for name in PASS_FIELDS:
                        setattr(self.progress, name, getattr(p, name))

                part = score_trajectories(todo[a:a + self.chunk], self.student, cache_dir=self.cache_dir,
                                          max_len=self.max_len, progress=report, should_stop=self._stop.is_set,
                                          sink=store_sink(writer, self.student.name, refused), keep=False)
            self.progress.end_pass()
            self.errors.extend(part.errors)
            if part.cache_problem and part.cache_problem not in self.notes:
                self.notes.append(part.cache_problem)
            self.written += part.n_scored
            rewritten += part.rewritten
            canonical_tools += len(part.canonical_tools_ids)
            if part.stopped:
                break
        self.errors.extend(RecordError(str(self.store), None, m) for m in refused)
        self.notes = rewrite_notes(rewritten, canonical_tools) + self.notes
        self.stopped = self._stop.is_set() and self.progress.done < self.progress.total
