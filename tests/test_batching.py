"""Results do not depend on batch composition, padding or chunking; the reduction against brute force.

Batched conversations are right-padded and run without an attention mask; on the real embedded student (fp32,
CPU) they must give what each conversation gives alone: surprisal, entropy and top probabilities to 1e-5, ranks
and top ids exactly.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rsr_core.data.trajectory import Trajectory
from rsr_core.engine import cpu_head, fused_stats
from rsr_core.engine.chat_format import encode
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.engine.scoring import (LARK_K, MemoryBackoff, reduce_logits, score_batch, score_batch_backoff,
                                     token_statistics)
from tests.conftest import ROOT

FLOAT_STATS = ("surprisal", "entropy", "top_probs")
EXACT_STATS = ("rank", "top_ids")


def demo_messages(n: int) -> list[list[dict]]:
    lines = (ROOT / "data" / "demo" / "candidates.jsonl").read_text().splitlines()
    return [json.loads(line)["messages"] for line in lines[:n]]


@pytest.fixture(scope="module")
def conversations() -> list[list[dict]]:
    """Four demo conversations (138-238 tokens), a two-turn one and a ~450-token one: uneven lengths."""
    convs = demo_messages(6)
    long_answer = "\n\n".join(m[-1]["content"].strip() for m in convs[4:6])
    return convs[:4] + [
        [{"role": "user", "content": "What is 7 * 6?"}, {"role": "assistant", "content": "7 * 6 = 42."},
         {"role": "user", "content": "And 42 / 7?"}, {"role": "assistant", "content": "42 / 7 = 6, as before."}],
        [{"role": "user", "content": "Solve these two."}, {"role": "assistant", "content": long_answer}]]


@pytest.fixture(scope="module")
def encoded(student, conversations):
    return [encode(m, student.tokenizer) for m in conversations]


@pytest.fixture(scope="module")
def alone(student, encoded):
    pad = student.tokenizer.pad_token_id
    return [score_batch(student.model, [e], pad_id=pad)[0] for e in encoded]


def assert_same(got: dict, want: dict) -> None:
    for name in FLOAT_STATS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    for name in EXACT_STATS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_right_padded_unmasked_batch_equals_one_at_a_time(student, encoded, alone):
    assert len({int(e.positions.max()) for e in encoded}) == len(encoded)  # every row but one carries padding
    together = score_batch(student.model, encoded, pad_id=student.tokenizer.pad_token_id)
    for got, want in zip(together, alone):
        assert_same(got, want)


def test_batch_order_pad_token_and_chunks_across_conversations_do_not_matter(student, encoded, alone):
    order = [5, 1, 3]
    reordered = score_batch(student.model, [encoded[i] for i in order], pad_id=student.model.config.vocab_size - 1,
                            chunk_rows=37)
    for i, got in zip(order, reordered):
        assert_same(got, alone[i])


def test_pipeline_batches_equal_one_conversation_per_pass(student, conversations, alone):
    trajs = [Trajectory(f"t{i}", "p", "t", m) for i, m in enumerate(conversations)]
    many = score_trajectories(trajs, student, use_cache=False, token_budget=1024)  # batches of 2 and 4
    assert not many.errors
    for t, want in zip(trajs, alone):
        assert_same(vars(many.scores[t.trajectory_id]), want)


def test_backoff_splits_a_batch_larger_than_what_fitted(student, encoded, alone):
    """After an out-of-memory, batches above the largest that fitted are split in halves before they run."""
    backoff = MemoryBackoff(max_tokens=400)
    got = score_batch_backoff(student.model, encoded[:4], backoff, pad_id=student.tokenizer.pad_token_id)
    assert backoff.max_tokens == 400 and backoff.chunk_rows is None
    for g, want in zip(got, alone[:4]):
        assert_same(g, want)


def brute_force(logits: np.ndarray, targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The definitions row by row in float64: surprisal = logsumexp - logit[target] (NaN when the row holds a
    NaN), rank = 1 + #{v: logit[v] > logit[target]} (a NaN compares false), entropy, top-k values."""
    out = {"lse": [], "surprisal": [], "rank": [], "entropy": [], "top_values": [], "brier": [], "lark_brier": []}
    for row, t in zip(logits.astype(np.float64), targets):
        finite = row[np.isfinite(row)]
        m = finite.max()
        p = np.exp(finite - m) / np.exp(finite - m).sum()
        lse = m + np.log(np.exp(finite - m).sum())
        nan = np.isnan(row).any()
        out["lse"].append(lse)
        out["surprisal"].append(np.nan if nan else lse - row[t])
        out["rank"].append(1 + int((row > row[t]).sum()))
        out["entropy"].append(np.nan if nan else -(p * np.log(p)).sum())
        out["top_values"].append(np.sort(row[~np.isnan(row)])[::-1][:k])
        full = np.where(np.isfinite(row), np.exp(row - lse), 0.0)  # the softmax over the whole vocabulary
        out["brier"].append(np.nan if nan else 1 - 2 * full[t] + (full ** 2).sum())
        head = np.sort(row)[::-1][:LARK_K]  # LARK: the 50 largest logits renormalised, the target in them or not
        q = np.exp(head - head[0]) / np.exp(head - head[0]).sum()
        inside = (row > row[t]).sum() < LARK_K
        out["lark_brier"].append(np.nan if nan else 1 - 2 * (np.exp(row[t] - head[0]) / np.exp(head - head[0]).sum()
                                                              if inside else 0.0) + (q ** 2).sum())
    return {name: np.asarray(v) for name, v in out.items()}


def logits_with_ties_inf_and_nan(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [40, 3001] fp32 rounded to halves (many ties, ties at the target), -inf in some rows, NaN in two."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(40, 3001, generator=g) * 4).round_() / 2
    targets = torch.randint(0, 3001, (40,), generator=g)
    targets[:5] = logits[:5].argmax(-1)  # the top choice, often tied
    logits[10:20, ::2] = float("-inf")
    targets[10] = 0  # a target at -inf
    logits[30:33, :2998] = float("-inf")  # three finite logits, fewer than k
    targets[30:33] = 2999
    logits[35, 17] = float("nan")
    logits[36, targets[36]] = float("nan")
    return logits, targets


def check_against_brute_force(stats: dict[str, torch.Tensor], logits: torch.Tensor, targets: torch.Tensor,
                              k: int) -> None:
    want = brute_force(logits.numpy(), targets.numpy(), k)
    nan_rows = torch.isnan(logits).any(-1).numpy()
    np.testing.assert_array_equal(stats["rank"].numpy(), want["rank"])
    for name in ("surprisal", "entropy", "brier", "lark_brier"):
        got = stats[name].numpy()
        assert np.isnan(got[nan_rows]).all()
        np.testing.assert_allclose(got[~nan_rows], want[name][~nan_rows], rtol=1e-5, atol=1e-5, err_msg=name)
    assert np.isfinite(stats["entropy"].numpy()[~nan_rows]).all()
    ids = stats["top_ids"].numpy()
    assert ids.shape == (len(targets), k) and ((ids >= 0) & (ids < logits.shape[1])).all()
    top = np.take_along_axis(logits.numpy(), ids, 1)
    lse = want["lse"]
    for r in np.flatnonzero(~nan_rows):
        np.testing.assert_array_equal(top[r], want["top_values"][r])  # the k largest, in order, ties either way
        np.testing.assert_allclose(stats["top_probs"].numpy()[r], np.exp(top[r] - lse[r]), rtol=1e-5, atol=1e-7)


def test_reduction_against_brute_force_with_ties_inf_and_nan():
    logits, targets = logits_with_ties_inf_and_nan()
    check_against_brute_force(token_statistics(logits, targets, 5), logits, targets, 5)
    pieces = reduce_logits(logits, targets, 5)  # the CPU path: the compiled kernel where it builds
    merged = {name: torch.cat([p[name] for p in pieces]) for name in pieces[0]}
    check_against_brute_force(merged, logits, targets, 5)
    assert (merged["rank"][:5] == 1).all()
    assert torch.isinf(merged["surprisal"][10]) and torch.isfinite(merged["entropy"][10:20]).all()


@pytest.mark.skipif(not cpu_head.available(), reason="no C compiler to build the CPU kernel")
def test_compiled_cpu_kernel_against_brute_force():
    """The kernel alone: every row it does not flag equals the definitions; it flags exactly the rows with a NaN
    and those with fewer finite logits than LARK's 50 (the eager path redoes them)."""
    for seed in (0, 1, 2):
        logits, targets = logits_with_ties_inf_and_nan(seed)
        stats, bad = cpu_head.row_statistics(logits, targets, 5, LARK_K)
        assert bad.nonzero()[:, 0].tolist() == [30, 31, 32, 35, 36]
        ok = ~bad
        check_against_brute_force({n: v[ok] for n, v in stats.items()}, logits[ok], targets[ok], 5)
    # the target outside the top 50, at the 50th place, tied with it, and the only finite logit but one
    logits = torch.arange(200, dtype=torch.float32).flip(0).repeat(4, 1)  # logit 199 - v: id v has rank v + 1
    logits[2, 60] = logits[2, 49]  # a tie at the 50th place: rank 50, inside
    targets = torch.tensor([49, 50, 60, 0])
    stats, bad = cpu_head.row_statistics(logits, targets, 5, LARK_K)
    assert not bad.any() and stats["rank"].tolist() == [50, 51, 50, 1]
    check_against_brute_force(stats, logits, targets, 5)


def test_bf16_logits_are_reduced_in_fp32():
    logits, targets = logits_with_ties_inf_and_nan(1)
    low = logits.bfloat16()
    check_against_brute_force(token_statistics(low, targets, 5), low.float(), targets, 5)


NO_COMPILER_CHECK = """
import logging, torch
logging.basicConfig(level=logging.WARNING)
from rsr_core.engine import cpu_head
from rsr_core.engine.scoring import reduce_logits, token_statistics
assert not cpu_head.available()
logits, targets = torch.randn(40, 3001), torch.randint(0, 3001, (40,))
got = {n: torch.cat([p[n] for p in reduce_logits(logits, targets, 5)]) for n in token_statistics(logits, targets, 5)}
want = token_statistics(logits, targets, 5)
assert all(torch.equal(got[n], want[n]) for n in want), "eager"
print("eager ok")
"""


def test_without_a_compiler_the_eager_reduction_runs(tmp_path):
    """No C compiler on the PATH and a fresh cache: the kernel cannot be built; a warning says so, and the same
    reduction runs with torch."""
    env = {**os.environ, "PATH": str(tmp_path), "CC": "no-such-compiler", "RSR_CACHE_DIR": str(tmp_path / "c"),
           "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_COMPILER_CHECK)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "eager ok" in out.stdout, out.stderr[-3000:]
    assert "the compiled CPU reduction is unavailable (no C compiler" in out.stderr


FUSED_CHECK = """
import torch
from rsr_core.engine import fused_stats
from rsr_core.engine.scoring import reduce_logits
from tests.test_batching import check_against_brute_force, logits_with_ties_inf_and_nan
for seed, dtype in ((0, torch.float32), (1, torch.bfloat16)):
    logits, targets = logits_with_ties_inf_and_nan(seed)
    logits = logits.to(dtype)
    pieces = reduce_logits(logits, targets, 5, fused=True)
    check_against_brute_force(pieces[0], logits.float(), targets, 5)
    stats, bad = fused_stats.fused_token_statistics(logits, targets, 5, 50)
    assert bad.nonzero()[:, 0].tolist() == [30, 31, 32, 35, 36], bad.nonzero()
print("fused ok")
"""


@pytest.mark.skipif(not fused_stats.AVAILABLE, reason="Triton is not installed (CPU build of torch)")
def test_fused_reduction_in_tritons_interpreter():
    """The Triton kernel run by Triton's CPU interpreter, with the eager path redoing the rows it flags."""
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(FUSED_CHECK)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "fused ok" in out.stdout, out.stderr[-3000:]

