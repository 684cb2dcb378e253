"""OpenID AuthZEN Authorization API 1.0: the policy as a decision point for other services.

`POST /access/v1/evaluation` answers one (subject, resource, action, context) question and
`POST /access/v1/evaluations` a batch, with top-level defaults that each entry may override and
the `options.evaluations_semantic` of the specification (`execute_all`, `deny_on_first_deny`,
`permit_on_first_permit`; the short-circuiting ones stop after the deciding evaluation).

Mapping to the policy's (subject, domain, object, action) questions:
- `subject.id` is the principal's name (any `subject.type`);
- `resource.type` is the object type (`dataset`, `model`, `scan`, ...) and `resource.id`, for
  named types, its name (`model` + `tax-assistant` asks about `model/tax-assistant`);
- the domain is `resource.properties.domain`, else `context.domain`;
- `action.name` is the action.

The caller authenticates with its bearer token and needs `query` on `authorization` in each
domain it asks about, as for `POST /api/v1/authorize`; every decision is audited the same way
and its `context` names the allowing rule, the policy hash and the audit entry.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import g
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from governance.authz.catalog import NAMED
from governance.errors import InvalidInput
from governance.guard import audit_log, current_principal, decision_event, get_authorizer, require
from governance.views_common import ERROR_RESPONSES, SECURITY

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


def question(evaluation: Evaluation, where: str) -> tuple[str, str, str, str]:
    """The policy question an AuthZEN evaluation asks: (subject, domain, object, action)."""
    properties = evaluation.resource.properties or {}
    domain = properties.get("domain") or (evaluation.context or {}).get("domain")
    if not isinstance(domain, str) or not domain:
        raise InvalidInput(
            "the domain is missing: give resource.properties.domain or context.domain",
            details=[{"field": f"{where}resource.properties.domain"}],
        )
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
    require("query", "authorization", domain)
    decision = get_authorizer().decide(subject, domain, obj, action)
    event = decision_event(decision, {"asked_by": current_principal().name, "via": "authzen"})
    event.request_id = g.get("request_id")
    seq = audit_log().append(event)
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
