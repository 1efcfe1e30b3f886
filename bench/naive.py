"""The naive full-logits scorer the engine is measured against: padded batches, [B, L, V] fp32 logits.

This is what the paper's reference code does (ChatML markers, batch of 8, full logits for every position).
"""
from __future__ import annotations

import torch

from rsr_core.analysis.metrics import trajectory_metrics


def response_positions(ids: list[int], header: list[int], end: int) -> list[int]:
    """Indices of the tokens between each assistant header and the next end-of-turn token (ChatML markers)."""
    pos, i = [], 0
    while i <= len(ids) - len(header):
        if ids[i:i + len(header)] == header:
            j = i + len(header)
            while j < len(ids) and ids[j] != end:
                pos.append(j)
                j += 1
            i = j
        i += 1
    return pos


@torch.inference_mode()
def naive_score(student, conversations: list[list[dict]], batch: int = 8, r_max: int = 100) -> list[dict]:
    """Per-trajectory metrics the naive way (returns trajectory_metrics dicts, in order)."""
    tok, model = student.tokenizer, student.model
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.pad_token_id or 0
    items = []
    for msgs in conversations:
        ids = list(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"])
        items.append((ids, response_positions(ids, header, end)))
    out = []
    for b in range(0, len(items), batch):
        chunk = items[b:b + batch]
        longest = max(len(ids) for ids, _ in chunk)
        inp = torch.tensor([ids + [pad] * (longest - len(ids)) for ids, _ in chunk])
        att = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids, _ in chunk])
        logits = model(input_ids=inp.to(student.device), attention_mask=att.to(student.device)).logits.float()
        for k, (ids, pos) in enumerate(chunk):
            lg = logits[k, [p - 1 for p in pos]]
            tgt = torch.tensor([ids[p] for p in pos], device=lg.device)
            tl = lg.gather(1, tgt[:, None])[:, 0]
            s = (torch.logsumexp(lg, -1) - tl).cpu().numpy()
            rank = (1 + (lg > tl[:, None]).sum(-1)).cpu().numpy()
            out.append(trajectory_metrics(s, rank, None, r_max))
        del logits
    return out
