"""Policy as code: lint, test, diff, who-can, reload."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from governance.cli.base import EXIT_FAILED, EXIT_USAGE, fail_cleanly, instance_session, settings

if TYPE_CHECKING:
    pass


@click.group()
def policy() -> None:
    """Lint, test, diff and reload the policy in policies/ (policy-as-code)."""


def policy_dir_option(func):
    return click.option(
        "--dir",
        "directory",
        default=None,
        type=click.Path(exists=True, file_okay=False),
        help="Policy directory (default: GOVERNANCE_POLICY_DIR, else ./policies of the git "
        "checkout you stand in).",
    )(func)


def _git_output(cwd: Path, *args: str) -> str | None:
    import subprocess

    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def policy_directory(directory: str | None) -> str:
    """The policy directory a review command reads, said out loud on stderr.

    `--dir`, else GOVERNANCE_POLICY_DIR, else `policies/` of the git checkout the current
    directory belongs to. A reviewer in their own clone must never be answered about the
    installed package's files, so with none of these the command refuses (exit 2).
    """
    if directory:
        chosen, source = Path(directory), "--dir"
    elif os.environ.get("GOVERNANCE_POLICY_DIR"):
        chosen, source = Path(os.environ["GOVERNANCE_POLICY_DIR"]), "GOVERNANCE_POLICY_DIR"
    else:
        top = _git_output(Path.cwd(), "rev-parse", "--show-toplevel")
        if not top or not (Path(top) / "policies").is_dir():
            click.echo(
                "error: no policy directory: pass --dir, set GOVERNANCE_POLICY_DIR, or run "
                "inside a git checkout that has policies/",
                err=True,
            )
            sys.exit(EXIT_USAGE)
        chosen, source = Path(top) / "policies", "this checkout"
    chosen = chosen.resolve()
    revision = _git_output(chosen, "rev-parse", "--short", "HEAD")
    if revision is None:
        where = "not in a git repository"
    else:
        dirty = _git_output(chosen, "status", "--porcelain", "--", ".")
        where = f"git {revision}{' with uncommitted changes' if dirty else ''}"
    click.echo(f"policy directory: {chosen} (from {source}; {where})", err=True)
    return str(chosen)


@policy.command("lint")
@policy_dir_option
@click.option(
    "--instance/--no-instance",
    default=False,
    help="Also compare with the principals of this instance's database.",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@fail_cleanly
def policy_lint(directory: str | None, instance: bool, strict: bool) -> None:
    """Check syntax, undefined roles, domains and actions, wildcards and dead rules.

    Exit 1 on any error (or warning with --strict).
    """
    from sqlmodel import select

    from governance.accounts.models import Principal
    from governance.policy_review.lint import lint

    principals = None
    if instance:
        with instance_session() as session:
            principals = {p.name for p in session.exec(select(Principal))}
    problems = lint(policy_directory(directory), principals)
    for problem in problems:
        click.echo(str(problem))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo(f"{errors} error(s), {warnings} warning(s)", err=True)
    if errors or (strict and warnings):
        sys.exit(EXIT_FAILED)


@policy.command("test")
@policy_dir_option
@click.option("-v", "--verbose", is_flag=True, help="Show passing cases too.")
@fail_cleanly
def policy_test(directory: str | None, verbose: bool) -> None:
    """Run the allow/deny cases of policies/tests/*.yaml; exit 1 if any fails."""
    from governance.policy_review.policytest import run_policy_tests

    results = run_policy_tests(policy_directory(directory))
    failed = [r for r in results if not r.passed]
    for result in results if verbose else failed:
        click.echo(str(result))
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed", err=True)
    if failed or not results:
        if not results:
            click.echo("no test cases found under tests/", err=True)
        sys.exit(EXIT_FAILED)


@policy.command("diff")
@click.argument("base")
@click.argument("head", required=False)
@policy_dir_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True
)
@fail_cleanly
def policy_diff(base: str, head: str | None, directory: str | None, fmt: str) -> None:
    """Show who gains or loses which permission between git revisions BASE and HEAD.

    Without HEAD, BASE is compared with the working tree. Changes to approvals.yaml and
    pii.yaml are listed setting by setting. Markdown suits a pull-request comment.
    """
    from governance.policy_review.diff import diff_revisions

    chosen = Path(policy_directory(directory))
    # Both revisions must be commits of the repository that holds the directory being read:
    # a review that silently compared other files would be worse than none.
    for revision in (base, head):
        if revision is None:
            continue
        if (
            _git_output(chosen, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
            is None
        ):
            click.echo(
                f"error: {revision!r} is not a commit of the git repository holding {chosen}",
                err=True,
            )
            sys.exit(EXIT_USAGE)
    result = diff_revisions(chosen, base, head)
    click.echo(result.as_markdown() if fmt == "markdown" else result.as_text())


@policy.command("who-can")
@click.argument("action")
@click.argument("obj", metavar="OBJECT")
@click.option("--domain", required=True, help="The domain to ask about.")
@policy_dir_option
@fail_cleanly
def policy_who_can(action: str, obj: str, domain: str, directory: str | None) -> None:
    """List the principals who may perform ACTION on OBJECT in a domain, and the rule why."""
    from governance.authz.policy import PolicySet
    from governance.policy_review.diff import who_can

    folder = policy_directory(directory)
    loaded = PolicySet.load(folder)
    found = who_can(loaded, action, obj, domain)
    deciders = reviewer_roles(folder, domain) if (action, obj) == ("decide", "approval") else None
    for principal, rule in found:
        note = ""
        if deciders is not None and not deciders & set(loaded.compiled.roles(principal, domain)):
            # The policy lets them call the endpoint; approvals.yaml still wants a role.
            note = "\t(holds no role approvals.yaml requires in this domain: decides nothing)"
        click.echo(f"{principal}\t{', '.join(rule)}{note}")
    if not found:
        click.echo(f"nobody may {action} {obj} in {domain}", err=True)


def reviewer_roles(folder, domain: str) -> set[str]:
    """The roles approvals.yaml requires for any kind of request in the domain."""
    from governance.approvals.rules import load_approval_rules

    rules = load_approval_rules(folder)
    kinds = {**rules.default, **rules.domains.get(domain, {})}
    return {role for rule in kinds.values() for role in rule.required}


@policy.command("reload")
@click.option("--url", default=None, help="The service (default: GOVERNANCE_URL or local).")
@click.option(
    "--break-glass",
    "reason",
    default=None,
    metavar="REASON",
    help="Emergency: put the files in force without an approved policy-change request. Only "
    "a role named in approvals.yaml's break_glass may; audited, and the approval is "
    "requested at once.",
)
@fail_cleanly
def policy_reload(url: str | None, reason: str | None) -> None:
    """Validate the policy here, then ask the running service to put it in force.

    Uses GOVERNANCE_TOKEN (a principal allowed to reload the policy). While approvals.yaml
    has a policy-change rule, the service refuses files whose hash no approved request
    covers (`govern policy request-change` asks for one). Every service process also
    notices changed files on its own within seconds, under the same checks; the old policy
    stays in force when they fail.
    """
    from governance.client import api_call
    from governance.policy_review.validate import validate_policy

    local = validate_policy(settings()["GOVERNANCE_POLICY_DIR"])
    click.echo(f"policy {local.hash[:16]} passes lint and its tests")
    body = {"break_glass": {"reason": reason}} if reason else {}
    answer = api_call("POST", "/api/v1/policy/reload", body, url=url)
    click.echo(f"in force: {answer['policy_hash']}")


@policy.command("request-change")
@policy_dir_option
@click.option(
    "--since",
    default="90d",
    show_default=True,
    help="The window of recorded decisions the review replays.",
)
@click.option("--url", default=None, help="The service (default: GOVERNANCE_URL or local).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True
)
@fail_cleanly
def policy_request_change(directory: str | None, since: str, url: str | None, fmt: str) -> None:
    """Send the policy directory for review and approval (policy-change).

    The service lints and tests the files, diffs them against the policy in force, replays
    the recorded decisions of the window against them, and opens an approval request that
    carries all of it. Prints the replay and the request; reviewers decide it with
    `govern approvals decide`, and `govern policy reload` accepts the files afterwards.
    """
    from governance.client import api_call, wait_for_job
    from governance.policy_review.changes import files_of

    chosen = Path(policy_directory(directory))
    job = api_call(
        "POST", "/api/v1/policy/changes", {"files": files_of(chosen), "since": since}, url=url
    )
    job = wait_for_job(job, url=url)
    result = job["result"]
    if fmt == "markdown":
        click.echo(result["replay_markdown"])
    else:
        replay = result["replay"]
        click.echo(
            f"policy {result['policy_hash'][:16]} against {result['base_policy'][:16]} in force: "
            f"lint {result['lint']['errors']} error(s), {result['lint']['warnings']} warning(s); "
            f"tests {result['tests']['passed']} passed; diff +{result['diff']['gained']} "
            f"-{result['diff']['lost']} permission(s)"
        )
        click.echo(
            f"replay: {replay['examined']} decision(s), {replay['unavailable']} unavailable: "
            f"{replay['allow_to_deny']} allow->deny, {replay['deny_to_allow']} deny->allow"
        )
        for group in replay["groups"][:20]:
            click.echo(
                f"  {group['direction']}  {group['count']:>6}  {group['principal']}  "
                f"{group['action']} {group['object_kind']} in {group['domain']}"
            )
    click.echo(
        f"approval {result['approval']} ({result['approval_state']}): needs "
        f"{', '.join(result['required_roles']) or 'nobody'}"
    )


@policy.command("replay")
@click.option(
    "--against",
    "against",
    required=True,
    help="The proposed policy: a directory, or a git revision of the repository that holds "
    "the policy directory (--dir, else this checkout's policies/).",
)
@click.option(
    "--since",
    default="90d",
    show_default=True,
    help="The window of recorded decisions: 90d, 12w, 24h, an ISO date, or `all`.",
)
@click.option("--domain", default=None, help="Only the decisions of one domain.")
@policy_dir_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@fail_cleanly
def policy_replay(
    against: str, since: str, domain: str | None, directory: str | None, fmt: str
) -> None:
    """Replay this instance's recorded decisions against a proposed policy.

    Every authorization decision of the window is asked again of the policy in force
    (GOVERNANCE_POLICY_DIR) and of the proposed one; the decisions that would change are
    listed by principal, domain, action and object kind, with examples and the rule that
    decides each side. Decisions pruned by retention are counted as unavailable.

    Exit 0 when nothing would change, 1 when some decision would change (either way).
    """
    from contextlib import ExitStack

    from governance.authz.policy import PolicySet
    from governance.policy_review.diff import checkout
    from governance.policy_review.replay import parse_since, replay_log, report_json

    try:
        parse_since(since)
    except ValueError as exc:
        click.echo(f"error: --since: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    base = PolicySet.load(settings()["GOVERNANCE_POLICY_DIR"])
    with ExitStack() as stack:
        if Path(against).is_dir():
            head_dir = Path(against)
        else:
            repository = Path(policy_directory(directory))
            if (
                _git_output(repository, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}")
                is None
            ):
                click.echo(
                    f"error: {against!r} is neither a directory nor a commit of the git "
                    f"repository holding {repository}",
                    err=True,
                )
                sys.exit(EXIT_USAGE)
            head_dir = stack.enter_context(checkout(repository, against))
        head = PolicySet.load(head_dir)
        with instance_session() as session:
            report = replay_log(session.connection(), base, head, since=since, domain=domain)
    if fmt == "json":
        click.echo(report_json(report))
    elif fmt == "markdown":
        click.echo(report.as_markdown())
    else:
        click.echo(report.as_text())
    if report.changed:
        sys.exit(EXIT_FAILED)
