"""Exposure of inserted canaries: how much a trained model memorized (the Secret Sharer
method, Carlini et al., 2019).

spec.json's `memorization` names the canaries the service inserted into train.jsonl (each a
prefix and a secret of a fixed format), how many times each was inserted, and how many
random candidates to rank it against. For each canary the model scores log P(secret | prefix)
and the same for `candidates` random secrets of the format; with the canary's rank r among
the n + 1 (1 = most likely), its exposure is log2(n + 1) - log2(r) bits. A model that never
saw the canary ranks it uniformly: about 1.44 bits on average. One that memorized it ranks it
first: log2(n + 1) bits, the most this sample can show.
"""

from __future__ import annotations

import math
import random
from typing import Any

BATCH = 128


def draw_secret(rng: random.Random, fmt: str) -> str:
    """`d` is a random digit; anything else is literal (as the service draws them)."""
    return "".join(str(rng.randrange(10)) if c == "d" else c for c in fmt)


def secret_loglikelihoods(model, tokenizer, prefix: str, secrets: list[str], device) -> list[float]:
    """log P(secret | prefix) for each secret, summed over the secret's tokens, in batches."""
    import torch

    context = [tokenizer.bos_token_id, *tokenizer.encode(prefix, add_special_tokens=False)]
    scores: list[float] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(secrets), BATCH):
        targets = [
            tokenizer.encode(s, add_special_tokens=False) for s in secrets[start : start + BATCH]
        ]
        width = len(context) + max(len(t) for t in targets)
        ids = torch.full((len(targets), width), pad, dtype=torch.long)
        mask = torch.zeros((len(targets), width), dtype=torch.long)
        for row, target in enumerate(targets):
            tokens = context + target
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        for row, target in enumerate(targets):
            positions = torch.arange(len(context) - 1, len(context) + len(target) - 1)
            chosen = ids[row, positions + 1]
            scores.append(float(logprobs[row, positions.to(device), chosen].sum()))
    return scores


def exposure(model, tokenizer, plan: dict[str, Any], seed: int, device) -> dict[str, Any] | None:
    """The exposure of every canary in `plan` (spec.json's `memorization`), in bits."""
    if not plan or not plan.get("canaries"):
        return None
    model.eval()
    n = int(plan["candidates"])
    rng = random.Random(seed)  # noqa: S311 (candidates, drawn repeatably)
    bits = []
    for canary in plan["canaries"]:
        candidates: set[str] = set()
        while len(candidates) < n:
            drawn = draw_secret(rng, plan["format"])
            if drawn != canary["secret"]:
                candidates.add(drawn)
        scores = secret_loglikelihoods(
            model, tokenizer, canary["prefix"], [canary["secret"], *sorted(candidates)], device
        )
        rank = 1 + sum(score > scores[0] for score in scores[1:])
        bits.append(math.log2(n + 1) - math.log2(rank))
    return {
        "canaries": len(bits),
        "repetitions": int(plan["repetitions"]),
        "candidates": n,
        "exposure_bits": [round(b, 3) for b in bits],
        "mean_exposure_bits": round(sum(bits) / len(bits), 3),
        "max_exposure_bits": round(max(bits), 3),
        "ceiling_bits": round(math.log2(n + 1), 3),
    }
