"""POST /api/v1/models/{family}/generate: policy, production version, backend, audit."""

from __future__ import annotations

import time

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from governance import runtime
from governance.db import get_session
from governance.errors import Conflict, TooManyRequests
from governance.families import service as models
from governance.families.access import family_for
from governance.families.models import BaseModelRecord
from governance.gateway.backends import servable
from governance.guard import current_principal, log_event
from governance.pii.cache import content_key, keyed_hash
from governance.views_common import ERROR_RESPONSES, SECURITY

bp = APIBlueprint(
    "gateway",
    __name__,
    url_prefix="/api/v1/models",
    abp_tags=[Tag(name="gateway", description="Queries to production models")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class FamilyPath(BaseModel):
    family: str = Field(max_length=63)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=8000)
    max_new_tokens: int = Field(default=64, ge=1, le=512)


class GenerateResponse(BaseModel):
    family: str
    version: int
    version_uid: str
    text: str
    prompt_tokens: int
    completion_tokens: int


@bp.post("/<family>/generate", responses={200: GenerateResponse})
def generate(path: FamilyPath, body: GenerateRequest):
    """Answer a prompt with the family's production version; the query is audited, the
    prompt only by its hash."""
    # The authorization decision (allowed or denied) is itself an audit entry.
    family, domain = family_for(path.family, "query")
    # Keyed under the domain's content key: a short prompt cannot be confirmed by guessing.
    rt = runtime.current()
    prompt_hash = keyed_hash(content_key(rt.keyring, get_session(), domain), body.prompt)
    principal = current_principal().name
    if not rt.limiter.allow(principal):
        log_event(
            "model.query",
            f"model/{family.name}",
            domain.name,
            "deny",
            {"reason": "rate_limited", "prompt_hmac": prompt_hash},
        )
        raise TooManyRequests(
            f"{principal} sent more than {rt.limiter.per_minute} queries in a minute",
            retry_after=rt.limiter.retry_after(principal),
        )
    session = get_session()
    version = models.serving_version(session, family)
    if version is None:
        log_event(
            "model.query",
            f"model/{family.name}",
            domain.name,
            "failed",
            {"reason": "no_serving_version", "prompt_hmac": prompt_hash},
        )
        raise Conflict(f"{family.name} has no version that may serve", code="no_serving_version")
    target = servable(version, session.get(BaseModelRecord, version.base_model_id))
    started = time.perf_counter()
    answer = rt.backend.generate(target, body.prompt, body.max_new_tokens)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    log_event(
        "model.query",
        f"model/{family.name}",
        domain.name,
        "allow",
        {
            "version": version.number,
            "version_uid": version.uid,
            "latency_ms": latency_ms,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "prompt_hmac": prompt_hash,
        },
    )
    return GenerateResponse(
        family=family.name,
        version=version.number,
        version_uid=version.uid,
        text=answer.text,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    ).model_dump()
