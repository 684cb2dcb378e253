"""Taint propagates: model versions built on deleted data or a withdrawn base are tainted.

Called in the deleting (or withdrawing) transaction; it needs only the tables, so the data
layer can call it without depending on the model services.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from governance.audit.service import Actor, record
from governance.datasets.models import DatasetVersion
from governance.db import utcnow
from governance.domains.models import Domain
from governance.families.models import ModelFamily, ModelVersion, RetrainRequest, VersionState
from governance.jobs.models import Job, JobState


def taint_version(
    session: Session, version: ModelVersion, cause: str, details: dict[str, Any], actor: Actor
) -> None:
    """Taint one version because of `cause` (the caller commits). A production version
    queues the year to be trained again; the family serves its newest untainted version."""
    family = session.get(ModelFamily, version.family_id)
    was = version.status
    if was == VersionState.PRODUCTION:
        session.add(
            RetrainRequest(
                family_id=family.id,
                tax_year=version.tax_year,
                reason=f"v{version.number} tainted: {cause}",
                requested_by=actor.principal,
            )
        )
    version.status = VersionState.TAINTED
    version.status_reason = cause
    version.tainted_at = utcnow()
    session.add(version)
    job = session.exec(select(Job).where(Job.version_id == version.id)).first()
    if job is not None and job.state in (JobState.QUEUED, JobState.RUNNING):
        job.state, job.error = JobState.FAILED, cause
        session.add(job)
    domain = session.get(Domain, family.domain_id)
    record(
        session,
        actor,
        "model.taint",
        f"model/{family.name}",
        domain.name,
        details={
            "version": version.number,
            "was": was,
            **details,
            "retrain_queued": was == VersionState.PRODUCTION,
        },
    )


def taint_trained_on(
    session: Session, dataset_version: DatasetVersion, *, actor: Actor
) -> list[ModelVersion]:
    """Taint every model version trained on a deleted dataset version (the caller commits)."""
    tainted = []
    for version in session.exec(select(ModelVersion)).all():
        if version.status == VersionState.TAINTED:
            continue
        if not any(used["uid"] == dataset_version.uid for used in version.datasets):
            continue
        taint_version(
            session,
            version,
            f"trained on deleted dataset version {dataset_version.uid}",
            {
                "dataset_version": dataset_version.uid,
                "content_hash": dataset_version.content_hash,
            },
            actor,
        )
        tainted.append(version)
    return tainted
