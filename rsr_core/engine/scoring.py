"""One forward pass per batch of trajectories, with the output layer applied in chunks to the response positions only.

Never materialises [batch, length, vocab] logits: the transformer body gives hidden states [B, L, H]; the rows that
predict response tokens are gathered ([N, H]) and pushed through the output layer `chunk_rows` at a time, each
chunk's logits [C, V] reduced at once to surprisal, rank, entropy and the top-k alternatives.

Batches are right-padded and run without an attention mask: attention is causal, so a real position never sees
the padding that follows it, and SDPA keeps its fast causal kernel. On a CUDA device with Triton the reductions
run as one fused pass over each chunk (`fused_stats`, the top-50 of LARK's Brier score by torch.topk beside it);
on a CPU as one compiled kernel (`cpu_head`); elsewhere, or where neither builds, `token_statistics` runs
eagerly, on a CPU 16 rows at a time so that they stay in cache. All three give the same numbers (tested).

Beside RSR's surprisal and rank, the same pass gives each token's Brier terms (`brier`: the exact full-vocabulary
Brier score 1 - 2 p_target + sum p^2; `lark_brier`: LARK's, over the LARK_K = 50 largest logits renormalised,
p_target = 0 when the target is not among them; arXiv 2605.30651).
"""
from __future__ import annotations

import gc
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from rsr_core.engine import cpu_head, fused_stats
from rsr_core.engine.chat_format import Encoded
from rsr_core.engine.memory import returned_promptly
from rsr_core.data.token_scores import SAME_PASS_TERMS, TokenScores

TOP_K = 5
LARK_K = 50  # LARK's Brier score renormalises the softmax over the 50 largest logits (its script's --top_k)
LOGITS_CHUNK_BYTES = 256 << 20  # fp32 logits held at once per chunk (CPU, and the eager path on a GPU)
FUSED_CHUNK_BYTES = 1 << 30  # logits per chunk for the fused GPU pass: the body's activations are freed by then
LONG_PASS_TOKENS = 4096  # a CPU pass over more padded tokens returns its memory promptly (rsr_core.engine.memory)
CPU_STATS_ROWS = 16  # on a CPU, rows reduced together: a few MB of logits that stay in cache across the passes
GPU_MEMORY_SHARE = 0.5  # share of the free GPU memory a batch's activations may take
GPU_MAX_TOKEN_BUDGET = 32768  # measured on an H100: 32k-token batches beat 16k (30.8k vs 28.4k tokens/s), peak 18.6 GB
GPU_MIN_TOKEN_BUDGET = 1024
MIN_CHUNK_ROWS = 16  # out-of-memory back-off stops halving the output-layer chunk here
# the output layer's reductions per logit, in matmul FLOP equivalents (against 2 * H for the matmul itself): on a
# CPU top-k, the strict-greater count, exp and sums in fp32 cost about as much as a 4k-wide matmul (measured on the
# embedded student: body 64 %, output layer 36 % of a 6.8k-token pass); the fused GPU pass makes them almost free
REDUCTION_OPS_PER_LOGIT = {"cpu": 4096, "gpu": 32}
OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
PassCallback = Callable[[int, float, str], None]  # (tokens in the pass, fraction done in [0, 1], stage)
ALLOCATION_FAILURES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "can't allocate memory")


def token_statistics(logits: torch.Tensor, targets: torch.Tensor, k: int = TOP_K,
                     lark: int = LARK_K) -> dict[str, torch.Tensor]:
    """Per-row statistics of fp32 logits [C, V] for targets [C].

    surprisal [C] = logsumexp - logit[target] (nats); rank [C] = 1 + #{v: logit[v] > logit[target]} (strict, so
    ties favour the target); entropy [C] in nats; top_ids [C, k] and top_probs [C, k]; brier [C] = 1 - 2 p_target
    + sum_v p_v^2 over the whole vocabulary; lark_brier [C], the same over the softmax of the `lark` largest
    logits, p_target = 0 when the target is not among them (rank > lark; a target tied with the lark-th logit
    counts as among them, as ties do for the rank). Works in place on one shifted copy of the logits, since these
    passes over [C, V] are the cost of the output layer after the matmul.
    """
    logits = logits.float()
    if not lark:  # RSR's statistics alone (`score_batch(..., lark=0)`: what the Brier terms cost)
        stats = token_statistics(logits, targets, k, LARK_K)
        return {name: v for name, v in stats.items() if name not in SAME_PASS_TERMS}
    keep = min(max(k, lark), logits.shape[-1])
    top_logits, top_ids = logits.topk(keep, dim=-1)
    target_logit = logits.gather(1, targets[:, None])
    rank = 1 + (logits > target_logit).sum(dim=-1)
    shifted = logits - top_logits[:, :1]  # <= 0, max 0
    shifted.clamp_(min=torch.finfo(torch.float32).min)  # -inf logits (masked entries) stay finite: 0 * x = 0
    weights = torch.exp(shifted)
    z = weights.sum(dim=-1)
    log_z = torch.log(z)
    entropy = log_z - torch.linalg.vecdot(weights, shifted) / z
    squares = torch.linalg.vecdot(weights, weights, dim=-1).double() / z.double().square()
    lse = top_logits[:, 0] + log_z
    p_target = torch.exp(target_logit[:, 0].double() - lse.double())
    head = top_logits[:, :min(lark, keep)].double()
    q = torch.exp(head - head[:, :1])
    q0 = q.sum(dim=-1)
    p_lark = torch.where(rank <= lark, torch.exp(target_logit[:, 0].double() - head[:, 0]) / q0, 0.0)
    return {"surprisal": lse - target_logit[:, 0], "rank": rank, "entropy": entropy,
            "top_ids": top_ids[:, :k], "top_probs": torch.exp(top_logits[:, :k] - lse[:, None]),
            "brier": (1 - 2 * p_target + squares).float(),
            "lark_brier": (1 - 2 * p_lark + q.square().sum(dim=-1) / q0.square()).float()}


def output_head(model: torch.nn.Module, upcast: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden [C, H] -> logits [C, V], including the model family's final logit transforms.

    fp32 logits, or with `upcast=False` and no transforms the output layer's own dtype (the fused pass upcasts).
    """
    head = model.get_output_embeddings()
    softcap, scaling, scale = _logit_transforms(model)

    def apply(hidden: torch.Tensor) -> torch.Tensor:
        logits = head(hidden)
        if upcast or softcap or scaling or scale:
            logits = logits.float()
        if scaling:
            logits = logits / scaling
        if scale:
            logits = logits * scale
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return apply


def _logit_transforms(model: torch.nn.Module) -> tuple:
    """(final softcap, Granite's divisor, Cohere's multiplier) of the model's text config, each None when absent."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return (getattr(cfg, "final_logit_softcapping", None), getattr(cfg, "logits_scaling", None),
            getattr(cfg, "logit_scale", None))


def chunk_rows_for(vocab_size: int, chunk_bytes: int = LOGITS_CHUNK_BYTES, bytes_per_logit: int = 4) -> int:
    """Rows per output-layer chunk so that logits [C, V] stay within `chunk_bytes`."""
    return max(1, chunk_bytes // (bytes_per_logit * vocab_size))


def default_chunk_rows(model: torch.nn.Module, fused: bool) -> int:
    """Output-layer rows per chunk: 256 MB of fp32 logits, or 1 GB of output-dtype logits (a multiple of 128
    rows, for the matmul's tiles) for the fused GPU pass, which makes no fp32 copy."""
    weight = model.get_output_embeddings().weight
    if not fused:
        return chunk_rows_for(weight.shape[0])
    itemsize = 4 if any(_logit_transforms(model)) else weight.element_size()  # transforms run in fp32
    rows = chunk_rows_for(weight.shape[0], FUSED_CHUNK_BYTES, itemsize)
    return max(128, rows // 128 * 128)


def plan_batches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Group item indices by length so that each padded batch (max length x size) stays within `token_budget`.

    Longest first; an item longer than the budget gets a batch of its own. Padding waste stays small because
    neighbours in the sorted order have similar lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current, longest = [], [], 0
    for i in order:
        if current and longest * (len(current) + 1) > token_budget:
            batches.append(current)
            current, longest = [], 0
        longest = max(longest, lengths[i])
        current.append(i)
    if current:
        batches.append(current)
    return batches


def activation_bytes_per_token(model: torch.nn.Module) -> int:
    """Peak activation memory of one token in a forward pass without cache, a generous estimate: three MLP
    intermediates and about ten hidden-size vectors in the model's dtype, plus the fp32 norm temporaries."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = cfg.hidden_size
    inter = getattr(cfg, "intermediate_size", None) or 4 * hidden
    itemsize = next(model.parameters()).element_size()
    return itemsize * (3 * inter + 10 * hidden) + 8 * hidden


def gpu_token_budget(model: torch.nn.Module) -> int:
    """Padded tokens per forward pass on a CUDA device, from its free memory.

    Activations may take GPU_MEMORY_SHARE of the memory free now (the driver's free memory plus what the caching
    allocator holds unused), less one chunk of logits; capped at GPU_MAX_TOKEN_BUDGET: at that size the GPU is
    already busy, and larger batches only add padding (more rows of uneven length per batch) and peak memory.
    Rounded down to a multiple of 1024.
    """
    device = next(model.parameters()).device
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    usable = free * GPU_MEMORY_SHARE - FUSED_CHUNK_BYTES
    budget = int(usable // activation_bytes_per_token(model)) // 1024 * 1024
    return max(GPU_MIN_TOKEN_BUDGET, min(GPU_MAX_TOKEN_BUDGET, budget))


_FUSED_READY: dict[str, bool] = {}


def fused_ready(device: torch.device) -> bool:
    """Whether the fused Triton pass runs on `device`: CUDA, Triton importable, and a first self-check against
    token_statistics passed (checked once per device; a failure warns and keeps the eager path)."""
    if device.type != "cuda" or not fused_stats.AVAILABLE:
        return False
    key = str(device)
    if key not in _FUSED_READY:
        _FUSED_READY[key] = _fused_self_check(device)
    return _FUSED_READY[key]


def self_check_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [64, 5000], targets [64]) that a one-pass reduction is checked on: ties and -inf entries."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5000, generator=g).mul_(3).round_()
    logits[::7, ::3] = float("-inf")
    return logits, torch.randint(0, 5000, (64,), generator=g)


def agrees(got: dict[str, torch.Tensor], bad: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
           rtol: float, atol: float) -> bool:
    """Whether a one-pass reduction's statistics of logits [C, V] equal token_statistics': no row flagged, the
    ranks exactly, the top-k the same logits, the rest within the tolerances."""
    want = token_statistics(logits, targets, TOP_K)
    return (not bool(bad.any()) and torch.equal(got["rank"], want["rank"])
            and all(torch.allclose(got[n], want[n], rtol=rtol, atol=atol)
                    for n in ("surprisal", "entropy", "top_probs", "brier", "lark_brier"))
            and torch.equal(logits.gather(1, got["top_ids"]), logits.gather(1, want["top_ids"])))


def _fused_self_check(device: torch.device) -> bool:
    """The fused pass against token_statistics on `self_check_logits`, fp32 and bf16."""
    logits, targets = self_check_logits()
    targets = targets.to(device)
    try:
        for dtype in (torch.float32, torch.bfloat16):
            x = logits.to(device=device, dtype=dtype)
            got, bad = fused_stats.fused_token_statistics(x, targets, TOP_K, LARK_K)
            if not agrees(got, bad, x, targets, rtol=1e-4, atol=1e-5):
                warnings.warn("the fused GPU reduction disagrees with token_statistics; using the eager path",
                              stacklevel=2)
                return False
    except Exception as e:  # Triton cannot compile here (old GPU, mismatched versions)
        warnings.warn(f"the fused GPU reduction is unavailable ({type(e).__name__}: {e}); using the eager path",
                      stacklevel=2)
        return False
    return True


def reduce_logits(logits: torch.Tensor, targets: torch.Tensor, k: int = TOP_K, fused: bool = False,
                  lark: int = LARK_K) -> list[dict[str, torch.Tensor]]:
    """Statistics of one chunk of logits [C, V] for targets [C], as a list of dicts (see token_statistics; lark=0:
    without the Brier terms).

    fused: one Triton pass, with the rows it flags (NaN, +inf, fewer than k finite logits) redone eagerly. On a
    CPU the compiled kernel (`cpu_head`), the rows it flags redone eagerly; else token_statistics, on a CPU
    CPU_STATS_ROWS rows at a time.
    """
    if fused:
        stats, bad = fused_stats.fused_token_statistics(logits, targets, k, lark)
        return [_redo_rows(stats, bad, logits, targets, k, lark)]
    if logits.device.type == "cpu" and cpu_head.available():
        stats, bad = cpu_head.row_statistics(logits, targets, k, lark)
        return [_redo_rows(stats, bad, logits, targets, k, lark)]
    step = CPU_STATS_ROWS if logits.device.type == "cpu" else max(1, logits.shape[0])
    return [token_statistics(logits[r:r + step], targets[r:r + step], k, lark)
            for r in range(0, logits.shape[0], step)]


def _redo_rows(stats: dict[str, torch.Tensor], bad: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
               k: int, lark: int) -> dict[str, torch.Tensor]:
    """stats with the rows flagged in bad [C] recomputed by token_statistics (its conventions for NaN, inf)."""
    if not lark:
        stats = {name: v for name, v in stats.items() if name not in SAME_PASS_TERMS}
    rows = bad.nonzero()[:, 0]
    if rows.numel():
        for name, v in token_statistics(logits[rows], targets[rows], k, lark).items():
            stats[name][rows] = v.to(stats[name].dtype)
    return stats


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer body's repeated blocks, in order: the ModuleList of the text config's num_hidden_layers
    entries (else the longest ModuleList of the body); [] when there is none."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(cfg, "num_hidden_layers", None)
    best = None
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            if n and len(module) == n:
                return list(module)
            if best is None or len(module) > len(best):
                best = module
    return list(best) if best is not None else []


class PassMeter:
    """Reports how far one forward pass is to `callback(tokens, fraction, stage)`: after each decoder layer (forward
    hooks, on a CPU only: on a GPU a hook runs when the layer is launched, not when it is done) and after each
    output-layer chunk (where the loop is anyway: no synchronisation added). The fraction weighs the body and the
    output layer by their arithmetic: per layer 2 * parameters per token plus causal attention (2 * L * H per
    token), per scored row 2 * H * V for the matmul and REDUCTION_OPS_PER_LOGIT * V for the reductions.
    The hooks are removed when the pass ends (`with` block), whatever happens."""

    def __init__(self, callback: PassCallback, model: torch.nn.Module, ids: torch.Tensor, rows: int,
                 chunk_rows: int, device: torch.device):
        self.callback, self.tokens = callback, int(ids.numel())
        layers = decoder_layers(model)
        on_cpu = device.type == "cpu"
        self.layers = layers if on_cpu else []
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        hidden = int(getattr(cfg, "hidden_size", 0) or 1)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        n_layers = max(1, len(layers))
        per_layer_params = sum(p.numel() for p in layers[0].parameters()) if layers else hidden * hidden * 12
        batch, length = ids.shape
        body = n_layers * batch * length * (2 * per_layer_params + 2 * length * hidden)
        head = rows * vocab * (2 * hidden + REDUCTION_OPS_PER_LOGIT["cpu" if on_cpu else "gpu"])
        self.body_share = body / (body + head) if body + head > 0 else 0.5
        self.n_chunks = max(1, -(-rows // max(1, chunk_rows)))
        self.handles: list = []

    def __enter__(self) -> "PassMeter":
        self.callback(self.tokens, 0.0, "starting")
        n = len(self.layers)
        try:
            for i, layer in enumerate(self.layers):
                self.handles.append(layer.register_forward_hook(
                    lambda module, args, output, i=i: self.callback(self.tokens, self.body_share * (i + 1) / n,
                                                                    f"layer {i + 1}/{n}")))
        except BaseException:
            self.__exit__()
            raise
        return self

    def chunk_done(self, j: int) -> None:
        fraction = self.body_share + (1 - self.body_share) * (j + 1) / self.n_chunks
        self.callback(self.tokens, min(1.0, fraction), f"output layer {j + 1}/{self.n_chunks}")

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def padded_ids(items: list[Encoded], pad_id: int) -> torch.Tensor:
    """Right-padded input_ids [B, L], each conversation cut after its last scored position's context."""
    lengths = [int(x.positions.max()) for x in items]
    ids = torch.full((len(items), max(lengths)), pad_id, dtype=torch.long)
    for b, x in enumerate(items):
        ids[b, : lengths[b]] = torch.tensor(x.input_ids[: lengths[b]], dtype=torch.long)
    return ids


@torch.inference_mode()
def score_batch(model: torch.nn.Module, items: list[Encoded], pad_id: int = 0,
                chunk_rows: int | None = None, k: int = TOP_K,
                fused: bool | None = None, on_pass: PassCallback | None = None,
                lark: int = LARK_K) -> list[dict[str, np.ndarray]]:
    """Per-token arrays for a batch of encoded conversations: one body pass, chunked output layer.

    Right-padded input_ids [B, L] without an attention mask (causal attention: real positions never attend to
    the padding on their right; position ids are 0..L-1 in every row). Each conversation runs only up to its last
    response token's context: what follows (that token, the end-of-turn marker) predicts nothing that is scored.
    fused: None picks the fused GPU pass where it works. Returns, per item, surprisal/rank/entropy [T] and
    top_ids/top_probs [T, k], and the Brier terms brier/lark_brier [T] (not with lark=0). on_pass: told how far
    the pass is (`PassMeter`); None costs nothing.
    """
    live = [i for i, x in enumerate(items) if len(x.positions)]
    if len(live) < len(items):  # conversations with nothing to score need no forward pass
        stats = (score_batch(model, [items[i] for i in live], pad_id, chunk_rows, k, fused, on_pass, lark)
                 if live else [])
        out = [{"surprisal": np.zeros(0, np.float32), "rank": np.zeros(0, np.int64),
                "entropy": np.zeros(0, np.float32), "top_ids": np.zeros((0, k), np.int64),
                "top_probs": np.zeros((0, k), np.float32),
                **({name: np.zeros(0, np.float32) for name in SAME_PASS_TERMS} if lark else {})} for _ in items]
        for i, st in zip(live, stats):
            out[i] = st
        return out
    device = next(model.parameters()).device
    fused = fused_ready(device) if fused is None else fused and fused_ready(device)
    ids = padded_ids(items, pad_id)
    chunk_rows = chunk_rows or default_chunk_rows(model, fused)
    meter = None if on_pass is None else PassMeter(on_pass, model, ids, sum(len(x.positions) for x in items),
                                                   chunk_rows, device)
    with returned_promptly(device.type == "cpu" and ids.numel() > LONG_PASS_TOKENS), meter or nullcontext():
        return _forward_and_reduce(model, items, ids, device, chunk_rows, k, fused, meter, lark)


def _forward_and_reduce(model, items, ids, device, chunk_rows, k, fused, meter: PassMeter | None = None,
                        lark: int = LARK_K) -> list[dict[str, np.ndarray]]:
    """The body once over ids [B, L], then the output layer and the reductions on the response rows [N]."""
    hidden = model.base_model(input_ids=ids.to(device), use_cache=False).last_hidden_state  # [B, L, H]
    rows_b = torch.cat([torch.full((len(x.positions),), b, dtype=torch.long) for b, x in enumerate(items)])
    rows_t = torch.cat([torch.as_tensor(x.positions, dtype=torch.long) for x in items]) - 1
    targets = torch.tensor([x.input_ids[p] for x in items for p in x.positions.tolist()], dtype=torch.long)
    stats = head_statistics(model, hidden, rows_b, rows_t, targets, chunk_rows, k, fused, meter, lark)
    del hidden
    out, a = [], 0
    for x in items:
        n = len(x.positions)
        out.append({name: v[a:a + n] for name, v in stats.items()})
        a += n
    return out


def head_statistics(model: torch.nn.Module, hidden: torch.Tensor, rows_b: torch.Tensor, rows_t: torch.Tensor,
                    targets: torch.Tensor, chunk_rows: int, k: int = TOP_K, fused: bool = False,
                    meter: PassMeter | None = None, lark: int = LARK_K) -> dict[str, np.ndarray]:
    """The output layer and the reductions on the rows hidden[rows_b, rows_t] (hidden [B, L, H], rows [N]) that
    predict targets [N], `chunk_rows` at a time: the statistics of every row, on the host ([N], [N, k])."""
    device = hidden.device
    rows_b, rows_t, targets = rows_b.to(device), rows_t.to(device), targets.to(device)
    head = output_head(model, upcast=not fused)
    parts: dict[str, list[torch.Tensor]] = {}
    for a in range(0, rows_b.numel(), chunk_rows):
        logits = head(hidden[rows_b[a:a + chunk_rows], rows_t[a:a + chunk_rows]])  # [C, V], one large matmul
        for piece in reduce_logits(logits, targets[a:a + logits.shape[0]], k, fused, lark):
            for name, v in piece.items():
                parts.setdefault(name, []).append(v)
        del logits
        if meter is not None:
            meter.chunk_done(a // chunk_rows)
    return {name: torch.cat(v).cpu().numpy() for name, v in parts.items()}  # one copy to the host per batch


@dataclass
class MemoryBackoff:
    """What has fitted so far in a scoring run: the largest padded batch (tokens) and the output-layer chunk
    (rows). Both start unlimited (None) and are halved on out-of-memory."""

    max_tokens: int | None = None
    chunk_rows: int | None = None


def padded_tokens(items: list[Encoded]) -> int:
    """Tokens in the padded batch [B, L] that score_batch would run for `items`."""
    return len(items) * max((int(x.positions.max()) for x in items if len(x.positions)), default=0)


def is_out_of_memory(err: BaseException) -> bool:
    """torch's or Python's out-of-memory error, or an allocation failure reported as a RuntimeError (cuBLAS, the CPU
    allocator)."""
    if isinstance(err, (OutOfMemory, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(s in text for s in ALLOCATION_FAILURES)


def release_memory(device: torch.device) -> None:
    """Free what an interrupted pass left: unreachable tensors, then the CUDA caching allocator's free blocks."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def score_batch_backoff(model: torch.nn.Module, items: list[Encoded], backoff: MemoryBackoff, pad_id: int = 0,
                        k: int = TOP_K, on_pass: PassCallback | None = None) -> list[dict[str, np.ndarray] | None]:
    """score_batch that backs off on out-of-memory instead of failing.

    A batch larger than `backoff.max_tokens` is split in halves up front. On out-of-memory the cache is emptied;
    a batch of several conversations is split in halves and `backoff.max_tokens` halved, so later batches come
    smaller; a single conversation retries with half the output-layer chunk, down to MIN_CHUNK_ROWS. None for a
    conversation that does not fit even so. on_pass: as for score_batch (each retried or split pass reports anew).
    """
    size = padded_tokens(items)
    if len(items) > 1 and backoff.max_tokens is not None and size > backoff.max_tokens:
        return _split(model, items, backoff, pad_id, k, on_pass)
    try:
        return score_batch(model, items, pad_id, backoff.chunk_rows, k, on_pass=on_pass)
    except Exception as e:
        if not is_out_of_memory(e):
            raise
    # retried below, once the failed pass's tensors are unreachable
    device = next(model.parameters()).device
    release_memory(device)
    if len(items) > 1:
        backoff.max_tokens = max(1, min(backoff.max_tokens or size, size) // 2)
        return _split(model, items, backoff, pad_id, k, on_pass)
    rows = backoff.chunk_rows or default_chunk_rows(model, fused_ready(device))
    if rows <= MIN_CHUNK_ROWS:
        return [None]
    backoff.chunk_rows = max(MIN_CHUNK_ROWS, rows // 2)
    return score_batch_backoff(model, items, backoff, pad_id, k, on_pass)


def _split(model, items, backoff, pad_id, k, on_pass=None) -> list[dict[str, np.ndarray] | None]:
    """score_batch_backoff on each half of `items`, in order."""
    half = len(items) // 2
    return (score_batch_backoff(model, items[:half], backoff, pad_id, k, on_pass)
            + score_batch_backoff(model, items[half:], backoff, pad_id, k, on_pass))


def to_token_scores(item: Encoded, stats: dict[str, np.ndarray], tokenizer) -> TokenScores:
    """Bundle an encoded conversation and its per-token statistics, with the alternatives' text decoded."""
    top_ids = stats["top_ids"].astype(np.int64)
    flat = top_ids.reshape(-1).tolist()
    vocab_text = {i: tokenizer.decode([i]) for i in set(flat)}
    k = top_ids.shape[1] if top_ids.ndim == 2 else TOP_K
    top_tokens = [[vocab_text[i] for i in flat[r * k:(r + 1) * k]] for r in range(len(item.positions))]
    return TokenScores(
        token_ids=np.asarray([item.input_ids[p] for p in item.positions], dtype=np.int64),
        tokens=list(item.tokens), offsets=item.offsets, turn=item.turn,
        surprisal=stats["surprisal"].astype(np.float32), rank=stats["rank"].astype(np.int64),
        entropy=stats["entropy"].astype(np.float32), top_ids=top_ids, top_tokens=top_tokens,
        top_probs=stats["top_probs"].astype(np.float32), truncated=item.truncated, n_context=len(item.input_ids),
        extra={"rewritten": bool(item.rewritten), "canonical_tools": bool(item.canonical_tools)},
        **{name: stats[name].astype(np.float32) for name in SAME_PASS_TERMS if name in stats},
    )
