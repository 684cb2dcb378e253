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
@click.option("--json", "as_json", is_flag=True, help="The request as the API returns it.")
@url_option
@fail_cleanly
def approvals_show(uid: str, as_json: bool, url: str | None) -> None:
    """Show a request: subject, what reviewers judge, decisions, the policy in force."""
    from governance.client import api_call

    item = api_call("GET", f"/api/v1/approvals/{uid}", url=url)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    for line in request_text(item):
        click.echo(line)


def request_text(item: dict) -> list[str]:
    """A request as a reviewer reads it: what it is about, the evidence in words, decisions."""
    missing = ", ".join(item["missing_roles"]) or "nobody"
    lines = [
        f"request {item['uid']} ({item['kind']} in {item['domain']}): {item['state']}"
        + (f", {item['state_reason']}" if item.get("state_reason") else ""),
        f"  subject   {item['subject']}" + (f" -> {item['family']}" if item.get("family") else ""),
        f"  digest    {item['subject_digest']} (decisions bind to it)",
        f"  asked by  {item['requested_by']} at {item['requested_at']}; expires "
        f"{item['expires_at']}",
        f"  needs     {missing} (of {', '.join(item['required_roles']) or 'nobody'})",
    ]
    evidence = item.get("evidence") or {}
    summary = item.get("summary") or {}
    kind = item["kind"]
    if kind == "dataset-use":
        lines.append(
            f"  data      {summary.get('dataset')} v{summary.get('version')} (tax year "
            f"{summary.get('tax_year')}): {summary.get('records')} records, content "
            f"{str(summary.get('content_hash'))[:16]}"
        )
        if evidence:
            lines.append(
                f"  scan      verdict {evidence.get('verdict')}: "
                f"{evidence.get('records_redacted')} redacted, {evidence.get('records_dropped')} "
                f"dropped, {evidence.get('records_quarantined') or 0} held for a steward; "
                f"canary recall {evidence.get('canary_recall')}"
            )
            counts = {
                k: sum(v.values()) if isinstance(v, dict) else v
                for k, v in (evidence.get("counts") or {}).items()
            }
            if counts:
                lines.append(
                    "  found     " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                )
            for sample in (evidence.get("redacted_samples") or [])[:3]:
                lines.append(f"  sample    {json.dumps(sample)[:150]}")
        plan = summary.get("privacy_plan")
        if plan:
            lines.append(
                f"  privacy   the version may spend epsilon {plan['epsilon']:g} (recipe "
                f"{plan['recipe_epsilon']:g}); left of the domain's budget: "
                f"{(plan.get('remaining') or {}).get('epsilon', 'no budget')}"
            )
    elif kind == "policy-change":
        replay = evidence.get("replay") or {}
        lines += [
            f"  checks    lint {evidence.get('lint', {}).get('errors')} error(s), "
            f"{evidence.get('lint', {}).get('warnings')} warning(s); tests "
            f"{evidence.get('tests', {}).get('passed')} passed, "
            f"{evidence.get('tests', {}).get('failed')} failed",
            f"  diff      {evidence.get('diff', {}).get('gained')} permission(s) gained, "
            f"{evidence.get('diff', {}).get('lost')} lost",
            f"  replay    {replay.get('examined')} recorded decision(s): "
            f"{replay.get('allow_to_deny')} allow->deny, {replay.get('deny_to_allow')} "
            f"deny->allow, {replay.get('unavailable')} unavailable",
        ]
        for group in (replay.get("groups") or [])[:10]:
            lines.append(
                f"            {group['direction']} x{group['count']} {group['principal']} "
                f"{group['action']} {group['object_kind']} in {group['domain']}"
            )
    elif kind == "base-model-use":
        lines += [
            f"  base      {summary.get('base_model')} ({summary.get('architecture')}), license "
            f"{summary.get('license')}, source {summary.get('source')}",
            f"  weights   {summary.get('weights_hash')}; {len(evidence.get('files') or {})} "
            f"file(s) hashed; model card {str(evidence.get('card_sha256'))[:16]}",
        ]
        card = (evidence.get("model_card") or "").strip().splitlines()
        for text in card[:6]:
            lines.append(f"  card      {text[:120]}")
    else:
        lineage = evidence.get("lineage") or {}
        evaluation = evidence.get("evaluation") or {}
        privacy = lineage.get("privacy")
        if privacy:
            lines.append(
                f"  privacy   DP epsilon {privacy.get('epsilon')} at delta {privacy.get('delta')} "
                f"per {privacy.get('unit')}"
            )
        if lineage:
            lines.append(
                f"  version   {lineage.get('family')} v{lineage.get('version')} (tax year "
                f"{lineage.get('tax_year')}), trained by {lineage.get('trained_by')} on "
                f"{len(lineage.get('datasets') or [])} dataset version(s)"
            )
        if evaluation:
            lines.append(
                f"  gate      {evaluation.get('gate')}"
                + (
                    f": {'; '.join(evaluation.get('reasons') or [])}"
                    if evaluation.get("reasons")
                    else ""
                )
            )
    for decision in item.get("decisions") or []:
        lines.append(
            f"  decided   {decision['decision']} by {decision['reviewer']} as {decision['role']} "
            f"at {decision['decided_at']}: {decision['comment'] or '(no comment)'}"
        )
    lines.append(f"  policy    {item.get('policy_in_force', item['policy_hash'])[:16]} in force")
    return lines


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
