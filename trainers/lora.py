"""LoRA fine-tuning of a causal language model from a training bundle.

    python -m trainers.lora BUNDLE OUT

BUNDLE is a directory with
    spec.json    base model path and weight hash, LoRA config, hyperparameters, seed
    train.jsonl  sanitized records: {"text"} or {"prompt", "completion"}
    eval.jsonl   sanitized held-out records, and multiple-choice items
                 {"question", "choices": [...], "answer": index}
spec.json's `memorization` names the canaries the service inserted into train.jsonl; their
exposure after training goes into metrics.json (trainers.exposure), beside a membership-
inference audit of training against held-out records (trainers.membership). spec.json's
`privacy` ({"epsilon", "delta", "max_grad_norm", "sampling": "poisson"}) trains the LoRA
parameters with DP-SGD and an accountant instead (trainers.privacy); records may carry `unit`,
the opaque key of the customer they belong to, which then is the unit of privacy.
OUT receives adapter/ (safetensors), metrics.json and manifest.json (SHA-256 of every file).
Progress goes to stdout, one JSON object a line. CUDA when present (bf16 where supported),
else the CPU, where a given seed gives the same adapter bytes every time.

This package imports nothing of `governance`: a worker needs no database, keys or raw data.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers import harness, membership, privacy
from trainers.exposure import exposure
from trainers.hashing import manifest, weights_hash

DEFAULT_LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
DEFAULT_HYPER = {"epochs": 2, "learning_rate": 2e-3, "batch_size": 8, "max_length": 256}


class BundleError(Exception):
    """The bundle is incomplete or does not match what it claims."""


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Bundle:
    spec: dict[str, Any]
    train: list[dict[str, Any]]
    eval_records: list[dict[str, Any]]
    choices: list[dict[str, Any]]

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        spec_path = directory / "spec.json"
        if not spec_path.is_file():
            raise BundleError(f"{directory} has no spec.json")
        spec = json.loads(spec_path.read_text())
        base = spec.get("base_model") or {}
        if not base.get("path") or not base.get("weights_sha256"):
            raise BundleError("spec.json must name base_model.path and base_model.weights_sha256")
        actual = weights_hash(base["path"])
        if actual != base["weights_sha256"]:
            raise BundleError(
                f"base model weights at {base['path']} hash to {actual[:16]}, "
                f"not {base['weights_sha256'][:16]}: refusing to train on other weights"
            )
        train = read_jsonl(directory / "train.jsonl")
        if not train:
            raise BundleError("train.jsonl is empty")
        held_out = read_jsonl(directory / "eval.jsonl")
        choices = [r for r in held_out if "choices" in r]
        return cls(spec, train, [r for r in held_out if "choices" not in r], choices)


def pick_device():
    """CUDA with bf16 where supported, else fp32; the CPU otherwise."""
    import torch

    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.device("cuda"), dtype
    return torch.device("cpu"), torch.float32


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    else:
        torch.use_deterministic_algorithms(True)


def encode(tokenizer, record: dict[str, Any], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; for prompt/completion only the completion is learned."""
    if "text" in record:
        ids = [tokenizer.bos_token_id, *tokenizer.encode(record["text"], add_special_tokens=False)]
        ids.append(tokenizer.eos_token_id)
        ids = ids[:max_length]
        return ids, list(ids)
    prompt = [tokenizer.bos_token_id, *tokenizer.encode(record["prompt"], add_special_tokens=False)]
    answer = tokenizer.encode(" " + record["completion"], add_special_tokens=False)
    ids = (prompt + answer + [tokenizer.eos_token_id])[:max_length]
    labels = ([-100] * len(prompt) + answer + [tokenizer.eos_token_id])[:max_length]
    return ids, labels


def batches(examples, batch_size: int, pad_id: int, order: list[int]) -> Iterator[tuple]:
    import torch

    for start in range(0, len(order), batch_size):
        chosen = [examples[i] for i in order[start : start + batch_size]]
        width = max(len(ids) for ids, _ in chosen)
        ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chosen), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, (tokens, targets) in enumerate(chosen):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            labels[row, : len(targets)] = torch.tensor(targets)
            mask[row, : len(tokens)] = 1
        yield ids, labels, mask


def held_out_loss(model, examples, batch_size: int, pad_id: int, device) -> float | None:
    """Mean token loss over held-out examples (perplexity is its exponential)."""
    import torch

    if not examples:
        return None
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for ids, labels, mask in batches(examples, batch_size, pad_id, list(range(len(examples)))):
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(losses)
            count += int((shift_labels != -100).sum())
    return total / max(count, 1)


def paired_gain(before: list[float], after: list[float]) -> dict[str, Any] | None:
    """How much the training lowered each held-out record's mean token loss: the mean of the
    per-record differences (base minus tuned; positive is better) and its standard error, so
    the gate can tell a gain from the noise of a few records."""
    n = len(before)
    if n < 2:
        return None
    diffs = [b - a for b, a in zip(before, after, strict=True)]
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return {"loss_drop": round(mean, 6), "stderr": round(math.sqrt(variance / n), 6), "records": n}


def serving_cost(model, tokenizer, prompt: str, device, new_tokens: int = 32) -> dict[str, Any]:
    """What serving the trained model costs on this worker: parameters, weight bytes, peak
    accelerator memory (CUDA), and the median time per generated token over three greedy
    generations of `new_tokens` tokens (the size sweep compares bases on it)."""
    import torch

    model.eval()
    ids = torch.tensor(
        [[tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]],
        device=device,
    )
    times = []
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "parameters": parameters,
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "peak_memory_bytes": (
            torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        ),
        "ms_per_token": round(sorted(times)[1] * 1000 / new_tokens, 3),
        "device": device.type,
    }


def choice_summary(candidate: dict[str, Any]) -> dict[str, Any] | None:
    """The multiple-choice accuracy in the shape the gate and the router read."""
    row = candidate.get(harness.CHOICE)
    if not row:
        return None
    metrics = row["metrics"]
    return {
        "acc": metrics["acc"]["value"],
        "acc_norm": metrics["acc_norm"]["value"],
        "n": row["n"],
    }


@dataclass
class HarnessBaseline:
    """The harness tasks written for a job, and the untuned base's scores on them."""

    configs: dict[str, dict[str, Any]]
    named: list[str]
    few_shot: int
    zero: dict[str, Any]
    few: dict[str, Any]
    seconds: float


def harness_baseline(model, tokenizer, bundle: Bundle, out: Path, seed: int, scratch: str):
    """Write the harness tasks (data under `scratch`, YAMLs into the result) and score the
    untuned base on them, zero- and few-shot (the peft adapter disabled)."""
    settings = bundle.spec.get("evaluation") or {}
    few_shot = int(settings.get("few_shot", harness.DEFAULT_FEW_SHOT))
    named = list(settings.get("harness_tasks") or [])
    data = Path(scratch) / "data"
    data.mkdir()
    configs = harness.task_configs(bundle.eval_records + bundle.choices, data)
    harness.write_yaml(configs, out / "harness")
    clock = time.monotonic()
    with harness.quiet(scratch), model.disable_adapter():
        zero = harness.run(model, tokenizer, configs, named, seed=seed, cache=scratch)
        few = (
            harness.run(
                model, tokenizer, configs, named, few_shot=few_shot, seed=seed, cache=scratch
            )
            if few_shot
            else {"tasks": {}, "unavailable": {}}
        )
    return HarnessBaseline(configs, named, few_shot, zero, few, time.monotonic() - clock)


def harness_candidate(model, tokenizer, baseline: HarnessBaseline, seed: int, scratch: str):
    """Score the trained model on the baseline's tasks; return metrics.json's `evaluation`."""
    clock = time.monotonic()
    with harness.quiet(scratch):
        candidate = harness.run(
            model, tokenizer, baseline.configs, baseline.named, seed=seed, cache=scratch
        )
    seconds = time.monotonic() - clock
    best = harness.best_baseline(baseline.zero["tasks"], baseline.few["tasks"])
    return {
        "harness": f"lm-eval {harness.harness_version()}",
        "tasks": {
            name: {"config_sha256": harness.config_hash(config), **config["metadata"]}
            for name, config in baseline.configs.items()
        },
        "named_tasks": baseline.named,
        "unavailable": candidate["unavailable"],
        "candidate": candidate["tasks"],
        "baseline": {
            "zero_shot": baseline.zero["tasks"],
            "few_shot": baseline.few["tasks"],
            "num_fewshot": baseline.few_shot,
        },
        "gain": harness.gains(candidate["tasks"], best),
        "seconds": {"baseline": round(baseline.seconds, 2), "candidate": round(seconds, 2)},
    }


def train(
    bundle_dir: str | Path,
    out_dir: str | Path,
    report: Callable[..., None] = emit,
    tasks: bool = True,
) -> dict[str, Any]:
    """Fine-tune, evaluate, and write the adapter, metrics and manifest; return the metrics.
    Without `tasks` the harness's tasks are not run (the DP comparison run needs only loss,
    exposure and the membership audit)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.monotonic()
    bundle = Bundle.load(Path(bundle_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = bundle.spec
    lora = {**DEFAULT_LORA, **(spec.get("lora") or {})}
    hyper = {**DEFAULT_HYPER, **(spec.get("hyperparameters") or {})}
    seed = int(spec.get("seed", 0))
    private = privacy.PrivacySpec.parse(spec.get("privacy"))
    seed_everything(seed)
    device, dtype = pick_device()
    base = spec["base_model"]["path"]
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=dtype)
    with warnings.catch_warnings():
        # peft 0.21 still asks transformers 5 for a deprecated attribute.
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora["r"],
                lora_alpha=lora["alpha"],
                lora_dropout=lora["dropout"],
                target_modules=list(lora["target_modules"]),
                task_type="CAUSAL_LM",
            ),
        )
    model.to(device)
    report("start", device=device.type, dtype=str(dtype).removeprefix("torch."), seed=seed)
    max_length = int(hyper["max_length"])
    train_examples = [encode(tokenizer, r, max_length) for r in bundle.train]
    eval_examples = [encode(tokenizer, r, max_length) for r in bundle.eval_records]
    batch_size = int(hyper["batch_size"])
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=float(hyper["learning_rate"])
    )
    steps_per_epoch = math.ceil(len(train_examples) / batch_size)
    total_steps = steps_per_epoch * int(hyper["epochs"])
    generator = torch.Generator().manual_seed(seed)
    eval_before = held_out_loss(model, eval_examples, batch_size, tokenizer.pad_token_id, device)
    each_before = membership.losses(
        model, eval_examples, batch_size, tokenizer.pad_token_id, device
    )
    step, last_loss = 0, None
    dp = privacy.plan(private, bundle.train, batch_size, int(hyper["epochs"])) if private else None
    if dp is not None:
        report(
            "privacy",
            epsilon=private.epsilon,
            delta=private.delta,
            unit=dp.unit,
            units=dp.units,
            steps=dp.planned_steps,
            noise_multiplier=round(dp.noise_multiplier, 4),
        )
    with harness.scratch() as scratch:
        baseline = harness_baseline(model, tokenizer, bundle, out, seed, scratch) if tasks else None
        if dp is not None:
            model.train()
            last_loss = privacy.private_steps(
                model,
                train_examples,
                bundle.train,
                dp,
                optimizer,
                micro_batch=batch_size,
                pad_id=tokenizer.pad_token_id,
                device=device,
                seed=seed,
                make_batches=batches,
                report=report,
            )
            step = dp.steps
        for epoch in range(0 if dp is not None else int(hyper["epochs"])):
            model.train()
            order = torch.randperm(len(train_examples), generator=generator).tolist()
            for ids, labels, mask in batches(
                train_examples, batch_size, tokenizer.pad_token_id, order
            ):
                ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                step += 1
                last_loss = float(loss.detach())
                report(
                    "progress", step=step, of=total_steps, epoch=epoch + 1, loss=round(last_loss, 5)
                )
        evaluation = (
            harness_candidate(model, tokenizer, baseline, seed, scratch) if baseline else None
        )
    eval_loss = held_out_loss(model, eval_examples, batch_size, tokenizer.pad_token_id, device)
    each_after = membership.losses(model, eval_examples, batch_size, tokenizer.pad_token_id, device)
    # Members are the data's own records: the canaries are the memorization test's instrument
    # (random digits, repeated), not records whose membership anyone would infer.
    planted = {
        c["prefix"] + c["secret"] for c in (spec.get("memorization") or {}).get("canaries", [])
    }
    members = [
        example
        for example, record in zip(train_examples, bundle.train, strict=True)
        if record.get("text") not in planted
    ]
    inference = membership.audit(
        model, members, eval_examples, batch_size, tokenizer.pad_token_id, device, seed
    )
    clock = time.monotonic()
    memorization = exposure(model, tokenizer, spec.get("memorization"), seed, device)
    if memorization:
        memorization["seconds"] = round(time.monotonic() - clock, 2)
    sample = next(
        (r.get("prompt") or r.get("text") for r in bundle.eval_records), "Question: Form 1040?"
    )
    serving = serving_cost(model, tokenizer, sample[:200], device)
    metrics = {
        "train_loss": last_loss,
        "train_records": len(train_examples),
        "steps": step,
        "eval_records": len(eval_examples),
        "eval_loss_before": eval_before,
        "held_out_gain": paired_gain(each_before, each_after),
        "eval_loss": eval_loss,
        "perplexity": math.exp(eval_loss) if eval_loss is not None else None,
        "multiple_choice": choice_summary(evaluation["candidate"]) if evaluation else None,
        "evaluation": evaluation,
        "memorization": memorization,
        "membership_inference": inference,
        "privacy": dp.as_metrics() if dp is not None else None,
        "serving": serving,
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "seed": seed,
        "lora": lora,
        "hyperparameters": hyper,
        "versions": {
            "torch": torch.__version__,
            "transformers": _version("transformers"),
            "peft": _version("peft"),
        },
        "seconds": round(time.monotonic() - started, 2),
    }
    if private is not None and private.compare:
        # What DP cost and bought, on the same bundle: the same run without DP, whose adapter
        # is thrown away; only its figures stay, beside the private run's.
        metrics["privacy"]["comparison"] = compare_without_privacy(Path(bundle_dir), report)
    model.save_pretrained(out / "adapter", safe_serialization=True)
    _stable_adapter_config(out / "adapter" / "adapter_config.json")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    files = manifest(out)
    (out / "manifest.json").write_text(json.dumps(files, indent=2, sort_keys=True))
    report("done", eval_loss=eval_loss, manifest=files)
    return metrics


def compare_without_privacy(bundle_dir: Path, report: Callable[..., None]) -> dict[str, Any]:
    """Train the same bundle without DP in a scratch directory; return its figures."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dp-compare-") as scratch:
        copy = Path(scratch) / "bundle"
        shutil.copytree(bundle_dir, copy)
        spec = json.loads((copy / "spec.json").read_text())
        spec.pop("privacy", None)
        (copy / "spec.json").write_text(json.dumps(spec))
        report("comparison", note="training the same bundle without differential privacy")
        plain = train(copy, Path(scratch) / "out", report=lambda *a, **k: None, tasks=False)
    attacks = plain.get("membership_inference") or {}
    return {
        "eval_loss": plain.get("eval_loss"),
        "perplexity": plain.get("perplexity"),
        "memorization": {
            k: (plain.get("memorization") or {}).get(k)
            for k in ("mean_exposure_bits", "max_exposure_bits", "ceiling_bits")
        },
        "membership_inference": {k: v for k, v in attacks.items() if k.endswith("_attack")},
        "note": "the same bundle, seed and hyperparameters without DP (held-out loss, "
        "exposure and the membership audit; the harness's tasks are not run); its adapter "
        "was discarded",
    }


def _stable_adapter_config(path: Path) -> None:
    """peft writes target_modules from a set, in hash order; sort it so the bytes repeat."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.lora", description=__doc__)
    parser.add_argument("bundle")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    try:
        train(args.bundle, args.out)
    except (BundleError, privacy.PrivacySpecError) as exc:
        emit("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
