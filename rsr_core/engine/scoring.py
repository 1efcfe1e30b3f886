"""One forward pass per trajectory, with the output layer applied in chunks to the response positions only.

Never materialises [batch, length, vocab] logits: the transformer body gives hidden states [B, L, H]; the rows that
predict response tokens are gathered ([N, H]) and pushed through the output layer `chunk_rows` at a time, each
chunk's fp32 logits [C, V] reduced at once to surprisal, rank, entropy and the top-k alternatives.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from rsr_core.engine.chat_format import Encoded
from rsr_core.engine.memory import returned_promptly
from rsr_core.data.token_scores import TokenScores

TOP_K = 5
LOGITS_CHUNK_BYTES = 256 << 20  # fp32 logits held at once per chunk
LONG_PASS_TOKENS = 4096  # a CPU pass over more padded tokens returns its memory promptly (rsr_core.engine.memory)
CPU_STATS_ROWS = 16  # on a CPU, rows reduced together: a few MB of logits that stay in cache across the passes


def token_statistics(logits: torch.Tensor, targets: torch.Tensor, k: int = TOP_K) -> dict[str, torch.Tensor]:
    """Per-row statistics of fp32 logits [C, V] for targets [C].

    surprisal [C] = logsumexp - logit[target] (nats); rank [C] = 1 + #{v: logit[v] > logit[target]} (strict, so
    ties favour the target); entropy [C] in nats; top_ids [C, k] and top_probs [C, k]. Works in place on one
    shifted copy of the logits, since these passes over [C, V] are the cost of the output layer after the matmul.
    """
    logits = logits.float()
    top_logits, top_ids = logits.topk(k, dim=-1)
    target_logit = logits.gather(1, targets[:, None])
    rank = 1 + (logits > target_logit).sum(dim=-1)
    shifted = logits - top_logits[:, :1]  # <= 0, max 0
    shifted.clamp_(min=torch.finfo(torch.float32).min)  # -inf logits (masked entries) stay finite: 0 * x = 0
    weights = torch.exp(shifted)
    z = weights.sum(dim=-1)
    log_z = torch.log(z)
    entropy = log_z - torch.linalg.vecdot(weights, shifted) / z
    lse = top_logits[:, 0] + log_z
    return {"surprisal": lse - target_logit[:, 0], "rank": rank, "entropy": entropy,
            "top_ids": top_ids, "top_probs": torch.exp(top_logits - lse[:, None])}


def output_head(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden [C, H] -> fp32 logits [C, V], including the model family's final logit transforms."""
    head = model.get_output_embeddings()
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    softcap = getattr(cfg, "final_logit_softcapping", None)
    scaling = getattr(cfg, "logits_scaling", None)  # Granite divides
    scale = getattr(cfg, "logit_scale", None)  # Cohere multiplies

    def apply(hidden: torch.Tensor) -> torch.Tensor:
        logits = head(hidden).float()
        if scaling:
            logits = logits / scaling
        if scale:
            logits = logits * scale
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return apply


def chunk_rows_for(vocab_size: int, chunk_bytes: int = LOGITS_CHUNK_BYTES) -> int:
    """Rows per output-layer chunk so that fp32 logits [C, V] stay within `chunk_bytes`."""
    return max(1, chunk_bytes // (4 * vocab_size))


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


@torch.inference_mode()
def score_batch(model: torch.nn.Module, items: list[Encoded], pad_id: int = 0,
                chunk_rows: int | None = None, k: int = TOP_K) -> list[dict[str, np.ndarray]]:
    """Per-token arrays for a batch of encoded conversations: one body pass, chunked output layer.

    Right-padded input_ids [B, L]; an attention mask only when lengths differ (so a single conversation runs the
    causal fast path). Each conversation runs only up to its last response token's context: what follows (that
    token, the end-of-turn marker) predicts nothing that is scored. Returns, per item, surprisal/rank/entropy [T]
    and top_ids/top_probs [T, k].
    """
    live = [i for i, x in enumerate(items) if len(x.positions)]
    if len(live) < len(items):  # conversations with nothing to score need no forward pass
        stats = score_batch(model, [items[i] for i in live], pad_id, chunk_rows, k) if live else []
        out = [{"surprisal": np.zeros(0, np.float32), "rank": np.zeros(0, np.int64),
                "entropy": np.zeros(0, np.float32), "top_ids": np.zeros((0, k), np.int64),
                "top_probs": np.zeros((0, k), np.float32)} for _ in items]
        for i, st in zip(live, stats):
            out[i] = st
        return out
    device = next(model.parameters()).device
    lengths = [int(x.positions.max()) for x in items]
    longest = max(lengths)
    ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
    for b, x in enumerate(items):
        ids[b, : lengths[b]] = torch.tensor(x.input_ids[: lengths[b]], dtype=torch.long)
    mask = None
    if len(set(lengths)) > 1:
        mask = (torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]).long().to(device)
    with returned_promptly(device.type == "cpu" and ids.numel() > LONG_PASS_TOKENS):
        return _forward_and_reduce(model, items, ids, mask, device, chunk_rows, k)


def _forward_and_reduce(model, items, ids, mask, device, chunk_rows, k) -> list[dict[str, np.ndarray]]:
    """The body once over ids [B, L], then the output layer and the reductions on the response rows."""
    hidden = model.base_model(input_ids=ids.to(device), attention_mask=mask, use_cache=False).last_hidden_state
    rows_b = torch.cat([torch.full((len(x.positions),), b, dtype=torch.long) for b, x in enumerate(items)])
    rows_t = torch.cat([torch.as_tensor(x.positions, dtype=torch.long) for x in items])
    targets = torch.tensor([x.input_ids[p] for x in items for p in x.positions.tolist()], dtype=torch.long,
                           device=device)
    head = output_head(model)
    chunk_rows = chunk_rows or chunk_rows_for(model.get_output_embeddings().weight.shape[0])
    stats_rows = CPU_STATS_ROWS if device.type == "cpu" else chunk_rows
    parts: dict[str, list[torch.Tensor]] = {}
    for a in range(0, rows_b.numel(), chunk_rows):
        h = hidden[rows_b[a:a + chunk_rows].to(device), (rows_t[a:a + chunk_rows] - 1).to(device)]  # [C, H]
        logits = head(h)  # [C, V] fp32, one large matmul
        chunk_targets = targets[a:a + logits.shape[0]]
        for r in range(0, logits.shape[0], stats_rows):
            for name, v in token_statistics(logits[r:r + stats_rows], chunk_targets[r:r + stats_rows], k).items():
                parts.setdefault(name, []).append(v.cpu())
        del logits
    del hidden
    stats = {name: torch.cat(v).numpy() for name, v in parts.items()}
    out, a = [], 0
    for x in items:
        n = len(x.positions)
        out.append({name: v[a:a + n] for name, v in stats.items()})
        a += n
    return out


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
    )
