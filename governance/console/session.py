"""The console's sessions: signing in and out, cookies, single sign-on, and the hooks that
authenticate every page and refuse one that answers without an authorization decision."""

from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import urlencode

from flask import (
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from governance.accounts import service as accounts
from governance.approvals import service as approvals
from governance.audit.service import Actor
from governance.authz.catalog import ANY_NAME
from governance.authz.policy import SYSTEM_DOMAIN
from governance.console import service
from governance.console.blueprint import (
    CONTENT_SECURITY_POLICY,
    ENDED,
    NOTICES,
    PUBLIC_ENDPOINTS,
    SESSION_COOKIE,
    SESSION_ONLY_ENDPOINTS,
    SIGN_IN_COOKIE,
    bp,
)
from governance.db import get_session, has_written
from governance.domains.service import list_domains
from governance.errors import (
    BadRequest,
    GovernanceError,
    Unauthenticated,
)
from governance.web.guard import (
    get_authorizer,
    log_event,
)
from governance.web.hooks import log_policy_load


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
    # The sign-in step is its own unit of work: a session started, ended or touched here is
    # kept whatever the request goes on to do (and this hook may answer without a view).
    session = get_session()
    try:
        return _authenticate_step()
    finally:
        if has_written(session):
            session.commit()


def _authenticate_step():
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
    if anywhere("webhook", "read"):
        items.append(("console.webhooks", "Webhooks", "webhooks"))
    if policy.decide(principal.name, SYSTEM_DOMAIN, "policy", "read").allowed:
        items.append(("console.policy", "Policy", "policy"))
    return items


@bp.app_template_filter("when")
def when(moment) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, str):
        # API shapes carry ISO strings (with microseconds): shown as every other time is.
        try:
            moment = dt.datetime.fromisoformat(moment)
        except ValueError:
            return moment
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_global()
def describe(kind: str, summary: dict, family: str | None) -> str:
    """A request's subject in words a reviewer recognises."""
    summary = summary or {}
    if kind == "policy-change":
        return f"policy {str(summary.get('policy_hash', ''))[:16]}"
    if kind == approvals.DATASET_USE:
        return (
            f"{summary.get('dataset', 'dataset')} v{summary.get('version')} "
            f"(tax year {summary.get('tax_year')}) to train {family}"
        )
    if kind == "base-model-use":
        return f"base model {summary.get('base_model', '?')} ({summary.get('license', '?')})"
    return f"{family} v{summary.get('version')} (tax year {summary.get('tax_year')})"


@bp.app_template_filter("cron")
def cron(expression: str) -> str:
    """A refresh schedule in words (the expression stays beside it)."""
    from governance.families.cron import describe_cron

    return describe_cron(expression)


@bp.app_template_filter("metric")
def metric(value) -> str:
    """A metric as a reviewer reads it: whole numbers whole, others to four places (or four
    significant digits when very large or small), nested values flattened."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # a batch size stored as 8.0 reads 8
        if 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}"
        return f"{value:.4g}"
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
