"""HTTP API of the audit log: entries, checkpoints, proofs, exports and access reports."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from flask import Flask, Response, current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict
from sqlmodel import select

from audit.bundle import VerificationError
from governance.audit import reports
from governance.audit.export import EntryFilter, iter_csv, iter_jsonl, write_bundle
from governance.audit.models import (
    AuditEntry,
    CheckpointRead,
    ConsistencyProof,
    ConsistencyQuery,
    EntryPage,
    EntryQuery,
    EntryRead,
    InclusionProof,
    InclusionQuery,
    SeqPath,
)
from governance.audit.service import (
    AuditLog,
    checkpoint_at,
    consistency_proof,
    inclusion_proof,
    latest_checkpoint,
    log_size,
    row_entry,
)
from governance.audit.witnessing import configured_witnesses
from governance.authz.policy import SYSTEM_DOMAIN
from governance.authz.service import (
    current_principal,
    get_authorizer,
    log_event,
    mark_checked,
    require,
)
from governance.db import get_db, get_session
from governance.domains.service import list_domains
from governance.errors import Conflict, Forbidden, InvalidInput, NotFound
from governance.views_common import ERROR_RESPONSES, SECURITY, download

EXTENSION_KEY = "governance.audit"

bp = APIBlueprint(
    "audit",
    __name__,
    url_prefix="/api/v1/audit",
    abp_tags=[Tag(name="audit", description="The tamper-evident audit log")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


def init_app(app: Flask) -> AuditLog:
    """Attach the process's AuditLog; its writer thread starts on the first append."""
    audit_log = AuditLog(
        get_db(app),
        app.config["GOVERNANCE_HOME"],
        checkpoint_seconds=float(app.config["AUDIT_CHECKPOINT_SECONDS"]),
        origin=app.config.get("AUDIT_ORIGIN") or None,
        witnesses=configured_witnesses(app.config.get("AUDIT_WITNESSES")),
    )
    app.extensions[EXTENSION_KEY] = audit_log
    return audit_log


def get_audit_log(app: Flask | None = None) -> AuditLog:
    """Return the AuditLog of the given or current app."""
    return (app or current_app).extensions[EXTENSION_KEY]


def permitted_domains(action: str) -> frozenset[str]:
    """Return the domains (and `system`) where the caller may perform action on the log.

    The decision is logged once, naming the domains it covers.
    """
    principal = current_principal()
    authorizer = get_authorizer()
    candidates = [SYSTEM_DOMAIN, *(d.name for d in list_domains(get_session()))]
    allowed = frozenset(
        d for d in candidates if authorizer.decide(principal.name, d, "audit", action).allowed
    )
    log_event(action, "audit", None, "allow" if allowed else "deny", {"domains": sorted(allowed)})
    mark_checked()
    if not allowed:
        raise Forbidden(
            f"{principal.name} may not {action} the audit log in any domain",
            details={"object": "audit", "action": action},
        )
    return allowed


def entry_filter(query: EntryQuery, allowed: frozenset[str]) -> EntryFilter:
    if query.domain is not None and query.domain not in allowed:
        raise Forbidden(
            f"{current_principal().name} may not read the audit log of domain {query.domain}",
            details={"domain": query.domain},
        )
    return EntryFilter(
        from_time=query.from_time,
        to_time=query.to_time,
        principal=query.principal,
        domain=query.domain,
        model=query.model,
        action=query.action,
        decision=query.decision,
        domains_allowed=allowed,
    )


def entry_read(row: AuditEntry) -> EntryRead:
    return EntryRead(**row_entry(row), leaf_hash=row.leaf_hash)


@bp.get("/entries", responses={200: EntryPage})
def list_entries(query: EntryQuery):
    """List audit entries by sequence number, filtered, a page at a time."""
    allowed = permitted_domains("read")
    filters = entry_filter(query, allowed)
    statement = filters.apply(select(AuditEntry).where(AuditEntry.seq > query.after_seq))
    rows = get_session().exec(statement.order_by(AuditEntry.seq).limit(query.limit + 1)).all()
    page = rows[: query.limit]
    next_after = page[-1].seq if len(rows) > query.limit else None
    return EntryPage(items=[entry_read(r) for r in page], next_after_seq=next_after).model_dump(
        mode="json"
    )


@bp.get("/checkpoints/latest", responses={200: CheckpointRead})
def get_latest_checkpoint():
    """Return the newest signed checkpoint."""
    permitted_domains("read")
    row = latest_checkpoint(get_session())
    if row is None:
        raise NotFound("no checkpoint has been signed yet")
    return CheckpointRead.model_validate(row, from_attributes=True).model_dump()


@bp.post("/checkpoints", responses={201: CheckpointRead})
def create_checkpoint():
    """Sign a checkpoint over the log as it stands now."""
    require("checkpoint", "audit", SYSTEM_DOMAIN)
    row = get_audit_log().checkpoint()
    if row is None:
        raise NotFound("the audit log is empty")
    return CheckpointRead.model_validate(row, from_attributes=True).model_dump(), 201


@bp.get("/entries/<int:seq>/proof", responses={200: InclusionProof})
def get_inclusion_proof(path: SeqPath, query: InclusionQuery):
    """Return the inclusion proof of an entry in a checkpointed tree."""
    allowed = permitted_domains("read")
    session = get_session()
    row = session.get(AuditEntry, path.seq)
    # Entries of domains the caller may not read look exactly like missing ones.
    if row is None or (row.domain or SYSTEM_DOMAIN) not in allowed:
        raise NotFound(f"no audit entry {path.seq}", details={"seq": path.seq})
    checkpoint = (
        checkpoint_at(session, query.tree_size) if query.tree_size else latest_checkpoint(session)
    )
    if checkpoint is None:
        raise NotFound("no checkpoint of that size", details={"tree_size": query.tree_size})
    if path.seq > checkpoint.tree_size:
        raise InvalidInput(
            f"entry {path.seq} is newer than checkpoint {checkpoint.tree_size}; sign a newer one",
            details=[{"field": "tree_size"}],
        )
    proof = inclusion_proof(session, path.seq, checkpoint.tree_size)
    return InclusionProof(
        seq=path.seq,
        leaf_hash=row.leaf_hash,
        tree_size=checkpoint.tree_size,
        root=checkpoint.root,
        proof=[h.hex() for h in proof],
    ).model_dump()


@bp.get("/consistency", responses={200: ConsistencyProof})
def get_consistency_proof(query: ConsistencyQuery):
    """Return the proof that the log at old_size is a prefix of the log at new_size."""
    permitted_domains("read")
    session = get_session()
    if query.old_size > query.new_size:
        raise InvalidInput("old_size must not exceed new_size", details=[{"field": "old_size"}])
    if query.new_size > log_size(session):
        raise InvalidInput("new_size is beyond the log", details=[{"field": "new_size"}])
    tree = get_audit_log().tree
    connection = session.connection()
    return ConsistencyProof(
        old_size=query.old_size,
        new_size=query.new_size,
        old_root=tree.root_at(connection, query.old_size).hex(),
        new_root=tree.root_at(connection, query.new_size).hex(),
        proof=[h.hex() for h in consistency_proof(session, query.old_size, query.new_size)],
    ).model_dump()


class ExportQuery(EntryQuery):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format: Literal["csv", "jsonl", "bundle"] = "jsonl"


@bp.get(
    "/export",
    responses={
        200: download(
            "The entries: CSV, JSON lines, or a bundle that `python -m audit verify` checks",
            "text/csv",
            "application/x-ndjson",
            "application/gzip",
        )
    },
)
def export(query: ExportQuery):
    """Download entries as CSV, JSON lines or a bundle (.tar.gz) that verifies offline."""
    allowed = permitted_domains("export")
    return export_response(entry_filter(query, allowed), query.format)


def export_response(filters: EntryFilter, fmt: str) -> Response:
    """Stream the selected entries as a download in one of the export formats."""
    session = get_session()
    if fmt == "bundle":
        scratch = Path(tempfile.mkdtemp(prefix="audit-export-"))
        try:
            archive = scratch / "audit-bundle.tar.gz"
            audit_log = get_audit_log()
            try:
                write_bundle(
                    session,
                    filters,
                    archive,
                    audit_log.signing_key,
                    audit_log.tree,
                    origin=audit_log.origin,
                    witnesses=audit_log.witnesses,
                )
            except VerificationError as exc:
                # Never sign a fresh checkpoint over a log that fails verification.
                raise Conflict(
                    f"the audit log does not verify, so it is not exported: {exc}",
                    code="log_verification_failed",
                    details={"seq": exc.seq},
                ) from exc
            handle = archive.open("rb")
        finally:
            # The open handle keeps the file readable after its directory is gone.
            shutil.rmtree(scratch, ignore_errors=True)
        return Response(
            stream_file(handle),
            mimetype="application/gzip",
            headers={"Content-Disposition": "attachment; filename=audit-bundle.tar.gz"},
        )
    # Stream the rows as they are read: an export of a large log must not sit in memory. The
    # stream has its own session, closed as soon as the last row is out.
    if fmt == "csv":
        render, mimetype, name = iter_csv, "text/csv", "audit.csv"
    else:
        render, mimetype, name = iter_jsonl, "application/x-ndjson", "audit.jsonl"
    db = get_db()

    def lines():
        with db.session_scope() as stream_session:
            yield from render(stream_session, filters)

    return Response(
        lines(),
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename={name}"},
    )


def stream_file(handle, chunk: int = 1 << 16):
    """Yield a file's bytes and close it, whether or not the client reads to the end."""
    try:
        while data := handle.read(chunk):
            yield data
    finally:
        handle.close()


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "csv"] = "json"


@bp.get(
    "/reports/who-may",
    responses={
        200: download(
            "A signed report (JSON, or CSV with X-Signature-Ed25519)",
            "application/json",
            "text/csv",
        )
    },
)
def report_who_may(query: ReportQuery):
    """Who may query which model, computed from the policy in force; signed."""
    allowed = permitted_domains("export")
    return report_response("who-may", query, allowed)


class WhoDidQuery(EntryQuery):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format: Literal["json", "csv"] = "json"


@bp.get(
    "/reports/who-did",
    responses={
        200: download(
            "A signed report (JSON, or CSV with X-Signature-Ed25519)",
            "application/json",
            "text/csv",
        )
    },
)
def report_who_did(query: WhoDidQuery):
    """Who did query which model in a period, from the log: counts, first, last, denials."""
    allowed = permitted_domains("export")
    return report_response("who-did", query, allowed)


def report_response(kind: str, query, allowed: frozenset[str]):
    """Build, sign, log and answer an access report as JSON or CSV."""
    filters = entry_filter(query, allowed) if isinstance(query, EntryQuery) else None
    body, csv_text, signature = reports.build_report(
        kind,
        get_session(),
        get_authorizer().policy,
        get_audit_log().signing_key,
        filters,
        allowed,
    )
    log_event(
        f"report.{kind}",
        "audit",
        None,
        "ok",
        {"rows": len(body["report"]["rows"]), "format": query.format},
    )
    if query.format == "csv":
        return Response(
            csv_text,
            mimetype="text/csv",
            headers={
                "Content-Disposition": f"attachment; filename={kind}.csv",
                "X-Signature-Ed25519": signature,
            },
        )
    return body
