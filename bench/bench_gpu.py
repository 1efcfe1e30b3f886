"""GPU scoring speed and memory on a random-weight model with Qwen2.5-7B's configuration (152k vocabulary).

No weights are downloaded: the model is built on the GPU in bf16 from the published configuration, with random
weights (which cost the same compute and memory as real ones). The embedding is drawn N(0, 1), the residual
output projections are scaled down and the output layer is a scaled copy of the embedding, so the model leans
towards repeating the current token; the pool repeats tokens at a per-trajectory rate, and trajectory RSR
varies across the pool (this matters only for the bf16-against-fp32 comparison, not for speed).

--pool: a seeded pool of trajectories (128 of 400-6,100 tokens, random token ids, a short prompt and a long
response), scored by
  engine          the engine as it is: right-padded batches without a mask, fused reduction, budget from memory
  engine-32k      the same with a budget of 32k padded tokens (more padding, larger matrix products)
  engine-eager    the same batches with the eager (multi-pass) reduction
  engine-rsr-only the same batches without the same-pass Brier terms (RSR's statistics only): what they cost
  engine-masked   the engine before: 32k-token batches with an attention mask, eager reduction, 256 MB chunks
  body            the same batches as the engine through the body alone (no output layer, no mask): the ceiling
  naive           batch 1, full [1, L, V] logits, then fp32 reductions
  paper           padded batches of 8 in pool order with an attention mask, full [8, L, V] logits (paper's code)
each with response tokens/s and peak GPU memory; then single sequences (8k, 16k, 32k: engine and naive, the
naive one may run out of memory), and bf16 against fp32 engine runs on a sub-pool (mean relative trajectory-RSR
difference, Spearman). Without --pool only the single sequences run. Figures go to bench/results/gpu.json,
rewritten after each measurement; --tiny runs the same code on a CPU with a 2-layer model and a tiny pool as a
smoke test (bench/results/gpu-smoke-cpu.json).

usage: python bench/bench_gpu.py --pool [--quick] [--seed 0] [--lengths 8192 16384 32768] [--tiny]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsr_core.analysis.metrics import trajectory_rsr  # noqa: E402
from rsr_core.engine import fused_stats  # noqa: E402
from rsr_core.engine.chat_format import Encoded  # noqa: E402
from rsr_core.engine.scoring import (LARK_K, MemoryBackoff, chunk_rows_for, fused_ready, gpu_token_budget,  # noqa: E402
                                     output_head, padded_ids, plan_batches, release_memory, score_batch,
                                     score_batch_backoff, token_statistics)

QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=False)
TINY = dict(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=32768)
OLD_TOKEN_BUDGET = 32768  # the engine before: fixed budget, masked batches
PAPER_BATCH = 8
TARGETS = {"pool_tokens_per_s": 30000, "pool_speedup_vs_naive": 1.5, "pool_peak_gib": 24,
           "single_32k_tokens_per_s": 22000, "extras_cost": 0.10}


# ---------------------------------------------------------------------------------------------- model and data

def build(tiny: bool, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The random-weight model, allocated and initialised directly on `device` in `dtype`."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = {**QWEN25_7B, **(TINY if tiny else {})}
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**cfg, attn_implementation="sdpa"), dtype=dtype)
    shape_weights(model)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def shape_weights(model: torch.nn.Module) -> None:
    """Embedding N(0, 1); attention and MLP output projections N(0, 0.02 / (2 layers)), so the residual stream
    keeps the current token; output layer = embedding x 10 / hidden, so that token's logit is about 10."""
    cfg = model.config
    emb = model.get_input_embeddings().weight
    emb.normal_(0.0, 1.0)
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight.normal_(0.0, 0.02 / (2 * cfg.num_hidden_layers))
        layer.mlp.down_proj.weight.normal_(0.0, 0.02 / (2 * cfg.num_hidden_layers))
    model.get_output_embeddings().weight.copy_(emb * (10.0 / cfg.hidden_size))


def trajectory(ids: np.ndarray, prompt: int) -> Encoded:
    """An encoded conversation: ids [L], the first `prompt` of them context, the rest scored."""
    n = len(ids) - prompt
    return Encoded(ids.tolist(), np.arange(prompt, len(ids), dtype=np.int64), np.zeros(n, np.int32),
                   np.zeros((n, 2), np.int64), [""] * n, False)


def make_pool(n: int, lo: int, hi: int, seed: int, vocab: int) -> list[Encoded]:
    """n trajectories, lengths uniform in [lo, hi] from a seeded RNG, prompts of lo/16 to lo/2 tokens; random
    token ids, each response token repeating its predecessor at a per-trajectory rate in [0, 0.6]."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi + 1, n)
    prompts = rng.integers(lo // 16, lo // 2 + 1, n)
    rates = rng.uniform(0.0, 0.6, n)
    pool = []
    for length, prompt, rate in zip(lengths, prompts, rates):
        ids = rng.integers(0, vocab, length)
        keep = np.arange(length)
        keep[prompt:][rng.random(length - prompt) < rate] = 0  # 0: take the last kept id before it
        pool.append(trajectory(ids[np.maximum.accumulate(keep)], int(prompt)))
    return pool


def response_tokens(items: list[Encoded]) -> int:
    return sum(len(x.positions) for x in items)


# ---------------------------------------------------------------------------------------------- the variants

def run_engine(model, pool: list[Encoded], budget: int, fused: bool | None = None, lark: int = LARK_K) -> list[dict]:
    """The engine as the pipeline runs it: length-planned batches, out-of-memory back-off (fused: None = auto;
    lark=0: without the Brier terms)."""
    out: list[dict | None] = [None] * len(pool)
    backoff = MemoryBackoff()
    for batch in plan_batches([len(x.input_ids) for x in pool], budget):
        items = [pool[i] for i in batch]
        if fused is None and lark == LARK_K:
            stats = score_batch_backoff(model, items, backoff)
        else:
            stats = score_batch(model, items, fused=fused, lark=lark)
        for i, st in zip(batch, stats):
            out[i] = st
    return out


@torch.inference_mode()
def run_engine_masked(model, pool: list[Encoded], budget: int) -> list[dict]:
    """The engine before: padded batches with an attention mask, fp32 logits in 256 MB chunks, eager reduction."""
    device = next(model.parameters()).device
    head = output_head(model)
    chunk = chunk_rows_for(model.get_output_embeddings().weight.shape[0])
    out: list[dict | None] = [None] * len(pool)
    for batch in plan_batches([len(x.input_ids) for x in pool], budget):
        items = [pool[i] for i in batch]
        ids = padded_ids(items, 0)
        lengths = torch.tensor([int(x.positions.max()) for x in items])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        hidden = model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                  use_cache=False).last_hidden_state
        for b, (i, x) in enumerate(zip(batch, items)):
            rows = torch.as_tensor(x.positions, device=device) - 1
            targets = torch.as_tensor(np.asarray(x.input_ids)[x.positions], device=device)
            parts = [token_statistics(head(hidden[b, rows[a:a + chunk]]), targets[a:a + chunk])
                     for a in range(0, len(rows), chunk)]
            out[i] = {n: torch.cat([p[n] for p in parts]).cpu().numpy() for n in parts[0]}
        del hidden
    return out


@torch.inference_mode()
def run_body(model, pool: list[Encoded], budget: int) -> None:
    """The engine's batches through the transformer body alone, no mask: the ceiling for the engine."""
    device = next(model.parameters()).device
    for batch in plan_batches([len(x.input_ids) for x in pool], budget):
        model.base_model(input_ids=padded_ids([pool[i] for i in batch], 0).to(device), use_cache=False)


@torch.inference_mode()
def run_naive(model, pool: list[Encoded]) -> list[dict]:
    """Batch 1: full [1, L, V] logits, upcast to fp32, then the reductions on the response rows."""
    device = next(model.parameters()).device
    out = []
    for x in pool:
        ids = torch.tensor([x.input_ids], device=device)
        logits = model(input_ids=ids).logits.float()[0]  # [L, V] fp32: the naive way
        first, last = int(x.positions[0]), int(x.positions[-1])  # the response is one span
        st = token_statistics(logits[first - 1:last], ids[0, first:last + 1])
        out.append({n: v.cpu().numpy() for n, v in st.items()})
        del logits
    return out


@torch.inference_mode()
def run_paper(model, pool: list[Encoded]) -> list[dict]:
    """Padded batches of 8 in pool order with an attention mask, full [8, L, V] fp32 logits; surprisal and rank
    from each row's full logits (bench/naive.py, as the paper's reference code)."""
    device = next(model.parameters()).device
    out = []
    for a in range(0, len(pool), PAPER_BATCH):
        items = pool[a:a + PAPER_BATCH]
        longest = max(len(x.input_ids) for x in items)
        ids = torch.tensor([x.input_ids + [0] * (longest - len(x.input_ids)) for x in items], device=device)
        mask = torch.tensor([[1] * len(x.input_ids) + [0] * (longest - len(x.input_ids)) for x in items],
                            device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        for k, x in enumerate(items):
            lg = logits[k, x.positions - 1]
            tl = lg.gather(1, ids[k, x.positions][:, None])[:, 0]
            out.append({"surprisal": (torch.logsumexp(lg, -1) - tl).cpu().numpy(),
                        "rank": (1 + (lg > tl[:, None]).sum(-1)).cpu().numpy()})
        del logits
    return out


# ---------------------------------------------------------------------------------------------- measuring

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, tokens: int) -> tuple[object, dict]:
    """Run fn once: wall seconds, response tokens/s and peak GPU memory (GiB, allocated by torch, from a reset
    after emptying the cache). An exception (out of memory included) is recorded, not raised."""
    release_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result, error = None, None
    sync(device)
    t0 = time.perf_counter()
    try:
        result = fn()
        sync(device)
    except Exception as e:  # each variant on its own: one failure leaves the others' figures
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    dt = time.perf_counter() - t0
    fig = {"seconds": round(dt, 3), "response_tokens": tokens}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        fig.update(peak_gib=round(peak / 2**30, 2), peak_bytes=peak)
    if error:
        fig["error"] = error
    else:
        fig["tokens_per_s"] = round(tokens / dt, 1)
    release_memory(device)
    return result, fig


def rsr_of(stats: list[dict] | None) -> np.ndarray | None:
    if stats is None or any(s is None for s in stats):
        return None
    return np.array([trajectory_rsr(s["surprisal"].astype(np.float64), s["rank"]) for s in stats])


def rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.abs(b)


# ---------------------------------------------------------------------------------------------- sections

class Report:
    """The figures so far, rewritten to `path` after each measurement."""

    def __init__(self, path: Path, head: dict):
        self.path, self.data = path, head

    def put(self, *keys_and_value) -> None:
        *keys, last, value = keys_and_value
        node = self.data
        for k in keys:
            node = node.setdefault(k, {})
        node[last] = value
        self.data["seconds_so_far"] = round(time.perf_counter() - START, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=float) + "\n")


def pool_section(model, pool: list[Encoded], budget: int, device: torch.device, rep: Report) -> None:
    lengths = [len(x.input_ids) for x in pool]
    batches = plan_batches(lengths, budget)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    n = response_tokens(pool)
    rep.put("pool", "shape", {"trajectories": len(pool), "min_len": int(min(lengths)), "max_len": int(max(lengths)),
                              "mean_len": round(float(np.mean(lengths)), 1), "response_tokens": n,
                              "token_budget": budget, "engine_batches": len(batches),
                              "padding_share": round(1 - sum(lengths) / padded, 4)})
    variants = [("engine", lambda: run_engine(model, pool, budget)),
                ("engine-32k", lambda: run_engine(model, pool, OLD_TOKEN_BUDGET)),
                ("engine-eager", lambda: run_engine(model, pool, budget, fused=False)),
                ("engine-rsr-only", lambda: run_engine(model, pool, budget, lark=0)),
                ("engine-masked", lambda: run_engine_masked(model, pool, OLD_TOKEN_BUDGET if device.type == "cuda"
                                                            else budget)),
                ("body", lambda: run_body(model, pool, budget)),
                ("naive", lambda: run_naive(model, pool)),
                ("paper", lambda: run_paper(model, pool))]
    rsr = {}
    for name, fn in variants:
        result, fig = measure(fn, device, n)
        rep.put("pool", "variants", name, fig)
        print(f"pool {name:14s} {fig}", flush=True)
        rsr[name] = rsr_of(result) if name != "body" else None
    figs = rep.data["pool"]["variants"]
    if "tokens_per_s" in figs["engine"] and "tokens_per_s" in figs.get("engine-rsr-only", {}):
        rep.put("pool", "extras_cost", round(1 - figs["engine"]["tokens_per_s"]
                                             / figs["engine-rsr-only"]["tokens_per_s"], 4))
    if "tokens_per_s" in figs["engine"] and "tokens_per_s" in figs["naive"]:
        speedup = figs["engine"]["tokens_per_s"] / figs["naive"]["tokens_per_s"]
        rep.put("pool", "engine_speedup_vs_naive", round(speedup, 3))
    for other in ("naive", "paper", "engine-masked", "engine-eager", "engine-32k"):
        if rsr.get("engine") is not None and rsr.get(other) is not None:
            rep.put("pool", "max_rel_rsr_diff_engine_vs", other, float(rel_diff(rsr["engine"], rsr[other]).max()))


def singles_section(model, lengths: list[int], device: torch.device, rep: Report) -> None:
    vocab = model.config.vocab_size
    rows = []
    for length in lengths:
        g = np.random.default_rng(length)
        item = trajectory(g.integers(0, vocab, length), length // 8)  # prompt: the first eighth
        n = len(item.positions)
        row = {"length": length, "response_tokens": n}
        for name, fn in (("engine", lambda item=item: score_batch_backoff(model, [item], MemoryBackoff())),
                         ("naive", lambda item=item: run_naive(model, [item]))):
            _, row[name] = measure(fn, device, n)
        rows.append(row)
        rep.put("singles", rows)
        print(f"single {length:6d} {row}", flush=True)


def precision_section(model, pool: list[Encoded], cut: int, device: torch.device, rep: Report) -> None:
    """The engine in bf16 and in fp32 (the same weights: bf16 ones, upcast) on sub-pool items cut to `cut` tokens.
    Leaves the model in fp32."""
    sub = [trajectory(np.asarray(x.input_ids[:cut]), int(x.positions[0])) for x in pool]
    model.bfloat16()
    budget = gpu_token_budget(model) if device.type == "cuda" else 4096
    low, fig_low = measure(lambda: run_engine(model, sub, budget), device, response_tokens(sub))
    model.float()
    budget = gpu_token_budget(model) if device.type == "cuda" else 4096
    high, fig_high = measure(lambda: run_engine(model, sub, budget), device, response_tokens(sub))
    res = {"trajectories": len(sub), "response_tokens": response_tokens(sub), "bf16": fig_low, "fp32": fig_high}
    r_low, r_high = rsr_of(low), rsr_of(high)
    if r_low is not None and r_high is not None:
        from scipy.stats import spearmanr

        d = rel_diff(r_low, r_high)
        res.update(mean_rel_rsr_diff=float(d.mean()), max_rel_rsr_diff=float(d.max()),
                   spearman=float(spearmanr(r_low, r_high)[0]), rsr_fp32_range=[float(r_high.min()),
                                                                                       float(r_high.max())])
        s_low = np.concatenate([s["surprisal"] for s in low])
        s_high = np.concatenate([s["surprisal"] for s in high])
        res["mean_abs_surprisal_diff"] = float(np.abs(s_low - s_high).mean())
        res["same_rank_share"] = float(np.mean(np.concatenate([a["rank"] == b["rank"] for a, b in zip(low, high)])))
    rep.put("bf16_vs_fp32", res)
    print(f"bf16 vs fp32 {res}", flush=True)


def checks(rep: Report) -> None:
    d = rep.data
    pool = d.get("pool", {}).get("variants", {})
    out = {}
    eng = pool.get("engine", {})
    if "tokens_per_s" in eng:
        out["pool_tokens_per_s"] = eng["tokens_per_s"] >= TARGETS["pool_tokens_per_s"]
        if "peak_gib" in eng:
            out["pool_peak_gib"] = eng["peak_gib"] < TARGETS["pool_peak_gib"]
    if "extras_cost" in d.get("pool", {}):
        out["extras_cost"] = d["pool"]["extras_cost"] <= TARGETS["extras_cost"]
    if "engine_speedup_vs_naive" in d.get("pool", {}):
        out["pool_speedup_vs_naive"] = d["pool"]["engine_speedup_vs_naive"] >= TARGETS["pool_speedup_vs_naive"]
    for row in d.get("singles", []):
        if row["length"] == 32768 and "tokens_per_s" in row["engine"]:
            out["single_32k_tokens_per_s"] = row["engine"]["tokens_per_s"] >= TARGETS["single_32k_tokens_per_s"]
    rep.put("targets", TARGETS)
    rep.put("targets_met", out)


def print_table(d: dict) -> None:
    def cell(fig: dict, key: str, fmt: str) -> str:
        return format(fig[key], fmt) if key in fig else fig.get("error", "-")[:40]

    print(f"\n{d['device']}, torch {d['torch']}, transformers {d['transformers']}, {d['model']}, {d['dtype']}, "
          f"fused reduction: {d['fused_reduction']}")
    if "pool" in d:
        s = d["pool"]["shape"]
        print(f"\npool: {s['trajectories']} trajectories of {s['min_len']}-{s['max_len']} tokens (mean "
              f"{s['mean_len']:.0f}), {s['response_tokens']} response tokens; engine budget {s['token_budget']} "
              f"padded tokens, {s['engine_batches']} batches, padding {100 * s['padding_share']:.1f} %")
        print(f"| {'variant':14s} | {'response tokens/s':>17s} | {'peak GPU memory (GiB)':>21s} | {'seconds':>8s} |")
        print(f"|{'-' * 16}|{'-' * 19}|{'-' * 23}|{'-' * 10}|")
        for name, fig in d["pool"].get("variants", {}).items():
            print(f"| {name:15s} | {cell(fig, 'tokens_per_s', '17,.0f')} | {cell(fig, 'peak_gib', '21.2f')} | "
                  f"{fig['seconds']:8.1f} |")
        if "engine_speedup_vs_naive" in d["pool"]:
            print(f"engine / naive: {d['pool']['engine_speedup_vs_naive']:.2f}x; max relative RSR difference, "
                  f"engine vs: {d['pool'].get('max_rel_rsr_diff_engine_vs', {})}")
    if d.get("singles"):
        print(f"\n| {'length':>6s} | {'engine tokens/s':>15s} | {'engine GiB':>10s} | {'naive tokens/s':>14s} | "
              f"{'naive GiB':>9s} |")
        for r in d["singles"]:
            e, n = r["engine"], r["naive"]
            print(f"| {r['length']:6d} | {cell(e, 'tokens_per_s', '15,.0f')} | {cell(e, 'peak_gib', '10.2f')} | "
                  f"{cell(n, 'tokens_per_s', '14,.0f')} | {cell(n, 'peak_gib', '9.2f')} |")
    if "bf16_vs_fp32" in d:
        p = d["bf16_vs_fp32"]
        print(f"\nbf16 vs fp32 on {p['trajectories']} trajectories ({p['response_tokens']} response tokens): mean "
              f"relative RSR difference {p.get('mean_rel_rsr_diff', float('nan')):.2e}, Spearman "
              f"{p.get('spearman', float('nan')):.4f}")
    if d.get("targets_met"):
        print(f"targets met: {d['targets_met']}")
    print(f"total {d.get('seconds_so_far', 0):.0f} s")


def warm_up(model, items: list[Encoded], device: torch.device) -> None:
    """Both reductions once (Triton compile and autotune), cuBLAS and SDPA set-up."""
    run_engine(model, items, 1 << 30)
    run_engine(model, items, 1 << 30, fused=False)
    release_memory(device)


def section(rep: Report, name: str, fn: Callable[[], None]) -> None:
    """Run one section; an exception is recorded under `errors` and the next section still runs."""
    try:
        fn()
    except Exception as e:
        rep.put("errors", name, f"{type(e).__name__}: {str(e)[:300]}")
        print(f"{name} failed: {type(e).__name__}: {e}", flush=True)


START = time.perf_counter()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", action="store_true", help="the pool table, singles and bf16 vs fp32")
    ap.add_argument("--quick", action="store_true", help="a smaller pool and sub-pool")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: 2-layer model, tiny pool")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lengths", type=int, nargs="+", default=None, help="single-sequence lengths")
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not a.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    import transformers

    name = "gpu.json" if device.type == "cuda" else "gpu-smoke-cpu.json"
    torch.manual_seed(a.seed)
    model = build(a.tiny, device, dtype)
    fused = fused_ready(device)
    rep = Report(ROOT / "bench" / "results" / name, {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "triton": getattr(fused_stats.triton, "__version__", None), "fused_reduction": fused,
        "model": "Qwen2.5-7B configuration, random weights" + (" (tiny: 2 layers, hidden 256)" if a.tiny else ""),
        "dtype": str(dtype).replace("torch.", ""), "attn_implementation": model.config._attn_implementation,
        "parameters": sum(p.numel() for p in model.parameters()), "seed": a.seed})
    print(f"model built in {time.perf_counter() - START:.1f} s on {rep.data['device']}; fused reduction: {fused}",
          flush=True)
    vocab = model.config.vocab_size
    if a.tiny:
        n, lo, hi, cut, n_sub = 12, 100, 600, 400, 6
    else:
        n, lo, hi, cut, n_sub = (32, 400, 6100, 1536, 8) if a.quick else (128, 400, 6100, 1536, 16)
    lengths = a.lengths or ([512, 1024, 2048] if a.tiny else [8192, 16384] if a.quick else [8192, 16384, 32768])
    pool = make_pool(n, lo, hi, a.seed, vocab)
    if a.pool:
        section(rep, "pool", lambda: warm_up(model, pool[:2], device))
        budget = gpu_token_budget(model) if device.type == "cuda" else 2048
        section(rep, "pool", lambda: pool_section(model, pool, budget, device, rep))
    section(rep, "singles", lambda: singles_section(model, lengths, device, rep))
    if a.pool:
        section(rep, "bf16_vs_fp32", lambda: precision_section(model, pool[:n_sub], cut, device, rep))
    if device.type == "cuda":
        checks(rep)
    print_table(rep.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
