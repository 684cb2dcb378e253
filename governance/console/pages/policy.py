"""Console pages of the policy in force, and the answer to unknown paths."""

from __future__ import annotations

from flask import (
    render_template,
    request,
)

from governance.authz.policy import SYSTEM_DOMAIN
from governance.console.blueprint import (
    bp,
)
from governance.errors import (
    InvalidInput,
    NotFound,
)
from governance.policy_review.diff import Universe, effective_permissions
from governance.web.guard import (
    current_principal,
    get_authorizer,
    mark_checked,
    require,
)

# --- policy ---------------------------------------------------------------------------------


MATRIX_ROWS = 200


@bp.get("/policy")
def policy():
    """The policy in force: its hash, files, and who may do what in one domain at a time."""
    require("read", "policy", SYSTEM_DOMAIN)
    policy_set = get_authorizer().policy
    universe = Universe.of_policy(policy_set)
    domain = request.args.get("domain") or (universe.domains[0] if universe.domains else "")
    if domain not in universe.domains:
        raise NotFound(f"the policy knows no domain {domain!r}", details={"domain": domain})
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError as exc:
        raise InvalidInput("page must be a number", details=[{"field": "page"}]) from exc
    # Computed from the rules outward for this one domain (the compiled policy's reverse
    # indexes), so a company-sized policy renders one page of principals in milliseconds.
    allowed = effective_permissions(policy_set, universe, domains=(domain,))
    rows: dict[str, dict[str, list]] = {}
    for (principal, _domain, obj, action), rule in sorted(allowed.items()):
        granted = f"{action} (p, {', '.join(rule)})" if rule else action
        rows.setdefault(principal, {}).setdefault(obj, []).append((action, granted))
    principals = sorted(rows)
    pages = max(1, -(-len(principals) // MATRIX_ROWS))
    shown = principals[(page - 1) * MATRIX_ROWS : page * MATRIX_ROWS]
    return render_template(
        "console/policy.html",
        section="policy",
        changes=policy_changes(),
        policy=policy_set,
        refused=get_authorizer().refused,
        domain=domain,
        domains=universe.domains,
        rows={p: rows[p] for p in shown},
        objects=sorted({o for per in rows.values() for o in per}),
        principals=len(principals),
        page=page,
        pages=pages,
    )


def policy_changes() -> list:
    """The latest policy-change requests, if the caller may read approvals in the system
    domain (their evidence is the replay of recorded decisions)."""
    from sqlmodel import select

    from governance.approvals.models import ApprovalRequest
    from governance.db import get_session
    from governance.policy_review.changes import POLICY_CHANGE

    principal = current_principal().name
    if not get_authorizer().policy.decide(principal, SYSTEM_DOMAIN, "approval", "read").allowed:
        return []
    return list(
        get_session().exec(
            select(ApprovalRequest)
            .where(ApprovalRequest.kind == POLICY_CHANGE)
            .order_by(ApprovalRequest.id.desc())
            .limit(20)
        )
    )


# --- anything else ---------------------------------------------------------------------------


@bp.route("/<path:anything>")
def not_found(anything: str):
    """Unknown console paths answer a page, not the API's JSON."""
    mark_checked()
    raise NotFound("there is no such page in the console", details={"path": request.path})
