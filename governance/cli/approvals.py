"""Approvals over the API: request, inbox, decide, verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from governance.cli.base import EXIT_FAILED, fail_cleanly, instance_session, settings, url_option

if TYPE_CHECKING:
    pass


@click.group()
def approvals() -> None:
    """Request, review and verify approvals (reviewers act through the API with their token)."""


def show_request(item: dict) -> None:
    missing = ", ".join(item["missing_roles"]) or "-"
    click.echo(
        f"{item['uid']}  {item['state']:<11} {item['domain']}  {item['kind']}  "
        f"{item['subject']} -> {item['family']}  by {item['requested_by']}  needs: {missing}"
    )


@approvals.command("request-data")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option("--family", required=True, help="The model family the data will train.")
@url_option
@fail_cleanly
def approvals_request_data(dataset_id: int, number: int, family: str, url: str | None) -> None:
    """Ask for approval to train FAMILY on VERSION of DATASET_ID (it must have passed its scan)."""
    from governance.client import api_call

    body = {"dataset_id": dataset_id, "version": number, "family": family}
    show_request(api_call("POST", "/api/v1/approvals/dataset-use", body, url=url))


@approvals.command("request-base")
@click.argument("base_model")
@click.option("--domain", required=True, help="The domain that would build on it.")
@url_option
@fail_cleanly
def approvals_request_base(base_model: str, domain: str, url: str | None) -> None:
    """Ask DOMAIN's reviewers to approve building models on BASE_MODEL."""
    from governance.client import api_call

    body = {"base_model": base_model, "domain": domain}
    show_request(api_call("POST", "/api/v1/approvals/base-model-use", body, url=url))


@approvals.command("inbox")
@url_option
@fail_cleanly
def approvals_inbox(url: str | None) -> None:
    """List the requests waiting for a role you hold."""
    from governance.client import api_call

    items = api_call("GET", "/api/v1/approvals/inbox", url=url)["items"]
    for item in items:
        show_request(item)
    if not items:
        click.echo("nothing waits for you", err=True)


@approvals.command("show")
@click.argument("uid")
@url_option
@fail_cleanly
def approvals_show(uid: str, url: str | None) -> None:
    """Show a request: subject, evidence (counts, redacted samples), decisions, policy."""
    from governance.client import api_call

    click.echo(json.dumps(api_call("GET", f"/api/v1/approvals/{uid}", url=url), indent=2))


def decide_command(decision: str):
    @click.argument("uid")
    @click.option("--comment", required=True, help="Why; kept with the signed decision.")
    @click.option("--role", default=None, help="The role to decide in, if you hold several.")
    @url_option
    @fail_cleanly
    def command(uid: str, comment: str, role: str | None, url: str | None) -> None:
        from governance.client import api_call

        body = {"decision": decision, "comment": comment, "role": role}
        row = api_call("POST", f"/api/v1/approvals/{uid}/decisions", body, url=url)
        done = {"approve": "approved", "reject": "rejected"}[decision]
        click.echo(f"{done} as {row['role']}; signature {row['signature'][:16]}...")

    command.__doc__ = f"{decision.capitalize()} request UID with a comment (signed, audited)."
    return command


approvals.command("approve")(decide_command("approve"))
approvals.command("reject")(decide_command("reject"))


@approvals.command("verify")
@click.argument("uid")
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The service's public key (PEM); default: this instance's.",
)
@fail_cleanly
def approvals_verify(uid: str, public_key: str | None) -> None:
    """Re-check the signatures of a request's decisions offline; exit 1 on any mismatch."""
    from audit.log import load_public_key
    from governance import crypto
    from governance.approvals import service

    if public_key:
        key = load_public_key(Path(public_key).read_bytes())
    else:
        key = crypto.load_signing_key(settings()["GOVERNANCE_HOME"]).public_key()
    with instance_session() as session:
        request = service.get_request(session, uid)
        rows = service.decisions_of(session, request)
        problems = service.verify_decisions(session, request, key)
    for row in rows:
        click.echo(f"{row.decision:<8} {row.role:<18} {row.reviewer:<12} {row.digest[:16]}")
    for problem in problems:
        click.echo(f"FAIL {problem}", err=True)
    if problems:
        sys.exit(EXIT_FAILED)
    click.echo(f"{len(rows)} decision(s) verified for {request.subject} ({request.state})")
