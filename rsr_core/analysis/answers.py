"""Correctness of responses against reference answers, checked by Hugging Face's math-verify.

Most public pools carry a reference answer but no label; "correct only" selection needs the label. A response's
final answer is found by math-verify in its answer part (the text after the thinking): the last `\\boxed{...}`
first, else the answer part's own final answer or expression; the reference is parsed the same way (as written,
else as `$...$`), and `math_verify.verify(reference, answer)` compares them (numbers, fractions, expressions, sets,
intervals).

math-verify's own timeouts use SIGALRM, which works only in a process's main thread, so the app's script threads
and Ray actors cannot use them. Here every check runs in a worker process (pebble's `ProcessPool`, spawned) with
math-verify's timeouts off (`parsing_timeout=None`, `timeout_seconds=None`) and a timeout of our own: a check that
takes longer is stopped with its worker, which is replaced, and the label is unknown (None). An answer math-verify
cannot parse, or that makes it raise, is unknown too: a bad answer never raises here and never stops the others.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Iterable, Sequence

TIMEOUT_S = 5.0  # seconds per answer, parse and comparison together
WORKERS = 2


@dataclass(frozen=True)
class Verdict:
    """The label of one response: True / False, or None (unknown) with the reason."""

    correct: bool | None
    reason: str = ""  # why unknown: "no answer found", "timeout", "error: ..."


def verify_answer(reference: str, answer: str) -> Verdict:
    """math-verify's verdict on one answer part against one reference, in this process (no timeout of its own:
    call it through `AnswerChecker` outside a worker)."""
    import logging

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": ours is in the parent
    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    try:
        gold = parse(reference, extraction_config=configs, parsing_timeout=None) or parse(
            f"${reference}$", extraction_config=configs, parsing_timeout=None)
        if not gold:
            return Verdict(None, "reference not understood")
        found = parse(answer, extraction_config=configs, parsing_timeout=None)
        if not found:
            return Verdict(None, "no answer found")
        return Verdict(bool(verify(gold, found, timeout_seconds=None)))
    except Exception as e:  # noqa: BLE001 - math-verify and sympy raise many types on odd input
        return Verdict(None, f"error: {type(e).__name__}")


class AnswerChecker:
    """Checks many (reference, answer) pairs in worker processes, each within `timeout` seconds.

    Usable from any thread; `close()` (or `with`) stops the workers. Workers start on the first check.
    """

    def __init__(self, timeout: float | None = None, workers: int = WORKERS):
        self.timeout = TIMEOUT_S if timeout is None else float(timeout)
        self.workers = max(1, int(workers))
        self._pool = None

    def _ensure_pool(self):
        if self._pool is None:
            from pebble import ProcessPool

            self._pool = ProcessPool(max_workers=self.workers, context=multiprocessing.get_context("spawn"))
        return self._pool

    def check(self, pairs: Iterable[tuple[str, str]]) -> list[Verdict]:
        """[n] verdicts of n (reference, answer part) pairs, in order."""
        pairs = list(pairs)
        if not pairs:
            return []
        pool = self._ensure_pool()
        futures = [pool.schedule(verify_answer, args=(ref, ans), timeout=self.timeout) for ref, ans in pairs]
        out = []
        for f in futures:
            try:
                out.append(f.result())
            except FutureTimeout:
                out.append(Verdict(None, "timeout"))
            except Exception as e:  # noqa: BLE001 - a worker that died takes its answer only
                out.append(Verdict(None, f"error: {type(e).__name__}"))
        return out

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()
            pool.join()

    def __enter__(self) -> "AnswerChecker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_answers(pairs: Sequence[tuple[str, str]], timeout: float | None = None) -> list[Verdict]:
    """`AnswerChecker.check` with a checker of its own, closed when done."""
    with AnswerChecker(timeout) as checker:
        return checker.check(pairs)
