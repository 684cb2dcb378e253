"""A version's scores side by side, from its gate record: the untuned base (zero- and
few-shot), the candidate and production per harness task and metric, with the gain over the
better baseline; and the memorization test's figure. Pure: the console and `govern lineage`
both read it."""

from __future__ import annotations

from typing import Any

from trainers.harness import metric as harness_metric


def _value(scores: dict[str, Any] | None, task: str, name: str) -> float | None:
    found = harness_metric(scores, task, name)
    return found["value"] if found else None


def rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task/metric the candidate was scored on."""
    harness = evaluation.get("harness") or {}
    candidate = harness.get("candidate") or {}
    baseline = harness.get("baseline") or {}
    production = (evaluation.get("production") or {}).get("harness")
    gains = harness.get("gain") or {}
    minimum = evaluation.get("min_gain") or {}
    out = []
    for task in sorted(candidate):
        for metric, scored in sorted(candidate[task]["metrics"].items()):
            key = f"{task}/{metric}"
            out.append(
                {
                    "task": task,
                    "metric": metric,
                    "n": candidate[task].get("n"),
                    "higher_is_better": scored["higher_is_better"],
                    "zero_shot": _value(baseline.get("zero_shot"), task, metric),
                    "few_shot": _value(baseline.get("few_shot"), task, metric),
                    "candidate": scored["value"],
                    "stderr": scored.get("stderr"),
                    "production": _value(production, task, metric),
                    "gain": gains.get(key),
                    "min_gain": minimum.get(key),
                }
            )
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def render(evaluation: dict[str, Any]) -> list[str]:
    """The table as text lines (for `govern lineage`), empty when the harness did not run."""
    harness = evaluation.get("harness") or {}
    table = rows(evaluation)
    lines = []
    if table:
        shots = (harness.get("baseline") or {}).get("num_fewshot")
        lines.append(
            f"{harness.get('harness')}: task/metric  base 0-shot | base {shots}-shot | "
            "candidate | production | gain over the better base"
        )
        for row in table:
            gain = row["gain"]
            lines.append(
                f"{row['task']}/{row['metric']} (n={row['n']})  {_fmt(row['zero_shot'])} | "
                f"{_fmt(row['few_shot'])} | {_fmt(row['candidate'])} | "
                f"{_fmt(row['production'])} | {'-' if gain is None else f'{gain:+.4g}'}"
                + (f" (at least {row['min_gain']:+.4g})" if row["min_gain"] is not None else "")
            )
        for name, why in (harness.get("unavailable") or {}).items():
            lines.append(f"{name}: unavailable offline ({why[:80]})")
    figure = memorization(evaluation)
    if figure:
        lines.append(figure)
    judged = judge_summary(evaluation)
    if judged:
        lines.append(judged)
    return lines


def judge_summary(evaluation: dict[str, Any]) -> str | None:
    """The review step at gate time: conversations sampled, the judge's means and its say."""
    reviewed = evaluation.get("review")
    if not reviewed:
        return None
    judge = reviewed["judge"]
    trust = reviewed["agreement"]
    kappa = "not measured" if trust["kappa"] is None else f"kappa {trust['kappa']:.2f}"
    means = ", ".join(f"{k} {v:.2f}" for k, v in judge["means"].items()) or "no scores"
    return (
        f"review: {reviewed['items']} conversations sampled; judge {judge.get('model') or '-'} "
        f"({judge['mode']}: {kappa} over {trust['items']} items, needs {trust['min_kappa']} "
        f"over {trust['min_items']}): {means}"
    )


def memorization(evaluation: dict[str, Any]) -> str | None:
    measured = evaluation.get("memorization")
    if not measured:
        return None
    mean, top = measured["mean_exposure_bits"], measured["max_exposure_bits"]
    return (
        f"memorization: {measured['canaries']} canaries x{measured['repetitions']}, mean "
        f"exposure {mean:.2f} bits (max {top:.2f}; threshold "
        f"{measured.get('threshold_bits', float('nan')):.2f}, ceiling "
        f"{measured['ceiling_bits']:.2f})"
    )


def privacy(metrics: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """What a reviewer reads of a version's privacy: the DP guarantee it was trained under (or
    that it has none), and the membership-inference audit against the gate's threshold."""
    lines = []
    spent = metrics.get("privacy")
    if spent:
        lines.append(
            f"differential privacy: epsilon {spent['epsilon']:.3f} spent at delta "
            f"{spent['delta']:g} per {spent.get('unit', 'unit')} ({spent.get('units')} units, "
            f"{spent.get('steps')} steps, noise multiplier {spent.get('noise_multiplier')}, "
            f"clip {spent.get('max_grad_norm')}; {spent.get('accountant')})"
        )
        compared = spent.get("comparison")
        if compared:
            attack = (compared.get("membership_inference") or {}).get("loss_attack") or {}
            memo = compared.get("memorization") or {}
            lines.append(
                f"the same data without DP (a comparison run, adapter discarded): held-out loss "
                f"{compared.get('eval_loss')}, canary exposure {memo.get('mean_exposure_bits')} "
                f"bits, loss attack AUC {attack.get('auc')}"
            )
    else:
        lines.append("differential privacy: none (no formal bound on what it retains)")
    audit = (evaluation.get("membership_inference") or metrics.get("membership_inference")) or {}
    threshold = audit.get("max_auc")
    for name in ("loss_attack", "reference_attack"):
        result = audit.get(name)
        if result:
            lines.append(
                f"membership inference, {name.replace('_', ' ')}: AUC {result.get('auc')}, "
                f"TPR at 1% FPR {result.get('tpr_at_1pct_fpr')} ({audit.get('members')} members, "
                f"{audit.get('non_members')} held-out)"
                + (f"; the gate refuses AUC >= {threshold}" if threshold else "")
            )
    return lines
