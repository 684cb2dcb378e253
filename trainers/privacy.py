"""Differentially private training of the LoRA parameters (DP-SGD), with its accountant.

spec.json's `privacy` asks for it:

    {"epsilon": 8.0, "delta": 1e-6, "max_grad_norm": 1.0, "sampling": "poisson"}

**The unit of privacy.** When the records of train.jsonl carry `unit` (an opaque key the
service derives, with a keyed hash, from the customer key the domain's rules name), the unit
is the customer: all records that share a key. Otherwise each record is its own unit. What is
protected is the presence or absence of one whole unit; the accountant counts units, and the
metrics say which unit it assumed.

**One step.** Each unit joins the step's batch on its own with probability q = (expected
units per step) / (units), independently (Poisson sampling: the batch size varies, and may be
zero). Every record of a chosen unit is in the batch. Opacus's per-sample gradient hooks give
each record's gradient of its own loss (the mean token loss of the record); the records of a
unit are summed into the unit's gradient, which is clipped to `max_grad_norm` in L2 over all
trainable parameters together; the clipped gradients are summed, Gaussian noise of standard
deviation `noise_multiplier * max_grad_norm` is added to every coordinate, and the result is
divided by the expected number of units per step before the optimizer's step. Only the LoRA
parameters train; the base stays frozen, so its weights carry no gradient at all.

**The accountant.** The noise multiplier is calibrated before training for the target
epsilon at delta over the planned steps (Opacus's `get_noise_multiplier`, RDP accountant);
every step taken is recorded in an RDP accountant, and the epsilon actually spent for delta is
read from it at the end (never more than the target, within the calibration's tolerance).

The same code runs on CUDA: per-sample gradients, clipping and noise are tensor operations on
the training device (the noise generator stays on the CPU for reproducibility and its draws
are moved to the device).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# Orders of the Rényi divergence the accountant minimises over (Opacus's defaults, extended
# upwards so that small epsilons over few steps are not cut short by the largest order).
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512, 1024]
DEFAULT_PRIVACY = {"delta": 1e-6, "max_grad_norm": 1.0, "sampling": "poisson"}


class PrivacySpecError(ValueError):
    """The privacy block of a spec is not one this trainer can honour."""


@dataclass(frozen=True)
class PrivacySpec:
    epsilon: float
    delta: float
    max_grad_norm: float
    sampling: str = "poisson"
    # Also train the same bundle without DP and report its figures beside (cost and gain).
    compare: bool = False

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> PrivacySpec | None:
        if not raw:
            return None
        merged = {**DEFAULT_PRIVACY, **raw}
        unknown = set(merged) - {"epsilon", "delta", "max_grad_norm", "sampling", "compare"}
        if unknown:
            raise PrivacySpecError(f"privacy: unknown keys {sorted(unknown)}")
        try:
            spec = cls(
                float(merged["epsilon"]),
                float(merged["delta"]),
                float(merged["max_grad_norm"]),
                str(merged["sampling"]),
                bool(merged.get("compare", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PrivacySpecError(f"privacy: {exc}") from exc
        if not 0.05 <= spec.epsilon <= 100:
            raise PrivacySpecError("privacy.epsilon must be in [0.05, 100]")
        if not 0 < spec.delta < 1e-2:
            raise PrivacySpecError("privacy.delta must be in (0, 0.01)")
        if not 0 < spec.max_grad_norm <= 1e3:
            raise PrivacySpecError("privacy.max_grad_norm must be in (0, 1000]")
        if spec.sampling != "poisson":
            raise PrivacySpecError("privacy.sampling must be poisson (what the accountant assumes)")
        return spec


def calibrate(spec: PrivacySpec, sample_rate: float, steps: int) -> float:
    """The noise multiplier that spends the target epsilon at delta over `steps`."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(
            get_noise_multiplier(
                target_epsilon=spec.epsilon,
                target_delta=spec.delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant="rdp",
                epsilon_tolerance=0.005,
                alphas=ALPHAS,
            )
        )


def spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon at delta after `steps` Poisson-sampled Gaussian steps (RDP accountant)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta=delta, alphas=ALPHAS))


def units_of(records: list[dict[str, Any]]) -> tuple[list[int], int, str]:
    """Each record's unit index, the number of units, and what a unit is."""
    keyed = [r.get("unit") for r in records]
    if any(k is not None for k in keyed):
        # A record without a key (a canary the service inserted) is a unit of its own.
        names: dict[str, int] = {}
        index = [
            names.setdefault(f"key:{k}" if k is not None else f"record:{i}", len(names))
            for i, k in enumerate(keyed)
        ]
        return index, len(names), "customer"
    return list(range(len(records))), len(records), "record"


@dataclass
class DPState:
    """What one private training run did, for the metrics and the ledger."""

    spec: PrivacySpec
    unit: str
    units: int
    expected_units_per_step: float
    sample_rate: float
    planned_steps: int
    noise_multiplier: float
    steps: int = 0
    units_seen: int = 0
    clipped: int = 0

    def as_metrics(self) -> dict[str, Any]:
        epsilon = spent(self.noise_multiplier, self.sample_rate, self.steps, self.spec.delta)
        return {
            "epsilon": round(epsilon, 4),
            "epsilon_target": self.spec.epsilon,
            "delta": self.spec.delta,
            "unit": self.unit,
            "units": self.units,
            "sampling": "poisson",
            "sample_rate": round(self.sample_rate, 6),
            "expected_units_per_step": round(self.expected_units_per_step, 3),
            "steps": self.steps,
            "noise_multiplier": round(self.noise_multiplier, 6),
            "max_grad_norm": self.spec.max_grad_norm,
            "clipped_share": round(self.clipped / self.units_seen, 4) if self.units_seen else None,
            "accountant": "rdp (opacus)",
            "composition": "each step a Poisson-subsampled Gaussian mechanism; RDP composition "
            "over the steps, converted to (epsilon, delta)",
        }


def plan(spec: PrivacySpec, records: list[dict[str, Any]], batch_size: int, epochs: int) -> DPState:
    """Units, sampling rate, steps and the calibrated noise for a run."""
    _index, units, unit = units_of(records)
    expected = float(min(batch_size, units))
    sample_rate = expected / units
    steps = max(1, round(epochs / sample_rate))
    return DPState(
        spec, unit, units, expected, sample_rate, steps, calibrate(spec, sample_rate, steps)
    )


def record_losses(model, ids, labels, mask):
    """Each record's mean token loss (a record's own loss: no other record's tokens in it)."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    shifted = logits[:, :-1, :]
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(targets.shape)
    counted = (targets != -100).sum(dim=1).clamp(min=1)
    return losses.sum(dim=1) / counted


def private_steps(
    model,
    examples: list[tuple[list[int], list[int]]],
    records: list[dict[str, Any]],
    state: DPState,
    optimizer,
    *,
    micro_batch: int,
    pad_id: int,
    device,
    seed: int,
    make_batches: Callable[..., Iterator[tuple]],
    report: Callable[..., None],
) -> float | None:
    """Run the planned DP-SGD steps; return the last step's mean record loss."""
    import torch
    from opacus import GradSampleModule

    index, units, _unit = units_of(records)
    members: list[list[int]] = [[] for _ in range(units)]
    for record, unit in enumerate(index):
        members[unit].append(record)
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=True)
    params = [p for p in model.parameters() if p.requires_grad]
    sampler = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    noise = torch.Generator().manual_seed(seed * 1_000_003 + 29)
    clip = state.spec.max_grad_norm
    sigma = state.noise_multiplier * clip
    last = None
    for step in range(state.planned_steps):
        chosen = (torch.rand(units, generator=sampler) < state.sample_rate).nonzero().flatten()
        chosen_units = chosen.tolist()
        sums = [torch.zeros((len(chosen_units), *p.shape), device=device) for p in params]
        order, owner = [], []
        for position, unit in enumerate(chosen_units):
            order += members[unit]
            owner += [position] * len(members[unit])
        losses = []
        for start in range(0, len(order), micro_batch):
            part = order[start : start + micro_batch]
            who = torch.tensor(owner[start : start + micro_batch], device=device)
            ids, labels, mask = next(make_batches(examples, len(part), pad_id, part))
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            loss = record_losses(wrapped, ids, labels, mask)
            with warnings.catch_warnings():
                # The base's inputs need no gradient; Opacus's hooks still fire as they must.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.sum().backward()
            losses.append(float(loss.detach().mean()))
            for total, p in zip(sums, params, strict=True):
                total.index_add_(0, who, p.grad_sample.to(total.dtype))
                p.grad_sample = None
                p.grad = None
        grads, clipped = clip_and_noise(
            sums, params, clip, sigma, noise, state.expected_units_per_step, device
        )
        state.clipped += clipped
        state.units_seen += len(chosen_units)
        for p, grad in zip(params, grads, strict=True):
            p.grad = grad.to(p.dtype)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.steps += 1
        last = sum(losses) / len(losses) if losses else last
        report(
            "progress",
            step=step + 1,
            of=state.planned_steps,
            # Steps are Poisson draws, not passes over the data: the epoch is how many times
            # the expected draws have covered the units.
            epoch=int((step + 1) * state.sample_rate - 1e-9) + 1,
            units=len(chosen_units),
            loss=None if last is None else round(last, 5),
        )
    wrapped._close()
    return last


def clip_and_noise(sums, params, clip: float, sigma: float, generator, expected: float, device):
    """The noisy mean gradient of one step from each unit's summed gradient (one tensor per
    parameter, the unit first): each unit clipped to `clip` in L2 over all parameters together,
    summed, Gaussian noise of standard deviation `sigma` added, divided by `expected`. Returns
    the gradients and how many units were clipped."""
    import torch

    units = sums[0].shape[0] if sums else 0
    clipped = 0
    if units:
        norms = torch.sqrt(sum(t.flatten(1).pow(2).sum(dim=1) for t in sums))
        factor = (clip / (norms + 1e-6)).clamp(max=1.0)
        clipped = int((norms > clip).sum())
    grads = []
    for total, p in zip(sums, params, strict=True):
        if units:
            summed = (total * factor.view(-1, *([1] * (total.dim() - 1)))).sum(dim=0)
        else:
            summed = torch.zeros(p.shape, device=device)
        draw = torch.normal(0.0, sigma, size=tuple(p.shape), generator=generator).to(device)
        grads.append((summed + draw) / expected)
    return grads, clipped


def noise_for_epsilon(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """Calibrate without a spec object (for the service's planning and the tests)."""
    return calibrate(PrivacySpec(epsilon, delta, 1.0), sample_rate, steps)


def compose(entries: list[tuple[float, float]]) -> tuple[float, float]:
    """Basic sequential composition of (epsilon, delta) guarantees over the same units: the
    sums. (Tighter bounds exist for mechanisms whose RDP curves are known; the ledger uses the
    sum, which holds for any mix of versions, and says so.)"""
    return (math.fsum(e for e, _d in entries), math.fsum(d for _e, d in entries))
