"""HTTP API of model families and versions: training, lineage, promotion, rollback."""

from __future__ import annotations

from pathlib import Path

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from sqlmodel import select

from governance import runtime
from governance.approvals import service as approvals
from governance.approvals.models import RequestRead
from governance.approvals.rules import load_approval_rules
from governance.db import INT_MAX, get_session
from governance.domains.service import get_domain
from governance.errors import NotFound
from governance.families import intake, privacy, review, service, sweeps
from governance.families.criteria import load_criteria
from governance.families.models import (
    BaseModelList,
    BaseModelRead,
    BaseModelRecord,
    BaseWithdraw,
    ExpertScores,
    FamilyCreate,
    FamilyList,
    FamilyRead,
    SweepCreate,
    SweepList,
    SweepRead,
    VersionCreate,
    VersionList,
    VersionRead,
)
from governance.jobs.models import JobKind, JobStatus
from governance.web import jobs_lookup as jobs
from governance.web.common import ERROR_RESPONSES, SECURITY, json_document
from governance.web.families_lookup import (
    family_for,
    family_read,
    readable_families,
    score_review,
    version_read,
)
from governance.web.guard import (
    current_actor,
    require,
)

bp = APIBlueprint(
    "families",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="models", description="Model families, versions, lineage, promotion")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class DomainPath(BaseModel):
    name: str = Field(max_length=63)


class FamilyPath(BaseModel):
    family: str = Field(max_length=63)


class SweepPath(BaseModel):
    family: str = Field(max_length=63)
    uid: str = Field(pattern=r"^[0-9a-f]{32}$")


class ReviewPath(BaseModel):
    family: str = Field(max_length=63)
    number: int = Field(ge=1, le=INT_MAX)
    uid: str = Field(pattern=r"^[0-9a-f]{32}$")


class FamilyVersionPath(BaseModel):
    family: str = Field(max_length=63)
    number: int = Field(ge=1, le=INT_MAX)


def policy_dir() -> Path:
    return runtime.current().policy_dir


class BasePath(BaseModel):
    name: str = Field(max_length=63)


def base_read(session, base) -> BaseModelRead:
    return BaseModelRead(
        **base.model_dump(exclude={"id", "path"}),
        approved_domains=intake.approved_domains(session, base),
    )


@bp.get("/base-models", responses={200: BaseModelList})
def list_base_models():
    """Registered base models: source, license, file hashes, card, and approved domains."""
    require("read", "base-model", "system")
    session = get_session()
    bases = session.exec(select(BaseModelRecord).order_by(BaseModelRecord.name)).all()
    return BaseModelList(items=[base_read(session, b) for b in bases]).model_dump(mode="json")


@bp.post("/base-models/<name>/withdraw", responses={200: BaseModelRead})
def withdraw_base_model(path: BasePath, body: BaseWithdraw):
    """Withdraw a base model: no new use, and every version built on it is tainted."""
    require("withdraw", "base-model", "system")
    session = get_session()
    base = intake.find_base_model(session, path.name)
    intake.withdraw_base_model(session, base, body.reason, actor=current_actor())
    return base_read(session, base).model_dump(mode="json")


@bp.post("/domains/<name>/models", responses={201: FamilyRead})
def create_family(path: DomainPath, body: FamilyCreate):
    """Create a model family in a domain (base model, LoRA recipe, eval suite, schedule)."""
    require("create", f"model/{body.name}", path.name)
    domain = get_domain(get_session(), path.name)
    family = service.create_family(
        get_session(), domain, body, runtime.current().policy_dir, actor=current_actor()
    )
    return family_read(family, domain), 201


@bp.get("/models", responses={200: FamilyList})
def list_families():
    """The model families the caller may read, in every domain."""
    return {"items": readable_families()}


@bp.get("/domains/<name>/models", responses={200: FamilyList})
def list_domain_families(path: DomainPath):
    """A domain's model families that the caller may read."""
    require("read", "domain", path.name)
    return {"items": readable_families([get_domain(get_session(), path.name)])}


class PrivacyLedgerRead(BaseModel):
    domain: str
    unit: str
    unit_key: str | None
    required: bool
    budget: dict | None
    period_since: str
    composition: str
    spent: dict
    remaining: dict | None
    unbounded_versions: int
    entries: list[dict]


@bp.get("/domains/<name>/privacy-ledger", responses={200: PrivacyLedgerRead})
def privacy_ledger(path: DomainPath):
    """The domain's privacy ledger: each version trained with differential privacy, the
    (epsilon, delta) its accountant spent, their sum over the rolling period, and what is
    left of the budget in policies/domains.yaml."""
    require("read", "domain", path.name)
    domain = get_domain(get_session(), path.name)
    return privacy.ledger(get_session(), domain, runtime.current().policy_dir).as_dict()


@bp.get("/models/<family>", responses={200: FamilyRead})
def show_family(path: FamilyPath):
    """Show a family and its production version."""
    family, domain = family_for(path.family, "read")
    return family_read(family, domain)


@bp.get("/models/<family>/versions", responses={200: VersionList})
def list_versions(path: FamilyPath):
    """List a family's versions with their status."""
    family, _domain = family_for(path.family, "read")
    versions = service.list_versions(get_session(), family)
    return {"items": [version_read(v, family) for v in versions]}


@bp.post("/models/<family>/versions", responses={201: VersionRead})
def train_version(path: FamilyPath, body: VersionCreate):
    """Start a new version from the base model on approved, scanned dataset versions."""
    family, domain = family_for(path.family, "train")
    version = service.start_version(
        get_session(),
        family,
        domain,
        body,
        policy_dir(),
        actor=current_actor(),
        executor=runtime.current().job_executor,
    )
    return version_read(version, family), 201


@bp.post("/models/<family>/sweeps", responses={201: SweepRead})
def start_sweep(path: FamilyPath, body: SweepCreate):
    """Train the same approved data on several registered bases (one version each) and
    compare them; the table fills in as the versions pass their gates."""
    family, domain = family_for(path.family, "train")
    session = get_session()
    sweep, _versions = sweeps.start_sweep(
        session,
        family,
        domain,
        body,
        policy_dir(),
        actor=current_actor(),
        executor=runtime.current().job_executor,
    )
    return sweep_read(session, sweep), 201


@bp.get("/models/<family>/sweeps", responses={200: SweepList})
def list_sweeps(path: FamilyPath):
    """A family's size sweeps, newest first, each with its table as it stands."""
    family, _domain = family_for(path.family, "read")
    session = get_session()
    return {"items": [sweep_read(session, s) for s in sweeps.list_sweeps(session, family)]}


@bp.get("/models/<family>/sweeps/<uid>", responses={200: SweepRead})
def show_sweep(path: SweepPath):
    """One sweep's table: score, latency per token and memory per base, the chosen base."""
    family, _domain = family_for(path.family, "read")
    session = get_session()
    return sweep_read(session, sweeps.get_sweep(session, family, path.uid))


def sweep_read(session, sweep) -> dict:
    return SweepRead.model_validate(sweeps.table(session, sweep)).model_dump(mode="json")


@bp.get("/models/<family>/versions/<int:number>", responses={200: VersionRead})
def show_version(path: FamilyVersionPath):
    family, _domain = family_for(path.family, "read")
    return version_read(service.get_version(get_session(), family, path.number), family)


@bp.get(
    "/models/<family>/versions/<int:number>/reviews",
    responses={200: json_document("Sampled conversations, their scores and the judge's agreement")},
)
def list_reviews(path: FamilyVersionPath):
    """The version's sampled conversations with every expert and judge score (signed), the
    means per criterion, and the judge's agreement with the experts on the domain."""
    family, domain = family_for(path.family, "read")
    session = get_session()
    version = service.get_version(session, family, path.number)
    return review.version_reviews(
        session, domain, version, load_criteria(policy_dir(), domain.name)
    )


@bp.post(
    "/models/<family>/versions/<int:number>/reviews/<uid>/scores",
    responses={201: json_document("The expert's signed scores of the conversation")},
)
def score_review_item(path: ReviewPath, body: ExpertScores):
    """A domain expert scores one sampled conversation against the domain's criteria (a new
    score on a criterion replaces the expert's earlier one); signed and audited."""
    return score_review(path.family, path.number, path.uid, body, policy_dir()), 201


@bp.get(
    "/domains/<name>/judge-agreement",
    responses={200: json_document("Weighted kappa per criterion, items, and whether it may gate")},
)
def judge_agreement(path: DomainPath):
    """How well the domain's judge agrees with its experts (quadratic weighted kappa, with the
    number of items), and whether it may gate."""
    require("read", "domain", path.name)
    session = get_session()
    domain = get_domain(session, path.name)
    criteria = load_criteria(policy_dir(), domain.name)
    if criteria is None:
        raise NotFound(f"{domain.name} has no review criteria")
    return review.agreement(session, domain, criteria)


@bp.get(
    "/models/<family>/versions/<int:number>/lineage",
    responses={200: json_document("The lineage and its digest's Ed25519 signature")},
)
def show_lineage(path: FamilyVersionPath):
    """The version's lineage, its canonical digest signed by the service key."""
    family, _domain = family_for(path.family, "read")
    version = service.get_version(get_session(), family, path.number)
    return service.signed_lineage(get_session(), version, runtime.current().audit_log.signing_key)


@bp.post("/models/<family>/versions/<int:number>/promotion", responses={201: RequestRead})
def request_promotion(path: FamilyVersionPath):
    """Ask for the approvals a promotion needs (the trainer may not give them)."""
    family, _domain = family_for(path.family, "promote")
    session = get_session()
    version = service.get_version(session, family, path.number)
    request = service.request_promotion(
        session, family, version, load_approval_rules(policy_dir()), actor=current_actor()
    )
    return approvals.request_read(session, request), 201


@bp.post("/models/<family>/versions/<int:number>/promote", responses={200: VersionRead})
def promote(path: FamilyVersionPath):
    """Put an approved version in production; the previous one stays for rollback."""
    family, _domain = family_for(path.family, "promote")
    session = get_session()
    version = service.get_version(session, family, path.number)
    promoted = service.promote(
        session,
        family,
        version,
        policy_dir(),
        actor=current_actor(),
        sign=runtime.current().sign_version,
    )
    return version_read(promoted, family)


class RollbackQuery(BaseModel):
    base_model: str | None = Field(
        default=None, max_length=63, description="The variant to roll back (by its base model)."
    )
    reason: str | None = Field(
        default=None,
        max_length=500,
        description="Why (kept on the retired version and in the audit entry).",
    )


@bp.post("/models/<family>/rollback", responses={200: VersionRead})
def rollback(path: FamilyPath, query: RollbackQuery):
    """Put the previous untainted version back in production, in one call (for the family's
    own base, or the variant of `base_model`)."""
    family, _domain = family_for(path.family, "promote")
    session = get_session()
    base = service.get_base_model(session, query.base_model).id if query.base_model else None
    version = service.rollback(
        session, family, actor=current_actor(), base_model_id=base, reason=query.reason
    )
    return version_read(version, family)


@bp.post("/models/<family>/versions/<int:number>/evaluate", responses={202: JobStatus})
def evaluate_version(path: FamilyVersionPath):
    """Run the evaluation gate (again) as a job: held-out metrics against production, the PII
    probe. Answers `202 Accepted` with the job's `Location`."""
    family, domain = family_for(path.family, "train")
    version = service.get_version(get_session(), family, path.number)
    return jobs.start(
        get_session(),
        JobKind.EVALUATE,
        f"model-version/{version.uid}",
        domain.name,
        f"model/{family.name}",
        {"family": family.name, "version": version.number},
    )
