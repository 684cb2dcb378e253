"""What every /api request passes through: request id, authentication, body checks, and a
final check that the view made an authorization decision.

Every route is guarded unless its endpoint is listed in PUBLIC_ENDPOINTS; a route added
without thought is therefore closed, not open.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

from flask import Flask, current_app, g, request

from governance import runtime, strict_json
from governance.accounts import service as accounts
from governance.authz.service import PolicyRefused
from governance.db import get_session, has_written
from governance.errors import (
    BadRequest,
    GovernanceError,
    InvalidInput,
    TooManyRequests,
    Unauthenticated,
    UnsupportedMediaType,
    error_response,
)
from governance.training import service as training
from governance.web.guard import get_authorizer, log_event, settle_held

log = logging.getLogger(__name__)

# Paths of the JSON API: ours, the OpenID AuthZEN evaluation API's, and the OpenAI-compatible
# gateway's.
API_PREFIX = ("/api/", "/access/", "/v1/")
# The API's description and its Swagger UI (flask-openapi3's "openapi" and "swagger"
# blueprints under /docs) are public, like /openapi.json.
DOCS_ENDPOINTS = frozenset(
    {
        "openapi.doc_url",
        "openapi.openapi",
        "openapi.static",
        "swagger.swagger",
        "swagger.static",
        "swagger.oauth2-redirect",
    }
)
PUBLIC_ENDPOINTS = (
    frozenset(
        {
            "health.health",
            "openapi_json",
            "openlineage_schema",
            "static",
            "index",
            "authzen_discovery.configuration",
        }
    )
    | DOCS_ENDPOINTS
)
# Endpoints that read their body as a stream themselves (not as one JSON document).
STREAMING_ENDPOINTS = frozenset({"datasets.upload_version", "training.job_result"})
# Endpoints a worker calls with a job-scoped token (checked by the view), not a principal's.
JOB_ENDPOINTS = frozenset(
    {"training.job_bundle", "training.job_heartbeat", "training.job_result", "training.job_fail"}
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def bearer_token() -> str:
    """Return the token of the Authorization header, or raise Unauthenticated."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


def check_json_body() -> None:
    """Reject bodies that are not JSON, naming the line and column of a syntax error."""
    if request.method not in BODY_METHODS:
        return
    raw = request.get_data(cache=True)
    if not raw:
        return
    if not request.is_json:
        raise UnsupportedMediaType(
            "request body must be JSON (Content-Type: application/json)",
            details={"content_type": request.content_type},
        )
    try:
        strict_json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest("request body is not UTF-8", details={"position": exc.start}) from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg}",
            details={"line": exc.lineno, "column": exc.colno},
            code="malformed_json",
        ) from exc
    except strict_json.JSONRefused as exc:
        raise BadRequest(
            f"refused JSON: {exc.message}",
            details={"field": exc.path or None},
            code="refused_json",
        ) from exc


REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id() -> str:
    """Take the caller's X-Request-Id when it is a plain token of up to 64 characters."""
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


def log_policy_load() -> None:
    """Pick up changed policy files, and log once per process and version what is in force."""
    authorizer = get_authorizer()
    if authorizer.changed_on_disk():
        try:
            authorizer.reload()
        except PolicyRefused as exc:
            log_event(
                "policy.reload",
                "policy",
                None,
                "refused",
                {
                    "policy_hash": exc.details.get("policy_hash"),
                    "problems": exc.details["problems"],
                },
                principal="system",
            )
    policy = authorizer.policy
    if authorizer.logged_hash == policy.hash:
        return
    # A process that starts on files no approval covers (edited and restarted, rather than
    # reloaded) still serves them, as it has nothing else it could serve; the entry says so,
    # for the auditor, and GET /api/v1/policy shows it.
    from governance.policy_review import changes

    approved = changes.approved_change(get_session(), policy.hash)
    log_event(
        "policy.load",
        "policy",
        None,
        "ok",
        {
            "directory": str(policy.directory),
            "approval_required": changes.approval_needed(policy),
            "approval": approved.uid if approved else None,
        },
        principal="system",
    )
    authorizer.logged_hash = policy.hash


def refuse_unstorable_characters() -> None:
    """A NUL character in the path or a query parameter is refused (422, naming where), before
    anything reads it: PostgreSQL's text columns cannot store it, so it must never reach a
    query, and an audit entry that quoted it would fail to be written."""
    if "\x00" in request.path:
        raise InvalidInput(
            "the path holds a NUL character (\\u0000)",
            details=[{"field": "path", "message": "NUL character", "type": "value_error"}],
        )
    for key, value in request.args.items(multi=True):
        if "\x00" in key or "\x00" in value:
            raise InvalidInput(
                f"the query parameter {key.replace(chr(0), '?')[:40]!r} holds a NUL character",
                details=[
                    {
                        "field": key.replace("\x00", "?")[:40],
                        "message": "NUL character",
                        "type": "value_error",
                    }
                ],
            )


def client_address() -> str:
    """The caller's address: the peer's, or, when the peer is one of TRUSTED_PROXIES, the
    last address of X-Forwarded-For that is not a trusted proxy (the one the nearest trusted
    proxy saw). Addresses a client writes into the header itself are never believed."""
    peer = request.remote_addr or "unknown"
    trusted = {
        p.strip() for p in current_app.config.get("TRUSTED_PROXIES", "").split(",") if p.strip()
    }
    if peer not in trusted:
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return peer


def init_app(app: Flask) -> None:
    """Register the hooks on the app."""

    @app.before_request
    def _characters():
        refuse_unstorable_characters()

    @app.before_request
    def _guard():
        g.request_id = request_id()
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if not request.path.startswith(API_PREFIX) and request.endpoint is not None:
            # Non-API endpoints (the console) authenticate on their own terms.
            return None
        log_policy_load()
        # Authenticate before looking at the body, so nothing is parsed for strangers; unknown
        # API paths answer 401 too, which tells a stranger nothing about what exists.
        if request.endpoint in JOB_ENDPOINTS:
            g.job_token = bearer_token()
            # The job token is checked before anything of the body is read: a stranger gets a
            # 401, not a description of what is wrong with their JSON.
            training.job_for_token(get_session(), str(request.view_args.get("uid")), g.job_token)
            if request.endpoint not in STREAMING_ENDPOINTS:
                check_json_body()
            return None
        # Failed authentications are counted per client address and per presented credential;
        # a valid token is never refused by either count, so a flood of bad tokens from one
        # address (or one NAT, or one proxy) cannot lock out the people behind it.
        limiter = runtime.current().auth_limiter
        address = client_address()
        presented = request.headers.get("Authorization", "").partition(" ")[2].strip()
        try:
            session = get_session()
            principal, token = accounts.authenticate(session, bearer_token())
            if has_written(session):
                # The token's use is kept whether or not the request goes on to succeed.
                session.commit()
        except Unauthenticated as exc:
            keys = [f"address:{address}"]
            if presented:
                keys.append(f"credential:{accounts.hash_token(presented)[:32]}")
            over = not all(limiter.test(key) for key in keys)
            for key in keys:
                limiter.hit(key)
            log_event(
                "authenticate",
                "api",
                None,
                "deny",
                {
                    "reason": "rate_limited" if over else exc.message,
                    "method": request.method,
                    "endpoint": request.endpoint,
                    "address": address,
                    **(exc.details or {}),
                },
                principal="anonymous",
            )
            if over:
                raise TooManyRequests(
                    "too many failed authentications from this address or with this "
                    "credential; wait a minute (a valid token is not refused)",
                    retry_after=60,
                ) from exc
            raise
        g.principal = principal
        g.token = token
        if request.endpoint not in STREAMING_ENDPOINTS:
            check_json_body()
        return None

    @app.after_request
    def _require_decision(response):
        settle_held()
        if response.status_code < 400 and undecided():
            return error_response(undecided_error())
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response


def undecided() -> bool:
    """Whether this is a guarded API request whose view made no authorization decision."""
    return (
        request.path.startswith(API_PREFIX)
        # Flask answers OPTIONS itself (its Allow header), running no view to authorize.
        and request.method != "OPTIONS"
        and request.endpoint not in PUBLIC_ENDPOINTS
        and not g.get("authz_checked")
    )


def undecided_error() -> GovernanceError:
    log.error("endpoint %s answered without an authorization decision", request.endpoint)
    error = GovernanceError("authorization was not checked", code="internal_error")
    error.status = 500
    return error


def require_decision() -> None:
    """Deny by default: a view that forgot to authorize must not answer, and what it wrote is
    rolled back (the app calls this when a view returns, before its request commits)."""
    if undecided():
        raise undecided_error()
