"""The console: server-rendered pages for reviewers and auditors.

Every page runs the same authorization as the API, through the same functions (`check`,
`require`, `readable_request`, `dataset_for`, `family_for`, `permitted_domains`): the console signs
a browser in as a principal and then behaves as that principal's API calls would. A page that
answers without an authorization decision is refused, as on the API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from pydantic import ValidationError
from sqlmodel import select

from governance.accounts import service as accounts
from governance.api import log_policy_load
from governance.approvals import service as approvals
from governance.approvals.models import DecisionCreate
from governance.approvals.rules import load_approval_rules
from governance.approvals.views import (
    evidence,
    inbox_requests,
    policy_dir,
    readable_request,
    readable_requests,
    record_decision,
)
from governance.audit import reports
from governance.audit.models import AUDIT_DECISIONS, AuditEntry, EntryQuery
from governance.audit.service import Actor, latest_checkpoint, log_size
from governance.audit.views import (
    ReportQuery,
    WhoDidQuery,
    entry_filter,
    export_response,
    get_audit_log,
    permitted_domains,
    report_response,
)
from governance.authz.catalog import ANY_NAME
from governance.authz.diff import Universe, effective_permissions
from governance.authz.policy import SYSTEM_DOMAIN
from governance.authz.service import (
    allowed_domains,
    current_actor,
    get_authorizer,
    log_event,
    mark_checked,
    require,
)
from governance.console import service
from governance.console.charts import bar_chart, line_chart
from governance.console.graph import lineage_svg
from governance.console.verification import CheckpointStatus
from governance.datasets import service as datasets
from governance.db import get_db, get_session
from governance.domains.models import Domain
from governance.domains.service import find_domain, list_domains
from governance.errors import (
    BadRequest,
    GovernanceError,
    InvalidInput,
    NotFound,
    Unauthenticated,
    invalid_input,
)
from governance.models import service as models
from governance.models.models import ModelFamily
from governance.models.views import family_for
from governance.pii.models import ScanReceipt
from governance.scheduler.models import RefreshRun

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

SESSION_COOKIE = "governance_console"
SIGN_IN_COOKIE = "governance_console_sign_in"
# Pages anyone may load; everything else needs a session.
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
# Pages that need a session but decide nothing about data (they show only the caller's own).
SESSION_ONLY_ENDPOINTS = frozenset({"console.sign_out"})
REQUEST_STATES = ("pending", "approved", "rejected", "expired", "superseded", "invalidated")
UID = re.compile(r"^[0-9a-f]{32}$")
NOTICES = {
    "signed-out": "You have signed out.",
    "decided": "Your decision was recorded, signed and written to the audit log.",
}
ENDED = {
    "idle": "Your session ended after a period without activity. Sign in again.",
    "expired": "Your session reached its time limit. Sign in again.",
    "token-invalid": "The token this session was opened with is no longer valid.",
    "signed-out": "This session was signed out.",
    "principal-changed": "Single sign-on now names someone else; sign in again.",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def limits() -> service.SessionLimits:
    return service.SessionLimits(
        idle=dt.timedelta(minutes=float(current_app.config["CONSOLE_IDLE_MINUTES"])),
        lifetime=dt.timedelta(hours=float(current_app.config["CONSOLE_SESSION_HOURS"])),
    )


def anonymous_actor(name: str = "anonymous") -> Actor:
    return Actor(name, g.get("request_id"), get_authorizer().policy.hash)


def secure_cookies() -> bool:
    setting = str(current_app.config["CONSOLE_COOKIE_SECURE"]).lower()
    return request.is_secure if setting == "auto" else setting in ("1", "true", "yes")


def set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(),
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(
        name, path="/console", secure=secure_cookies(), httponly=True, samesite="Lax"
    )


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if target and target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return url_for("console.home")


# --- hooks ----------------------------------------------------------------------------------


def sso_principal():
    """The principal a trusted proxy names in the single-sign-on header, if that is enabled."""
    header = current_app.config["CONSOLE_SSO_HEADER"]
    if not header:
        return None
    trusted = {p.strip() for p in current_app.config["CONSOLE_SSO_TRUSTED_PROXIES"].split(",")}
    name = request.headers.get(header)
    if not name or request.remote_addr not in trusted:
        return None
    principal = accounts.find_principal(get_session(), name.strip())
    if principal is None or principal.disabled:
        log_event(
            "authenticate",
            "console",
            None,
            "deny",
            {"via": "sso", "reason": "unknown or disabled principal"},
            principal="anonymous",
        )
        raise Unauthenticated("single sign-on names no active principal")
    return principal


@bp.before_request
def _authenticate():
    log_policy_load()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    session = get_session()
    cookie = request.cookies.get(SESSION_COOKIE)
    sso = sso_principal()
    row = principal = None
    if cookie:
        try:
            row, principal = service.resume_session(
                session, cookie, limits(), actor=anonymous_actor()
            )
        except Unauthenticated as exc:
            reason = (exc.details or {}).get("reason")
            if reason == "unknown":
                log_event(
                    "authenticate",
                    "console",
                    None,
                    "deny",
                    {"reason": "unknown session cookie", "path": request.path},
                    principal="anonymous",
                )
            if sso is None:
                return to_sign_in(reason)
    if sso is not None and (principal is None or principal.id != sso.id):
        if row is not None:
            service.end_session(
                session, row, "principal-changed", actor=anonymous_actor(principal.name)
            )
        cookie, row = service.start_session(
            session, sso, None, limits(), actor=anonymous_actor(sso.name)
        )
        principal = sso
        g.new_cookie = cookie
    if row is None:
        return to_sign_in(None)
    g.principal = principal
    g.console_session = row
    g.csrf_token = service.csrf_token(cookie)
    submitted = request.form.get("csrf_token") if request.method == "POST" else None
    if request.method == "POST" and not service.csrf_matches(cookie, submitted):
        raise BadRequest(
            "this form has expired or did not come from the console: reload the page and retry",
            code="csrf_failed",
        )
    return None


def to_sign_in(reason: str | None):
    """Send a browser without a usable session to the sign-in page (or answer 401 to a form)."""
    if request.method != "GET":
        raise Unauthenticated(ENDED.get(reason or "", "Sign in to continue."))
    query = {"next": request.full_path.rstrip("?")}
    if reason in ENDED:
        query["ended"] = reason
    response = redirect(url_for("console.sign_in") + "?" + urlencode(query))
    clear_cookie(response, SESSION_COOKIE)
    return response


@bp.after_request
def _finish(response: Response):
    if (
        request.endpoint not in PUBLIC_ENDPOINTS | SESSION_ONLY_ENDPOINTS
        and g.get("principal") is not None  # else: on the way to the sign-in page
        and response.status_code < 400
        and not g.get("authz_checked")
    ):
        # Deny by default, as on the API: a page that forgot to authorize must not answer.
        current_app.logger.error("console page %s answered without a decision", request.endpoint)
        response = render_error(
            GovernanceError("authorization was not checked", code="internal_error"), 500
        )
    if g.get("new_cookie"):
        set_cookie(response, SESSION_COOKIE, g.new_cookie)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "console.static":
        # Pages show reviewers' and auditors' material: never keep them in a shared cache.
        response.headers["Cache-Control"] = "no-store"
    return response


def render_error(error: GovernanceError, status: int | None = None) -> Response:
    return current_app.make_response(
        (render_template("console/error.html", error=error), status or error.status)
    )


@bp.errorhandler(GovernanceError)
def _governance_error(error: GovernanceError):
    if isinstance(error, Unauthenticated) and request.method == "GET":
        return to_sign_in(None)
    return render_error(error)


@bp.app_template_global()
def nav_items() -> list[tuple[str, str, str]]:
    """The sections this principal's roles open; the pages themselves still decide."""
    principal = g.get("principal")
    if principal is None:
        return []
    policy = get_authorizer().policy
    bound = policy.domains_of(principal.name)
    if "*" in bound:
        bound = {d.name for d in list_domains(get_session())}
    domains = [SYSTEM_DOMAIN, *sorted(bound - {SYSTEM_DOMAIN})]

    def anywhere(obj: str, action: str) -> bool:
        return any(policy.decide(principal.name, d, obj, action).allowed for d in domains)

    items = [("console.home", "Home", "home")]
    if anywhere("approval", "read"):
        items.append(("console.approvals", "Approvals", "approvals"))
    if anywhere("dataset", "read"):
        items.append(("console.datasets_home", "Datasets", "datasets"))
    if anywhere(f"model/{ANY_NAME}", "read"):
        items.append(("console.models_home", "Models", "models"))
    if anywhere("audit", "read"):
        items.append(("console.audit", "Audit log", "audit"))
    if anywhere("audit", "export"):
        items.append(("console.access", "Access reports", "access"))
    if policy.decide(principal.name, SYSTEM_DOMAIN, "policy", "read").allowed:
        items.append(("console.policy", "Policy", "policy"))
    return items


@bp.app_template_filter("when")
def when(moment) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, str):
        return moment
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_global()
def describe(kind: str, summary: dict, family: str | None) -> str:
    """A request's subject in words a reviewer recognises."""
    summary = summary or {}
    if kind == approvals.DATASET_USE:
        return (
            f"{summary.get('dataset', 'dataset')} v{summary.get('version')} "
            f"(tax year {summary.get('tax_year')}) to train {family}"
        )
    return f"{family} v{summary.get('version')} (tax year {summary.get('tax_year')})"


@bp.app_template_filter("metric")
def metric(value) -> str:
    """A metric as a reviewer reads it: numbers to four places, nested values flattened."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {metric(v)}" for k, v in value.items())
    return str(value)


@bp.app_template_filter("short")
def short(value, width: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[:width] + "…"


# --- signing in and out ---------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Exchange an API token for a session cookie."""
    nonce = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
    error: GovernanceError | None = None
    if request.method == "POST":
        submitted = request.form.get("csrf_token", "")
        if not request.cookies.get(SIGN_IN_COOKIE) or not secrets.compare_digest(submitted, nonce):
            error = BadRequest("The sign-in form expired. Please try again.", code="csrf_failed")
        else:
            try:
                cookie, _row, _principal = service.sign_in_with_token(
                    get_session(),
                    request.form.get("token", "").strip(),
                    limits(),
                    actor=anonymous_actor(),
                )
            except Unauthenticated as exc:
                log_event(
                    "authenticate",
                    "console",
                    None,
                    "deny",
                    {"reason": exc.message, **(exc.details or {})},
                    principal="anonymous",
                )
                error = Unauthenticated(f"That token was not accepted: {exc.message}.")
            else:
                response = redirect(safe_next(request.form.get("next")))
                set_cookie(response, SESSION_COOKIE, cookie)
                clear_cookie(response, SIGN_IN_COOKIE)
                return response
    response = current_app.make_response(
        (
            render_template(
                "console/sign_in.html",
                nonce=nonce,
                next=safe_next(request.values.get("next")),
                error=error,
                ended=ENDED.get(request.args.get("ended", "")),
                notice=NOTICES.get(request.args.get("notice", "")),
            ),
            error.status if error else 200,
        )
    )
    set_cookie(response, SIGN_IN_COOKIE, nonce, max_age=3600)
    return response


@bp.post("/sign-out")
def sign_out():
    """End this browser's session."""
    service.end_session(
        get_session(), g.console_session, "signed-out", actor=anonymous_actor(g.principal.name)
    )
    response = redirect(url_for("console.sign_in", notice="signed-out"))
    clear_cookie(response, SESSION_COOKIE)
    return response


# --- home -----------------------------------------------------------------------------------


@bp.get("/")
def home():
    """Who I am, the roles I hold where, and what waits for me."""
    policy = get_authorizer().policy
    mark_checked()  # Shows only the caller's own role bindings and inbox.
    return render_template(
        "console/home.html",
        section="home",
        bindings=sorted(policy.role_bindings(g.principal.name), key=lambda b: (b[1], b[0])),
        inbox_count=len(inbox_requests()),
        session_row=g.console_session,
        idle_minutes=current_app.config["CONSOLE_IDLE_MINUTES"],
    )


# --- approvals ------------------------------------------------------------------------------


def request_rows(items) -> list[dict]:
    session = get_session()
    return [{**approvals.request_read(session, r), "summary": r.summary} for r in items]


@bp.get("/approvals", endpoint="approvals")
def approvals_page():
    """My inbox, and every request I may read, filtered by state and domain."""
    state = request.args.get("state") or None
    domain = request.args.get("domain") or None
    inbox = request_rows(inbox_requests())
    listed = request_rows(readable_requests(state, domain))
    return render_template(
        "console/approvals.html",
        section="approvals",
        may_decide=bool(allowed_domains("approval", "decide")),
        inbox=inbox,
        listed=listed,
        state=state,
        domain=domain,
        domains=sorted(d.name for d in allowed_domains("approval", "read")),
        states=REQUEST_STATES,
    )


def approval_context(uid: str) -> dict:
    """Everything the detail page shows about one request the caller may read."""
    if not UID.match(uid):
        raise NotFound("no such approval request", details={"uid": uid})
    approval, domain = readable_request(uid)
    session = get_session()
    actor = current_actor()
    approvals.refresh_state(session, approval, policy_dir(), actor)
    decisions = approvals.decisions_of(session, approval)
    entries = {
        e.seq: e
        for e in session.exec(
            select(AuditEntry).where(
                AuditEntry.seq.in_([d.audit_seq for d in decisions if d.audit_seq])
            )
        )
    }
    checkpoint = latest_checkpoint(session)
    problems = approvals.verify_decisions(
        session, approval, get_audit_log().signing_key.public_key()
    )
    rules = load_approval_rules(policy_dir())
    policy = get_authorizer().policy
    may_decide = policy.decide(actor.principal, domain.name, "approval", "decide").allowed
    role_choices: list[str] = []
    blocked = None
    if approval.state != approvals.RequestState.PENDING:
        blocked = f"This request is {approval.state}; it takes no more decisions."
    elif not may_decide:
        blocked = f"The policy does not let you decide approvals in {domain.name}."
    else:
        try:
            role_choices = [
                approvals.decision_role(session, approval, actor.principal, None, policy)
            ]
        except InvalidInput as exc:
            role_choices = list((exc.details or {}).get("choices") or [])
        except GovernanceError as exc:
            blocked = exc.message + "."
    return {
        "approval": approval,
        "missing_roles": approvals.missing_roles(approval, decisions),
        "domain": domain,
        "evidence": evidence(approval),
        "decisions": decisions,
        "entries": entries,
        "checkpoint": checkpoint,
        "signature_problems": problems,
        "rule": rules.rule_for(domain.name, approval.kind),
        "policy_hash": policy.hash,
        "role_choices": role_choices,
        "blocked": blocked,
    }


@bp.get("/approvals/<uid>")
def approval(uid: str):
    """A request with its evidence, decisions, audit entries and the policy in force."""
    return render_template(
        "console/approval.html",
        section="approvals",
        notice=NOTICES.get(request.args.get("notice", "")),
        comment="",
        **approval_context(uid),
    )


@bp.post("/approvals/<uid>/decisions")
def decide(uid: str):
    """Approve or reject with a comment, exactly as the API's decision endpoint does."""
    if not UID.match(uid):
        raise NotFound("no such approval request", details={"uid": uid})
    comment = request.form.get("comment", "").strip()
    readable_request(uid, "decide")
    try:
        try:
            # The API's own schema; the console also insists on a comment.
            body = DecisionCreate(
                decision=request.form.get("decision", ""),
                comment=comment,
                role=request.form.get("role") or None,
            )
        except ValidationError as exc:
            raise invalid_input(exc) from exc
        if not comment:
            raise InvalidInput("a comment is required", details=[{"field": "comment"}])
        record_decision(uid, body)
    except GovernanceError as exc:
        get_session().rollback()
        # Show the request again with the refusal and the comment as typed.
        page = render_template(
            "console/approval.html",
            section="approvals",
            error=exc,
            comment=comment,
            **approval_context(uid),
        )
        return page, exc.status
    return redirect(url_for("console.approval", uid=uid, notice="decided") + "#decisions")


# --- datasets -------------------------------------------------------------------------------


def visible_domains(obj: str, action: str) -> list[Domain]:
    """Domains where the caller may act on obj, logged once as a listing."""
    visible = allowed_domains(obj, action)
    log_event("list", obj, None, "allow", {"visible": [d.name for d in visible]})
    mark_checked()
    return visible


@bp.get("/datasets")
def datasets_home():
    """The domains whose datasets I may read."""
    session = get_session()
    domains = [
        (d, len(datasets.list_datasets(session, d))) for d in visible_domains("dataset", "read")
    ]
    return render_template("console/datasets.html", section="datasets", domains=domains)


def latest_receipts(session, version_ids: list[int]) -> dict[int, ScanReceipt]:
    receipts: dict[int, ScanReceipt] = {}
    if version_ids:
        for row in session.exec(
            select(ScanReceipt)
            .where(ScanReceipt.version_id.in_(version_ids))
            .order_by(ScanReceipt.id)
        ):
            receipts[row.version_id] = row
    return receipts


@bp.get("/domains/<name>/datasets")
def domain_datasets(name: str):
    """A domain's datasets: versions, tax years, scan status, tombstones."""
    require("read", "dataset", name)
    session = get_session()
    domain = find_domain(session, name)
    if domain is None:
        raise NotFound(f"no domain {name!r}", details={"domain": name})
    may_read_scans = get_authorizer().policy.decide(g.principal.name, name, "scan", "read").allowed
    listing = []
    for dataset in datasets.list_datasets(session, domain):
        versions = datasets.list_versions(session, dataset)
        receipts = latest_receipts(session, [v.id for v in versions]) if may_read_scans else {}
        listing.append(
            (dataset, versions, receipts, findings_across(dataset.name, versions, receipts))
        )
    return render_template(
        "console/domain_datasets.html",
        section="datasets",
        domain=domain,
        listing=listing,
        may_read_scans=may_read_scans,
    )


def findings_across(name: str, versions: list, receipts: dict) -> Markup:
    """PII findings per entity type across a dataset's scanned versions, oldest left."""
    scanned = [v for v in versions if v.id in receipts]
    totals = [
        {entity: sum(fields.values()) for entity, fields in (receipts[v.id].counts or {}).items()}
        for v in scanned
    ]
    entities = sorted({entity for counts in totals for entity in counts})
    return line_chart(
        f"PII findings per entity type across the versions of {name}",
        [f"v{v.number}" for v in scanned],
        {entity: [counts.get(entity, 0) for counts in totals] for entity in entities},
        height=180,
        from_zero=True,
    )


@bp.get("/datasets/<int:dataset_id>/versions/<int:number>/quarantine")
def quarantine_page(dataset_id: int, number: int):
    """A version's latest receipt (canary recall, residuals, reasons) and its held-back records."""
    from governance.datasets.views import dataset_for
    from governance.pii import service as pii

    return render_template(
        "console/quarantine.html",
        section="datasets",
        notice=NOTICES.get(request.args.get("notice", "")),
        **quarantine_context(dataset_id, number, dataset_for, pii),
    )


def quarantine_context(dataset_id: int, number: int, dataset_for, pii) -> dict:
    from governance.datasets.views import keyring

    dataset, domain = dataset_for(dataset_id, "read", "scan")
    session = get_session()
    version = datasets.get_version(session, dataset, number)
    receipt = latest_receipts(session, [version.id]).get(version.id)
    may_decide = get_authorizer().policy.decide(g.principal.name, domain.name, "scan", "create")
    findings = sorted(
        ((entity, sum(fields.values())) for entity, fields in (receipt.counts or {}).items())
        if receipt
        else [],
        key=lambda item: -item[1],
    )
    return {
        "dataset": dataset,
        "domain": domain,
        "version": version,
        "receipt": receipt,
        "held": pii.list_quarantine(session, version),
        "unflagged": pii.unflagged_sample(session, keyring(), receipt) if receipt else None,
        "may_decide": may_decide.allowed,
        "findings_chart": bar_chart(
            f"PII findings per entity type in {dataset.name} v{version.number}", findings
        ),
    }


@bp.post("/datasets/<int:dataset_id>/versions/<int:number>/quarantine/<int:record>")
def quarantine_decide(dataset_id: int, number: int, record: int):
    """Keep or drop a held-back record, as the API's quarantine endpoint does."""
    from governance.datasets.views import dataset_for
    from governance.pii import service as pii
    from governance.pii.models import QuarantineDecide

    dataset, domain = dataset_for(dataset_id, "create", "scan")
    session = get_session()
    version = datasets.get_version(session, dataset, number)
    try:
        body = QuarantineDecide(decision=request.form.get("decision", ""))
    except ValidationError as exc:
        raise invalid_input(exc) from exc
    pii.decide_quarantine(session, version, domain, record, body.decision, actor=current_actor())
    return redirect(
        url_for("console.quarantine_page", dataset_id=dataset_id, number=number, notice="decided")
    )


# --- models ---------------------------------------------------------------------------------


@bp.get("/models")
def models_home():
    """The model families I may read, by domain."""
    session = get_session()
    policy = get_authorizer().policy
    families = []
    for family in session.exec(select(ModelFamily).order_by(ModelFamily.name)):
        domain = session.get(Domain, family.domain_id)
        if policy.decide(g.principal.name, domain.name, f"model/{family.name}", "read").allowed:
            production = models.production_version(session, family)
            families.append((family, domain, production))
    log_event("list", "model", None, "allow", {"visible": [f[0].name for f in families]})
    mark_checked()
    return render_template("console/models.html", section="models", families=families)


@bp.get("/models/<family>")
def family_page(family: str):
    """A family's versions and status, and its latest refresh."""
    found, domain = family_for(family, "read")
    session = get_session()
    versions = list(reversed(models.list_versions(session, found)))
    runs = session.exec(
        select(RefreshRun)
        .where(RefreshRun.family_id == found.id)
        .order_by(RefreshRun.id.desc())
        .limit(5)
    ).all()
    serving = models.serving_version(session, found)
    return render_template(
        "console/family.html",
        section="models",
        family=found,
        domain=domain,
        versions=versions,
        serving=serving,
        runs=runs,
        charts=metrics_charts(found.name, list(reversed(versions)), serving),
    )


def flatten(nested: dict | None, prefix: str = "") -> dict[str, Any]:
    """The leaves of nested dictionaries, named with dots (`lora.r`)."""
    leaves: dict[str, Any] = {}
    for key, value in (nested or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(flatten(value, f"{name}."))
        else:
            leaves[name] = value
    return leaves


def numeric_metrics(metrics: dict | None) -> dict[str, float]:
    """A version's numeric metrics, nested ones named with dots (counts `n` left out)."""
    return {
        name: float(value)
        for name, value in flatten(metrics).items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and name.rsplit(".", 1)[-1] != "n"
    }


# Metric leaves that describe how a version was made, not how good it is: left out of charts.
SETUP_SECTIONS = ("lora.", "hyperparameters.", "versions.")
SETUP_KEYS = {"n", "steps", "seed", "seconds"}


def quality_metrics(metrics: dict | None) -> dict[str, float]:
    """The numeric metrics that measure a version (losses, perplexity, accuracies)."""
    return {
        name: value
        for name, value in numeric_metrics(metrics).items()
        if not name.startswith(SETUP_SECTIONS)
        and name.rsplit(".", 1)[-1] not in SETUP_KEYS
        and not name.endswith("_records")
    }


def metrics_charts(name: str, versions: list, serving) -> list[tuple[str, Markup]]:
    """Small multiples across a family's versions, production marked: the losses together
    (one scale), each section's leaves together (multiple_choice.acc and .acc_norm), every
    other quality metric on its own scale."""
    per_version = [quality_metrics(v.metrics) for v in versions]
    panels: dict[str, list[str]] = {}
    for key in sorted({k for m in per_version for k in m}):
        panel = "loss" if "loss" in key else key.rsplit(".", 1)[0]  # a section's leaves together
        panels.setdefault(panel, []).append(key)
    marked = next((i for i, v in enumerate(versions) if serving and v.id == serving.id), None)
    return [
        (
            panel,
            line_chart(
                f"{panel} of {name} across its versions",
                [f"v{v.number}" for v in versions],
                {key.removeprefix(f"{panel}."): [m.get(key) for m in per_version] for key in keys},
                marked,
                f"production: v{serving.number}" if serving else "",
                height=170,
            ),
        )
        for panel, keys in panels.items()
    ]


@bp.get("/models/<family>/versions/<int:number>")
def version_page(family: str, number: int):
    """One version's lineage, drawn as a graph and listed in full."""
    found, domain = family_for(family, "read")
    session = get_session()
    version = models.get_version(session, found, number)
    document = models.signed_lineage(session, version, get_audit_log().signing_key)
    href = url_for("console.family_page", family=found.name)
    return render_template(
        "console/version.html",
        section="models",
        family=found,
        domain=domain,
        version=version,
        lineage=document,
        graph=lineage_svg(document, href),
        metric_rows=sorted(numeric_metrics(document.get("metrics")).items()),
        config_rows=sorted(config_rows(document.get("training_config")).items()),
    )


def config_rows(config: dict | None) -> dict[str, str]:
    """A nested configuration as `a.b: value` rows."""
    return {
        name: json.dumps(value) if isinstance(value, list | bool) or value is None else str(value)
        for name, value in flatten(config).items()
    }


# --- audit ----------------------------------------------------------------------------------

VERIFICATION_KEY = "governance.console.verification"


def checkpoint_status() -> CheckpointStatus:
    """This process's verification state, made on first use."""
    status = current_app.extensions.get(VERIFICATION_KEY)
    if status is None:
        status = CheckpointStatus(get_db(), get_audit_log().signing_key.public_key())
        current_app.extensions[VERIFICATION_KEY] = status
    return status


def parse_entry_query(args) -> EntryQuery:
    """Read the filter form; an invalid field is a 422 naming it."""
    values = {k: v for k, v in args.items() if v not in ("", None) and k in ENTRY_QUERY_FIELDS}
    try:
        query = EntryQuery.model_validate(values)
    except ValidationError as exc:
        raise invalid_input(exc) from exc
    # The form's datetime-local fields carry no zone; the console labels them UTC.
    for name in ("from_time", "to_time"):
        moment = getattr(query, name)
        if moment is not None and moment.tzinfo is None:
            setattr(query, name, moment.replace(tzinfo=dt.UTC))
    return query


ENTRY_QUERY_FIELDS = frozenset(
    {"from", "to", "principal", "domain", "model", "action", "decision", "after_seq", "limit"}
)


def filtered(action: str):
    """The domains where the caller may `action` the log (decided and logged once), the filter
    form as read, and the entry filter it makes."""
    allowed = permitted_domains(action)
    query = parse_entry_query(request.args)
    return allowed, query, entry_filter(query, allowed)


@bp.get("/audit")
def audit():
    """Search the log, see how far it is verified and signed, download exports."""
    allowed, query, filters = filtered("read")
    session = get_session()
    statement = filters.apply(select(AuditEntry).where(AuditEntry.seq > query.after_seq))
    rows = session.exec(statement.order_by(AuditEntry.seq).limit(query.limit + 1)).all()
    page, more = rows[: query.limit], len(rows) > query.limit
    status = checkpoint_status().view(session, from_start=request.args.get("verify") == "all")
    policy = get_authorizer().policy
    may_export = any(policy.decide(g.principal.name, d, "audit", "export").allowed for d in allowed)
    days, series, total = reports.activity_by_day(session, filters)
    filter_args = {
        k: v for k, v in request.args.items() if k in ENTRY_QUERY_FIELDS - {"after_seq"} and v
    }
    return render_template(
        "console/audit.html",
        section="audit",
        entries=page,
        more=more,
        next_after=page[-1].seq if more else None,
        args=filter_args,
        allowed=sorted(allowed),
        status=status,
        verified=status.result,
        may_export=may_export,
        decisions=AUDIT_DECISIONS,
        unanchored=log_size(session) - (status.result.verified_upto if status.result else 0),
        total=total,
        activity=line_chart(
            "Audit entries per day (UTC) matching these filters",
            [day[5:] for day in days],
            {"allowed": series["allow"], "denied": series["deny"], "other": series["other"]},
            height=180,
            from_zero=True,
        ),
    )


@bp.get("/audit/export")
def audit_export():
    """Download the filtered entries as CSV, JSONL or an offline-verifiable bundle."""
    _allowed, _query, filters = filtered("export")
    fmt = request.args.get("format", "jsonl")
    if fmt not in ("csv", "jsonl", "bundle"):
        raise InvalidInput("format must be csv, jsonl or bundle", details=[{"field": "format"}])
    return export_response(filters, fmt)


# --- access reports -------------------------------------------------------------------------


@bp.get("/access")
def access():
    """Who may query which model (from the policy) and who did (from the log)."""
    allowed, _query, filters = filtered("export")
    session = get_session()
    policy = get_authorizer().policy
    key = get_audit_log().signing_key
    may, _, _ = reports.build_report("who-may", session, policy, key, None, allowed)
    did, _, _ = reports.build_report("who-did", session, policy, key, filters, allowed)
    filter_args = {k: v for k, v in request.args.items() if k in ("from", "to", "domain") and v}
    return render_template(
        "console/access.html",
        section="access",
        who_may=may["report"]["rows"],
        who_did=did["report"]["rows"],
        args=filter_args,
        allowed=sorted(d for d in allowed if d != SYSTEM_DOMAIN),
    )


@bp.get("/access/<kind>.<fmt>")
def access_download(kind: str, fmt: str):
    """Download a signed access report as JSON or CSV."""
    if kind not in ("who-may", "who-did") or fmt not in ("json", "csv"):
        raise NotFound("no such report", details={"report": f"{kind}.{fmt}"})
    allowed = permitted_domains("export")
    if kind == "who-may":
        response = report_response(kind, ReportQuery(format=fmt), allowed)
    else:
        # The same reading of the period as the page's, so the download matches what it showed.
        period = parse_entry_query(request.args)
        response = report_response(kind, WhoDidQuery(**dict(period), format=fmt), allowed)
    if isinstance(response, dict):
        response = current_app.make_response(response)
        response.headers["Content-Disposition"] = f"attachment; filename={kind}.json"
    return response


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


# --- anything else ---------------------------------------------------------------------------


@bp.route("/<path:anything>")
def not_found(anything: str):
    """Unknown console paths answer a page, not the API's JSON."""
    mark_checked()
    raise NotFound("there is no such page in the console", details={"path": request.path})


def init_app(app: Flask) -> None:
    """Register the console blueprint."""
    app.register_blueprint(bp)
