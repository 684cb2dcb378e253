"""HTTP API for data domains, addressed by name."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import get_session
from governance.domains import service
from governance.domains.models import (
    DomainCreate,
    DomainList,
    DomainPath,
    DomainRead,
    DomainUpdate,
)
from governance.policy_review.lint import declared_domains
from governance.web.common import ERROR_RESPONSES, SECURITY
from governance.web.guard import allowed_domains, current_actor, log_event, mark_checked, require

bp = APIBlueprint(
    "domains",
    __name__,
    url_prefix="/api/v1/domains",
    abp_tags=[Tag(name="domains", description="Segregated data domains")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


@bp.get("", responses={200: DomainList})
def list_domains():
    """List the domains the caller may read; others are not mentioned."""
    visible = allowed_domains("domain", "read")
    # One entry for the listing, naming what it showed, rather than one per domain.
    log_event("list", "domain", None, "allow", {"visible": [d.name for d in visible]})
    mark_checked()
    return DomainList(items=[DomainRead.model_validate(d) for d in visible]).model_dump(mode="json")


@bp.post("", responses={201: DomainRead})
def create_domain(body: DomainCreate):
    """Create a data domain."""
    require("create", "domain", SYSTEM_DOMAIN)
    declared, _problems = declared_domains(Path(current_app.config["GOVERNANCE_POLICY_DIR"]))
    domain = service.create_domain(get_session(), body, actor=current_actor(), declared=declared)
    return DomainRead.model_validate(domain).model_dump(mode="json"), 201


@bp.get("/<name>", responses={200: DomainRead})
def get_domain(path: DomainPath):
    """Return one domain."""
    # Authorize before the lookup: a stranger learns nothing about which domains exist.
    require("read", "domain", path.name)
    domain = service.get_domain(get_session(), path.name)
    return DomainRead.model_validate(domain).model_dump(mode="json")


@bp.patch("/<name>", responses={200: DomainRead})
def update_domain(path: DomainPath, body: DomainUpdate):
    """Change a domain's description, jurisdiction or retention."""
    require("update", "domain", path.name)
    domain = service.update_domain(get_session(), path.name, body, actor=current_actor())
    return DomainRead.model_validate(domain).model_dump(mode="json")
