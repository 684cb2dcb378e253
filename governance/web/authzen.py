"""OpenID AuthZEN Authorization API 1.0: the policy as a decision point for other services.

`POST /access/v1/evaluation` answers one (subject, resource, action, context) question and
`POST /access/v1/evaluations` a batch, with top-level defaults that each entry may override and
the `options.evaluations_semantic` of the specification (`execute_all`, `deny_on_first_deny`,
`permit_on_first_permit`; the short-circuiting ones stop after the deciding evaluation).

Mapping to the policy's (subject, domain, object, action) questions:
- `subject.id` is the principal's name (any `subject.type`);
- `resource.type` is the object type (`dataset`, `model`, `scan`, ...) and `resource.id`, for
  named types, its name (`model` + `tax-assistant` asks about `model/tax-assistant`);
- the domain is `resource.properties.domain`, else `context.domain`, else the domain the
  resource itself lives in: a model family or a dataset that exists (by name or id), or a
  resource of type `domain` (its id). With none, nothing can grant it: the answer is a deny
  by default (`decision: false`, with `context.reason` and `context.error` saying what is
  missing; audited under the domain of things no domain owns), and a search answers an empty
  result, as the interop scenarios expect of resources a PDP does not know;
- `action.name` is the action.

The search APIs (§8) answer from the compiled policy: subject search ("who may do this to
that?") from its reverse indexes, action search over the catalog's actions for the type,
resource search over the domains and the model families and datasets of this instance.
Results are sorted by id and paginated with opaque tokens bound to the request (a token
used with a changed request is a 400). `GET /.well-known/authzen-configuration` (public)
is the PDP metadata (§9). Errors are 400 for a request the PDP cannot evaluate, with the
message at the top level of the body beside the API's envelope.

The caller authenticates with its bearer token and needs `query` on `authorization` in each
domain it asks about, as for `POST /api/v1/authorize`; every decision is audited the same way
and its `context` names the allowing rule, the policy hash and the audit entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Literal

from flask import current_app, g, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from governance.audit.service import AuditEvent
from governance.authz.catalog import ACTIONS, NAMED, object_type
from governance.authz.policy import UNSCOPED_DOMAIN
from governance.db import get_session
from governance.domains.models import Domain
from governance.domains.service import list_domains
from governance.errors import BadRequest, InvalidInput
from governance.policy_review.diff import who_can
from governance.web.common import ERROR_RESPONSES, SECURITY
from governance.web.guard import (
    allowed_domains,
    append,
    current_principal,
    decision_event,
    get_authorizer,
    log_event,
    mark_checked,
    require,
)

bp = APIBlueprint(
    "authzen",
    __name__,
    url_prefix="/access/v1",
    abp_tags=[Tag(name="authzen", description="OpenID AuthZEN Authorization API 1.0")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)

Name = Field(min_length=1, max_length=200)


class Entity(BaseModel):
    """AuthZEN's subject or resource: a type, an id and optional properties."""

    model_config = ConfigDict(extra="allow")

    type: str = Name
    id: str = Name
    properties: dict[str, Any] | None = None


class Action(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64)
    properties: dict[str, Any] | None = None


class Evaluation(BaseModel):
    """One access evaluation request (AuthZEN §6.1)."""

    model_config = ConfigDict(extra="allow")

    subject: Entity
    resource: Entity
    action: Action
    context: dict[str, Any] | None = None


class PartialEvaluation(BaseModel):
    """An entry of a batch: any part left out comes from the request's top level."""

    model_config = ConfigDict(extra="allow")

    subject: Entity | None = None
    resource: Entity | None = None
    action: Action | None = None
    context: dict[str, Any] | None = None


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")

    evaluations_semantic: Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"] = (
        "execute_all"
    )


class EvaluationsRequest(BaseModel):
    """A batch of evaluations with defaults (AuthZEN §7.1)."""

    model_config = ConfigDict(extra="allow")

    subject: Entity | None = None
    resource: Entity | None = None
    action: Action | None = None
    context: dict[str, Any] | None = None
    evaluations: list[PartialEvaluation] | None = Field(default=None, max_length=1000)
    options: Options | None = None


class EvaluationResponse(BaseModel):
    decision: bool
    context: dict[str, Any] | None = None


class EvaluationsResponse(BaseModel):
    evaluations: list[EvaluationResponse]


def resource_domain(kind: str, ident: str | None) -> str | None:
    """The domain a resource lives in, when it names one this instance knows."""
    if not ident:
        return None
    if kind == "domain":
        return ident
    session = get_session()
    if kind == "model":
        from governance.families.models import ModelFamily

        found = session.exec(
            select(Domain.name)
            .join(ModelFamily, ModelFamily.domain_id == Domain.id)
            .where(ModelFamily.name == ident)
        ).first()
        return found
    if kind == "dataset" and ident.isdigit() and len(ident) < 10:
        from governance.datasets.models import Dataset

        return session.exec(
            select(Domain.name)
            .join(Dataset, Dataset.domain_id == Domain.id)
            .where(Dataset.id == int(ident))
        ).first()
    return None


def domain_of(resource: Entity | SearchEntity, context: dict[str, Any] | None) -> str | None:
    """The domain a question is about: given in the resource or the context, else the one the
    resource lives in; None when there is none (nothing grants anything outside a domain)."""
    properties = resource.properties or {}
    domain = properties.get("domain") or (context or {}).get("domain")
    if domain is None:
        domain = resource_domain(resource.type, resource.id)
    if domain is not None and (not isinstance(domain, str) or not domain):
        raise InvalidInput(
            "the domain must be a non-empty string",
            details=[{"field": "resource.properties.domain"}],
        )
    return domain


NO_DOMAIN = (
    "the resource is in no domain this PDP knows (give resource.properties.domain or "
    "context.domain, or name a model family or dataset that exists): nothing grants it"
)


def may_ask_somewhere() -> None:
    """A caller may be told "no" about a resource in no domain if it may ask in any domain."""
    if not allowed_domains("authorization", "query"):
        require("query", "authorization", UNSCOPED_DOMAIN)  # refused, and logged as such
    mark_checked()


def undecidable(subject: str, obj: str, action: str) -> dict[str, Any]:
    """Deny by default, audited under the domain of things no domain owns, with the reason."""
    may_ask_somewhere()
    policy_hash = get_authorizer().policy.hash
    seq = append(
        [
            AuditEvent(
                principal=subject,
                action=action,
                object=obj,
                domain=UNSCOPED_DOMAIN,
                decision="deny",
                policy_hash=policy_hash,
                request_id=g.get("request_id"),
                details={
                    "rule": None,
                    "asked_by": current_principal().name,
                    "via": "authzen",
                    "reason": "no domain",
                },
            )
        ]
    )[0]
    return {
        "decision": False,
        "context": {
            "reason": NO_DOMAIN,
            "error": {"status": 400, "message": NO_DOMAIN},
            "policy_hash": policy_hash,
            "audit_seq": seq,
        },
    }


def question(evaluation: Evaluation, where: str) -> tuple[str, str, str, str]:
    """The policy question an AuthZEN evaluation asks: (subject, domain, object, action)."""
    domain = domain_of(evaluation.resource, evaluation.context) or UNSCOPED_DOMAIN
    kind = evaluation.resource.type
    obj = f"{kind}/{evaluation.resource.id}" if kind in NAMED else kind
    # What the audit entry of the decision stores has columns of fixed width: a subject that
    # could be no principal's name, or an object beyond the column, is refused here (422),
    # never sent to the database, where it would fail the write.
    for field, value, limit in (
        ("subject.id", evaluation.subject.id, 63),
        ("resource.id", obj, 200),
        ("resource.properties.domain", domain, 63),
    ):
        if len(value) > limit:
            raise InvalidInput(
                f"{where}{field} is longer than {limit} characters",
                details=[{"field": f"{where}{field}", "type": "string_too_long"}],
            )
    return evaluation.subject.id, domain, obj, evaluation.action.name


def decide(evaluation: Evaluation, where: str = "") -> dict[str, Any]:
    """Decide one evaluation for the calling service, audit it, and answer as AuthZEN does."""
    subject, domain, obj, action = question(evaluation, where)
    if domain == UNSCOPED_DOMAIN:
        return undecidable(subject, obj, action)
    require("query", "authorization", domain)
    decision = get_authorizer().decide(subject, domain, obj, action)
    event = decision_event(decision, {"asked_by": current_principal().name, "via": "authzen"})
    event.request_id = g.get("request_id")
    seq = append([event])[0]
    context: dict[str, Any] = {"policy_hash": decision.policy_hash, "audit_seq": seq}
    if decision.allowed:
        context["rule"] = list(decision.rule or ())
    else:
        context["reason"] = "no rule of the policy allows it"
    return {"decision": decision.allowed, "context": context}


@bp.post("/evaluation", responses={200: EvaluationResponse})
def evaluation(body: Evaluation):
    """Access evaluation: may the subject perform the action on the resource?"""
    return decide(body)


@bp.post("/evaluations", responses={200: EvaluationsResponse})
def evaluations(body: EvaluationsRequest):
    """A batch of access evaluations; entries inherit the top-level subject, resource, action
    and context they leave out."""
    if not body.evaluations:
        # Without entries the request is a single evaluation (AuthZEN §7.1).
        missing = [
            part for part in ("subject", "resource", "action") if getattr(body, part) is None
        ]
        if missing:
            raise InvalidInput(
                f"no evaluations and no {missing[0]}: give entries or one whole evaluation",
                details=[{"field": missing[0]}],
            )
        single = Evaluation(
            subject=body.subject, resource=body.resource, action=body.action, context=body.context
        )
        return decide(single)
    semantic = (body.options or Options()).evaluations_semantic
    answers = []
    for index, entry in enumerate(body.evaluations):
        merged = {
            part: getattr(entry, part) or getattr(body, part)
            for part in ("subject", "resource", "action", "context")
        }
        missing = [part for part in ("subject", "resource", "action") if merged[part] is None]
        if missing:
            raise InvalidInput(
                f"evaluations[{index}] has no {missing[0]}, here or at the top level",
                details=[{"field": f"evaluations[{index}].{missing[0]}"}],
            )
        answer = decide(Evaluation(**merged), f"evaluations[{index}].")
        answers.append(answer)
        if (semantic == "deny_on_first_deny" and not answer["decision"]) or (
            semantic == "permit_on_first_permit" and answer["decision"]
        ):
            break
    return {"evaluations": answers}


# --- search (AuthZEN §8) -------------------------------------------------------------------

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class SearchEntity(BaseModel):
    """A subject or resource of a search: the type, and the id unless it is the one searched."""

    model_config = ConfigDict(extra="allow")

    type: str = Name
    id: str | None = Field(default=None, min_length=1, max_length=200)
    properties: dict[str, Any] | None = None


class Page(BaseModel):
    model_config = ConfigDict(extra="allow")

    token: str | None = Field(default=None, max_length=400)
    limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    properties: dict[str, Any] | None = None


class SubjectSearch(BaseModel):
    """Which subjects of a type may perform the action on the resource?"""

    model_config = ConfigDict(extra="allow")

    subject: SearchEntity
    action: Action
    resource: Entity
    context: dict[str, Any] | None = None
    page: Page | None = None


class ResourceSearch(BaseModel):
    """Which resources of a type may the subject perform the action on?"""

    model_config = ConfigDict(extra="allow")

    subject: Entity
    action: Action
    resource: SearchEntity
    context: dict[str, Any] | None = None
    page: Page | None = None


class ActionSearch(BaseModel):
    """Which actions may the subject perform on the resource?"""

    model_config = ConfigDict(extra="allow")

    subject: Entity
    resource: Entity
    context: dict[str, Any] | None = None
    page: Page | None = None


class PageRead(BaseModel):
    next_token: str
    count: int
    total: int


class SearchResponse(BaseModel):
    page: PageRead
    context: dict[str, Any] | None = None
    results: list[dict[str, Any]]


def fingerprint(body: BaseModel) -> str:
    """What a page token is bound to: the request without its token."""
    document = body.model_dump(mode="json", exclude_none=True)
    (document.get("page") or {}).pop("token", None)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def paginate(body: BaseModel, page: Page | None, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of the sorted results, with the token for the next (empty at the end)."""
    limit = DEFAULT_LIMIT if page is None or page.limit is None else page.limit
    bound = fingerprint(body)
    offset = 0
    if page is not None and page.token:
        try:
            state = json.loads(base64.urlsafe_b64decode(page.token.encode() + b"=="))
            offset, token_bound = int(state["o"]), str(state["q"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest(
                "page.token is not a token this PDP gave", details=[{"field": "page.token"}]
            ) from exc
        if token_bound != bound or offset < 0:
            raise BadRequest(
                "the request changed since the token was given: send the same subject, "
                "resource, action, context and limit with page.token",
                details=[{"field": "page.token"}],
            )
    shown = results[offset : offset + limit]
    following = offset + len(shown)
    next_token = ""
    if following < len(results) and limit > 0:
        raw = json.dumps({"o": following, "q": bound}, separators=(",", ":")).encode()
        next_token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {
        "page": {"next_token": next_token, "count": len(shown), "total": len(results)},
        "context": {"policy_hash": get_authorizer().policy.hash},
        "results": shown,
    }


def object_of(resource: Entity) -> str:
    kind = resource.type
    return f"{kind}/{resource.id}" if kind in NAMED else kind


@bp.post("/search/subject", responses={200: SearchResponse})
def search_subject(body: SubjectSearch):
    """Subject search: every principal the policy lets perform the action on the resource,
    directly or through roles (transitively), with the rule that allows each."""
    domain = domain_of(body.resource, body.context)
    if domain is None:
        may_ask_somewhere()
        return {**paginate(body, body.page, []), "context": {"reason": NO_DOMAIN}}
    require("query", "authorization", domain)
    policy = get_authorizer().policy
    found = who_can(policy, body.action.name, object_of(body.resource), domain)
    results = [
        {"type": body.subject.type, "id": name, "properties": {"rule": list(rule)}}
        for name, rule in found
    ]
    return paginate(body, body.page, results)


@bp.post("/search/action", responses={200: SearchResponse})
def search_action(body: ActionSearch):
    """Action search: the actions of the resource's type that the subject may perform on it."""
    domain = domain_of(body.resource, body.context)
    if domain is None:
        may_ask_somewhere()
        return {**paginate(body, body.page, []), "context": {"reason": NO_DOMAIN}}
    require("query", "authorization", domain)
    policy = get_authorizer().policy
    obj = object_of(body.resource)
    kind = object_type(obj)
    candidates = set(ACTIONS.get(kind, ()))
    candidates |= {
        act for _s, _d, pobj, act in policy.rules if act != "*" and object_type(pobj) == kind
    }
    results = [
        {"name": action}
        for action in sorted(candidates)
        if policy.decide(body.subject.id, domain, obj, action).allowed
    ]
    return paginate(body, body.page, results)


@bp.post("/search/resource", responses={200: SearchResponse})
def search_resource(body: ResourceSearch):
    """Resource search: the resources of a type the subject may perform the action on, in the
    domains the caller may ask about (one domain when the request names it). Model families
    and datasets are listed by name and id; other types, which the policy grants per domain,
    as `id: "*"` with the domain in `properties`."""
    properties = body.resource.properties or {}
    named = properties.get("domain") or (body.context or {}).get("domain")
    session = get_session()
    domains = (
        [named] if isinstance(named, str) and named else [d.name for d in list_domains(session)]
    )
    policy = get_authorizer().policy
    kind = body.resource.type
    subject, action = body.subject.id, body.action.name
    results: list[dict[str, Any]] = []
    for domain in sorted(domains):
        caller = policy.decide(current_principal().name, domain, "authorization", "query")
        if not caller.allowed:
            if named:
                require("query", "authorization", domain)  # refused, and logged as such
            continue
        for ident in resource_ids(session, policy, kind, domain):
            obj = f"{kind}/{ident}" if kind in NAMED else kind
            if policy.decide(subject, domain, obj, action).allowed:
                results.append({"type": kind, "id": ident, "properties": {"domain": domain}})
    if not named:
        # Each domain was decided above and only the permitted ones searched: one entry says
        # which (the caller's per-domain decisions are not logged one by one).
        searched = sorted({r["properties"]["domain"] for r in results})
        log_event("authzen.search", "authorization", None, "allow", {"found_in": searched})
        mark_checked()
    results.sort(key=lambda r: (r["properties"]["domain"], r["id"]))
    return paginate(body, body.page, results)


def resource_ids(session, policy, kind: str, domain: str) -> list[str]:
    """The ids of a type's resources in a domain: model families (of this instance and those
    the policy names), datasets by id; other types are granted per domain (`*`)."""
    if kind == "model":
        from governance.families.models import ModelFamily

        names = set(
            session.exec(
                select(ModelFamily.name)
                .join(Domain, Domain.id == ModelFamily.domain_id)
                .where(Domain.name == domain)
            ).all()
        )
        for _sub, dom, obj, _act in policy.rules:
            if obj.startswith("model/") and "*" not in obj and dom in (domain, "*"):
                names.add(obj.split("/", 1)[1])
        return sorted(names)
    if kind == "dataset":
        from governance.datasets.models import Dataset

        ids = session.exec(
            select(Dataset.id)
            .join(Domain, Domain.id == Dataset.domain_id)
            .where(Domain.name == domain)
        ).all()
        return [str(i) for i in sorted(ids)]
    return ["*"]


# --- metadata (AuthZEN §9) -----------------------------------------------------------------

discovery_bp = APIBlueprint(
    "authzen_discovery",
    __name__,
    url_prefix="/.well-known",
    abp_tags=[Tag(name="authzen", description="OpenID AuthZEN Authorization API 1.0")],
)


class PdpMetadata(BaseModel):
    policy_decision_point: str
    access_evaluation_endpoint: str
    access_evaluations_endpoint: str
    search_subject_endpoint: str
    search_resource_endpoint: str
    search_action_endpoint: str


@discovery_bp.get("/authzen-configuration", responses={200: PdpMetadata})
def configuration():
    """The policy decision point's metadata: where each AuthZEN endpoint is (public)."""
    base = (current_app.config.get("GOVERNANCE_PUBLIC_URL") or request.host_url).rstrip("/")
    response = current_app.response_class(
        json.dumps(
            {
                "policy_decision_point": base,
                "access_evaluation_endpoint": f"{base}/access/v1/evaluation",
                "access_evaluations_endpoint": f"{base}/access/v1/evaluations",
                "search_subject_endpoint": f"{base}/access/v1/search/subject",
                "search_resource_endpoint": f"{base}/access/v1/search/resource",
                "search_action_endpoint": f"{base}/access/v1/search/action",
            }
        ),
        mimetype="application/json",
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
