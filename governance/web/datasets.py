"""HTTP API for datasets and their versions."""

from __future__ import annotations

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag
from sqlmodel import select

from governance import runtime
from governance.datasets import service
from governance.datasets.models import (
    DatasetCreate,
    DatasetList,
    DatasetPath,
    DatasetRead,
    DatasetVersion,
    DatasetVersionList,
    DatasetVersionRead,
    DeleteBody,
    DomainDatasetsPath,
    UploadQuery,
    VersionPath,
    VersionStatus,
)
from governance.db import get_session
from governance.domains.service import get_domain
from governance.errors import Conflict, Gone, UnsupportedMediaType
from governance.flows import deletion
from governance.jobs.models import JobKind, JobStatus
from governance.pii import service as pii
from governance.pii.models import (
    LabelCreate,
    LabelPath,
    LabelSample,
    QuarantineDecide,
    QuarantineList,
    QuarantinePath,
    QuarantineRead,
    ReceiptList,
    ScanReceipt,
)
from governance.web import jobs_lookup as jobs
from governance.web.common import ERROR_RESPONSES, GONE, SECURITY, binary_body
from governance.web.datasets_lookup import dataset_for, dataset_read, version_read
from governance.web.guard import current_actor, require

UPLOAD_TYPES = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json"}
)

bp = APIBlueprint(
    "datasets",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="datasets", description="Encrypted, versioned training data")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


@bp.get("/domains/<name>/datasets", responses={200: DatasetList})
def list_datasets(path: DomainDatasetsPath):
    """List a domain's datasets."""
    require("read", "dataset", path.name)
    domain = get_domain(get_session(), path.name)
    items = [dataset_read(d, domain) for d in service.list_datasets(get_session(), domain)]
    return {"items": items}


@bp.post("/domains/<name>/datasets", responses={201: DatasetRead})
def create_dataset(path: DomainDatasetsPath, body: DatasetCreate):
    """Create a dataset in a domain."""
    require("create", "dataset", path.name)
    domain = get_domain(get_session(), path.name)
    dataset = service.create_dataset(get_session(), domain, body, actor=current_actor())
    return dataset_read(dataset, domain), 201


@bp.get("/datasets/<int:dataset_id>", responses={200: DatasetRead})
def get_dataset(path: DatasetPath):
    """Return one dataset."""
    dataset, domain = dataset_for(path.dataset_id, "read")
    return dataset_read(dataset, domain)


@bp.get("/datasets/<int:dataset_id>/versions", responses={200: DatasetVersionList})
def list_versions(path: DatasetPath):
    """List a dataset's versions, deleted ones as tombstones."""
    dataset, domain = dataset_for(path.dataset_id, "read")
    session = get_session()
    versions = service.list_versions(session, dataset)
    receipts = pii.latest_receipts(session, [v.id for v in versions])
    return {"items": [version_read(v, dataset, domain, receipts) for v in versions]}


@bp.post(
    "/datasets/<int:dataset_id>/versions",
    responses={201: DatasetVersionRead},
    openapi_extensions=binary_body(
        "application/x-ndjson",
        'The records, one JSON object a line: {"text"} or {"prompt", "completion"}, '
        'optionally with {"metadata"}. Streamed; each line is validated.',
    ),
)
def upload_version(path: DatasetPath, query: UploadQuery):
    """Upload a version as JSON lines in the request body (streamed); Content-Type
    `application/x-ndjson` (or `application/jsonl`, `application/json`)."""
    dataset, domain = dataset_for(path.dataset_id, "upload")
    if request.mimetype not in UPLOAD_TYPES:
        raise UnsupportedMediaType(
            "upload the records as JSON lines (Content-Type: application/x-ndjson)",
            details={"content_type": request.content_type, "accepted": sorted(UPLOAD_TYPES)},
        )
    # Uploads are streamed, so they get their own, larger limit than JSON bodies.
    request.max_content_length = current_app.config["UPLOAD_MAX_BYTES"]
    rt = runtime.current()
    version = service.upload_version(
        get_session(),
        rt.keyring,
        rt.store,
        dataset,
        domain,
        query.tax_year,
        request.stream,
        actor=current_actor(),
        limits=service.UploadLimits.from_settings(current_app.config),
    )
    return version_read(version, dataset, domain), 201


@bp.get("/datasets/<int:dataset_id>/versions/<int:number>", responses={200: DatasetVersionRead})
def get_version(path: VersionPath):
    """Return one version (or its tombstone)."""
    dataset, domain = dataset_for(path.dataset_id, "read")
    version = service.get_version(get_session(), dataset, path.number)
    return version_read(version, dataset, domain)


@bp.delete("/datasets/<int:dataset_id>/versions/<int:number>", responses={200: DatasetVersionRead})
def delete_version(path: VersionPath, body: DeleteBody):
    """Delete a version: its data key and blob are destroyed, a tombstone remains."""
    dataset, domain = dataset_for(path.dataset_id, "delete")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    rt = runtime.current()
    version = deletion.delete_version(
        session, rt.keyring, rt.store, version, body.reason, actor=current_actor()
    )
    return version_read(version, dataset, domain)


# --- scans ----------------------------------------------------------------------------------


@bp.post("/datasets/<int:dataset_id>/versions/<int:number>/scans", responses={202: JobStatus})
def scan_version(path: VersionPath):
    """Scan a version for PII under its domain's rules, as a job: answers `202 Accepted` with
    the job's `Location`; the finished job's result holds the receipt."""
    dataset, domain = dataset_for(path.dataset_id, "create", "scan")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    if version.status != VersionStatus.READY:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    return jobs.start(
        session,
        JobKind.SCAN,
        f"dataset-version/{version.uid}",
        domain.name,
        "scan",
        {"dataset_id": dataset.id, "version": version.number},
    )


def live_version(session, dataset, number: int) -> DatasetVersion:
    """A version whose data still exists; what was derived from a deleted one is gone (410)."""
    version = service.get_version(session, dataset, number)
    if version.status == VersionStatus.DELETED:
        raise Gone(
            f"dataset version {version.uid} was deleted; what was derived from it is erased",
            details={"uid": version.uid, "deleted_at": version.deleted_at.isoformat()},
        )
    return version


@bp.get(
    "/datasets/<int:dataset_id>/versions/<int:number>/scans", responses={200: ReceiptList, **GONE}
)
def list_scans(path: VersionPath):
    """List a version's scan receipts, newest first, with redacted samples only."""
    from governance.pii import service as pii

    dataset, domain = dataset_for(path.dataset_id, "read", "scan")
    session = get_session()
    version = live_version(session, dataset, path.number)
    current = runtime.current().rules(domain.name).hash
    receipts = session.exec(
        select(ScanReceipt)
        .where(ScanReceipt.version_id == version.id)
        .order_by(ScanReceipt.id.desc())
    )
    return {"items": [pii.receipt_read(r, version, current) for r in receipts]}


@bp.get(
    "/datasets/<int:dataset_id>/versions/<int:number>/quarantine",
    responses={200: QuarantineList, **GONE},
)
def list_quarantine(path: VersionPath):
    """Records the residual pass held back, with digits masked, and any steward decision."""
    dataset, _domain = dataset_for(path.dataset_id, "read", "scan")
    session = get_session()
    version = live_version(session, dataset, path.number)
    rows = pii.list_quarantine(session, version)
    return {
        "items": [
            QuarantineRead.model_validate(r, from_attributes=True).model_dump(mode="json")
            for r in rows
        ]
    }


@bp.post(
    "/datasets/<int:dataset_id>/versions/<int:number>/quarantine/<int:record>",
    responses={200: QuarantineRead, **GONE},
)
def decide_quarantine(path: QuarantinePath, body: QuarantineDecide):
    """Keep or drop a held-back record (a steward's call, audited); a rescan applies it."""
    dataset, domain = dataset_for(path.dataset_id, "create", "scan")
    session = get_session()
    version = live_version(session, dataset, path.number)
    row = pii.decide_quarantine(
        session,
        version,
        domain,
        path.record,
        body.decision,
        actor=current_actor(),
        comment=body.comment,
    )
    return QuarantineRead.model_validate(row, from_attributes=True).model_dump(mode="json")


@bp.get(
    "/datasets/<int:dataset_id>/versions/<int:number>/labels",
    responses={200: LabelSample, **GONE},
)
def list_labels(path: VersionPath):
    """The records of the latest scan's labelling sample (digits as #), with any labels, and
    the recall they estimate with its 95% lower bound."""
    dataset, _domain = dataset_for(path.dataset_id, "create", "scan")
    session = get_session()
    receipt = pii.scanned_receipt(session, live_version(session, dataset, path.number))
    return pii.label_sample_read(session, runtime.current().keyring, receipt)


@bp.post(
    "/datasets/<int:dataset_id>/versions/<int:number>/labels/<int:position>",
    responses={200: LabelSample, **GONE},
)
def label_record(path: LabelPath, body: LabelCreate):
    """A steward's label of one sampled record: how many personal values it still shows."""
    dataset, domain = dataset_for(path.dataset_id, "create", "scan")
    session = get_session()
    receipt = pii.scanned_receipt(session, live_version(session, dataset, path.number))
    pii.label_record(
        session,
        receipt,
        domain,
        path.position,
        body.missed,
        actor=current_actor(),
        comment=body.comment,
    )
    return pii.label_sample_read(session, runtime.current().keyring, receipt)
