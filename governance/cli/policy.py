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
    from governance.authz.lint import lint

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
    from governance.authz.policytest import run_policy_tests

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
    from governance.authz.diff import diff_revisions

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
    from governance.authz.diff import who_can
    from governance.authz.policy import PolicySet

    loaded = PolicySet.load(policy_directory(directory))
    found = who_can(loaded, action, obj, domain)
    for principal, rule in found:
        click.echo(f"{principal}\t{', '.join(rule)}")
    if not found:
        click.echo(f"nobody may {action} {obj} in {domain}", err=True)


@policy.command("reload")
@click.option("--url", default=None, help="The service (default: GOVERNANCE_URL or local).")
@fail_cleanly
def policy_reload(url: str | None) -> None:
    """Validate the policy here, then ask the running service to put it in force.

    Uses GOVERNANCE_TOKEN (a principal allowed to reload the policy). Every service process
    also notices changed files on its own within seconds; a version that fails lint or its
    tests is refused there too, and the old one stays in force.
    """
    from governance.authz.service import validate_policy
    from governance.client import api_call

    local = validate_policy(settings()["GOVERNANCE_POLICY_DIR"])
    click.echo(f"policy {local.hash[:16]} passes lint and its tests")
    answer = api_call("POST", "/api/v1/policy/reload", {}, url=url)
    click.echo(f"in force: {answer['policy_hash']}")
