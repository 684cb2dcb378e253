"""`govern bench --only privacy`: what differential privacy costs and what it buys.

The same bundle trained twice on the tiny base (`trainers.tiny`), once without and once with
DP-SGD (`trainers.privacy`), with the same seed, epochs, batch and learning rate:

- the data: tax questions and answers from templates, each answer ending with a case number
  of its own, 100 customers with three records each (the customer is the unit of privacy),
  held-out records of the same templates, and the
  Secret Sharer's canaries repeated several times in the training part, over enough epochs
  that the non-private arm measurably memorizes them;
- utility: held-out loss (before and after training) and the multiple-choice accuracy of the
  evaluation gate's tasks;
- memorization: the canaries' mean exposure in bits (about 1.44 for a model that never saw
  them; log2(candidates + 1) at most);
- membership inference: AUC and TPR at 1% FPR of the loss attack and of the reference-model
  attack (the untuned base as reference), training records against held-out ones.

Each arm runs `python -m trainers.lora` in its own process, as a worker would.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.audit_log import machine
from governance.domains.settings import Memorization
from governance.families import canaries
from trainers.exposure import draw_secret
from trainers.hashing import weights_hash

FORMS = [
    ("W-2", "wages", "line 1a"),
    ("1099-INT", "interest", "Schedule B"),
    ("1099-DIV", "dividends", "Schedule B"),
    ("1099-NEC", "contract pay", "Schedule C"),
    ("1098", "mortgage interest", "Schedule A"),
    ("1098-T", "tuition", "Form 8863"),
    ("1099-R", "retirement distributions", "line 4a"),
    ("SSA-1099", "social security benefits", "line 6a"),
]


# Every projection of the tiny Llama: capacity enough to memorize, as the comparison needs.
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def records(customers: int, per_customer: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 (benchmark data)
    found = []
    for customer in range(customers):
        for _ in range(per_customer):
            form, what, where = rng.choice(FORMS)
            amount = rng.randrange(100, 90000)
            # Each answer ends with a case number of its own: something a model can only
            # know by memorizing the record, which is what membership inference looks for.
            case = f"{rng.randrange(10000):04d}-{rng.randrange(100):02d}"
            found.append(
                {
                    "prompt": f"I got a Form {form} showing ${amount:,} of {what}. "
                    "Where does it go?",
                    "completion": f"Report the {what} from Form {form} on {where}. Case {case}.",
                    "unit": f"customer-{customer:04d}",
                }
            )
    return found


def bundle(directory: Path, base: Path, private: dict | None, epochs: int, seed: int) -> None:
    directory.mkdir(parents=True)
    train = records(100, 3, seed)
    held = [{k: v for k, v in r.items() if k != "unit"} for r in records(20, 2, seed + 1)]
    held += [
        {"question": f"Which form reports {what}?", "choices": [form, "8829"], "answer": 0}
        for form, what, _where in FORMS
    ]
    # The service's canaries, drawn here from a seeded generator so that reruns compare.
    rng = random.Random(seed)  # noqa: S311 (benchmark canaries, not secrets)
    plan = {
        **canaries.draw(Memorization(canaries=8, repetitions=10, candidates=1000)),
        "canaries": [
            {
                "prefix": f"Taxpayer file {rng.randrange(16**6):06x}: the identification "
                "number is ",
                "secret": draw_secret(rng, canaries.SECRET_FORMAT),
            }
            for _ in range(8)
        ],
    }
    train = canaries.insert(train, plan, "bench-privacy")
    spec = {
        "base_model": {"path": str(base), "weights_sha256": weights_hash(base)},
        "lora": {"r": 16, "alpha": 32, "target_modules": MODULES},
        "hyperparameters": {"epochs": epochs, "batch_size": 16, "learning_rate": 0.01},
        "seed": seed,
        "evaluation": {"few_shot": 0, "harness_tasks": []},
        "memorization": plan,
        **({"privacy": private} if private else {}),
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (directory / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))


def arm(scratch: Path, base: Path, name: str, private: dict | None, epochs: int) -> dict:
    source = scratch / f"bundle-{name}"
    bundle(source, base, private, epochs, seed=11)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "trainers.lora", str(source), str(scratch / f"out-{name}")],
        check=True,
        capture_output=True,
        text=True,
    )
    metrics = json.loads((scratch / f"out-{name}" / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - started
    return metrics


def reading(plain: dict, private: dict) -> str:
    """What this run shows, in words derived from its own figures."""
    exposed = (plain.get("memorization") or {}).get("mean_exposure_bits") or 0.0
    kept = (private.get("memorization") or {}).get("mean_exposure_bits") or 0.0
    attack = ((plain.get("membership_inference") or {}).get("loss_attack") or {}).get("auc") or 0.5
    words = [
        f"Without DP the canaries' mean exposure is {exposed:.2f} bits, with DP {kept:.2f} "
        f"(chance: about 1.44)."
    ]
    if attack < 0.6:
        words.append(
            f"The membership-inference attacks barely separate training records from held-out "
            f"ones in either arm (loss attack AUC {attack:.3f} without DP): on this tiny "
            "random-weight base the records' shared templates are learned more than any one "
            "record, so the canaries, not the attacks, show what DP takes away here."
        )
    return " ".join(words)


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def run_privacy_bench(epochs: int = 40, epsilon: float = 8.0, echo: Callable = print) -> str:
    with tempfile.TemporaryDirectory(prefix="governance-privacy-") as name:
        scratch = Path(name)
        base = scratch / "tiny"
        subprocess.run(
            [sys.executable, "-m", "trainers.tiny", str(base), "--seed", "0"],
            check=True,
            capture_output=True,
        )
        echo("training without differential privacy ...")
        plain = arm(scratch, base, "plain", None, epochs)
        echo(f"training with DP-SGD at epsilon {epsilon} ...")
        private = arm(
            scratch,
            base,
            "private",
            {"epsilon": epsilon, "delta": 1e-5, "max_grad_norm": 1.0, "sampling": "poisson"},
            epochs,
        )
    rows = []
    for label, m in (("without DP", plain), (f"DP-SGD, epsilon {epsilon:g}", private)):
        choice = m.get("multiple_choice") or {}
        mia = m.get("membership_inference") or {}
        memo = m.get("memorization") or {}
        spent = m.get("privacy") or {}
        rows.append(
            f"| {label} | {_fmt(spent.get('epsilon'), 2) if spent else '∞'} | "
            f"{_fmt(m.get('eval_loss_before'))} → {_fmt(m.get('eval_loss'))} | "
            f"{_fmt(choice.get('acc'), 2)} | "
            f"{_fmt(memo.get('mean_exposure_bits'), 2)} "
            f"(max {_fmt(memo.get('max_exposure_bits'), 2)}) | "
            f"{_fmt((mia.get('loss_attack') or {}).get('auc'))} / "
            f"{_fmt((mia.get('loss_attack') or {}).get('tpr_at_1pct_fpr'), 2)} | "
            f"{_fmt((mia.get('reference_attack') or {}).get('auc'))} / "
            f"{_fmt((mia.get('reference_attack') or {}).get('tpr_at_1pct_fpr'), 2)} | "
            f"{m['wall_seconds']:.0f} s |"
        )
    spent = private.get("privacy") or {}
    mia = private.get("membership_inference") or {}
    ceiling = (plain.get("memorization") or {}).get("ceiling_bits")
    return "\n".join(
        [
            "## Differential privacy: cost and gain",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {machine()}, "
            "CPU, each arm `python -m trainers.lora` in its own process. Rerun with "
            "`govern bench --only privacy`.",
            "",
            f"Data (generated from templates, so this measures the mechanism, not a real "
            f"corpus): {plain['train_records']} training records, 300 of them from 100 "
            f"customers (three each; the customer is the unit of privacy; each answer ends "
            f"with a case number of its own) and 8 canaries repeated 10 times each; "
            f"{mia.get('non_members', '?')} held-out records and "
            f"{len(FORMS)} multiple-choice items. Tiny Llama base (`trainers.tiny`, random "
            f"weights), LoRA r=16 on every projection, {epochs} epochs, batch 16, learning rate "
            f"0.01, the "
            f"same seed for both arms. DP: {spent.get('units')} units, Poisson sampling at "
            f"rate {spent.get('sample_rate')}, {spent.get('steps')} steps, noise multiplier "
            f"{spent.get('noise_multiplier')}, clip {spent.get('max_grad_norm')}, delta "
            f"{spent.get('delta')} ({spent.get('accountant')}).",
            "",
            "| arm | epsilon spent | held-out loss before → after | multiple choice | "
            "canary exposure, bits | loss attack AUC / TPR@1%FPR | reference attack AUC / "
            "TPR@1%FPR | time |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            reading(plain, private),
            "",
            f"Exposure: about 1.44 bits for a canary never seen, {ceiling} at most (ranked "
            "first among 1,000 candidates). AUC 0.5 is chance. With "
            f"{mia.get('non_members', '?')} non-members the 1% false-positive point rests on "
            "very few records: read the TPR as coarse.",
            "",
            "",
        ]
    )
