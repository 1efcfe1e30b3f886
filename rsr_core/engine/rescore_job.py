"""A rescore of one edited trajectory in a background thread, with the progress and Stop of a scoring run.

The app starts it and reads `progress`, `result`, `failure`; the thread never calls Streamlit. It takes the same
lock as `ScoringJob` (one forward pass at a time per process, the model is shared). Stop ends the pass at the next
decoder layer: the pass is one trajectory, so waiting for it to finish would not be a stop. No Streamlit import.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rsr_core.data.trajectory import Trajectory
from rsr_core.engine.chat_format import MAX_LEN
from rsr_core.engine.job import BackgroundRun, JobProgress
from rsr_core.engine.rescoring import PrefixCache, Rescored, rescore
from rsr_core.engine.student import Student


class Stopped(Exception):
    """Stop was pressed while the pass ran."""


@dataclass
class RescoreJob(BackgroundRun):
    """Score `trajectory` under `student`, from the prefix state under `key` where it shares a prefix with it."""

    trajectory: Trajectory
    student: Student
    lock: threading.Lock
    prefix: PrefixCache
    key: tuple
    plain_format: bool = False
    max_len: int = MAX_LEN
    progress: JobProgress = field(default_factory=lambda: JobProgress(total=1))
    result: Rescored | None = None
    failure: str | None = None
    stopped: bool = False
    finished: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    thread_name = "rsr-rescore"

    def _on_pass(self, tokens: int, fraction: float, stage: str) -> None:
        if self._stop.is_set():
            raise Stopped
        p = self.progress
        p.pass_tokens, p.pass_fraction, p.pass_stage, p.pass_trajectories = tokens, fraction, stage, 1

    def _run(self) -> None:
        try:
            self.progress.waiting = self.lock.locked()
            with self.lock:
                self.progress.waiting = False
                if self._stop.is_set():
                    raise Stopped
                self.result = rescore(self.student, self.trajectory, self.prefix, self.key,
                                      plain_format=self.plain_format, max_len=self.max_len, on_pass=self._on_pass)
            self.progress.done, self.progress.tokens = 1, len(self.result.scores)
            self.progress.seconds = self.result.seconds
        except Stopped:
            self.stopped = True
        except Exception as e:  # noqa: BLE001 - reported to the user by the app, never a traceback
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            self.progress.end_pass()
            self.finished = True
