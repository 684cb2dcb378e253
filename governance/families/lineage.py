"""Render a signed lineage document as a readable tree for `govern lineage`."""

from __future__ import annotations

from typing import Any

from governance.families import scorecard


def _short(value: str | None, width: int = 16) -> str:
    return (value or "-")[:width]


def render_tree(doc: dict[str, Any]) -> str:
    """The lineage as an indented tree: base model, data, scans, approvals, training, results."""
    lines = [
        f"{doc['family']} v{doc['version']} (tax year {doc['tax_year']}, {doc['status']}) "
        f"in {doc['domain']}",
        f"├─ base model {doc['base_model']['name']}  weights {doc['base_model']['weights_sha256']}",
    ]
    for used in doc["datasets"]:
        lines.append(
            f"├─ dataset {used['dataset']} v{used['version']} (tax year {used['tax_year']})  "
            f"content {used['content_hash']}"
        )
        scan = used["scan"]
        counts = ", ".join(f"{k} {sum(v.values())}" for k, v in (scan["counts"] or {}).items())
        lines.append(
            f"│  ├─ scan receipt {scan['receipt']}: {scan['verdict']}  rules "
            f"{_short(scan['rules_hash'])}  {counts or 'no findings'}"
        )
        approval = used["approval"]
        lines.append(f"│  └─ approval {approval['request']} ({approval['state']})")
        for decision in approval["decisions"]:
            lines.append(
                f"│     └─ {decision['decision']} by {decision['reviewer']} as {decision['role']} "
                f"at {decision['time']}  signature {_short(decision['signature'])}"
            )
    config = doc["training_config"]
    lines += [
        f"├─ policy {doc['policy_hash']}",
        f"├─ training: {config.get('from')}, seed {config.get('seed')}, lora {config.get('lora')}, "
        f"{config.get('hyperparameters')}; {doc['code_version']}; by {doc['trained_by']}",
    ]
    adapter = doc["adapter_manifest"].get("adapter/adapter_model.safetensors")
    metrics = doc["metrics"]
    lines.append(
        f"├─ adapter {adapter or '-'}  eval loss {metrics.get('eval_loss')}  "
        f"perplexity {metrics.get('perplexity')}"
    )
    gate = doc["evaluation"].get("gate")
    lines.append(f"├─ evaluation gate: {gate or 'not evaluated'}")
    for reason in doc["evaluation"].get("reasons") or []:
        lines.append(f"│  ├─ {reason}")
    for line in scorecard.render(doc["evaluation"]):
        lines.append(f"│  ├─ {line}")
    parent = doc["parent"]
    lines.append(f"├─ parent: {'v' + str(parent['version']) if parent else 'none'}")
    lines.append(f"└─ digest {doc['digest']}  signed by key {doc['key_id']}")
    return "\n".join(lines)
