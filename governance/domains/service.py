"""Create, read, list and update data domains."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from governance.audit.service import Actor, record
from governance.db import utcnow
from governance.domains.models import Domain, DomainCreate, DomainUpdate
from governance.errors import Conflict, InvalidInput, NotFound


def create_domain(
    session: Session, data: DomainCreate, *, actor: Actor, declared: set[str] | None = None
) -> Domain:
    """Create a domain; a name already taken is a conflict.

    With `declared` (the domains of policies/domains.yaml), a domain the policy does not
    declare is refused: a domain exists because a reviewed policy change says so.
    """
    if declared is not None and data.name not in declared:
        raise InvalidInput(
            f"domain {data.name!r} is not declared in policies/domains.yaml; declare it there "
            f"(reviewed like the rest of the policy), then create it",
            details=[{"field": "name"}],
            code="undeclared_domain",
        )
    # Checked first, so a refusal leaves the caller's transaction as it was; the unique key
    # still decides a race (and then the transaction is rolled back).
    if find_domain(session, data.name) is not None:
        raise Conflict(f"domain {data.name!r} already exists", details={"name": data.name})
    domain = Domain(**data.model_dump(), created_by=actor.principal)
    session.add(domain)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        session.rollback()
        raise Conflict(f"domain {data.name!r} already exists", details={"name": data.name}) from exc
    record(
        session,
        actor,
        "domain.create",
        f"domain/{data.name}",
        data.name,
        details=data.model_dump(exclude={"description"}),
    )
    return domain


def find_domain(session: Session, name: str) -> Domain | None:
    """Return the domain of that name, or None."""
    return session.exec(select(Domain).where(Domain.name == name)).first()


def get_domain(session: Session, name: str) -> Domain:
    """Return the domain of that name or raise NotFound."""
    domain = find_domain(session, name)
    if domain is None:
        raise NotFound(f"no domain named {name!r}", details={"name": name})
    return domain


def list_domains(session: Session, names: set[str] | None = None) -> list[Domain]:
    """Return domains by name; only those in `names` when given (`*` in it means all)."""
    query = select(Domain).order_by(Domain.name)
    if names is not None and "*" not in names:
        query = query.where(Domain.name.in_(sorted(names)))
    return list(session.exec(query))


def update_domain(session: Session, name: str, changes: DomainUpdate, *, actor: Actor) -> Domain:
    """Apply the given changes to a domain."""
    domain = get_domain(session, name)
    applied = changes.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in applied.items():
        setattr(domain, field, value)
    domain.updated_at = utcnow()
    session.add(domain)
    record(
        session, actor, "domain.update", f"domain/{name}", name, details={"fields": sorted(applied)}
    )
    return domain
