"""DP-SGD of the LoRA parameters: per-record gradients, clipping per unit, the accountant,
composition, and a private training run end to end on the tiny base."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from tests.trainers.test_lora import make_bundle, run, tiny  # noqa: F401 (fixture)
from trainers import privacy
from trainers.membership import auc, tpr_at_fpr


def lora_model(base):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    with warnings.catch_warnings():
        # peft 0.21 still asks transformers 5 for a deprecated attribute (as trainers.lora).
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


def test_per_record_gradients_are_each_records_own(tiny):  # noqa: F811
    """Opacus's per-sample gradients of the records' own losses add up to the gradient of
    their sum, and each equals the gradient of that record alone."""
    import torch
    from opacus import GradSampleModule
    from transformers import AutoTokenizer

    from trainers.lora import batches, encode

    torch.manual_seed(0)
    model = lora_model(tiny)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; give it values so every gradient is non-zero
            torch.nn.init.normal_(p, std=0.02)
    tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    records = [{"text": "Form 1040 line 11."}, {"prompt": "What is a W-2?", "completion": "Wages."}]
    examples = [encode(tokenizer, r, 64) for r in records]
    ids, labels, mask = next(batches(examples, 2, tokenizer.pad_token_id, [0, 1]))
    params = [p for p in model.parameters() if p.requires_grad]
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        privacy.record_losses(wrapped, ids, labels, mask).sum().backward()
    per_record = [p.grad_sample.clone() for p in params]
    wrapped._close()
    for row in range(2):
        for p in params:
            p.grad = None
        alone = privacy.record_losses(
            model, ids[row : row + 1], labels[row : row + 1], mask[row : row + 1]
        )
        alone.sum().backward()
        for sample, p in zip(per_record, params, strict=True):
            assert torch.allclose(sample[row], p.grad, atol=1e-5), "a record's gradient differs"


def test_each_unit_is_clipped_and_the_noise_is_calibrated():
    import torch

    params = [torch.zeros(3, 2), torch.zeros(4)]
    # Three units' summed gradients, two of them far beyond the clip.
    sums = [torch.full((3, 3, 2), 5.0), torch.full((3, 4), 5.0)]
    sums[0][2] = 0.01
    sums[1][2] = 0.01
    generator = torch.Generator().manual_seed(1)
    grads, clipped = privacy.clip_and_noise(sums, params, 1.0, 0.0, generator, 1.0, "cpu")
    assert clipped == 2
    total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert total <= 2.0 + 0.2  # two clipped units of norm 1, one tiny one
    # With noise only (no unit), the coordinates have the standard deviation asked for.
    empty = [torch.zeros((0, 1000))]
    grads, _ = privacy.clip_and_noise(empty, [torch.zeros(1000)], 1.0, 2.0, generator, 4.0, "cpu")
    assert abs(float(grads[0].std()) - 0.5) < 0.05  # sigma / expected units


def test_the_accountant_and_its_composition():
    from opacus.accountants import RDPAccountant

    sigma = privacy.noise_for_epsilon(3.0, 1e-6, sample_rate=0.01, steps=500)
    spent = privacy.spent(sigma, 0.01, 500, 1e-6)
    assert 2.98 <= spent <= 3.0
    # The same as stepping Opacus's accountant step by step.
    accountant = RDPAccountant()
    for _ in range(500):
        accountant.step(noise_multiplier=sigma, sample_rate=0.01)
    assert accountant.get_epsilon(delta=1e-6, alphas=privacy.ALPHAS) == pytest.approx(
        spent, rel=1e-9
    )
    # Two versions on the same units: the ledger's sum bounds the accountant's own joint
    # figure (which is tighter, as RDP composes before converting).
    twice = privacy.compose([(spent, 1e-6), (spent, 1e-6)])
    assert twice == (pytest.approx(2 * spent), pytest.approx(2e-6))
    joint = RDPAccountant()
    joint.history = [(sigma, 0.01, 1000)]
    assert joint.get_epsilon(delta=2e-6, alphas=privacy.ALPHAS) <= twice[0]
    with pytest.raises(privacy.PrivacySpecError, match="sampling"):
        privacy.PrivacySpec.parse({"epsilon": 1, "sampling": "shuffle"})
    with pytest.raises(privacy.PrivacySpecError, match="epsilon"):
        privacy.PrivacySpec.parse({"epsilon": 0})


def test_the_unit_is_the_customer_when_records_carry_one():
    records = [
        {"text": "a", "unit": "k1"},
        {"text": "b", "unit": "k1"},
        {"text": "c", "unit": "k2"},
    ]
    index, units, unit = privacy.units_of([*records, {"text": "canary"}])
    assert unit == "customer" and units == 3 and index[0] == index[1] != index[2] != index[3]
    assert privacy.units_of([{"text": "a"}, {"text": "b"}])[1:] == (2, "record")


def test_membership_metrics():
    assert auc([3, 4, 5], [0, 1, 2]) == 1.0 and auc([0, 1], [0, 1]) == 0.5
    assert tpr_at_fpr([200, 0], list(range(100))) == 0.5  # above the 99th percentile


@pytest.mark.slow
def test_private_training_end_to_end_per_customer(tiny, tmp_path):  # noqa: F811
    bundle = make_bundle(tmp_path / "bundle", tiny)
    records = [json.loads(line) for line in (bundle / "train.jsonl").read_text().splitlines()]
    for i, record in enumerate(records):
        record["unit"] = f"customer-{i % 6}"  # six customers, about three records each
    (bundle / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = json.loads((bundle / "spec.json").read_text())
    spec["privacy"] = {"epsilon": 2.0, "delta": 1e-5, "max_grad_norm": 0.5}
    (bundle / "spec.json").write_text(json.dumps(spec))
    first = run("-m", "trainers.lora", str(bundle), str(tmp_path / "one"))
    events = [json.loads(line) for line in first.stdout.splitlines()]
    planned = next(e for e in events if e["event"] == "privacy")
    progress = [e for e in events if e["event"] == "progress"]
    # Progress reads like a non-private run's (a worker reports step, of, epoch and loss).
    assert progress[-1]["step"] == progress[-1]["of"] == planned["steps"]
    assert {"epoch", "loss", "units"} <= set(progress[-1])
    assert planned["unit"] == "customer" and planned["units"] == 6
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    spent = metrics["privacy"]
    assert spent["unit"] == "customer" and spent["units"] == 6
    assert 1.9 <= spent["epsilon"] <= 2.0 and spent["steps"] == planned["steps"]
    assert metrics["membership_inference"]["members"] == len(records)
    # Deterministic on the CPU: the same seed gives the same adapter bytes, noise included.
    # (The `compare` run beside it is exercised by the demo's test, tests/test_cli.py.)
    run("-m", "trainers.lora", str(bundle), str(tmp_path / "two"))
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert one["adapter/adapter_model.safetensors"] == two["adapter/adapter_model.safetensors"]
    spec["privacy"]["sampling"] = "shuffle"
    (bundle / "spec.json").write_text(json.dumps(spec))
    refused = run("-m", "trainers.lora", str(bundle), str(tmp_path / "three"), check=False)
    assert refused.returncode == 1 and "poisson" in refused.stderr
