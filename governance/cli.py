"""The `govern` command line.

Exit codes scripts can rely on: 0 success; 1 the operation was refused or failed (the message
says why); 2 the command line itself was wrong; 3 the instance is not initialized.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from audit.bundle import VerificationError
from governance.errors import GovernanceError, NotInitialized

if TYPE_CHECKING:
    from sqlmodel import Session

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_INITIALIZED = 3


def local_operator() -> str:
    """Name the person at this terminal, as recorded on what the CLI creates."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"local:{user}"[:63]


def cli_actor():
    """The Actor of a command run at this terminal, under the policy on disk."""
    from governance.audit.service import Actor
    from governance.authz.policy import policy_hash

    return Actor(local_operator(), None, policy_hash(settings()["GOVERNANCE_POLICY_DIR"]))


def fail_cleanly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn governance errors into a message on stderr and a documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NotInitialized as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(EXIT_NOT_INITIALIZED)
        except GovernanceError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.details:
                click.echo(f"details: {json.dumps(exc.details, default=str)}", err=True)
            sys.exit(EXIT_FAILED)
        except VerificationError as exc:
            # The audit log failed verification: say where, and do nothing further with it.
            click.echo(f"error: the audit log does not verify: {exc}", err=True)
            sys.exit(EXIT_FAILED)

    return wrapper


def settings() -> dict[str, Any]:
    from governance.config import load_config

    return load_config()


def open_database(require_schema: bool = True):
    """Return the Database of this instance, checking that `govern init` has run."""
    from governance.db import Database
    from governance.instance import head_revision, schema_revision

    config = settings()
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    if require_schema:
        try:
            current = schema_revision(db)
        except Exception as exc:
            db.dispose()
            raise NotInitialized(f"cannot open the database: {exc}; run `govern init`") from exc
        if current != head_revision():
            db.dispose()
            raise NotInitialized(
                f"database schema is at {current or 'nothing'}, code needs {head_revision()}; "
                "run `govern init`"
            )
    return db


@contextmanager
def instance_session() -> Iterator[Session]:
    """Open a session on this instance's database, closing the engine afterwards."""
    db = open_database()
    try:
        with db.session_scope() as session:
            yield session
    finally:
        db.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="governance")
def main() -> None:
    """Govern fine-tuned models: data domains, policies, approvals, training and audit."""
    # Whatever a command writes (database journals, blobs, exports, reports) is owner-only.
    os.umask(0o077)


@main.command()
@fail_cleanly
def init() -> None:
    """Create the instance: directory, keys, database schema and the admin principal."""
    from governance.instance import init_instance

    report = init_instance(settings())
    if report.created:
        click.echo(f"initialized {report.home}: created {', '.join(report.created)}")
    else:
        click.echo(f"{report.home} is already initialized; nothing changed")
    click.echo(f"database: {report.database_url}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@fail_cleanly
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn (use `gunicorn 'governance:create_app()'` for more options)."""
    from gunicorn.app.base import BaseApplication

    from governance import create_app
    from governance.audit.views import get_audit_log
    from governance.datasets.service import sweep

    _keyring, store = instance_storage()
    with instance_session() as session:
        settled = sweep(session, store)
    if any(settled.values()):
        click.echo(f"settled blobs left by interrupted uploads: {settled}", err=True)
    app = create_app()

    def worker_exit(_arbiter, worker) -> None:
        """A worker that served and was told to stop: finish its audit appends, then leave
        without the interpreter's slow teardown of a large heap (most of a second)."""
        if worker.booted and not worker.alive:
            get_audit_log(app).close()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            # gunicorn's control socket (a thread in the master) takes a second to stop, and
            # nothing here uses it: without it, SIGTERM stops an idle server at once.
            self.cfg.set("control_socket_disable", True)
            self.cfg.set("worker_exit", worker_exit)
            self.cfg.set("on_exit", lambda _arbiter: os._exit(0))

        def load(self):
            return app

    Server().run()


# --- principals -----------------------------------------------------------------------------


@main.group()
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


# --- tokens ---------------------------------------------------------------------------------


@main.group()
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


# --- domains --------------------------------------------------------------------------------


@main.group()
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
    from governance.authz.lint import declared_domains
    from governance.domains import service
    from governance.domains.models import DomainCreate

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


# --- datasets and keys ----------------------------------------------------------------------


def instance_storage():
    """Return this instance's key ring and blob store."""
    from governance.domains.keys import KeyRing
    from governance.storage import LocalBlobStore

    config = settings()
    home = config["GOVERNANCE_HOME"]
    root = config.get("BLOB_ROOT") or str(Path(home) / "blobs")
    return KeyRing(home, config.get("GOVERNANCE_MASTER_KEY")), LocalBlobStore(root)


@main.group()
def dataset() -> None:
    """Create datasets, upload, scan and delete their versions.

    With GOVERNANCE_URL set, every command goes through that service's API with your token
    (GOVERNANCE_TOKEN) and is authorized and audited as you; otherwise it acts on this
    instance directly, as the local operator."""


def remote() -> str | None:
    """The service to act through, when GOVERNANCE_URL names one: then the command runs over
    the API with the caller's token (GOVERNANCE_TOKEN) and is recorded as that principal."""
    return os.environ.get("GOVERNANCE_URL") or None


def remote_call(method: str, path: str, body: Any = None) -> Any:
    from governance.client import api_call

    return api_call(method, path, body)


@dataset.command("create")
@click.argument("domain_name", metavar="DOMAIN")
@click.argument("name")
@click.option("--description", default="")
@fail_cleanly
def dataset_create(domain_name: str, name: str, description: str) -> None:
    """Create the dataset NAME in DOMAIN; prints its id."""
    from governance.datasets import service
    from governance.datasets.models import DatasetCreate
    from governance.domains.service import get_domain

    data = validated(DatasetCreate, name=name, description=description)
    if remote():
        created = remote_call("POST", f"/api/v1/domains/{domain_name}/datasets", data.model_dump())
        click.echo(created["id"])
        return
    with instance_session() as session:
        created = service.create_dataset(
            session, get_domain(session, domain_name), data, actor=cli_actor()
        )
        click.echo(created.id)


@dataset.command("list")
@click.argument("domain_name", metavar="DOMAIN")
@fail_cleanly
def dataset_list(domain_name: str) -> None:
    """List DOMAIN's datasets and their versions."""
    from governance.datasets import service
    from governance.domains.service import get_domain

    if remote():
        for ds in remote_call("GET", f"/api/v1/domains/{domain_name}/datasets")["items"]:
            click.echo(f"{ds['id']}\t{ds['name']}")
            for v in remote_call("GET", f"/api/v1/datasets/{ds['id']}/versions")["items"]:
                click.echo(
                    f"  v{v['version']}\ttax_year={v['tax_year']}\t{v['status']}\t"
                    f"records={v['record_count']}\t{(v['content_hash'] or '')[:16]}"
                )
        return
    with instance_session() as session:
        for ds in service.list_datasets(session, get_domain(session, domain_name)):
            click.echo(f"{ds.id}\t{ds.name}")
            for v in service.list_versions(session, ds):
                click.echo(
                    f"  v{v.number}\ttax_year={v.tax_year}\t{v.status}\t"
                    f"records={v.record_count}\t{v.content_hash[:16]}"
                )


@dataset.command("upload")
@click.argument("dataset_id", type=int)
@click.argument("file", type=click.File("rb"))
@click.option("--tax-year", required=True, type=click.IntRange(1900, 2200))
@fail_cleanly
def dataset_upload(dataset_id: int, file, tax_year: int) -> None:
    """Upload FILE (JSONL) as a new version of DATASET_ID, validated and encrypted."""
    from governance.datasets import service

    if remote():
        from governance.client import api_request

        size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else 0
        with progress_reader(file, size, "uploading") as stream:
            raw = api_request(
                "POST",
                f"/api/v1/datasets/{dataset_id}/versions?tax_year={tax_year}",
                stream.read(),
                "application/x-ndjson",
            )
        version = json.loads(raw)
        click.echo(
            f"dataset {dataset_id} v{version['version']}: {version['record_count']} records, "
            f"tax year {version['tax_year']}, content hash {version['content_hash']}"
        )
        return
    keyring, store = instance_storage()
    config = settings()
    limits = service.UploadLimits(
        max_record_bytes=int(config["RECORD_MAX_BYTES"]),
        max_upload_bytes=int(config["UPLOAD_MAX_BYTES"]),
    )
    size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else 0
    with instance_session() as session:
        ds, domain = service.get_dataset(session, dataset_id)
        with progress_reader(file, size, "uploading") as stream:
            version = service.upload_version(
                session,
                keyring,
                store,
                ds,
                domain,
                tax_year,
                stream,
                actor=cli_actor(),
                limits=limits,
            )
        click.echo(
            f"{domain.name}/{ds.name} v{version.number}: {version.record_count} records, "
            f"tax year {version.tax_year}, content hash {version.content_hash}"
        )


@dataset.command("delete")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option("--reason", required=True, help="Why (kept on the tombstone).")
@fail_cleanly
def dataset_delete(dataset_id: int, number: int, reason: str) -> None:
    """Delete VERSION of DATASET_ID: destroy its key and blob, keep a tombstone."""
    from governance.datasets import service

    if remote():
        path = f"/api/v1/datasets/{dataset_id}/versions/{number}"
        remote_call("DELETE", path, {"reason": reason})
        click.echo(f"deleted v{number} of dataset {dataset_id}; tombstone kept")
        return
    keyring, store = instance_storage()
    with instance_session() as session:
        ds, _domain = service.get_dataset(session, dataset_id)
        version = service.get_version(session, ds, number)
        service.delete_version(session, keyring, store, version, reason, actor=cli_actor())
        click.echo(f"deleted v{number} of dataset {dataset_id}; tombstone kept")


@dataset.command("scan")
@click.argument("dataset_id", type=int)
@click.argument("number", type=int, metavar="VERSION")
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=None,
    help="Scanner processes (default: PII_SCAN_PROCESSES).",
)
@fail_cleanly
def dataset_scan(dataset_id: int, number: int, processes: int | None) -> None:
    """Scan VERSION of DATASET_ID under its domain's PII rules; print the receipt.

    Large versions scan faster over several processes; each loads the spaCy model once.
    """
    from governance.datasets import service
    from governance.pii import service as pii_service
    from governance.pii.rules import load_rules
    from governance.pii.scanner import open_scanner

    if remote():
        receipt = remote_call("POST", f"/api/v1/datasets/{dataset_id}/versions/{number}/scans")
        click.echo(json.dumps(receipt))
        return
    keyring, store = instance_storage()
    config = settings()
    with instance_session() as session:
        ds, domain = service.get_dataset(session, dataset_id)
        version = service.get_version(session, ds, number)
        rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain.name)
        count = processes or int(config["PII_SCAN_PROCESSES"])
        with (
            open_scanner(config["PII_MODEL"], count) as scanner,
            progress_bar(version.record_count, "scanning") as advance,
        ):
            receipt = pii_service.scan_version(
                session,
                keyring,
                store,
                scanner,
                version,
                rules,
                actor=cli_actor(),
                progress=advance,
            )
        read = pii_service.receipt_read(receipt, version, rules.hash)
    found = ", ".join(f"{t} {sum(f.values())}" for t, f in sorted(read["counts"].items()))
    click.echo(
        f"{ds.name} v{number}: {read['verdict']}; {read['records_total']} records, "
        f"{read['records_redacted']} redacted, {read['records_dropped']} dropped, "
        f"{read['records_quarantined']} held for review; canary recall "
        f"{read['canary_recall']}; found {found or 'nothing'}",
        err=True,
    )
    click.echo(json.dumps(read))


@main.group()
def keys() -> None:
    """Manage the instance's keys."""


@keys.command("rotate")
@fail_cleanly
def keys_rotate() -> None:
    """Rotate the master key: re-wrap every domain key, re-encrypt no data."""
    from governance.audit.service import record
    from governance.domains.keys import rotate_master_key
    from governance.errors import InvalidInput

    config = settings()
    if config.get("GOVERNANCE_MASTER_KEY"):
        raise InvalidInput(
            "the master key comes from GOVERNANCE_MASTER_KEY: rotate it in your secret store"
        )
    with instance_session() as session:
        count = rotate_master_key(session, config["GOVERNANCE_HOME"])
        record(
            session,
            cli_actor(),
            "keys.rotate",
            "master-key",
            "system",
            details={"domain_keys_rewrapped": count},
        )
        session.commit()
    click.echo(f"master key rotated; {count} domain keys re-wrapped")


# --- policy --------------------------------------------------------------------------------


@main.group()
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


# --- approvals -----------------------------------------------------------------------------


@main.group()
def approvals() -> None:
    """Request, review and verify approvals (reviewers act through the API with their token)."""


url_option = click.option(
    "--url", default=None, help="The service (default: GOVERNANCE_URL, else local)."
)


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


# --- the ML engineer's commands, over the API ------------------------------------------------


def show_family(item: dict) -> None:
    production = item["production_version"] or "-"
    click.echo(
        f"{item['name']}  {item['domain']}  base {item['base_model']}  production v{production}"
        f"  refresh '{item['refresh_schedule']}'"
    )


def show_version(item: dict) -> None:
    metrics = item.get("metrics") or {}
    summary = ", ".join(
        f"{k} {v:.3g}" for k, v in sorted(metrics.items()) if isinstance(v, int | float)
    )
    click.echo(
        f"{item['family']} v{item['version']}  {item['status']:<10} tax year {item['tax_year']}"
        f"  by {item['trained_by']}{'  ' + summary if summary else ''}"
    )


@main.group()
def family() -> None:
    """Model families, over the API with your token (GOVERNANCE_URL, GOVERNANCE_TOKEN)."""


@family.command("create")
@click.argument("domain")
@click.argument("name")
@click.option("--base-model", required=True, help="A registered base model.")
@click.option("--schedule", default=None, help="Refresh schedule (cron), default yearly.")
@url_option
@fail_cleanly
def family_create(domain: str, name: str, base_model: str, schedule: str | None, url) -> None:
    """Create the model family NAME in DOMAIN."""
    from governance.client import api_call

    body: dict[str, Any] = {"name": name, "base_model": base_model}
    if schedule:
        body["refresh_schedule"] = schedule
    show_family(api_call("POST", f"/api/v1/domains/{domain}/models", body, url=url))


@family.command("list")
@click.option("--domain", default=None, help="Only this domain's families.")
@url_option
@fail_cleanly
def family_list(domain: str | None, url) -> None:
    """The model families you may read."""
    from governance.client import api_call

    path = f"/api/v1/domains/{domain}/models" if domain else "/api/v1/models"
    for item in api_call("GET", path, url=url)["items"]:
        show_family(item)


@family.command("show")
@click.argument("name")
@url_option
@fail_cleanly
def family_show(name: str, url) -> None:
    """A family, its recipe and its versions."""
    from governance.client import api_call

    click.echo(json.dumps(api_call("GET", f"/api/v1/models/{name}", url=url), indent=2))
    for item in api_call("GET", f"/api/v1/models/{name}/versions", url=url)["items"]:
        show_version(item)


@main.group()
def version() -> None:
    """Model versions: train, list, show, promote, roll back (over the API, your token)."""


@version.command("train")
@click.argument("family_name", metavar="FAMILY")
@click.option("--tax-year", type=int, required=True)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    metavar="ID:VERSION",
    help="An approved, scanned dataset version (repeatable).",
)
@url_option
@fail_cleanly
def version_train(family_name: str, tax_year: int, datasets: tuple[str, ...], url) -> None:
    """Start a new version of FAMILY from its base model on approved data."""
    from governance.client import api_call
    from governance.errors import InvalidInput

    refs = []
    for ref in datasets:
        dataset_id, _, number = ref.partition(":")
        if not (dataset_id.isdigit() and number.isdigit()):
            raise InvalidInput(f"--dataset {ref!r}: write DATASET_ID:VERSION, as 3:1")
        refs.append({"dataset_id": int(dataset_id), "version": int(number)})
    body = {"tax_year": tax_year, "datasets": refs}
    show_version(api_call("POST", f"/api/v1/models/{family_name}/versions", body, url=url))


@version.command("list")
@click.argument("family_name", metavar="FAMILY")
@url_option
@fail_cleanly
def version_list(family_name: str, url) -> None:
    """FAMILY's versions and their status."""
    from governance.client import api_call

    for item in api_call("GET", f"/api/v1/models/{family_name}/versions", url=url)["items"]:
        show_version(item)


@version.command("show")
@click.argument("family_name", metavar="FAMILY")
@click.argument("number", type=int, metavar="VERSION")
@url_option
@fail_cleanly
def version_show(family_name: str, number: int, url) -> None:
    """One version: status, metrics, evaluation, the data it was trained on."""
    from governance.client import api_call

    path = f"/api/v1/models/{family_name}/versions/{number}"
    click.echo(json.dumps(api_call("GET", path, url=url), indent=2))


@version.command("promote")
@click.argument("family_name", metavar="FAMILY")
@click.argument("number", type=int, metavar="VERSION")
@click.option("--request", "request_only", is_flag=True, help="Only ask for the approvals.")
@url_option
@fail_cleanly
def version_promote(family_name: str, number: int, request_only: bool, url) -> None:
    """Put VERSION in production once approved (--request asks for the approvals)."""
    from governance.client import api_call

    base = f"/api/v1/models/{family_name}/versions/{number}"
    if request_only:
        show_request(api_call("POST", f"{base}/promotion", {}, url=url))
    else:
        show_version(api_call("POST", f"{base}/promote", {}, url=url))


@version.command("rollback")
@click.argument("family_name", metavar="FAMILY")
@url_option
@fail_cleanly
def version_rollback(family_name: str, url) -> None:
    """Put the previous untainted version of FAMILY back in production."""
    from governance.client import api_call

    show_version(api_call("POST", f"/api/v1/models/{family_name}/rollback", {}, url=url))


@main.command("query")
@click.argument("family_name", metavar="FAMILY")
@click.argument("prompt")
@click.option("--max-new-tokens", default=32, show_default=True, type=click.IntRange(1, 512))
@url_option
@fail_cleanly
def query(family_name: str, prompt: str, max_new_tokens: int, url) -> None:
    """Ask FAMILY's serving version (audited; the prompt only by its keyed hash)."""
    from governance.client import api_call

    body = {"prompt": prompt, "max_new_tokens": max_new_tokens}
    answer = api_call("POST", f"/api/v1/models/{family_name}/generate", body, url=url)
    click.echo(answer.get("text", ""))


# --- base models, training, lineage ---------------------------------------------------------


@main.group("base-model")
def base_model() -> None:
    """Register local base models (Hugging Face format); build a tiny one for demos."""


@base_model.command("create-tiny")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--register", "name", default=None, help="Also register it under this name.")
@fail_cleanly
def base_model_create_tiny(path: str, seed: int, name: str | None) -> None:
    """Build a tiny Llama-architecture model and tokenizer at PATH, deterministically."""
    from trainers.tiny import create_tiny

    digest = create_tiny(path, seed)
    click.echo(f"{path}: weights {digest}")
    if name:
        from governance.models.service import register_base_model

        with instance_session() as session:
            register_base_model(session, name, path, actor=cli_actor())
        click.echo(f"registered as {name}")


@base_model.command("register")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@fail_cleanly
def base_model_register(name: str, path: str) -> None:
    """Register the model directory PATH as NAME, with the hash of its weights."""
    from governance.models.service import register_base_model

    with instance_session() as session:
        base = register_base_model(session, name, path, actor=cli_actor())
        click.echo(f"{base.name}: {base.architecture}, weights {base.weights_hash}")


@main.command()
@url_option
@click.option("--once", is_flag=True, help="Stop when the queue is empty.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between empty claims.")
@fail_cleanly
def worker(url: str | None, once: bool, poll: float) -> None:
    """Claim training jobs over the API and run them here (GOVERNANCE_TOKEN: a worker's).

    The worker needs no database, keys or raw data: only a token allowed to claim jobs.
    """
    from governance.training.worker import serve

    count = serve(url, once=once, poll_seconds=poll, echo=click.echo)
    click.echo(f"{count} job(s) done")


@main.command()
@click.argument("family")
@click.argument("number", type=int, metavar="VERSION")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@fail_cleanly
def lineage(family: str, number: int, fmt: str) -> None:
    """Print how VERSION of FAMILY was made, as a tree or as signed JSON."""
    from governance import crypto
    from governance.errors import NotFound
    from governance.models import service
    from governance.models.lineage import render_tree

    key = crypto.load_signing_key(settings()["GOVERNANCE_HOME"])
    with instance_session() as session:
        found = service.find_family(session, family)
        if found is None:
            raise NotFound(f"no model family {family!r}")
        version = service.get_version(session, found[0], number)
        document = service.signed_lineage(session, version, key)
    if fmt == "json":
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo(render_tree(document))


@main.command("erasure-report")
@click.argument("dataset_version", metavar="DATASET_VERSION_UID")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write it here.")
@click.option(
    "--verify",
    "verify_file",
    is_flag=True,
    help="Treat the argument as a report file and check it.",
)
@fail_cleanly
def erasure_report(dataset_version: str, out: str | None, verify_file: bool) -> None:
    """Export, signed, which model versions a deleted dataset version tainted and what was done.

    With --verify, check a report file's digest and signature instead (exit 1 if bad).
    """
    from governance import crypto
    from governance.models.erasure import erasure_report as build
    from governance.models.erasure import verify_erasure_report

    if verify_file:
        ok = verify_erasure_report(json.loads(Path(dataset_version).read_text()))
        click.echo("OK: signature and digest verified" if ok else "FAILED: bad digest or signature")
        if not ok:
            sys.exit(EXIT_FAILED)
        return
    key = crypto.load_signing_key(settings()["GOVERNANCE_HOME"])
    with instance_session() as session:
        report = build(session, dataset_version, key)
    text = json.dumps(report, indent=2, sort_keys=True)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(
            f"{out}: {len(report['affected_model_versions'])} model version(s) affected, "
            f"{len(report['actions'])} action(s); digest {report['digest'][:16]}"
        )
    else:
        click.echo(text)


# --- the yearly refresh ----------------------------------------------------------------------


@main.command()
@click.option(
    "--lease-seconds", default=15.0, show_default=True, help="Leader lease; standby takeover."
)
@fail_cleanly
def scheduler(lease_seconds: float) -> None:
    """Run the refresh scheduler (APScheduler, job store in the service's database).

    Run one or more per database; only the leader fires jobs. Stop with SIGTERM or Ctrl-C.
    """
    import signal
    import threading

    from governance.scheduler.process import run_scheduler

    config = settings()
    open_database()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_scheduler(config, stop, lease_seconds=lease_seconds, echo=click.echo)


@main.command()
@click.argument("family", metavar="FAMILY|status")
@click.option("--tax-year", type=click.IntRange(1900, 2200), default=None)
@fail_cleanly
def refresh(family: str, tax_year: int | None) -> None:
    """Run FAMILY's refresh pipeline for a tax year now, or show every family's status.

    `govern refresh tax-assistant --tax-year 2026` starts (or resumes) the refresh and
    advances it as far as it can go; `govern refresh status` lists each family's last and
    next refresh and the step it is on.
    """
    from sqlmodel import select

    from governance.authz.policy import policy_hash
    from governance.errors import InvalidInput, NotFound
    from governance.models.models import ModelFamily
    from governance.models.service import find_family
    from governance.scheduler.models import RefreshRun
    from governance.scheduler.pipeline import advance, refresh_actor, start_run
    from governance.scheduler.process import next_fire_times

    config = settings()
    if family == "status" and tax_year is None:
        upcoming = next_fire_times(config["GOVERNANCE_DATABASE_URL"])
        with instance_session() as session:
            for fam in session.exec(select(ModelFamily).order_by(ModelFamily.name)):
                last = session.exec(
                    select(RefreshRun)
                    .where(RefreshRun.family_id == fam.id)
                    .order_by(RefreshRun.tax_year.desc(), RefreshRun.attempt.desc())
                ).first()
                state = (
                    f"tax year {last.tax_year} attempt {last.attempt}: {last.step}"
                    + (f" (waiting for {last.waiting_for})" if last.waiting_for else "")
                    if last
                    else "never refreshed"
                )
                nxt = upcoming.get(fam.name)
                click.echo(
                    f"{fam.name}\t{state}\tnext: "
                    f"{nxt.isoformat() if nxt else 'not scheduled (no scheduler has run)'}"
                    f"\tschedule: {fam.refresh_schedule}"
                )
        return
    if tax_year is None:
        raise InvalidInput("--tax-year is required", details={"field": "tax_year"})
    actor = refresh_actor(policy_hash(config["GOVERNANCE_POLICY_DIR"]))
    with instance_session() as session:
        found = find_family(session, family)
        if found is None:
            raise NotFound(f"no model family {family!r}")
        run, created = start_run(session, found[0], tax_year, "manual", actor)
        run = advance(session, run, config["GOVERNANCE_POLICY_DIR"], actor)
        click.echo(
            f"{family} tax year {tax_year} attempt {run.attempt} "
            f"({'started' if created else 'resumed'}): {run.step}"
            + (f", waiting for {run.waiting_for}" if run.waiting_for else "")
        )


# --- pii -----------------------------------------------------------------------------------


@main.group()
def pii() -> None:
    """Scan data for personal information under the rules of policies/pii.yaml."""


@contextmanager
def local_records(file, verb: str) -> Iterator[Iterator[dict[str, Any]]]:
    """The records of a local JSONL file, validated line by line, read with a progress bar."""
    import os

    from governance.datasets.records import iter_lines, parse_record

    size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else 0
    with progress_reader(file, size, verb) as stream:
        yield (
            parse_record(raw, number) for number, raw in iter_lines(stream, 1 << 24) if raw.strip()
        )


@pii.command("scan")
@click.argument("file", type=click.File("rb"))
@click.option("--domain", default=None, help="Apply this domain's rules (default rules otherwise).")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "summary"]), default="jsonl", show_default=True
)
@click.option("--model", default=None, help="spaCy model package (default: the configured one).")
@fail_cleanly
def pii_scan(file, domain: str | None, fmt: str, model: str | None) -> None:
    """Scan a local JSONL FILE without storing it; print each finding the rules act on.

    One JSON object a line: record (0-based line), field, start, end (characters of that
    field), entity_type, score. Values are never printed.
    """
    import collections

    from governance.pii.rules import load_rules
    from governance.pii.scanner import Scanner

    config = settings()
    rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain)
    scanner = Scanner(model or config["PII_MODEL"])
    counts: collections.Counter[str] = collections.Counter()
    with local_records(file, "scanning") as records:
        for _index, findings in scanner.scan_records(records, rules):
            for finding in findings:
                counts[finding.entity_type] += 1
                if fmt == "jsonl":
                    click.echo(json.dumps(finding.as_dict()))
    if fmt == "summary":
        click.echo(json.dumps({"rules": rules.hash, "counts": dict(counts), **scanner.versions}))


@pii.command("redact")
@click.argument("file", type=click.File("rb"))
@click.option("--domain", default=None, help="Apply this domain's rules (default rules otherwise).")
@click.option("--model", default=None, help="spaCy model package (default: the configured one).")
@fail_cleanly
def pii_redact(file, domain: str | None, model: str | None) -> None:
    """Print the records of a local JSONL FILE exactly as a training worker would get them.

    The same code path as the sanitized view that bundles are built from: prompt and
    completion scanned together, findings replaced by typed placeholders, metadata stripped,
    records that a `drop` rule or the residual pass holds back left out (each named on stderr
    with the reason, never the value). Nothing is stored.
    """
    import collections

    from audit.log import canonical
    from governance.pii.rules import load_rules
    from governance.pii.sanitize import sanitize
    from governance.pii.scanner import Scanner

    config = settings()
    rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain)
    scanner = Scanner(model or config["PII_MODEL"])
    outcome: collections.Counter[str] = collections.Counter()
    with local_records(file, "redacting") as stream:
        records = list(stream)
        for index, findings in scanner.scan_records(records, rules):
            result = sanitize(records[index], findings, rules, scanner.names)
            if result.dropped:
                outcome["dropped"] += 1
                click.echo(
                    f"record {index}: left out ({'/'.join(sorted(result.actions))})", err=True
                )
            elif result.residuals:
                outcome["quarantined"] += 1
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.residuals.items()))
                click.echo(f"record {index}: held for a steward (residual {kinds})", err=True)
            else:
                outcome["redacted" if findings else "unchanged"] += 1
                click.echo(canonical(result.clean).decode())
    click.echo(json.dumps({"rules": rules.hash, **outcome}), err=True)


# --- audit ---------------------------------------------------------------------------------


@main.group("audit")
def audit_group() -> None:
    """Verify, checkpoint, export and report on the audit log."""


@contextmanager
def audit_log_session() -> Iterator[tuple[Any, Session]]:
    """Yield this instance's AuditLog and a session on its database."""
    from governance.audit.service import AuditLog
    from governance.audit.witnessing import configured_witnesses

    db = open_database()
    config = settings()
    audit_log = AuditLog(
        db,
        config["GOVERNANCE_HOME"],
        checkpoint_seconds=0,
        origin=config.get("AUDIT_ORIGIN") or None,
        witnesses=configured_witnesses(config.get("AUDIT_WITNESSES")),
    )
    try:
        with db.session_scope() as session:
            yield audit_log, session
    finally:
        audit_log.close()
        db.dispose()


def log_cli_event(audit_log, action: str, details: dict[str, Any]) -> None:
    from governance.audit.service import AuditEvent

    actor = cli_actor()
    audit_log.append(
        AuditEvent(
            principal=actor.principal,
            action=action,
            object="audit",
            domain=None,
            decision="ok",
            policy_hash=actor.policy_hash,
            details=details,
        )
    )


@audit_group.command("verify")
@fail_cleanly
def audit_verify() -> None:
    """Recompute the tree from the database, check every entry and checkpoint, and compare
    the log with what every configured witness last cosigned (AUDIT_WITNESSES)."""
    from governance.audit.export import verify_against_witnesses

    with audit_log_session() as (audit_log, session):
        try:
            result, witnessed = verify_against_witnesses(
                session,
                audit_log.signing_key,
                audit_log.tree,
                origin=audit_log.origin,
                witnesses=audit_log.witnesses,
            )
        except VerificationError as exc:
            click.echo(f"FAILED: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    seen = ", ".join(f"{w.witness} at {w.size}" for w in witnessed) or "none configured"
    click.echo(
        f"OK: {result.entries} entries, {result.checkpoints} checkpoints; verified up to entry "
        f"{result.verified_upto}, signed at {result.signed_at or '-'}; "
        f"{result.unanchored} newer entries not yet under a checkpoint; witnesses: {seen}"
    )


@audit_group.command("checkpoint")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "note", "json"]),
    default="text",
    show_default=True,
    help="note: the C2SP tlog-checkpoint signed note, with the witnesses' cosignatures.",
)
@fail_cleanly
def audit_checkpoint(fmt: str) -> None:
    """Sign a checkpoint over the log as it stands (and send it to the witnesses)."""
    from sqlmodel import select

    from governance.audit.models import AuditCosignature

    with audit_log_session() as (audit_log, session):
        row = audit_log.checkpoint()
        cosignatures = (
            []
            if row is None
            else list(
                session.exec(
                    select(AuditCosignature.line).where(AuditCosignature.tree_size == row.tree_size)
                )
            )
        )
    if row is None:
        click.echo("the audit log is empty; nothing to sign", err=fmt != "text")
        if fmt != "text":
            sys.exit(EXIT_FAILED)
    elif fmt == "note":
        click.echo(row.note + "".join(cosignatures), nl=False)
    elif fmt == "json":
        click.echo(json.dumps({**row.model_dump(exclude={"id"}), "cosignatures": cosignatures}))
    else:
        click.echo(f"checkpoint: tree size {row.tree_size}, root {row.root}, at {row.timestamp}")


@audit_group.command("public-key")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pem", "note"]),
    default="pem",
    show_default=True,
    help="note: the C2SP note verifier key (name+hash+base64key).",
)
@fail_cleanly
def audit_public_key(fmt: str) -> None:
    """Print the log's public key, for auditors to pin (`python -m audit trust FILE`)."""
    from governance import crypto

    with audit_log_session() as (audit_log, _session):
        if fmt == "note":
            click.echo(audit_log.verifier_key.encode())
        else:
            click.echo(crypto.public_key_pem(audit_log.signing_key.public_key()).decode(), nl=False)


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the entry filters shared by export and reports."""
    options = [
        click.option("--from", "from_time", type=click.DateTime(), help="Start (UTC), inclusive."),
        click.option("--to", "to_time", type=click.DateTime(), help="End (UTC), exclusive."),
        click.option("--principal", default=None),
        click.option("--domain", default=None),
        click.option("--model", default=None, help="Model family name."),
        click.option("--action", default=None),
        click.option(
            "--decision", type=click.Choice(["allow", "deny", "ok", "failed"]), default=None
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def validated(model, **values: Any):
    """Build a request model from CLI values, turning validation errors into InvalidInput."""
    from pydantic import ValidationError

    from governance.errors import InvalidInput, validation_details

    try:
        return model(**values)
    except ValidationError as exc:
        details = validation_details(exc)
        raise InvalidInput(
            "; ".join(f"{d['field']}: {d['message']}" for d in details), details=details
        ) from exc


@contextmanager
def progress_bar(total: int, label: str):
    """Yield a function that advances a progress bar (records, rate, time left) on a terminal;
    a no-op when stderr is not one (scripts, CI)."""
    if not sys.stderr.isatty() or not total:
        yield lambda _n: None
        return
    with click.progressbar(
        length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True
    ) as bar:
        yield bar.update


@contextmanager
def progress_reader(stream, total: int, label: str):
    """Wrap a binary stream so reading it advances a progress bar on a terminal (stderr)."""
    if not sys.stderr.isatty() or not total:
        yield stream
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:

        class Reader:
            def readline(self, limit: int = -1) -> bytes:
                data = stream.readline(limit)
                bar.update(len(data))
                return data

            def read(self, size: int = -1) -> bytes:
                data = stream.read(size)
                bar.update(len(data))
                return data

        yield Reader()


def build_filter(**kwargs: Any):
    import datetime as dt

    from governance.audit.export import EntryFilter

    def utc(value):
        return value.replace(tzinfo=dt.UTC) if value is not None else None

    return EntryFilter(
        from_time=utc(kwargs["from_time"]),
        to_time=utc(kwargs["to_time"]),
        principal=kwargs["principal"],
        domain=kwargs["domain"],
        model=kwargs["model"],
        action=kwargs["action"],
        decision=kwargs["decision"],
    )


@audit_group.command("export")
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "bundle"]),
    default="bundle",
    show_default=True,
)
@click.option("--out", required=True, type=click.Path(dir_okay=True), help="File or directory.")
@fail_cleanly
def audit_export(fmt: str, out: str, **filters: Any) -> None:
    """Export entries, streaming in constant memory; a bundle verifies offline with
    `python -m audit verify PATH` (a directory, or a .tar.gz when PATH ends so)."""
    from governance.audit.export import write_bundle, write_csv, write_jsonl

    entry_filter = build_filter(**filters)
    with audit_log_session() as (audit_log, session):
        log_cli_event(audit_log, "audit.export", {"format": fmt, **entry_filter.as_dict()})
        if fmt == "bundle":
            manifest = write_bundle(
                session,
                entry_filter,
                Path(out),
                audit_log.signing_key,
                audit_log.tree,
                origin=audit_log.origin,
                witnesses=audit_log.witnesses,
            )
            count = manifest["entries"]
        else:
            writer = write_csv if fmt == "csv" else write_jsonl
            with open(out, "w", encoding="utf-8", newline="") as handle:
                count = writer(session, entry_filter, handle)
    click.echo(f"exported {count} entries to {out}")


@audit_group.command("report")
@click.argument("kind", type=click.Choice(["who-may", "who-did"]))
@filter_options
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@fail_cleanly
def audit_report(kind: str, fmt: str, out: str, **filters: Any) -> None:
    """Write a signed access report: who may, or who did, query which model.

    JSON carries its signature inside; CSV gets a detached OUT.sig (base64 Ed25519).
    """
    from governance.audit.reports import build_report
    from governance.authz.policy import PolicySet

    entry_filter = build_filter(**filters)
    policy = PolicySet.load(settings()["GOVERNANCE_POLICY_DIR"])
    with audit_log_session() as (audit_log, session):
        body, text, signature = build_report(
            kind, session, policy, audit_log.signing_key, entry_filter, {"*"}
        )
        log_cli_event(
            audit_log, f"report.{kind}", {"rows": len(body["report"]["rows"]), "format": fmt}
        )
    if fmt == "json":
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(body, handle, indent=2, sort_keys=True)
    else:
        with open(out, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        with open(out + ".sig", "w", encoding="utf-8") as handle:
            handle.write(signature + "\n")
    click.echo(f"wrote {kind} report ({len(body['report']['rows'])} rows) to {out}")


# --- bench ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--only",
    type=click.Choice(["all", "audit", "pii", "scale", "console", "authz"]),
    default="all",
    show_default=True,
    help="Which benchmarks to run.",
)
@click.option("--appends", default=20000, show_default=True, help="Appends per database.")
@click.option("--threads", default=64, show_default=True, help="Concurrent appending threads.")
@click.option(
    "--verify-entries",
    default=1_000_000,
    show_default=True,
    help="Size of the log exported and verified.",
)
@click.option(
    "--console-entries",
    default=200_000,
    show_default=True,
    help="Size of the log behind the console's pages.",
)
@click.option(
    "--postgres-url",
    default="postgresql://postgres@127.0.0.1:5432/test",
    show_default=True,
    help="PostgreSQL to measure on; '' to skip.",
)
@click.option(
    "--shared-pii",
    default="../shared/benchmarks/pii",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The shared PII benchmark folder.",
)
@click.option("--out", default="BENCHMARKS.md", show_default=True, type=click.Path())
@fail_cleanly
def bench(
    only: str,
    appends: int,
    threads: int,
    verify_entries: int,
    console_entries: int,
    postgres_url: str,
    shared_pii: str,
    out: str,
) -> None:
    """Measure the audit log, the PII scanner, authorization, datasets at scale and the
    console; write OUT."""
    from governance.bench import run_bench, write_section

    if only in ("all", "audit"):
        section = run_bench(postgres_url or None, appends, threads, verify_entries, echo=click.echo)
        write_section(out, "## Audit log", section)
        click.echo(section)
    if only in ("all", "pii"):
        from governance.pii.bench import run_pii_bench

        config = settings()
        click.echo("scanning the shared PII corpus with both engines ...")
        section = run_pii_bench(
            config["GOVERNANCE_POLICY_DIR"], Path(shared_pii), config["PII_MODEL"]
        )
        write_section(out, "## PII scanner", section)
        click.echo(section)
    if only in ("all", "authz"):
        from governance.authz.bench import run_authz_bench

        section = run_authz_bench(settings()["GOVERNANCE_POLICY_DIR"], echo=click.echo)
        write_section(out, "## Authorization at company size", section)
        click.echo(section)
    if only in ("all", "scale"):
        from governance.datasets.bench import run_scale_bench

        config = settings()
        section = run_scale_bench(
            config["PII_MODEL"], config["GOVERNANCE_POLICY_DIR"], echo=click.echo
        )
        write_section(out, "## Dataset uploads and scans at scale", section)
        click.echo(section)
    if only in ("all", "console"):
        from governance.console.bench import run_console_bench

        section = run_console_bench(console_entries, echo=click.echo)
        write_section(out, "## Console", section)
        click.echo(section)


# --- demo -----------------------------------------------------------------------------------


@main.command()
@fail_cleanly
def demo() -> None:
    """Run the product end to end on this instance and print what happened."""
    from governance.demo import DemoError, run_demo

    try:
        summary = run_demo(settings(), echo=click.echo)
    except DemoError as exc:
        click.echo(f"error: the demo stopped: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
