"""Data domains."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from governance.cli.base import cli_actor, fail_cleanly, instance_session, settings, validated

if TYPE_CHECKING:
    pass


@click.group()
def domain() -> None:
    """Create and list data domains."""


@domain.command("create")
@click.argument("name")
@click.option("--jurisdiction", required=True, help="ISO 3166 code, e.g. US or US-CA.")
@click.option("--retention-days", required=True, type=int, help="How long data may be kept.")
@click.option("--description", default="", help="What the domain holds.")
@fail_cleanly
def domain_create(name: str, jurisdiction: str, retention_days: int, description: str) -> None:
    """Create the data domain NAME."""
    from governance.domains import service
    from governance.domains.models import DomainCreate
    from governance.policy_review.lint import declared_domains

    data = validated(
        DomainCreate,
        name=name,
        jurisdiction=jurisdiction,
        retention_days=retention_days,
        description=description,
    )
    with instance_session() as session:
        declared, _problems = declared_domains(Path(settings()["GOVERNANCE_POLICY_DIR"]))
        created = service.create_domain(session, data, actor=cli_actor(), declared=declared)
        click.echo(f"created domain {created.name} ({created.jurisdiction})")


@domain.command("list")
@fail_cleanly
def domain_list() -> None:
    """List data domains."""
    from governance.domains import service

    with instance_session() as session:
        for d in service.list_domains(session):
            click.echo(f"{d.name}\t{d.jurisdiction}\tretention={d.retention_days}d")
