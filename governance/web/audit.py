"""HTTP API of the audit log: entries, checkpoints, proofs, exports and access reports."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from governance import runtime
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
    ReportQuery,
    SeqPath,
    WhoDidQuery,
    WhoDidReport,
    WhoMayReport,
)
from governance.audit.service import (
    checkpoint_at,
    consistency_proof,
    inclusion_proof,
    latest_checkpoint,
    log_size,
    row_entry,
)
from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import get_session
from governance.errors import InvalidInput, NotFound
from governance.flows.log_export import EntryFilter
from governance.jobs.models import JobKind, JobStatus
from governance.web import jobs_lookup as jobs
from governance.web.audit_lookup import (
    entry_filter,
    export_response,
    permitted_domains,
    report_response,
    start_evidence_job,
)
from governance.web.common import ERROR_RESPONSES, SECURITY, download
from governance.web.guard import require

bp = APIBlueprint(
    "audit",
    __name__,
    url_prefix="/api/v1/audit",
    abp_tags=[Tag(name="audit", description="The tamper-evident audit log")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
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
    row = runtime.current().audit_log.checkpoint()
    if row is None:
        raise NotFound("the audit log is empty")
    return CheckpointRead.model_validate(row, from_attributes=True).model_dump(), 201


@bp.get("/entries/<int:seq>/proof", responses={200: InclusionProof})
def get_inclusion_proof(path: SeqPath, query: InclusionQuery):
    """Return the inclusion proof of an entry in a checkpointed tree."""
    allowed = permitted_domains("read")
    session = get_session()
    # Entries of domains the caller may not read look exactly like missing ones: the one
    # entry is selected under the same domain rule as every listing (`EntryFilter`).
    visible = EntryFilter(domains_allowed=allowed).apply(
        select(AuditEntry).where(AuditEntry.seq == path.seq)
    )
    row = session.exec(visible).first()
    if row is None:
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
    tree = runtime.current().audit_log.tree
    connection = session.connection()
    return ConsistencyProof(
        old_size=query.old_size,
        new_size=query.new_size,
        old_root=tree.root_at(connection, query.old_size).hex(),
        new_root=tree.root_at(connection, query.new_size).hex(),
        proof=[h.hex() for h in consistency_proof(session, query.old_size, query.new_size)],
    ).model_dump()


class EvidenceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(
        max_length=40,
        pattern=r"^\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}$",
        description="FROM..TO as dates (UTC): 2026-01-01..2026-12-31",
    )
    family: str | None = Field(default=None, max_length=63, description="Only this family")


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


@bp.post("/exports", responses={202: JobStatus})
def start_export(query: ExportQuery):
    """Export entries as a job, for logs of any size: answers `202 Accepted` with the job's
    `Location`; the finished job's file downloads from `/api/v1/jobs/{uid}/file` (only its
    requester may follow it)."""
    allowed = permitted_domains("export")
    filters = entry_filter(query, allowed)
    return jobs.start(
        get_session(),
        JobKind.EXPORT,
        "audit",
        SYSTEM_DOMAIN,
        "audit",
        {
            "format": query.format,
            "filters": filters.as_dict(),
            "domains": sorted(allowed),
            "owner_only": True,
        },
    )


@bp.post("/evidence-packs", responses={202: JobStatus})
def start_evidence_pack(query: EvidenceQuery):
    """Write an evidence pack for an auditor or regulator as a job (`202 Accepted` with the
    job's `Location`; its requester downloads it from `/api/v1/jobs/{uid}/file`): the period's
    audit bundle, reports, lineage, ML-BOMs, model cards, approvals, receipts, erasure reports
    and OpenLineage events, indexed by AI Act duty and signed. It spans every domain, so the
    caller must be allowed to export the audit log in all of them."""
    return start_evidence_job(get_session(), query.period, query.family)


@bp.get("/reports/who-may", responses={200: WhoMayReport})
def report_who_may(query: ReportQuery):
    """Who may query which model, computed from the policy in force; signed."""
    allowed = permitted_domains("export")
    return report_response("who-may", query, allowed)


@bp.get("/reports/who-did", responses={200: WhoDidReport})
def report_who_did(query: WhoDidQuery):
    """Who did query which model in a period, from the log: counts, first, last, denials."""
    allowed = permitted_domains("export")
    return report_response("who-did", query, allowed)
