"""GPU scoring speed and memory at 8k-32k tokens on a random-weight model with a real student's configuration.

No weights are downloaded: the model is built from Qwen2.5-7B's published configuration with random weights,
which costs the same compute and memory as the real one. Compares the engine (body once, output layer in chunks
on the response positions) with the naive way (full [1, L, V] logits, then fp32), per sequence length, reporting
response tokens/s and peak GPU memory. On a CPU, `--tiny` runs the same code on a 2-layer model as a smoke test.

usage: python bench/bench_gpu.py [--lengths 8192 16384 32768] [--tiny]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsr_core.engine.chat_format import Encoded  # noqa: E402
from rsr_core.engine.scoring import score_batch, token_statistics  # noqa: E402

QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=False)


def build(tiny: bool, device: torch.device, dtype: torch.dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = dict(QWEN25_7B)
    if tiny:
        cfg.update(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                   num_key_value_heads=2)
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**cfg, attn_implementation="sdpa")).to(dtype).eval()
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def naive(model, ids: torch.Tensor, start: int) -> None:
    logits = model(input_ids=ids).logits.float()[0]  # [L, V] fp32: the naive way
    token_statistics(logits[start - 1:-1], ids[0, start:])


def measure(fn, device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return dt, peak


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768])
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build(a.tiny, device, dtype)
    vocab = model.config.vocab_size
    rows = []
    for length in a.lengths:
        g = torch.Generator().manual_seed(length)
        ids = torch.randint(0, vocab, (1, length), generator=g)
        start = length // 8  # prompt: the first eighth; response: the rest
        item = Encoded(ids[0].tolist(), np.arange(start, length), np.zeros(length - start, np.int32),
                       np.zeros((length - start, 2), np.int64), [""] * (length - start), False)
        n = length - start
        score_batch(model, [item])  # warm-up
        t_e, m_e = measure(lambda: score_batch(model, [item]), device)
        try:
            t_n, m_n = measure(lambda: naive(model, ids.to(device), start), device)
        except torch.OutOfMemoryError:
            t_n, m_n = float("nan"), float("inf")
        rows.append({"length": length, "engine_tokens_per_s": n / t_e, "engine_peak_gb": m_e,
                     "naive_tokens_per_s": n / t_n, "naive_peak_gb": m_n})
        print(json.dumps(rows[-1]), flush=True)
    name = "gpu.json" if device.type == "cuda" else "gpu-smoke-cpu.json"
    out = ROOT / "bench" / "results" / name
    out.write_text(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                               "model": "Qwen2.5-7B config, random weights" + (" (tiny)" if a.tiny else ""),
                               "dtype": str(dtype), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
