"""A model version's facts in the shapes auditors' tools read: a CycloneDX 1.6 ML-BOM and a
model card (Markdown and JSON), both from the version's lineage, the one source of truth.

The ML-BOM is built with `cyclonedx-python-lib` (components, hashes, licenses, dependencies,
properties) and validated against the CycloneDX 1.6 JSON schema the library ships. The
library cannot yet write a component's `modelCard` (CycloneDX/cyclonedx-python-lib#912), so
that one object is added to the JSON it writes, and the whole document is validated after.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlmodel import Session, select

from governance import __version__
from governance.approvals.models import ApprovalRequest, RequestState
from governance.approvals.service import decisions_of
from governance.approvals.subjects import MODEL_PROMOTION
from governance.audit.service import format_time
from governance.errors import GovernanceError
from governance.families import scorecard
from governance.families.models import BaseModelRecord, ModelFamily, ModelVersion
from governance.families.service import lineage, lineage_digest

PROPERTY = "governance:"


class BomInvalid(GovernanceError):
    status = 500
    code = "mlbom_invalid"


def promotion_of(session: Session, family: str, version: ModelVersion) -> dict[str, Any] | None:
    """The approved promotion request of a version with its signed decisions, if any."""
    request = session.exec(
        select(ApprovalRequest).where(
            ApprovalRequest.kind == MODEL_PROMOTION,
            ApprovalRequest.subject == f"model-version/{family}/{version.number}",
            ApprovalRequest.state == RequestState.APPROVED,
        )
    ).first()
    if request is None:
        return None
    return {
        "request": request.uid,
        "subject_digest": request.subject_digest,
        "decisions": [
            {
                "reviewer": d.reviewer,
                "role": d.role,
                "decision": d.decision,
                "time": format_time(d.decided_at),
                "signature": d.signature,
                "key_id": d.key_id,
            }
            for d in decisions_of(session, request)
        ],
    }


def _metrics(document: dict[str, Any]) -> list[tuple[str, Any]]:
    """Evaluation results as (name, value) pairs, flattened one level."""
    found = []
    for source in ("evaluation", "metrics"):
        for name, value in sorted((document.get(source) or {}).items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.append((name, value))
            elif isinstance(value, dict):
                for inner, number in sorted(value.items()):
                    if isinstance(number, int | float) and not isinstance(number, bool):
                        found.append((f"{name}.{inner}", number))
    return found


def _harness_metrics(document: dict[str, Any]) -> list[dict[str, Any]]:
    """lm-evaluation-harness scores of the version and of its untuned base, with a 95%
    interval where the harness gave a standard error."""
    found = []
    for row in scorecard.rows(document.get("evaluation") or {}):
        for who, value in (("candidate", row["candidate"]), ("base zero-shot", row["zero_shot"])):
            if value is None:
                continue
            metric: dict[str, Any] = {
                "type": f"lm-eval {row['task']}/{row['metric']}",
                "value": str(value),
                "slice": f"held-out eval set, {who}",
            }
            if who == "candidate" and row["stderr"]:
                metric["confidenceInterval"] = {
                    "lowerBound": str(value - 1.96 * row["stderr"]),
                    "upperBound": str(value + 1.96 * row["stderr"]),
                }
            found.append(metric)
    return found


def mlbom(
    session: Session, version: ModelVersion, document: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The version's CycloneDX 1.6 ML-BOM as a JSON document, validated. `document`: its
    lineage, when the caller has it already."""
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot6

    family = session.get(ModelFamily, version.family_id)
    document = document or lineage(session, version)
    base = document["base_model"]
    sha = HashAlgorithm.SHA_256
    base_component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=base["name"],
        bom_ref=f"base-model/{base['name']}",
        hashes=[HashType(alg=sha, content=base["weights_sha256"])],
        licenses=[LicenseExpression(base["license"])] if base.get("license") else [],
        properties=[
            Property(name=f"{PROPERTY}source", value=base.get("source") or "unknown"),
            Property(name=f"{PROPERTY}intake-approval", value=base.get("approval") or "none"),
        ],
    )
    if str(base.get("source", "")).startswith(("https://", "http://")):
        base_component.external_references.add(
            ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(base["source"]))
        )
    datasets = []
    for used in document["datasets"]:
        approval = used.get("approval") or {}
        datasets.append(
            Component(
                type=ComponentType.DATA,
                name=used["dataset"],
                version=str(used["version"]),
                bom_ref=f"dataset-version/{used['uid']}",
                # The content hash of the raw upload; the model saw only the sanitized view.
                hashes=[HashType(alg=sha, content=used["content_hash"])],
                properties=[
                    Property(name=f"{PROPERTY}tax-year", value=str(used["tax_year"])),
                    Property(name=f"{PROPERTY}scan:receipt", value=str(used["receipt"])),
                    Property(
                        name=f"{PROPERTY}scan:verdict", value=str(used["scan"].get("verdict"))
                    ),
                    Property(name=f"{PROPERTY}scan:rules-sha256", value=used["rules_hash"]),
                    Property(name=f"{PROPERTY}sanitized-view-sha256", value=used["sanitized_hash"]),
                    Property(
                        name=f"{PROPERTY}approval", value=str(approval.get("request") or "none")
                    ),
                ],
            )
        )
    weights = (version.adapter_manifest or {}).get("adapter/adapter_model.safetensors")
    promotion = promotion_of(session, family.name, version)
    properties = [
        Property(name=f"{PROPERTY}domain", value=document["domain"]),
        Property(name=f"{PROPERTY}tax-year", value=str(document["tax_year"])),
        Property(name=f"{PROPERTY}status", value=version.status),
        Property(name=f"{PROPERTY}policy-sha256", value=document["policy_hash"] or "none"),
        Property(name=f"{PROPERTY}lineage-sha256", value=lineage_digest(document)),
        Property(name=f"{PROPERTY}trained-by", value=document["trained_by"]),
        Property(
            name=f"{PROPERTY}promotion-approval",
            value=promotion["request"] if promotion else "none",
        ),
    ]
    private = document.get("privacy")
    if private:
        # Differential privacy: the guarantee per unit of privacy, as the accountant spent it.
        for key in ("epsilon", "delta", "unit", "steps", "noise_multiplier", "accountant"):
            if private.get(key) is not None:
                properties.append(
                    Property(name=f"{PROPERTY}privacy:{key}", value=str(private[key]))
                )
    if version.adapter_signature:
        properties.append(
            Property(
                name=f"{PROPERTY}model-signing-bundle-sha256",
                value=hashlib.sha256(version.adapter_signature.encode()).hexdigest(),
            )
        )
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=family.name,
        version=f"v{version.number}",
        bom_ref=f"model-version/{version.uid}",
        description=f"LoRA adapter of {family.name} on {base['name']}",
        hashes=[HashType(alg=sha, content=weights)] if weights else [],
        properties=properties,
    )
    bom = Bom()
    bom.metadata.component = model
    for component in (base_component, *datasets):
        bom.components.add(component)
    bom.register_dependency(model, [base_component, *datasets])
    bom.metadata.properties.add(Property(name=f"{PROPERTY}generator", value=__version__))
    result = json.loads(JsonV1Dot6(bom).output_as_string())
    result["metadata"]["component"]["modelCard"] = {
        "bom-ref": f"model-card/{version.uid}",
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": "text-generation",
            "architectureFamily": session.get(BaseModelRecord, version.base_model_id).architecture,
            "modelArchitecture": f"LoRA adapter on {base['name']}",
            "datasets": [{"ref": d.bom_ref.value} for d in datasets],
        },
        "quantitativeAnalysis": {
            "performanceMetrics": [
                {"type": name, "value": str(value), "slice": "held-out eval set"}
                for name, value in _metrics(document)
            ]
            + _harness_metrics(document),
        },
        "considerations": {
            "useCases": [f"Questions in the {document['domain']} domain, tax year "
                         f"{document['tax_year']}, through the governance gateway"],
            "technicalLimitations": [
                "Trained only on the sanitized view of the approved datasets listed here."
            ],
        },
    }  # fmt: skip
    validate_bom(result)
    return result


def validate_bom(document: dict[str, Any]) -> None:
    """Raise BomInvalid unless the document validates against the CycloneDX 1.6 schema."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:
        raise BomInvalid(f"the ML-BOM does not validate: {str(error)[:300]}")


def model_card(
    session: Session, version: ModelVersion, document: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The version's model card: (Markdown, JSON), from its lineage (`document`, when the
    caller has it already)."""
    family = session.get(ModelFamily, version.family_id)
    document = document or lineage(session, version)
    base = document["base_model"]
    promotion = promotion_of(session, family.name, version)
    card = {
        "model": f"{family.name} v{version.number}",
        "uid": version.uid,
        "domain": document["domain"],
        "tax_year": document["tax_year"],
        "status": version.status,
        "base_model": base,
        "training": {
            "method": "LoRA fine-tuning from the base model",
            "config": document["training_config"],
            "trained_by": document["trained_by"],
            "code_version": document["code_version"],
        },
        "data": [
            {
                "dataset": d["dataset"],
                "version": d["version"],
                "tax_year": d["tax_year"],
                "content_sha256": d["content_hash"],
                "scan_verdict": d["scan"].get("verdict"),
                "pii_found": d["scan"].get("counts"),
                "approval": (d.get("approval") or {}).get("request"),
            }
            for d in document["datasets"]
        ],
        "evaluation": dict(_metrics(document)),
        "privacy": document.get("privacy"),
        "membership_inference": (document.get("metrics") or {}).get("membership_inference"),
        "promotion": promotion,
        "lineage_sha256": lineage_digest(document),
        "policy_sha256": document["policy_hash"],
        "intended_use": f"Answering {document['domain']} questions for tax year "
        f"{document['tax_year']} through the governance gateway, by callers the policy allows.",
        "limitations": "Trained only on the sanitized view of the approved data; every query "
        "is authorized and audited; prompts and answers are guarded per guardrails.yaml.",
    }
    lines = [
        f"# Model card: {card['model']}",
        "",
        f"- Domain: {card['domain']}; tax year {card['tax_year']}; status {card['status']}",
        f"- Base model: {base['name']} ({base.get('license') or 'license unknown'}), "
        f"weights SHA-256 {base['weights_sha256']}, source {base.get('source') or 'unknown'}",
        f"- Lineage SHA-256: {card['lineage_sha256']}",
        f"- Policy SHA-256: {card['policy_sha256']}",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Training data",
        "",
        "| dataset | version | tax year | content SHA-256 | scan | approval |",
        "| --- | ---: | ---: | --- | --- | --- |",
        *(
            f"| {d['dataset']} | {d['version']} | {d['tax_year']} | {d['content_sha256']} | "
            f"{d['scan_verdict']} | {d['approval']} |"
            for d in card["data"]
        ),
        "",
        "## Evaluation",
        "",
        *(f"- {name}: {value}" for name, value in card["evaluation"].items()),
        "",
        "## Privacy",
        "",
        *(
            [
                f"- trained with differential privacy (DP-SGD): epsilon "
                f"{card['privacy'].get('epsilon')} at delta {card['privacy'].get('delta')}, per "
                f"{card['privacy'].get('unit') or 'unit'}, {card['privacy'].get('steps')} steps, "
                f"noise multiplier {card['privacy'].get('noise_multiplier')}"
            ]
            if card.get("privacy")
            else ["- trained without differential privacy: no formal bound on what it retains"]
        ),
        *(
            f"- membership inference, {name.replace('_', ' ')}: AUC {result.get('auc')}, "
            f"TPR at 1% FPR {result.get('tpr_at_1pct_fpr')}"
            for name, result in sorted((card.get("membership_inference") or {}).items())
            if name.endswith("_attack")
        ),
        "",
        "## Approvals",
        "",
        *(
            f"- {d['role']} {d['reviewer']}: {d['decision']} at {d['time']}"
            for d in (promotion or {}).get("decisions", [])
        ),
        *([] if promotion else ["- not promoted"]),
        "",
        "## Limitations",
        "",
        card["limitations"],
        "",
    ]
    return "\n".join(lines), card
