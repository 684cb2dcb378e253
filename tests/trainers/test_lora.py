"""The data plane alone: a tiny base model, LoRA training from a bundle, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from trainers.hashing import weights_hash


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=check, timeout=600
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "tiny"
    run("-m", "trainers.tiny", str(path), "--seed", "0")
    return path


def make_bundle(directory: Path, base: Path, seed: int = 7) -> Path:
    directory.mkdir(parents=True)
    spec = {
        "base_model": {"path": str(base), "weights_sha256": weights_hash(base)},
        "lora": {"r": 4, "alpha": 8, "target_modules": ["v_proj", "q_proj"]},
        "hyperparameters": {"epochs": 2, "batch_size": 4, "learning_rate": 0.002},
        "seed": seed,
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    train = [
        {"prompt": f"What goes on line {i} of Form 1040?", "completion": f"Line {i}: wages."}
        for i in range(1, 17)
    ] + [{"text": "Schedule C reports business income."}]
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    held_out = [
        {"text": "Line 11 of Form 1040 is adjusted gross income."},
        {"question": "Which form reports wages?", "choices": ["W-2", "1099-INT"], "answer": 0},
    ]
    (directory / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    return directory


def test_the_tiny_base_model_is_deterministic(tiny, tmp_path):
    again = run("-m", "trainers.tiny", str(tmp_path / "again"), "--seed", "0").stdout.strip()
    assert again == weights_hash(tiny)
    other = run("-m", "trainers.tiny", str(tmp_path / "other"), "--seed", "1").stdout.strip()
    assert other != again
    config = json.loads((tiny / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 2


def test_lora_training_is_deterministic_on_the_cpu_and_writes_a_manifest(tiny, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tiny)
    first = run("-m", "trainers.lora", str(bundle), str(tmp_path / "one"))
    events = [json.loads(line) for line in first.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["device"] == "cpu"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["of"] == 10
    run("-m", "trainers.lora", str(bundle), str(tmp_path / "two"))
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert one["adapter/adapter_model.safetensors"] == two["adapter/adapter_model.safetensors"]
    assert {k: v for k, v in one.items() if k != "metrics.json"} == {
        k: v for k, v in two.items() if k != "metrics.json"
    }
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["eval_loss_before"]
    assert metrics["perplexity"] > 1 and metrics["multiple_choice"]["n"] == 1
    # Another seed gives other weights.
    other = make_bundle(tmp_path / "seeded", tiny, seed=8)
    run("-m", "trainers.lora", str(other), str(tmp_path / "three"))
    three = json.loads((tmp_path / "three" / "manifest.json").read_text())
    assert three["adapter/adapter_model.safetensors"] != one["adapter/adapter_model.safetensors"]


def test_other_weights_than_the_spec_names_are_refused(tiny, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tiny)
    spec = json.loads((bundle / "spec.json").read_text())
    spec["base_model"]["weights_sha256"] = "0" * 64
    (bundle / "spec.json").write_text(json.dumps(spec))
    result = run("-m", "trainers.lora", str(bundle), str(tmp_path / "out"), check=False)
    assert result.returncode == 1 and "refusing to train on other weights" in result.stderr
    assert not (tmp_path / "out" / "adapter").exists()


def test_trainers_import_nothing_of_governance():
    code = (
        "import sys, trainers.lora, trainers.tiny, trainers.hashing, trainers.harness,"
        " trainers.exposure, trainers.privacy, trainers.membership;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'governance'))"
    )
    assert run("-c", code).stdout.strip() == "[]"


def test_the_harness_scores_the_base_and_the_candidate_on_tasks_from_the_eval_set(tiny, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tiny)
    held_out = [
        {"text": "Line 11 of Form 1040 is adjusted gross income."},
        *[
            {"question": f"Which form reports item {i}?", "choices": ["W-2", "1099"], "answer": 0}
            for i in range(5)
        ],
        *[{"prompt": f"What goes on line {i}?", "completion": f"Line {i}."} for i in (30, 31)],
    ]
    (bundle / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    spec = json.loads((bundle / "spec.json").read_text())
    # One task the harness knows but whose data is not cached here, one it does not know.
    spec["evaluation"] = {"few_shot": 2, "harness_tasks": ["arc_easy", "no_such_task"]}
    (bundle / "spec.json").write_text(json.dumps(spec))
    result = run("-m", "trainers.lora", str(bundle), str(tmp_path / "out"))
    assert all(json.loads(line) for line in result.stdout.splitlines())  # stdout stays JSON
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    evaluation = metrics["evaluation"]
    assert evaluation["harness"].startswith("lm-eval 0.4")
    tasks = {"governance_choice", "governance_perplexity", "governance_exact"}
    assert set(evaluation["tasks"]) == tasks
    assert evaluation["tasks"]["governance_choice"]["items"] == 5
    assert set(evaluation["candidate"]) == set(evaluation["baseline"]["zero_shot"]) == tasks
    # Perplexity takes no examples in its prompt: the few-shot baseline leaves it out.
    assert set(evaluation["baseline"]["few_shot"]) == tasks - {"governance_perplexity"}
    choice = evaluation["candidate"]["governance_choice"]
    assert choice["n"] == 5 and 0 <= choice["metrics"]["acc"]["value"] <= 1
    assert metrics["multiple_choice"]["acc"] == choice["metrics"]["acc"]["value"]
    bits = evaluation["candidate"]["governance_perplexity"]["metrics"]["bits_per_byte"]
    base_bits = evaluation["baseline"]["zero_shot"]["governance_perplexity"]["metrics"]
    assert bits["higher_is_better"] is False
    assert evaluation["gain"]["governance_perplexity/bits_per_byte"] == pytest.approx(
        base_bits["bits_per_byte"]["value"] - bits["value"], abs=1e-5
    )
    assert set(evaluation["unavailable"]) == {"arc_easy", "no_such_task"}
    # The task files are the harness's own format: its task manager indexes them.
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tmp_path / "out" / "harness"), include_defaults=False)
    assert set(manager.all_tasks) >= tasks
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "harness/governance_choice.yaml" in manifest


def test_the_exposure_scores_equal_a_full_forward_pass(tiny):
    """The prefix's cached keys and values give the same log-likelihoods as running each
    prefix + secret whole (on the peft-wrapped model the trainer measures)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.exposure import secret_loglikelihoods

    tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
    with warnings.catch_warnings():  # peft 0.21 asks transformers 5 for a deprecated attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        config = LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    model.eval()
    prefix, secrets = "The number is ", ["123-45-6789", "000-00-0000", "987-65-4321"]
    cached = secret_loglikelihoods(model, tokenizer, prefix, secrets, torch.device("cpu"))
    context = [tokenizer.bos_token_id, *tokenizer.encode(prefix, add_special_tokens=False)]
    for secret, score in zip(secrets, cached, strict=True):
        target = tokenizer.encode(secret, add_special_tokens=False)
        ids = torch.tensor([context + target])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        whole = sum(float(logprobs[len(context) - 1 + i, target[i]]) for i in range(len(target)))
        assert score == pytest.approx(whole, abs=1e-4)
