"""Principals and their API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from governance.cli.base import cli_actor, fail_cleanly, instance_session, settings

if TYPE_CHECKING:
    pass


@click.group()
def principal() -> None:
    """Manage principals: people and service accounts."""


@principal.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(["user", "service"]), default="user", show_default=True)
@click.option("--display-name", default=None, help="Human-readable name.")
@fail_cleanly
def principal_create(name: str, kind: str, display_name: str | None) -> None:
    """Create a principal NAME; its roles come from policies/policy.csv."""
    from governance.accounts import service

    with instance_session() as session:
        created = service.create_principal(session, name, kind, display_name, actor=cli_actor())
        click.echo(f"created {created.kind} principal {created.name}")


@principal.command("list")
@fail_cleanly
def principal_list() -> None:
    """List principals."""
    from governance.accounts import service

    with instance_session() as session:
        for p in service.list_principals(session):
            state = " (disabled)" if p.disabled else ""
            click.echo(f"{p.name}\t{p.kind}{state}")


@click.group()
def token() -> None:
    """Issue, list and revoke API tokens."""


@token.command("create")
@click.argument("principal_name", metavar="PRINCIPAL")
@click.option(
    "--expires",
    default=None,
    help="Lifetime (30d, 12h, 2w, 1y), an ISO date, or 'never'. Default: the instance's TTL.",
)
@click.option("--description", default=None, help="What the token is for.")
@fail_cleanly
def token_create(principal_name: str, expires: str | None, description: str | None) -> None:
    """Issue a token for PRINCIPAL and print only the token (it is not shown again)."""
    from governance.accounts import service

    config = settings()
    expires_at = service.parse_expiry(expires, config["TOKEN_DEFAULT_TTL_DAYS"])
    with instance_session() as session:
        owner = service.get_principal(session, principal_name)
        _record, text = service.issue_token(
            session, owner, expires_at=expires_at, description=description, actor=cli_actor()
        )
    click.echo(text)


@token.command("list")
@click.argument("principal_name", metavar="PRINCIPAL")
@fail_cleanly
def token_list(principal_name: str) -> None:
    """List PRINCIPAL's tokens: id, expiry, last use, revocation."""
    from governance.accounts import service

    with instance_session() as session:
        owner = service.get_principal(session, principal_name)
        for t in service.list_tokens(session, owner):
            click.echo(
                f"{t.id}\texpires={t.expires_at or 'never'}\t"
                f"last_used={t.last_used_at or '-'}\trevoked={t.revoked_at or '-'}"
            )


@token.command("revoke")
@click.argument("token_id")
@fail_cleanly
def token_revoke(token_id: str) -> None:
    """Revoke the token TOKEN_ID (as shown by `govern token list`)."""
    from governance.accounts import service

    with instance_session() as session:
        record = service.revoke_token(session, token_id, actor=cli_actor())
        click.echo(f"revoked {record.id} at {record.revoked_at.isoformat()}")
