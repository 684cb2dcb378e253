"""`govern retention`: each domain's retention periods, and a pruning pass on demand (the
scheduler runs one daily)."""

from __future__ import annotations

import click

from governance.cli.base import cli_actor, fail_cleanly, instance_session, settings


@click.group("retention")
def retention() -> None:
    """Retention of audit entries, scan receipts and reports (policies/domains.yaml)."""


@retention.command("show")
@fail_cleanly
def retention_show() -> None:
    """Each domain's retention periods."""
    from governance.domains.settings import load_domain_settings

    for name, domain in load_domain_settings(settings()["GOVERNANCE_POLICY_DIR"]).items():
        periods = domain.retention.model_dump(exclude_none=True)
        shown = ", ".join(f"{k} {v}" for k, v in periods.items()) or "kept indefinitely"
        click.echo(f"{name}: {shown}")


@retention.command("run")
@fail_cleanly
def retention_run() -> None:
    """Prune what every domain's retention periods allow, now; audited."""
    from governance.flows.retention import enforce

    config = settings()
    with instance_session() as session:
        results = enforce(
            session, config["GOVERNANCE_POLICY_DIR"], config["GOVERNANCE_HOME"], cli_actor()
        )
    for result in results:
        click.echo(f"{result.domain}: {result.kind}: {result.count} pruned")
    if not results:
        click.echo("no domain names a retention period; nothing pruned")
