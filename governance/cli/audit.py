"""The audit log: verify, checkpoint, public key, export, reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from audit.bundle import VerificationError
from governance.cli.base import (
    EXIT_FAILED,
    cli_actor,
    fail_cleanly,
    filter_options,
    instance_session,
    open_database,
    progress_bar,
    remote,
    settings,
)

if TYPE_CHECKING:
    from sqlmodel import Session


@click.group("audit")
def audit_group() -> None:
    """Verify, checkpoint, export and report on the audit log."""


@contextmanager
def audit_log_session() -> Iterator[tuple[Any, Session]]:
    """Yield this instance's AuditLog and a session on its database."""
    from governance.runtime import audit_log_for

    db = open_database()
    audit_log = audit_log_for(db, settings(), checkpoint_seconds=0)
    try:
        with db.unit_of_work() as session:
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
    from governance.audit.service import log_size
    from governance.flows.log_export import verify_against_witnesses

    with audit_log_session() as (audit_log, session):
        try:
            with progress_bar(log_size(session), "verifying") as advance:
                result, witnessed = verify_against_witnesses(
                    session,
                    audit_log.signing_key,
                    audit_log.tree,
                    origin=audit_log.origin,
                    witnesses=audit_log.witnesses,
                    advance=advance,
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
    # Say plainly what this verification could not see.
    if result.verified_upto == 0:
        click.echo(
            "WARNING: no checkpoint covers any entry: nothing here is vouched for by a "
            "signature; run `govern audit checkpoint`.",
            err=True,
        )
    elif result.unanchored:
        click.echo(
            f"NOTE: entries {result.verified_upto + 1}..{result.entries} are under no "
            "checkpoint yet: each matches its own hash, but a change to them together with "
            "their hashes would not show until the next checkpoint is signed.",
            err=True,
        )
    if not witnessed:
        click.echo(
            "WARNING: no witness: a truncated log, a restored older copy of the database or "
            "deleted checkpoints cannot be told from a log that never grew further. Keep the "
            "local witness (`govern init` makes one) or configure AUDIT_WITNESSES.",
            err=True,
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


def build_filter(**kwargs: Any):
    import datetime as dt

    from governance.flows.log_export import EntryFilter

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
    `python -m audit verify PATH` (a directory, or a .tar.gz when PATH ends so).

    With GOVERNANCE_URL set, over the API with your token (an auditor's export job, limited
    to the domains you may export); otherwise on this instance, as the operator."""
    from governance.audit.service import log_size
    from governance.flows.log_export import write_csv, write_jsonl, write_log_bundle

    entry_filter = build_filter(**filters)
    if remote():
        count = export_over_api(fmt, Path(out), entry_filter)
        click.echo(f"exported {count} entries to {out}")
        return
    with audit_log_session() as (audit_log, session):
        log_cli_event(audit_log, "audit.export", {"format": fmt, **entry_filter.as_dict()})
        if fmt == "bundle":
            count = write_log_bundle(session, entry_filter, Path(out), audit_log)["entries"]
        else:
            writer = write_csv if fmt == "csv" else write_jsonl
            with (
                open(out, "w", encoding="utf-8", newline="") as handle,
                progress_bar(log_size(session), "exporting") as advance,
            ):
                count = writer(session, entry_filter, LineCounter(handle, advance))
    click.echo(f"exported {count} entries to {out}")


def export_over_api(fmt: str, out: Path, entry_filter) -> int:
    """Run an export job as the caller, follow it, and download its file to `out` (a bundle
    to a directory unless `out` ends in .tar.gz); the number of entries exported."""
    import tarfile
    import tempfile
    from urllib.parse import urlencode

    from governance.cli.base import follow_job
    from governance.client import api_call, api_download

    query = {"format": fmt} | {k: v for k, v in entry_filter.as_dict().items() if v is not None}
    job = follow_job(api_call("POST", f"/api/v1/audit/exports?{urlencode(query)}"), "export")
    path = f"/api/v1/jobs/{job['job']}/file"
    if fmt != "bundle" or out.name.endswith(".tar.gz"):
        with open(out, "wb") as handle:
            api_download(path, handle)
    else:
        with tempfile.TemporaryFile() as archive:
            api_download(path, archive)
            archive.seek(0)
            out.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                tar.extractall(out, filter="data")
    return int((job.get("result") or {}).get("entries", 0))


@audit_group.command("openlineage")
@click.option("--after", "after", default=0, show_default=True, type=int,
              help="Only entries after this sequence number (a consumer's cursor).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Append JSONL here (default: standard output).")  # fmt: skip
@click.option("--url", default=None, envvar="OPENLINEAGE_URL",
              help="Post each event to this OpenLineage endpoint instead.")  # fmt: skip
@fail_cleanly
def audit_openlineage(after: int, out: str | None, url: str | None) -> None:
    """Emit the OpenLineage run events of uploads, scans, approvals, training, evaluations and
    promotions, derived from committed audit entries in order; prints the last sequence number
    read, the cursor for the next call."""
    from openlineage.client.serde import Serde
    from sqlmodel import select

    from governance.audit.models import AuditEntry
    from governance.audit.openlineage import events_for

    client = None
    if url:
        from openlineage.client import OpenLineageClient
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        client = OpenLineageClient(transport=HttpTransport(HttpConfig(url=url)))
    last, count = after, 0
    with instance_session() as session:
        entries = session.exec(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq)
        ).all()
        handle = open(out, "a") if out else None  # noqa: SIM115 (closed below)
        try:
            for entry in entries:
                last = entry.seq
                for event in events_for(entry, settings().get("GOVERNANCE_PUBLIC_URL")):
                    if client is not None:
                        client.emit(event)
                    else:
                        line = json.dumps(Serde.to_dict(event), sort_keys=True)
                        if handle is not None:
                            handle.write(line + "\n")
                        else:
                            click.echo(line)
                    count += 1
        finally:
            if handle is not None:
                handle.close()
    click.echo(f"{count} events; cursor {last}", err=True)


@audit_group.command("report")
@click.argument("kind", type=click.Choice(["who-may", "who-did"]))
@filter_options
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@fail_cleanly
def audit_report(kind: str, fmt: str, out: str, **filters: Any) -> None:
    """Write a signed access report: who may, or who did, query which model.

    JSON carries its signature inside; CSV gets a detached OUT.sig (base64 Ed25519). With
    GOVERNANCE_URL set, over the API with your token (the domains you may read the log of).
    """
    from governance.authz.policy import PolicySet
    from governance.flows.access_reports import build_report

    entry_filter = build_filter(**filters)
    if remote():
        rows = report_over_api(kind, fmt, Path(out), entry_filter)
        click.echo(f"wrote {kind} report ({rows} rows) to {out}")
        return
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


def report_over_api(kind: str, fmt: str, out: Path, entry_filter) -> int:
    """Fetch a signed access report as the caller; write it (CSV with OUT.sig); its rows."""
    from urllib.parse import urlencode

    from governance.client import api_download

    query = {"format": fmt}
    if kind == "who-did":
        query |= {k: v for k, v in entry_filter.as_dict().items() if v is not None}
    path = f"/api/v1/audit/reports/{kind}?{urlencode(query)}"
    with open(out, "wb") as handle:
        headers = api_download(path, handle)
    if fmt == "csv":
        Path(f"{out}.sig").write_text(headers.get("X-Signature-Ed25519", "") + "\n")
        return max(0, len(out.read_text(encoding="utf-8").splitlines()) - 1)
    return len(json.loads(out.read_text(encoding="utf-8"))["report"]["rows"])


class LineCounter:
    """A text file that advances a progress bar by each line written (entries scanned, an
    upper bound: the bar reaches its end only for an unfiltered export)."""

    def __init__(self, handle, advance) -> None:
        self.handle, self.advance = handle, advance

    def write(self, text: str) -> int:
        self.advance(text.count("\n"))
        return self.handle.write(text)
