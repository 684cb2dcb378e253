"""`govern bench --only gate`: what each part of the evaluation gate adds to a training job.

The worker's job, as `trainers.lora` runs it from a bundle, on a tiny base built here: the
training loop (the reference), the lm-evaluation-harness baseline (the untuned base, zero-
and few-shot), the harness on the candidate, the canaries' exposure and the serving-cost
probe. Each run is timed by the trainer itself (metrics.json `seconds`); the table gives
the median of the runs. The control plane's parts of the gate (the PII probe, up to 50
short generations, and the review sample, one generation per conversation turn) run on
the serving engine and are not in this table.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.audit_log import machine


def _bundle(directory: Path, base: Path, records: int, seed: int) -> None:
    from governance.domains.settings import Memorization
    from governance.families import canaries
    from governance.pii.synthetic import generate
    from trainers.hashing import weights_hash

    rng = random.Random(seed)  # noqa: S311 (synthetic benchmark data)
    texts = [{"text": r["text"]} for r in generate(records, seed=seed)]
    pairs = [
        {
            "prompt": f"What goes on line {i} of Form 1040?",
            "completion": f"Line {i} holds item {i}.",
        }
        for i in range(1, records // 4)
    ]
    data = texts + pairs
    rng.shuffle(data)
    held = data[: len(data) // 10]
    train = data[len(data) // 10 :]
    choices = [
        {
            "question": f"Which form reports item {i}?",
            "choices": ["W-2", "1099-INT", "1098"],
            "answer": i % 3,
        }
        for i in range(20)
    ]
    plan = canaries.draw(Memorization())
    spec = {
        "base_model": {"path": str(base), "weights_sha256": weights_hash(base)},
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.002},
        "seed": seed,
        "evaluation": {"few_shot": 3, "harness_tasks": []},
        "memorization": plan,
    }
    directory.mkdir(parents=True)
    (directory / "spec.json").write_text(json.dumps(spec))
    lines = canaries.insert(train, plan, f"bench-{seed}")
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (directory / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held + choices))


def run_gate_bench(runs: int = 3, records: int = 240, echo: Callable[[str], None] = print) -> str:
    """Train `runs` times on a tiny base; return the BENCHMARKS.md section."""
    from trainers.lora import train
    from trainers.tiny import create_tiny

    parts: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as scratch:
        base = Path(scratch) / "tiny"
        create_tiny(base, seed=0, hidden_size=64)
        for run in range(runs):
            bundle = Path(scratch) / f"bundle-{run}"
            _bundle(bundle, base, records, seed=run)
            started = time.perf_counter()
            metrics = train(bundle, Path(scratch) / f"out-{run}", report=lambda *a, **k: None)
            total = time.perf_counter() - started
            harness = metrics["evaluation"]["seconds"]
            exposure = metrics["memorization"]["seconds"]
            measured = {
                "whole job": total,
                "harness baseline (0- and 3-shot)": harness["baseline"],
                "harness candidate": harness["candidate"],
                "canary exposure (8 x 1000)": exposure,
            }
            measured["training loop and the rest (reference)"] = total - sum(
                v for k, v in measured.items() if k != "whole job"
            )
            for name, seconds in measured.items():
                parts.setdefault(name, []).append(seconds)
            echo(f"run {run + 1}/{runs}: {total:.1f} s")
    reference = statistics.median(parts["training loop and the rest (reference)"])
    rows = [
        f"| {name} | {statistics.median(values):.2f} | "
        f"{statistics.median(values) / reference:.0%} |"
        for name, values in parts.items()
    ]
    return "\n".join(
        [
            "## Evaluation gate",
            "",
            f"Machine: {machine()}. CPU only. `govern bench --only gate`: the worker's job "
            f"(`trainers.lora`) on a tiny Llama base (hidden size 64, 2 layers) built here, "
            f"{records} synthetic records plus {records // 4 - 1} prompt/completion pairs "
            "(10% held out), 20 multiple-choice items, 2 epochs, batch 8; lm-eval 0.4.13 on the "
            "three written tasks; 8 canaries ranked among 1,000 candidates each. Median of "
            f"{runs} runs, in one process, each part timed by the trainer.",
            "",
            "| part | seconds | relative to the training loop |",
            "| --- | ---: | ---: |",
            *rows,
            "",
            "The harness and the exposure score a fixed number of sequences (the held-out set "
            "three times; 8 x 1,001 secrets of about 60 tokens once), whatever the size of the "
            "training set; the training loop grows with the data and the epochs. On this tiny "
            "base and a few hundred records each of these fixed costs is of the order of the "
            "training loop itself; on a real data set of thousands of records they are small "
            "beside it. Not in the table: the control plane's part of the gate, on the serving "
            "engine (the PII probe, at most 50 short generations, and the review sample, one "
            "generation of at most 128 tokens per conversation turn, 4 in the shipped "
            "consumer-tax criteria), and the judge's calls, one per conversation.",
            "",
        ]
    )
