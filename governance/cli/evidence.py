"""Evidence in standard formats, from this instance's records: ML-BOMs and model cards."""

from __future__ import annotations

import json
from pathlib import Path

import click

from governance.cli.base import fail_cleanly, family_version, instance_session


@click.group("export")
def export() -> None:
    """Write evidence for auditors: a CycloneDX ML-BOM, a model card."""


@export.command("mlbom")
@click.argument("family")
@click.argument("number", type=int, metavar="VERSION")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write it here.")
@fail_cleanly
def export_mlbom(family: str, number: int, out: str | None) -> None:
    """VERSION of FAMILY as a CycloneDX 1.6 ML-BOM (validated against the schema): base model,
    datasets by content hash, scan receipts, adapter hash, evaluation, approvals."""
    from governance.families.mlbom import mlbom

    with instance_session() as session:
        document = mlbom(session, family_version(session, family, number))
    text = json.dumps(document, indent=2, sort_keys=True)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(f"wrote {out}: CycloneDX {document['specVersion']}, valid")
    else:
        click.echo(text)


@export.command("model-card")
@click.argument("family")
@click.argument("number", type=int, metavar="VERSION")
@click.option("--out-dir", type=click.Path(file_okay=False), required=True)
@fail_cleanly
def export_model_card(family: str, number: int, out_dir: str) -> None:
    """VERSION of FAMILY's model card, as MODEL_CARD.md and model-card.json in OUT_DIR."""
    from governance.families.mlbom import model_card

    with instance_session() as session:
        markdown, card = model_card(session, family_version(session, family, number))
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / "MODEL_CARD.md").write_text(markdown)
    (target / "model-card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    click.echo(f"wrote {target / 'MODEL_CARD.md'} and {target / 'model-card.json'}")


@export.command("evidence")
@click.option("--period", required=True, help="FROM..TO as dates: 2026-01-01..2026-12-31.")
@click.option("--family", default=None, help="Only this model family's versions and approvals.")
@click.option("--out", required=True, type=click.Path(), help="A .tar.gz, or a directory.")
@fail_cleanly
def export_evidence(period: str, family: str | None, out: str) -> None:
    """One signed archive for an auditor or regulator: the period's audit bundle, reports,
    lineage, ML-BOMs, model cards, approvals, scan receipts, erasure reports and OpenLineage
    events, indexed by the AI Act duty each answers. Verify it with
    `python -m audit verify OUT --public-key KEY`."""
    from governance.authz.policy import PolicySet
    from governance.cli.audit import audit_log_session, log_cli_event
    from governance.cli.base import settings
    from governance.flows.evidence import write_evidence_pack

    policy = PolicySet.load(settings()["GOVERNANCE_POLICY_DIR"])
    with audit_log_session() as (audit_log, session):
        log_cli_event(audit_log, "audit.export", {"format": "evidence", "period": period})
        index = write_evidence_pack(
            session,
            Path(out),
            audit_log.signing_key,
            policy,
            period,
            family,
            tree=audit_log.tree,
            origin=audit_log.origin,
            witnesses=audit_log.witnesses,
        )
    click.echo(
        f"wrote {out}: {len(index['items'])} files, audit bundle of "
        f"{index['audit_bundle']['entries']} entries; verify with "
        f"python -m audit verify {out} --public-key KEY"
    )
