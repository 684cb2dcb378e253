"""What every `govern` command shares: the main group, failing cleanly, settings, progress.

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


def family_version(session, family: str, number: int):
    """VERSION of FAMILY on this instance, or NotFound naming what is missing."""
    from governance.errors import NotFound
    from governance.families import service

    found = service.find_family(session, family)
    if found is None:
        raise NotFound(f"no model family {family!r}")
    return service.get_version(session, found[0], number)


def open_database(require_schema: bool = True):
    """Return the Database of this instance, checking that `govern init` has run."""
    from governance import runtime
    from governance.instance import head_revision, schema_revision

    config = settings()
    db = runtime.database_for(config)
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
    """Open a session on this instance's database for one command: what the command wrote is
    committed when it ends (rolled back if it fails), and the engine closed."""
    db = open_database()
    try:
        with db.unit_of_work() as session:
            yield session
    finally:
        db.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="governance")
def main() -> None:
    """Govern fine-tuned models: data domains, policies, approvals, training and audit."""
    # Whatever a command writes (database journals, blobs, exports, reports) is owner-only.
    os.umask(0o077)
    from governance.runtime import register_subject_kinds

    register_subject_kinds()


def instance_storage():
    """Return this instance's key ring and blob store (from the composition root)."""
    from governance import runtime

    rt = runtime.build(settings())
    return rt.keyring, rt.store


def remote() -> str | None:
    """The service to act through, when GOVERNANCE_URL names one: then the command runs over
    the API with the caller's token (GOVERNANCE_TOKEN) and is recorded as that principal."""
    return os.environ.get("GOVERNANCE_URL") or None


def remote_call(method: str, path: str, body: Any = None) -> Any:
    from governance.client import api_call

    return api_call(method, path, body)


def follow_job(job: dict[str, Any], label: str) -> dict[str, Any]:
    """Wait for a job the service accepted, with a progress bar on a terminal (records, rate,
    time left) and a line per stage otherwise; the finished job."""
    from governance.client import wait_for_job

    interactive = sys.stderr.isatty()
    bar = None
    stages: set[str] = set()
    done = [0]

    def show(current: dict[str, Any]) -> None:
        nonlocal bar
        progress = current.get("progress") or {}
        stage = progress.get("stage") or current["state"]
        if stage not in stages and not (interactive and bar is not None):
            stages.add(stage)
            click.echo(f"{label}: {stage}", err=True)
        total, records = progress.get("total"), progress.get("records")
        if interactive and total and records is not None:
            if bar is None:
                bar = click.progressbar(
                    length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True
                )
                bar.__enter__()
            bar.update(records - done[0])
            done[0] = records

    try:
        return wait_for_job(
            job,
            limit_seconds=float(os.environ.get("GOVERNANCE_JOB_WAIT_SECONDS", 3600)),
            on_progress=show,
        )
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


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


url_option = click.option(
    "--url", default=None, help="The service (default: GOVERNANCE_URL, else local)."
)
