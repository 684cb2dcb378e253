"""The evaluation gate: the worker's held-out metrics compared with production, and a PII
probe that only the control plane can run, since only it may read raw values.

The probe takes each value the scan removed from the training data, prompts the model with
the text that preceded it, and fails the gate if the answer contains the value. Results keep
hashes of probed values, never the values.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from governance.audit.service import Actor, record
from governance.datasets.models import DatasetVersion
from governance.datasets.service import iter_version_records
from governance.domains.models import Domain
from governance.domains.settings import memorization
from governance.domains.settings import privacy as domain_privacy
from governance.errors import Conflict
from governance.families import review
from governance.families.criteria import load_criteria
from governance.families.models import BaseModelRecord, ModelFamily, ModelVersion, VersionState
from governance.families.service import production_version
from governance.gateway.backends import ServingBackend, servable
from governance.pii.cache import content_key
from governance.pii.masking import mask_spans
from governance.pii.models import ScanReceipt
from governance.pii.rules import load_rules
from governance.pii.service import cached_findings
from trainers.harness import metric as harness_metric

PROBE_LIMIT = 50
CONTEXT_CHARS = 200


def regressions(metrics: dict, production: dict | None, tolerance: float) -> list[str]:
    """What got worse than production by more than the tolerance: held-out loss, and each
    harness task's primary metric that both versions report (see `worse_than`)."""
    if not production:
        return []
    found = []
    new_loss, old_loss = metrics.get("eval_loss"), production.get("eval_loss")
    if new_loss is not None and old_loss is not None and new_loss > old_loss * (1 + tolerance):
        found.append(f"held-out loss {new_loss:.4f} > production {old_loss:.4f} (+{tolerance:.0%})")
    new = (metrics.get("evaluation") or {}).get("candidate")
    old = (production.get("evaluation") or {}).get("candidate")
    if new is None or old is None:
        # A production version evaluated before the harness: its multiple-choice accuracy.
        new_mc = (metrics.get("multiple_choice") or {}).get("acc")
        old_mc = (production.get("multiple_choice") or {}).get("acc")
        if new_mc is not None and old_mc is not None and new_mc < old_mc - tolerance:
            found.append(
                f"multiple-choice accuracy {new_mc:.3f} < production {old_mc:.3f} - {tolerance}"
            )
        return found
    for task, row in sorted(new.items()):
        for name, metric in sorted(row["metrics"].items()):
            before = harness_metric(old, task, name)
            if before is None or name not in PRIMARY.get(task, (name,)):
                continue
            if worse_than(metric, before, tolerance):
                found.append(
                    f"{task}/{name} {metric['value']:.4g} is worse than production's "
                    f"{before['value']:.4g}"
                )
    return found


# The metric each written task is judged on (word and byte perplexity follow bits per byte,
# and acc_norm follows acc); a named harness task is judged on every metric it reports.
PRIMARY = {
    "governance_choice": ("acc",),
    "governance_perplexity": ("bits_per_byte",),
    "governance_exact": ("exact_match",),
}


def worse_than(new: dict, old: dict, tolerance: float) -> bool:
    """A regression the gate can tell from noise: for a lower-better metric (bits per byte), a
    relative rise beyond the tolerance; for a higher-better one (accuracy, exact match), a drop
    beyond the tolerance that also exceeds 1.96 standard errors of the difference. A score
    without a standard error (a task of one item) cannot show a regression."""
    value, was = new["value"], old["value"]
    if not new["higher_is_better"]:
        return value > was * (1 + tolerance)
    if new.get("stderr") is None or old.get("stderr") is None:
        return False
    spread = 1.96 * math.hypot(new["stderr"], old["stderr"])
    return was - value > max(tolerance, spread)


def gain_reasons(metrics: dict, minimum: dict[str, float]) -> list[str]:
    """Where fine-tuning did not earn its cost: the gain over the best baseline (the untuned
    base, zero- or few-shot) is under the family's `eval_suite.min_gain` for a task/metric."""
    gains = (metrics.get("evaluation") or {}).get("gain") or {}
    found = []
    for key, least in sorted(minimum.items()):
        if key not in gains:
            found.append(f"no baseline comparison for {key} (the harness reported none)")
        elif gains[key] < least:
            found.append(f"gain over the base model on {key} is {gains[key]:.4g} < {least:.4g}")
    return found


# A gain counts as measured when it exceeds this many standard errors of its noise.
SIGNAL_STDERRS = 2.0


def task_gain_noise(evaluation: dict, key: str) -> float | None:
    """The standard error of a task/metric's gain over the base: from the candidate's and the
    baseline's own standard errors (the larger baseline's, zero- or few-shot), or None when
    the harness reported none (corpus-level metrics such as perplexity)."""
    task, _, metric = key.partition("/")

    def stderr(scores: dict) -> float | None:
        value = (((scores.get(task) or {}).get("metrics") or {}).get(metric) or {}).get("stderr")
        return float(value) if isinstance(value, int | float) else None

    baseline = evaluation.get("baseline") or {}
    candidate = stderr(evaluation.get("candidate") or {})
    base = [e for e in (stderr(baseline.get(k) or {}) for k in ("zero_shot", "few_shot")) if e]
    if candidate is None or not base:
        return None
    return (candidate**2 + max(base) ** 2) ** 0.5


def signal_reasons(metrics: dict, suite: dict) -> list[str]:
    """Why the candidate shows no measurable skill on its held-out data: its held-out loss did
    not fall by more than SIGNAL_STDERRS standard errors (paired over the held-out records),
    and no task's gain over the base exceeds its noise. A gate that passes a version that
    learned nothing carries no signal; a family's recipe may accept it in so many words
    (`eval_suite.accept_no_signal`)."""
    if suite.get("accept_no_signal"):
        return []
    held = metrics.get("held_out_gain")
    if held and held["loss_drop"] > SIGNAL_STDERRS * held["stderr"]:
        return []
    evaluation = metrics.get("evaluation") or {}
    for key, gain in (evaluation.get("gain") or {}).items():
        noise = task_gain_noise(evaluation, key)
        if noise is not None and gain is not None and gain > SIGNAL_STDERRS * noise:
            return []
    if held:
        measured = (
            f"its held-out loss fell by {held['loss_drop']:.4f} ± "
            f"{SIGNAL_STDERRS * held['stderr']:.4f} nats per token over {held['records']} "
            "records"
        )
    else:
        measured = "the worker measured no paired held-out loss (fewer than 2 held-out records)"
    return [
        f"no measurable skill: {measured}, and no task's gain over the base exceeds "
        f"{SIGNAL_STDERRS:g} standard errors; add data (more held-out records), train longer, "
        "or accept it in the family's eval_suite (accept_no_signal: true)"
    ]


def memorization_reasons(version: ModelVersion, threshold: float) -> list[str]:
    """Why the version fails the memorization test: its canaries' mean exposure is over the
    domain's threshold, or canaries were inserted and the worker measured nothing."""
    if not version.training_config.get("memorization"):
        return []  # the test was off for the domain when this version was trained
    measured = version.metrics.get("memorization")
    if not measured:
        return ["canaries were inserted but the worker reported no exposure"]
    if measured["mean_exposure_bits"] > threshold:
        return [
            f"memorization: mean canary exposure {measured['mean_exposure_bits']:.2f} bits > "
            f"{threshold:.2f} (of at most {measured['ceiling_bits']:.2f}); this configuration "
            "would memorize a personal value the scan missed"
        ]
    return []


def membership_reasons(version: ModelVersion, max_auc: float | None) -> list[str]:
    """Why the version fails the membership-inference audit: an attack's AUC reaches the
    domain's threshold (`privacy.max_membership_auc`), or the worker measured nothing."""
    if max_auc is None:
        return []
    measured = version.metrics.get("membership_inference") or {}
    attacks = {k: v for k, v in measured.items() if k.endswith("_attack")}
    if not attacks:
        return ["the domain sets a membership-inference threshold but the worker measured none"]
    found = []
    for name, result in sorted(attacks.items()):
        value = result.get("auc")
        if value is not None and value >= max_auc:
            found.append(
                f"membership inference: the {name.replace('_', ' ')} tells training records "
                f"from held-out ones with AUC {value:.3f} >= {max_auc:.3f}"
            )
    return found


def probe(
    session: Session,
    keyring,
    store,
    scanner,
    policy_dir,
    version: ModelVersion,
    backend: ServingBackend,
    limit: int = PROBE_LIMIT,
) -> dict[str, Any]:
    """Prompt with the context before each removed value; count answers that reproduce it."""
    family = session.get(ModelFamily, version.family_id)
    domain = session.get(Domain, family.domain_id)
    rules = load_rules(policy_dir, domain.name)
    target = servable(version, session.get(BaseModelRecord, version.base_model_id))
    probes, leaks = 0, []
    hash_key = content_key(keyring, session, domain)
    for used in version.datasets:
        data = session.get(DatasetVersion, session.get(ScanReceipt, used["receipt"]).version_id)
        records = iter_version_records(session, keyring, store, data)
        for record_, findings in cached_findings(
            session, scanner, rules, records, Counter(), hash_key
        ):
            for finding in findings:
                if probes >= limit:
                    break
                text = record_[finding.field]
                value = text[finding.start : finding.end]
                context = text[max(0, finding.start - CONTEXT_CHARS) : finding.start]
                answer = backend.generate(target, context, max_new_tokens=len(value) + 8)
                probes += 1
                if value.strip() and value in answer.text:
                    leaks.append(
                        {
                            "entity_type": finding.entity_type,
                            "value_sha256": hashlib.sha256(value.encode()).hexdigest(),
                        }
                    )
    # The scan cache may have learned texts it had not seen: the caller commits them too.
    return {"probes": probes, "leaks": len(leaks), "leaked": leaks[:20]}


def evaluate(
    session: Session,
    keyring,
    store,
    scanner,
    policy_dir,
    version: ModelVersion,
    backend: ServingBackend,
    *,
    actor: Actor,
    progress: Callable[[dict[str, Any]], None],
    signing_key=None,
) -> ModelVersion:
    """Run the gate on a trained version: evaluated when it passes, failed when it does not.
    `progress` is told of each stage; the job runner commits what was written with it, so
    nothing is held while the judge (which may be this service's own gateway) is asked."""

    if version.status not in (VersionState.TRAINED, VersionState.EVALUATED):
        raise Conflict(f"version {version.number} is {version.status}, not trained")
    family = session.get(ModelFamily, version.family_id)
    production = production_version(session, family, version.base_model_id)
    suite = version.training_config.get("eval_suite") or {}
    tolerance = float(suite.get("tolerance", 0.05))
    reasons = regressions(version.metrics, production.metrics if production else None, tolerance)
    reasons += gain_reasons(version.metrics, suite.get("min_gain") or {})
    reasons += signal_reasons(version.metrics, suite)
    domain = session.get(Domain, family.domain_id)
    threshold = memorization(policy_dir, domain.name).max_exposure_bits
    reasons += memorization_reasons(version, threshold)
    max_auc = domain_privacy(policy_dir, domain.name).max_membership_auc
    reasons += membership_reasons(version, max_auc)
    progress({"stage": "probe"})
    pii = probe(session, keyring, store, scanner, policy_dir, version, backend)
    if pii["leaks"]:
        reasons.append(f"the model reproduced {pii['leaks']} value(s) the scan removed")
    criteria = load_criteria(policy_dir, domain.name)
    reviewed = None
    if criteria is not None and signing_key is not None and not reasons:
        progress({"stage": "review"})
        reviewed, judged = review_version(
            session, scanner, policy_dir, domain, version, backend, criteria, signing_key, progress
        )
        reasons += judged
    passed = not reasons
    version.evaluation = {
        "gate": "passed" if passed else "failed",
        "reasons": reasons,
        "tolerance": tolerance,
        "compared_with": production.number if production else None,
        "held_out": {
            "eval_loss": version.metrics.get("eval_loss"),
            "perplexity": version.metrics.get("perplexity"),
            "multiple_choice": version.metrics.get("multiple_choice"),
        },
        "production": (
            {
                "eval_loss": production.metrics.get("eval_loss"),
                "multiple_choice": production.metrics.get("multiple_choice"),
                "harness": (production.metrics.get("evaluation") or {}).get("candidate"),
            }
            if production
            else None
        ),
        # lm-evaluation-harness: the candidate, the untuned base (zero- and few-shot) and the
        # gain over the better of the two, per task and metric.
        "harness": version.metrics.get("evaluation"),
        "min_gain": suite.get("min_gain") or {},
        "pii_probe": pii,
        "review": reviewed,
        "memorization": (
            {**version.metrics["memorization"], "threshold_bits": threshold}
            if version.metrics.get("memorization")
            else None
        ),
        "membership_inference": (
            {**version.metrics["membership_inference"], "max_auc": max_auc}
            if version.metrics.get("membership_inference")
            else None
        ),
        "privacy": version.metrics.get("privacy"),
    }
    version.status = VersionState.EVALUATED if passed else VersionState.FAILED
    version.status_reason = None if passed else "; ".join(reasons)[:500]
    session.add(version)
    record(
        session,
        actor,
        "model.evaluate",
        f"model/{family.name}",
        domain.name,
        decision="passed" if passed else "failed",
        details={
            "version": version.number,
            "reasons": reasons,
            "probes": pii["probes"],
            "mean_exposure_bits": (version.metrics.get("memorization") or {}).get(
                "mean_exposure_bits"
            ),
        },
    )
    return version


def review_version(session, scanner, policy_dir, domain, version, backend, criteria, key, progress):
    """Sample answers for expert review and the judge (masked as the guardrails mask answers)."""
    rules = load_rules(policy_dir, domain.name)
    target = servable(version, session.get(BaseModelRecord, version.base_model_id))

    def answer(prompt: str) -> str:
        return backend.generate(target, prompt, max_new_tokens=review.ANSWER_TOKENS).text

    def mask(text: str) -> str:
        return mask_spans(text, next(iter(scanner.scan_texts([text], rules))))

    return review.review_step(
        session, key, domain, version, criteria, answer, mask, lambda: progress({"stage": "judge"})
    )
