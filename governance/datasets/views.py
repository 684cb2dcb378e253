"""HTTP API for datasets and their versions."""

from __future__ import annotations

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag

from governance.authz.service import check, current_actor, require
from governance.datasets import service
from governance.datasets.models import (
    Dataset,
    DatasetCreate,
    DatasetList,
    DatasetPath,
    DatasetRead,
    DatasetVersion,
    DeleteBody,
    DomainDatasetsPath,
    UploadQuery,
    VersionList,
    VersionPath,
    VersionRead,
)
from governance.db import get_session
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.domains.service import get_domain
from governance.errors import NotFound, UnsupportedMediaType
from governance.pii.models import (
    QuarantineDecide,
    QuarantineList,
    QuarantinePath,
    QuarantineRead,
    ReceiptList,
    ReceiptRead,
)
from governance.storage import LocalBlobStore
from governance.views_common import ERROR_RESPONSES, SECURITY, binary_body

KEYRING_KEY = "governance.keyring"
UPLOAD_TYPES = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json"}
)
STORE_KEY = "governance.blobstore"

bp = APIBlueprint(
    "datasets",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="datasets", description="Encrypted, versioned training data")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


def init_app(app) -> None:
    """Attach the key ring and the blob store; neither touches disk until used."""
    home = app.config["GOVERNANCE_HOME"]
    app.extensions[KEYRING_KEY] = KeyRing(home, app.config.get("GOVERNANCE_MASTER_KEY"))
    app.extensions[STORE_KEY] = LocalBlobStore(app.config.get("BLOB_ROOT") or f"{home}/blobs")


def keyring() -> KeyRing:
    return current_app.extensions[KEYRING_KEY]


def store() -> LocalBlobStore:
    return current_app.extensions[STORE_KEY]


def dataset_read(dataset: Dataset, domain: Domain) -> dict:
    return DatasetRead(
        id=dataset.id,
        domain=domain.name,
        name=dataset.name,
        description=dataset.description,
        created_by=dataset.created_by,
        created_at=dataset.created_at,
    ).model_dump(mode="json")


def version_read(version: DatasetVersion, dataset: Dataset, domain: Domain) -> dict:
    return VersionRead(
        dataset_id=dataset.id,
        dataset=dataset.name,
        domain=domain.name,
        version=version.number,
        **version.model_dump(
            include={
                "uid",
                "tax_year",
                "status",
                "content_hash",
                "record_count",
                "plaintext_bytes",
                "created_by",
                "created_at",
                "deleted_by",
                "deleted_at",
                "delete_reason",
            }
        ),
    ).model_dump(mode="json")


def dataset_for(dataset_id: int, action: str, obj: str = "dataset") -> tuple[Dataset, Domain]:
    """Find a dataset the caller may act on; anything else is indistinguishable from absent."""
    found = service.find_dataset(get_session(), dataset_id)
    if found is not None:
        dataset, domain = found
        if check(action, obj, domain.name, {"dataset_id": dataset_id}).allowed:
            return dataset, domain
    else:
        # Still decide (and log) so that probing unknown ids leaves a trace.
        check(action, obj, "unknown", {"dataset_id": dataset_id})
    raise NotFound(f"no dataset {dataset_id}", details={"dataset_id": dataset_id})


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


@bp.get("/datasets/<int:dataset_id>/versions", responses={200: VersionList})
def list_versions(path: DatasetPath):
    """List a dataset's versions, deleted ones as tombstones."""
    dataset, domain = dataset_for(path.dataset_id, "read")
    versions = service.list_versions(get_session(), dataset)
    return {"items": [version_read(v, dataset, domain) for v in versions]}


@bp.post(
    "/datasets/<int:dataset_id>/versions",
    responses={201: VersionRead},
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
    version = service.upload_version(
        get_session(),
        keyring(),
        store(),
        dataset,
        domain,
        query.tax_year,
        request.stream,
        actor=current_actor(),
        limits=service.UploadLimits(
            max_record_bytes=current_app.config["RECORD_MAX_BYTES"],
            max_upload_bytes=current_app.config["UPLOAD_MAX_BYTES"],
        ),
    )
    return version_read(version, dataset, domain), 201


@bp.get("/datasets/<int:dataset_id>/versions/<int:number>", responses={200: VersionRead})
def get_version(path: VersionPath):
    """Return one version (or its tombstone)."""
    dataset, domain = dataset_for(path.dataset_id, "read")
    version = service.get_version(get_session(), dataset, path.number)
    return version_read(version, dataset, domain)


@bp.delete("/datasets/<int:dataset_id>/versions/<int:number>", responses={200: VersionRead})
def delete_version(path: VersionPath, body: DeleteBody):
    """Delete a version: its data key and blob are destroyed, a tombstone remains."""
    dataset, domain = dataset_for(path.dataset_id, "delete")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    version = service.delete_version(
        session, keyring(), store(), version, body.reason, actor=current_actor()
    )
    return version_read(version, dataset, domain)


# --- scans ----------------------------------------------------------------------------------

SCANNER_KEY = "governance.scanner"


def scanner():
    """The process's scanner, loaded on first use (spaCy takes a moment to load)."""
    from governance.pii.scanner import Scanner

    if SCANNER_KEY not in current_app.extensions:
        current_app.extensions[SCANNER_KEY] = Scanner(current_app.config["PII_MODEL"])
    return current_app.extensions[SCANNER_KEY]


def domain_rules(domain: Domain):
    from governance.pii.rules import load_rules

    return load_rules(current_app.config["GOVERNANCE_POLICY_DIR"], domain.name)


@bp.post("/datasets/<int:dataset_id>/versions/<int:number>/scans", responses={201: ReceiptRead})
def scan_version(path: VersionPath):
    """Scan a version for PII under its domain's rules; returns the receipt."""
    from governance.pii import service as pii

    dataset, domain = dataset_for(path.dataset_id, "create", "scan")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    rules = domain_rules(domain)
    receipt = pii.scan_version(
        session, keyring(), store(), scanner(), version, rules, actor=current_actor()
    )
    return pii.receipt_read(receipt, version, rules.hash), 201


@bp.get("/datasets/<int:dataset_id>/versions/<int:number>/scans", responses={200: ReceiptList})
def list_scans(path: VersionPath):
    """List a version's scan receipts, newest first, with redacted samples only."""
    from sqlmodel import select

    from governance.pii import service as pii
    from governance.pii.models import ScanReceipt

    dataset, domain = dataset_for(path.dataset_id, "read", "scan")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    current = domain_rules(domain).hash
    receipts = session.exec(
        select(ScanReceipt)
        .where(ScanReceipt.version_id == version.id)
        .order_by(ScanReceipt.id.desc())
    )
    return {"items": [pii.receipt_read(r, version, current) for r in receipts]}


@bp.get(
    "/datasets/<int:dataset_id>/versions/<int:number>/quarantine",
    responses={200: QuarantineList},
)
def list_quarantine(path: VersionPath):
    """Records the residual pass held back, with digits masked, and any steward decision."""
    from governance.pii import service as pii

    dataset, _domain = dataset_for(path.dataset_id, "read", "scan")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    rows = pii.list_quarantine(session, version)
    return {
        "items": [
            QuarantineRead.model_validate(r, from_attributes=True).model_dump(mode="json")
            for r in rows
        ]
    }


@bp.post(
    "/datasets/<int:dataset_id>/versions/<int:number>/quarantine/<int:record>",
    responses={200: QuarantineRead},
)
def decide_quarantine(path: QuarantinePath, body: QuarantineDecide):
    """Keep or drop a held-back record (a steward's call, audited); a rescan applies it."""
    from governance.pii import service as pii

    dataset, domain = dataset_for(path.dataset_id, "create", "scan")
    session = get_session()
    version = service.get_version(session, dataset, path.number)
    row = pii.decide_quarantine(
        session, version, domain, path.record, body.decision, actor=current_actor()
    )
    return QuarantineRead.model_validate(row, from_attributes=True).model_dump(mode="json")
