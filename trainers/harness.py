"""Evaluation with EleutherAI's lm-evaluation-harness, on tasks written from the bundle's
held-out set, plus any installed harness task a family names.

Three task configurations are written from eval.jsonl (sanitized, as everything here):

    governance_choice      multiple choice by log-likelihood ({question, choices, answer}),
                           acc and acc_norm, as the harness scores ARC or HellaSwag
    governance_perplexity  rolling log-likelihood of held-out texts: word and byte
                           perplexity, bits per byte
    governance_exact       greedy answers to held-out prompts, exact match with the
                           completion (case and punctuation ignored)

The same tasks score the untuned base (zero-shot and few-shot: the baseline a fine-tune must
beat) and the candidate. Each task's configuration is hashed with the data it reads, so the
lineage names exactly what was measured; the YAML files go into the result (without data).
Nothing downloads: the data files are local, and a named harness task whose dataset is not
in the local Hugging Face cache is reported as unavailable, not fetched.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

CHOICE, PERPLEXITY, EXACT = "governance_choice", "governance_perplexity", "governance_exact"
MAX_EXACT_ITEMS = 100
MAX_ANSWER_TOKENS = 64
DEFAULT_FEW_SHOT = 3


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()


def task_configs(held_out: list[dict[str, Any]], data_dir: Path) -> dict[str, dict[str, Any]]:
    """The harness task configurations for the held-out records (only those with items),
    their data written under `data_dir`."""
    groups = {
        CHOICE: [
            {"question": r["question"], "choices": list(r["choices"]), "answer": r["answer"]}
            for r in held_out
            if "choices" in r
        ],
        PERPLEXITY: [{"text": r["text"]} for r in held_out if "text" in r],
        EXACT: [
            {"prompt": r["prompt"], "completion": r["completion"]}
            for r in held_out
            if "prompt" in r and "completion" in r
        ][:MAX_EXACT_ITEMS],
    }
    bodies = {
        CHOICE: {
            "output_type": "multiple_choice",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
        },
        PERPLEXITY: {
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{text}}",
            # Per byte, not per word: a word perplexity depends on how a text splits into
            # words and, for a model that knows little, runs to 10^13, which reads as broken.
            "metric_list": [
                {"metric": name, "aggregation": aggregation, "higher_is_better": False}
                for name, aggregation in (
                    ("byte_perplexity", "weighted_perplexity"),
                    ("bits_per_byte", "bits_per_byte"),
                )
            ],
        },
        EXACT: {
            "output_type": "generate_until",
            "doc_to_text": "{{prompt}}",
            "doc_to_target": "{{completion}}",
            "target_delimiter": " ",
            "generation_kwargs": {
                "until": ["\n"],
                "max_gen_toks": MAX_ANSWER_TOKENS,
                "do_sample": False,
            },
            "filter_list": [
                {"name": "strip", "filter": [{"function": "regex", "regex_pattern": r"\s*(.*)"}]}
            ],
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": True,
                    "ignore_punctuation": True,
                }
            ],
        },
    }
    configs = {}
    for name, records in groups.items():
        if not records:
            continue
        data = _jsonl(records)
        path = data_dir / f"{name}.jsonl"
        path.write_bytes(data)
        configs[name] = {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(path)}},
            "test_split": "test",
            "fewshot_split": "test",
            **bodies[name],
            "metadata": {"version": 1, "data_sha256": _sha256(data), "items": len(records)},
        }
    return configs


def config_hash(config: dict[str, Any]) -> str:
    """A task configuration's hash, with its data named by content rather than by path."""
    stable = {k: v for k, v in config.items() if k != "dataset_kwargs"}
    return _sha256(json.dumps(stable, sort_keys=True).encode())


def write_yaml(configs: dict[str, dict[str, Any]], target: Path) -> None:
    """The task files, as the harness reads them (`--include_path`), data by relative name."""
    import yaml

    target.mkdir(parents=True, exist_ok=True)
    for name, config in configs.items():
        portable = {**config, "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl"}}}
        (target / f"{name}.yaml").write_text(yaml.safe_dump(portable, sort_keys=True))


@contextlib.contextmanager
def quiet(cache: str):
    """The harness and datasets log to stdout and keep a cache in $HOME; the worker's stdout
    carries JSON progress lines, and nothing of the data may outlive the job."""
    names = ("HF_DATASETS_CACHE", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TQDM_DISABLE")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        HF_DATASETS_CACHE=cache, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1"
    )
    for name in ("lm-eval", "lm_eval", "datasets", "evaluate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _scores(results: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """{task: {metric: {value, stderr}, n}} from the harness's results."""
    out: dict[str, Any] = {}
    for task in tasks:
        row = results["results"].get(task) or {}
        metrics: dict[str, Any] = {}
        for key, value in row.items():
            name, _, filt = key.partition(",")
            if not filt or name.endswith("_stderr") or not isinstance(value, int | float):
                continue
            stderr = row.get(f"{name}_stderr,{filt}")
            metrics[name] = {
                "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, int | float) else None,
                "higher_is_better": bool(
                    (results.get("higher_is_better", {}).get(task) or {}).get(name, True)
                ),
            }
        n = (results.get("n-samples", {}).get(task) or {}).get("effective")
        out[task] = {"metrics": metrics, "n": n}
    return out


def run(
    model,
    tokenizer,
    configs: dict[str, dict[str, Any]],
    named: list[str],
    *,
    few_shot: int = 0,
    batch_size: int = 16,
    seed: int = 0,
    cache: str,
) -> dict[str, Any]:
    """Score `model` on the written tasks (and the named harness tasks), `few_shot` examples
    in each prompt where a task has enough items. Named tasks that cannot run offline are
    reported under `unavailable`."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    scores: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    tasks: list[Any] = []
    for name, config in configs.items():
        shots = min(few_shot, config["metadata"]["items"] - 1) if name != PERPLEXITY else 0
        if few_shot and shots < 1:
            continue  # too few items for a few-shot prompt: the zero-shot score stands alone
        tasks.append({**config, "num_fewshot": shots})
    common = {
        "log_samples": False,
        "bootstrap_iters": 1000,
        "random_seed": seed,
        "numpy_random_seed": seed,
        "torch_random_seed": seed,
        "fewshot_random_seed": seed,
    }
    if tasks:
        results = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, task_manager=TaskManager(include_defaults=False), **common
        )
        scores.update(_scores(results, [t["task"] for t in tasks]))
    if named:
        manager = _registry()
        for name in named:
            try:
                results = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=[name],
                    task_manager=manager,
                    num_fewshot=few_shot or None,
                    **common,
                )
                scores.update(_scores(results, list(results["results"])))
            except Exception as exc:  # any failure (no cached dataset, say) makes it unavailable
                unavailable[name] = f"{type(exc).__name__}: {exc}"[:300]
    return {"tasks": scores, "unavailable": unavailable}


@functools.cache
def _registry():
    """The harness's own task registry (indexing it takes seconds: once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def harness_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("lm-eval")


def metric(scores: dict[str, Any] | None, task: str, name: str) -> dict[str, Any] | None:
    """One metric ({value, stderr, higher_is_better}) of one task in a set of scores."""
    return (((scores or {}).get(task) or {}).get("metrics") or {}).get(name)


def orient(metric: dict[str, Any]) -> float:
    """A metric's value, signed so that larger is better."""
    return metric["value"] if metric["higher_is_better"] else -metric["value"]


def gains(candidate: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Per `task/metric`: how much better the candidate scores than the baseline (positive is
    better, in the metric's own units)."""
    out = {}
    for task, row in candidate.items():
        for name, scored in row["metrics"].items():
            base = metric(baseline, task, name)
            if base is not None:
                out[f"{task}/{name}"] = round(orient(scored) - orient(base), 6)
    return out


def best_baseline(zero: dict[str, Any], few: dict[str, Any]) -> dict[str, Any]:
    """Per task and metric, the better of the zero-shot and few-shot baseline: what prompting
    the untuned base already achieves."""
    best: dict[str, Any] = {}
    for task in set(zero) | set(few):
        metrics: dict[str, Any] = {}
        for source in (zero.get(task), few.get(task)):
            for name, scored in ((source or {}).get("metrics") or {}).items():
                if name not in metrics or orient(scored) > orient(metrics[name]):
                    metrics[name] = scored
        best[task] = {"metrics": metrics}
    return best


def scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="harness-")
