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

import copy
import inspect
import math
import random
from typing import Any

BATCH = 256


def draw_secret(rng: random.Random, fmt: str) -> str:
    """`d` is a random digit; anything else is literal (as the service draws them)."""
    return "".join(str(rng.randrange(10)) if c == "d" else c for c in fmt)


def _cache_argument(model) -> str:
    """transformers 5 names the key/value cache `cache`; earlier releases `past_key_values`."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def secret_loglikelihoods(model, tokenizer, prefix: str, secrets: list[str], device) -> list[float]:
    """log P(secret | prefix) for each secret, summed over the secret's tokens. The prefix is
    run once and its key/value cache reused for every batch of secrets."""
    import torch

    name = _cache_argument(model)
    context = [tokenizer.bos_token_id, *tokenizer.encode(prefix, add_special_tokens=False)]
    with torch.no_grad():
        primed = model(input_ids=torch.tensor([context], device=device), use_cache=True)
    cached = getattr(primed, name)
    first = torch.log_softmax(primed.logits[0, -1].float(), dim=-1)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[float] = []
    for start in range(0, len(secrets), BATCH):
        targets = [
            tokenizer.encode(s, add_special_tokens=False) for s in secrets[start : start + BATCH]
        ]
        width = max(len(t) for t in targets)
        ids = torch.full((len(targets), width), pad, dtype=torch.long)
        mask = torch.zeros((len(targets), len(context) + width), dtype=torch.long)
        mask[:, : len(context)] = 1
        for row, target in enumerate(targets):
            ids[row, : len(target)] = torch.tensor(target)
            mask[row, len(context) : len(context) + len(target)] = 1
        batch_cache = copy.deepcopy(cached)
        batch_cache.batch_repeat_interleave(len(targets))
        with torch.no_grad():
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                use_cache=True,
                **{name: batch_cache},
            ).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        for row, target in enumerate(targets):
            total = float(first[target[0]])
            for i in range(1, len(target)):
                total += float(logprobs[row, i - 1, target[i]])
            scores.append(total)
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
