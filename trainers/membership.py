"""A membership-inference audit: can the model tell its training records from others?

Members are training records, non-members the held-out records of the same data (never
trained on). Two attacks score each record; a higher score says "member":

- **loss**: minus the trained model's mean token loss on the record (Yeom et al., 2018);
- **reference**: the base model's loss minus the trained model's (the untuned base, with the
  adapter disabled, as the reference model: a record the fine-tuning fitted much better than
  the base did is suspicious; Carlini et al., 2022, in its simplest, offline form).

For each: the AUC (the probability that a random member outscores a random non-member; 0.5
is chance) and the true-positive rate at a 1% false-positive rate (the share of members scored
above the 99th percentile of non-members). With fewer than 100 non-members the 1% point is
coarse; the counts are reported beside the figures. Only held-out loss values leave this
module: no text.
"""

from __future__ import annotations

import random
from typing import Any

MAX_RECORDS = 400


def auc(members: list[float], others: list[float]) -> float | None:
    """Mann-Whitney AUC with ties counted half."""
    if not members or not others:
        return None
    ranked = sorted([(s, 1) for s in members] + [(s, 0) for s in others])
    rank_sum, position = 0.0, 0
    while position < len(ranked):
        end = position
        while end < len(ranked) and ranked[end][0] == ranked[position][0]:
            end += 1
        mean_rank = (position + 1 + end) / 2
        rank_sum += mean_rank * sum(1 for _s, m in ranked[position:end] if m)
        position = end
    n1, n0 = len(members), len(others)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


def tpr_at_fpr(members: list[float], others: list[float], fpr: float = 0.01) -> float | None:
    """Share of members scored strictly above the (1 - fpr) quantile of non-members."""
    if not members or not others:
        return None
    ordered = sorted(others)
    cut = ordered[min(len(ordered) - 1, int((1 - fpr) * len(ordered)))]
    return sum(1 for s in members if s > cut) / len(members)


def losses(model, examples, batch_size: int, pad_id: int, device) -> list[float]:
    """Each record's mean token loss under the model as it is."""
    import torch

    from trainers.lora import batches
    from trainers.privacy import record_losses

    found: list[float] = []
    model.eval()
    with torch.no_grad():
        for ids, labels, mask in batches(examples, batch_size, pad_id, list(range(len(examples)))):
            found += record_losses(
                model, ids.to(device), labels.to(device), mask.to(device)
            ).tolist()
    return found


def audit(
    model, members, others, batch_size: int, pad_id: int, device, seed: int
) -> dict[str, Any]:
    """Both attacks on up to MAX_RECORDS members and non-members."""
    if not members or not others:
        return {"skipped": "needs training and held-out records"}
    rng = random.Random(seed)  # noqa: S311 (sampling records to score, not secrets)
    members = rng.sample(members, min(MAX_RECORDS, len(members)))
    others = rng.sample(others, min(MAX_RECORDS, len(others)))
    trained_in = losses(model, members, batch_size, pad_id, device)
    trained_out = losses(model, others, batch_size, pad_id, device)
    with model.disable_adapter():
        base_in = losses(model, members, batch_size, pad_id, device)
        base_out = losses(model, others, batch_size, pad_id, device)
    loss_in, loss_out = [-x for x in trained_in], [-x for x in trained_out]
    ref_in = [b - t for b, t in zip(base_in, trained_in, strict=True)]
    ref_out = [b - t for b, t in zip(base_out, trained_out, strict=True)]
    return {
        "members": len(members),
        "non_members": len(others),
        "loss_attack": {
            "auc": _round(auc(loss_in, loss_out)),
            "tpr_at_1pct_fpr": _round(tpr_at_fpr(loss_in, loss_out)),
        },
        "reference_attack": {
            "auc": _round(auc(ref_in, ref_out)),
            "tpr_at_1pct_fpr": _round(tpr_at_fpr(ref_in, ref_out)),
            "reference": "the untuned base model",
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
