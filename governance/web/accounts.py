"""HTTP API for principals and tokens."""

from __future__ import annotations

import datetime as dt

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from governance.accounts import service
from governance.accounts.models import (
    ApiToken,
    PrincipalCreate,
    PrincipalList,
    PrincipalPath,
    PrincipalRead,
    RoleBinding,
    TokenCreate,
    TokenIssued,
    TokenList,
    TokenPath,
    TokenRead,
    WhoAmI,
)
from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import get_session, utcnow
from governance.web.common import ERROR_RESPONSES, SECURITY
from governance.web.guard import (
    current_actor,
    current_principal,
    get_authorizer,
    mark_checked,
    require,
)

bp = APIBlueprint(
    "accounts",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="accounts", description="Principals and API tokens")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


def token_read(record: ApiToken, principal: str) -> dict:
    return TokenRead(
        id=record.id,
        principal=principal,
        description=record.description,
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=record.last_used_at,
    ).model_dump(mode="json")


@bp.get("/me", responses={200: WhoAmI})
def whoami():
    """Return the calling principal and its role bindings."""
    principal = current_principal()
    # Anyone authenticated may see who they are and which roles the policy gives them.
    mark_checked()
    bindings = get_authorizer().policy.role_bindings(principal.name)
    return WhoAmI(
        **PrincipalRead.model_validate(principal).model_dump(),
        roles=[RoleBinding(domain=d, role=r) for d, r in bindings],
    ).model_dump(mode="json")


@bp.get("/principals", responses={200: PrincipalList})
def list_principals():
    """List every principal."""
    require("read", "principal", SYSTEM_DOMAIN)
    items = [PrincipalRead.model_validate(p) for p in service.list_principals(get_session())]
    return PrincipalList(items=items).model_dump(mode="json")


@bp.post("/principals", responses={201: PrincipalRead})
def create_principal(body: PrincipalCreate):
    """Create a user or service-account principal; its roles come from the policy files."""
    require("create", "principal", SYSTEM_DOMAIN)
    principal = service.create_principal(
        get_session(), body.name, body.kind, body.display_name, actor=current_actor()
    )
    return PrincipalRead.model_validate(principal).model_dump(mode="json"), 201


@bp.get("/principals/<name>", responses={200: PrincipalRead})
def get_principal(path: PrincipalPath):
    """Return one principal."""
    require("read", "principal", SYSTEM_DOMAIN)
    principal = service.get_principal(get_session(), path.name)
    return PrincipalRead.model_validate(principal).model_dump(mode="json")


@bp.get("/principals/<name>/tokens", responses={200: TokenList})
def list_tokens(path: PrincipalPath):
    """List a principal's tokens (never the tokens themselves)."""
    require("read", "token", SYSTEM_DOMAIN)
    session = get_session()
    principal = service.get_principal(session, path.name)
    items = [token_read(t, principal.name) for t in service.list_tokens(session, principal)]
    return {"items": items}


@bp.post("/principals/<name>/tokens", responses={201: TokenIssued})
def issue_token(path: PrincipalPath, body: TokenCreate):
    """Issue a token for a principal; the response is the only place it ever appears."""
    require("create", "token", SYSTEM_DOMAIN)
    session = get_session()
    principal = service.get_principal(session, path.name)
    if body.never_expires:
        expires_at = None
    else:
        days = body.expires_in_days or current_app.config["TOKEN_DEFAULT_TTL_DAYS"]
        expires_at = utcnow() + dt.timedelta(days=days)
    record, token = service.issue_token(
        session,
        principal,
        expires_at=expires_at,
        description=body.description,
        actor=current_actor(),
    )
    return {**token_read(record, principal.name), "token": token}, 201


@bp.delete("/tokens/<token_id>", responses={200: TokenRead})
def revoke_token(path: TokenPath):
    """Revoke a token; the caller's own tokens may always be revoked."""
    session = get_session()
    record = session.get(ApiToken, path.token_id)
    if record is not None and record.principal_id == current_principal().id:
        mark_checked()
    else:
        # Decide before saying whether the id exists, so ids cannot be probed.
        require("revoke", "token", SYSTEM_DOMAIN)
    record = service.revoke_token(session, path.token_id, actor=current_actor())
    return token_read(record, service.token_owner(session, record))
