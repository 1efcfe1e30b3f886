"""One pass over each row of logits on a CUDA device: surprisal, rank, entropy, top-k and the full-vocabulary
Brier score together (Triton), and LARK's top-50 Brier score from one torch.topk of the same chunk beside it.

`scoring.token_statistics` makes about ten passes over a chunk of fp32 logits [C, V] (upcast, top-k, compare,
shift, exp, sums). This kernel reads the logits once, in their own dtype (bf16 upcasts to fp32 exactly), with
one program per row: an online logsumexp and entropy in fp32, the strict-greater count against the target's
logit, and a running top-k that only looks inside a block when the block's maximum beats the current k-th value.

Rows with a NaN or +inf logit, or with fewer than k finite logits, are flagged; `scoring` recomputes those rows
with `token_statistics`, so they get exactly its conventions. Without Triton (CPU builds of torch) `AVAILABLE` is
False and nothing here runs.
"""
from __future__ import annotations

import os
from contextlib import nullcontext as _no_context

import torch

try:
    import triton
    import triton.language as tl
except Exception:  # no Triton (CPU torch), or an install that does not import
    triton = None

AVAILABLE = triton is not None
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter: no autotuning there
CONFIGS = [(1024, 4), (2048, 4), (2048, 8), (4096, 8)]  # (BLOCK, num_warps), autotuned per vocabulary size

if AVAILABLE:
    @triton.jit
    def _row_stats_kernel(logits, stride, targets, V, surprisal_out, rank_out, entropy_out, top_ids_out,
                          top_probs_out, brier_out, bad_out, K: tl.constexpr, KP: tl.constexpr,
                          BLOCK: tl.constexpr):
        """One row per program: logits [C, V] (row stride `stride`), targets [C]; outputs [C] and [C, K]."""
        row = tl.program_id(0)
        base = logits + row.to(tl.int64) * stride
        t = tl.load(base + tl.load(targets + row)).to(tl.float32)
        lanes = tl.arange(0, BLOCK)
        slots = tl.arange(0, KP)
        top_v = tl.where(slots < K, tl.full([KP], float("-inf"), tl.float32), float("inf"))  # slots >= K: padding
        top_i = tl.full([KP], -1, tl.int32)
        kth = tl.min(top_v, axis=0)
        m = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), axis=0)
        s0 = tl.zeros([BLOCK], tl.float32)  # per lane: sum exp(x - m)
        s1 = tl.zeros([BLOCK], tl.float32)  # per lane: sum exp(x - m) * (x - m)
        s2 = tl.zeros([BLOCK], tl.float32)  # per lane: sum exp(x - m)^2
        above = tl.zeros([BLOCK], tl.int32)
        nans = tl.zeros([BLOCK], tl.int32)
        for start in range(0, V, BLOCK):
            cols = start + lanes
            valid = cols < V
            x = tl.load(base + cols, mask=valid, other=float("-inf")).to(tl.float32)
            isnan = x != x
            nans += isnan.to(tl.int32)
            x = tl.where(isnan, float("-inf"), x)
            above += (x > t).to(tl.int32)
            bmax = tl.max(x, axis=0)
            new_m = tl.maximum(m, bmax)
            ref = tl.where(new_m == float("-inf"), 0.0, new_m)
            alpha = tl.exp(m - ref)
            delta = tl.where(m == float("-inf"), 0.0, m - ref)
            d = x - ref
            e = tl.exp(d)
            s1 = alpha * (s1 + s0 * delta) + tl.where(e > 0.0, e * d, 0.0)
            s0 = alpha * s0 + e
            s2 = alpha * alpha * s2 + e * e
            m = new_m
            xb = x
            while bmax > kth:  # the block holds a value above the k-th largest so far: take it in
                idx = tl.min(tl.where((xb == bmax) & valid, cols, V), axis=0)
                evict_id = tl.max(tl.where(top_v == kth, top_i, -2), axis=0)
                slot = tl.min(tl.where((top_v == kth) & (top_i == evict_id), slots, KP), axis=0)
                top_v = tl.where(slots == slot, bmax, top_v)
                top_i = tl.where(slots == slot, idx, top_i)
                xb = tl.where(cols == idx, float("-inf"), xb)
                bmax = tl.max(xb, axis=0)
                kth = tl.min(top_v, axis=0)
        z = tl.sum(s0, axis=0)
        log_z = tl.log(z)
        lse = m + log_z
        tl.store(surprisal_out + row, lse - t)
        tl.store(rank_out + row, 1 + tl.sum(above, axis=0).to(tl.int64))
        tl.store(entropy_out + row, log_z - tl.sum(s1, axis=0) / z)
        tl.store(brier_out + row, 1.0 - 2.0 * tl.exp(t - lse) + tl.sum(s2, axis=0) / (z * z))
        short = tl.min(tl.where(slots < K, top_i, 0), axis=0) < 0
        bad = (tl.sum(nans, axis=0) > 0) | short | (m == float("inf"))
        tl.store(bad_out + row, bad.to(tl.int32))
        taken = (slots >= K).to(tl.int32)
        for j in tl.static_range(K):  # the k kept values, largest first, lower ids first among ties
            v = tl.max(tl.where(taken == 0, top_v, float("-inf")), axis=0)
            sel = (taken == 0) & (top_v == v)
            i = tl.min(tl.where(sel, top_i, 2147483647), axis=0)
            slot = tl.min(tl.where(sel & (top_i == i), slots, KP), axis=0)
            taken = tl.where(slots == slot, 1, taken)
            tl.store(top_ids_out + row * K + j, i.to(tl.int64))
            tl.store(top_probs_out + row * K + j, tl.exp(v - lse))

    _row_stats = _row_stats_kernel if INTERPRETED else triton.autotune(
        configs=[triton.Config({"BLOCK": b}, num_warps=w) for b, w in CONFIGS], key=["V"])(_row_stats_kernel)


def fused_token_statistics(logits: torch.Tensor, targets: torch.Tensor, k: int,
                           lark: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """token_statistics in one pass. logits: [C, V] (any float dtype), targets: [C] int64.

    Returns the same dict (surprisal [C], rank [C], entropy [C], top_ids [C, k], top_probs [C, k], brier [C],
    lark_brier [C]) and bad [C] bool: rows with a NaN or +inf logit or fewer than k finite logits, to be
    recomputed by the eager path. lark_brier comes from torch.topk(lark) of the chunk: a fixed-size top-50 in the
    kernel would insert its first 50 values one reduction at a time.
    """
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    targets = targets.to(device=logits.device, dtype=torch.int64).contiguous()
    c, v = logits.shape
    dev = logits.device
    out = {"surprisal": torch.empty(c, dtype=torch.float32, device=dev),
           "rank": torch.empty(c, dtype=torch.int64, device=dev),
           "entropy": torch.empty(c, dtype=torch.float32, device=dev),
           "top_ids": torch.empty((c, k), dtype=torch.int64, device=dev),
           "top_probs": torch.empty((c, k), dtype=torch.float32, device=dev),
           "brier": torch.empty(c, dtype=torch.float32, device=dev)}
    bad = torch.empty(c, dtype=torch.int32, device=dev)
    if c:
        block = {"BLOCK": 256} if INTERPRETED else {}
        with torch.cuda.device(dev) if dev.type == "cuda" else _no_context():  # Triton launches on the current GPU
            _row_stats[(c,)](logits, logits.stride(0), targets, v, out["surprisal"], out["rank"], out["entropy"],
                             out["top_ids"], out["top_probs"], out["brier"], bad, K=k,
                             KP=max(2, triton.next_power_of_2(k)), **block)
    if lark:
        out["lark_brier"] = lark_brier(logits, targets, out["rank"], lark)
    return out, bad.bool()


def lark_brier(logits: torch.Tensor, targets: torch.Tensor, rank: torch.Tensor, lark: int) -> torch.Tensor:
    """[C] LARK's Brier term of logits [C, V] (any float dtype; fp32 arithmetic) for targets [C] with their
    ranks [C]: over the softmax of the `lark` largest logits, the target counted when rank <= lark."""
    head = logits.topk(min(lark, logits.shape[-1]), dim=-1).values.float()
    q = torch.exp(head - head[:, :1])
    q0 = q.sum(dim=-1)
    target = logits.gather(1, targets[:, None])[:, 0].float()
    p = torch.where(rank <= lark, torch.exp(target - head[:, 0]) / q0, 0.0)
    return 1 - 2 * p + q.square().sum(dim=-1) / q0.square()
