"""Principal-aware lookups of model families and versions, shared by the API, the console and
the gateway. Another domain's family is answered exactly as a missing one."""

from __future__ import annotations

from sqlmodel import col, select

from governance import runtime
from governance.authz.policy import UNSCOPED_DOMAIN
from governance.db import get_session
from governance.domains.models import Domain
from governance.errors import Conflict, NotFound
from governance.families import review, service
from governance.families.criteria import load_criteria
from governance.families.models import (
    BaseModelRecord,
    ExpertScores,
    FamilyRead,
    ModelFamily,
    ModelVersion,
    VersionRead,
    VersionWork,
)
from governance.web.guard import (
    check,
    current_actor,
    current_principal,
    get_authorizer,
    log_event,
    mark_checked,
)


def family_for(name: str, action: str, *, queue: bool = False) -> tuple[ModelFamily, Domain]:
    """A family the caller may act on; another domain's is indistinguishable from absent.
    `queue`: the decision's entry joins the request's next append (see guard.check)."""
    found = service.find_family(get_session(), name)
    domain = found[1].name if found else UNSCOPED_DOMAIN
    if check(action, f"model/{name}", domain, queue=queue).allowed and found is not None:
        return found
    raise NotFound(f"no model family {name!r}", details={"family": name})


def family_read(family: ModelFamily, domain: Domain) -> dict:
    session = get_session()
    production = service.production_version(session, family)
    base = session.get(BaseModelRecord, family.base_model_id)
    variants = [
        {
            "base_model": variant_base.name,
            "version": version.number,
            "status": version.status,
        }
        for variant_base, version in service.serving_variants(session, family)
    ]
    return FamilyRead(
        domain=domain.name,
        base_model=base.name,
        production_version=production.number if production else None,
        variants=variants,
        **family.model_dump(
            include={
                "name",
                "lora",
                "hyperparameters",
                "eval_suite",
                "privacy",
                "refresh_schedule",
                "created_by",
                "created_at",
            }
        ),
    ).model_dump(mode="json")


def version_read(version: ModelVersion, family: ModelFamily) -> dict:
    session = get_session()
    parent = session.get(ModelVersion, version.parent_id) if version.parent_id else None
    job = service.work_in_flight(session, version)
    work = (
        VersionWork(
            job=job.uid,
            kind=job.kind,
            state=job.state,
            attempt=job.attempt,
            progress=job.progress or {},
            queued_at=job.created_at,
            heartbeat_at=job.heartbeat_at,
        )
        if job
        else None
    )
    return VersionRead(
        work=work,
        family=family.name,
        version=version.number,
        base_model=session.get(BaseModelRecord, version.base_model_id).name,
        parent=parent.number if parent else None,
        **version.model_dump(
            include={
                "uid",
                "tax_year",
                "status",
                "status_reason",
                "base_weights_hash",
                "datasets",
                "metrics",
                "evaluation",
                "trained_by",
                "policy_hash",
                "created_at",
                "promoted_at",
                "tainted_at",
            }
        ),
    ).model_dump(mode="json")


def permitted_families(
    action: str, domains: list[Domain] | None = None, **logged: str
) -> list[tuple[ModelFamily, Domain]]:
    """The families (in these domains, or anywhere) on which the caller may `action`, by
    name; the listing is logged once, naming what it showed."""
    session = get_session()
    principal = current_principal().name
    policy = get_authorizer().policy
    query = select(ModelFamily, Domain).join(Domain, Domain.id == ModelFamily.domain_id)
    if domains is not None:
        query = query.where(col(ModelFamily.domain_id).in_([d.id for d in domains]))
    found = [
        (family, domain)
        for family, domain in session.exec(query.order_by(ModelFamily.name))
        if policy.decide(principal, domain.name, f"model/{family.name}", action).allowed
    ]
    log_event("list", "model", None, "allow", {"visible": [f.name for f, _ in found], **logged})
    mark_checked()
    return found


def readable_families(domains: list[Domain] | None = None) -> list[dict]:
    """The families the caller may read (in these domains, or anywhere), logged as a listing."""
    return [family_read(family, domain) for family, domain in permitted_families("read", domains)]


def score_review(family_name: str, number: int, uid: str, body: ExpertScores, policy_dir) -> dict:
    """The caller, a domain expert, scores one sampled conversation (API and console alike)."""
    family, domain = family_for(family_name, "review")
    criteria = load_criteria(policy_dir, domain.name)
    if criteria is None:
        raise Conflict(
            f"{domain.name} has no review criteria (policies/criteria/{domain.name}.yaml)",
            code="no_criteria",
        )
    session = get_session()
    version = service.get_version(session, family, number)
    item = review.get_item(session, version, uid)
    review.add_expert_scores(
        session,
        runtime.current().audit_log.signing_key,
        family,
        domain,
        version,
        item,
        body.scores,
        body.comment,
        criteria,
        actor=current_actor(),
    )
    return review.item_read(session, item)
