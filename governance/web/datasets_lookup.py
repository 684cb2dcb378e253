"""Principal-aware lookups of datasets, shared by the API and the console.

A dataset the caller may not act on is answered exactly as a missing one, and either way the
decision is logged, so probing ids leaves a trace.
"""

from __future__ import annotations

from governance.authz.policy import UNSCOPED_DOMAIN
from governance.datasets import service
from governance.datasets.models import Dataset, DatasetRead, DatasetVersion, DatasetVersionRead
from governance.db import get_session
from governance.domains.models import Domain
from governance.errors import NotFound
from governance.pii.models import ScanReceipt
from governance.pii.service import latest_receipt
from governance.web.guard import check


def dataset_read(dataset: Dataset, domain: Domain) -> dict:
    return DatasetRead(
        id=dataset.id,
        domain=domain.name,
        name=dataset.name,
        description=dataset.description,
        created_by=dataset.created_by,
        created_at=dataset.created_at,
    ).model_dump(mode="json")


def version_read(
    version: DatasetVersion,
    dataset: Dataset,
    domain: Domain,
    receipts: dict[int, ScanReceipt] | None = None,
) -> dict:
    """A version as the API shows it; `receipts` (latest_receipts of a listing) saves a query
    per version."""
    if version.status != "ready":
        receipt = None
    elif receipts is not None:
        receipt = receipts.get(version.id)
    else:
        receipt = latest_receipt(get_session(), version)
    return DatasetVersionRead(
        scan_verdict=receipt.verdict if receipt else None,
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
                "shards",
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
        check(action, obj, UNSCOPED_DOMAIN, {"dataset_id": dataset_id})
    raise NotFound(f"no dataset {dataset_id}", details={"dataset_id": dataset_id})
