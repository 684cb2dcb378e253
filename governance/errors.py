"""The domain exception tree and its one mapping to the JSON error envelope."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, has_request_context, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class GovernanceError(Exception):
    """Base of every error a service raises on purpose; carries its HTTP status and code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """Render the error as the API's envelope."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(GovernanceError):
    status = 400
    code = "bad_request"


class InvalidInput(GovernanceError):
    status = 422
    code = "invalid_input"


class Unauthenticated(GovernanceError):
    status = 401
    code = "unauthenticated"


class Forbidden(GovernanceError):
    status = 403
    code = "forbidden"


class NotFound(GovernanceError):
    status = 404
    code = "not_found"


class Conflict(GovernanceError):
    status = 409
    code = "conflict"


class Gone(GovernanceError):
    """What was derived from data that has been erased (a deleted dataset version)."""

    status = 410
    code = "gone"


class UnsupportedMediaType(GovernanceError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(GovernanceError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 60, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class PayloadTooLarge(GovernanceError):
    status = 413
    code = "payload_too_large"


class NotInitialized(GovernanceError):
    status = 503
    code = "not_initialized"


# OpenAI's error types by status, for the OpenAI-compatible routes under /v1.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


# OpenAI's error codes where one names the same case; the service's own code otherwise
# ("prompt_blocked", "guard_unavailable" have no OpenAI counterpart).
OPENAI_CODES = {
    "unauthenticated": "invalid_api_key",
    "not_found": "model_not_found",
    "rate_limited": "rate_limit_exceeded",
    "invalid_input": "invalid_value",
    "payload_too_large": "request_too_large",
}


def openai_code(error: GovernanceError) -> str:
    """OpenAI's code for the error: a path no route serves is `unknown_url`, a missing or
    hidden model `model_not_found`."""
    if error.status == 404 and has_request_context() and request.url_rule is None:
        return "unknown_url"
    return OPENAI_CODES.get(error.code, error.code)


def openai_error(error: GovernanceError) -> tuple[dict[str, Any], int]:
    """The error in OpenAI's shape: {"error": {message, type, param, code}}. A request that
    does not validate is a 400 there, as OpenAI answers it."""
    status = 400 if error.status == 422 else error.status
    details = error.details
    param = None
    if isinstance(details, dict):
        param = details.get("field")
    elif isinstance(details, list) and details and isinstance(details[0], dict):
        param = details[0].get("field")
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": param,
            "code": openai_code(error),
        }
    }, status


def error_response(error: GovernanceError):
    """Build the Flask response for a GovernanceError (in OpenAI's shape under /v1)."""
    if has_request_context() and request.path.startswith("/v1/"):
        body, status = openai_error(error)
        response = jsonify(body)
        response.status_code = status
    elif has_request_context() and request.path.startswith("/access/v1/"):
        # AuthZEN 1.0 (Transport, Error Responses): a request it cannot evaluate is a 400 and
        # the body carries the message; the envelope stays beside it, naming the field.
        status = 400 if error.status == 422 else error.status
        response = jsonify({"status": status, "message": error.message, **error.to_dict()})
        response.status_code = status
    else:
        response = jsonify(error.to_dict())
        response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="governance"'
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Name each offending field without echoing the submitted value back."""
    details = []
    for item in exc.errors(include_url=False, include_input=False, include_context=False):
        details.append(
            {
                "field": ".".join(str(part) for part in item["loc"]) or None,
                "message": item["msg"],
                "type": item["type"],
            }
        )
    return details


def invalid_input(exc: ValidationError) -> InvalidInput:
    """The InvalidInput of a validation failure, naming each offending field."""
    details = validation_details(exc)
    fields = ", ".join(d["field"] for d in details if d["field"]) or "request"
    return InvalidInput(f"invalid value for {fields}", details=details)


def validation_error_response(exc: ValidationError):
    """Render a request-validation failure from flask-openapi3 in the envelope."""
    return error_response(invalid_input(exc))


def register_error_handlers(app: Flask) -> None:
    """Map every error, expected or not, to the envelope; never leak a traceback."""

    @app.errorhandler(GovernanceError)
    def _governance(error: GovernanceError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        # flask-openapi3 aborts with a ready response for validation failures.
        if error.response is not None:
            return error.response
        status = error.code or 500
        names = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }
        generic = GovernanceError(
            error.description or error.name, code=names.get(status, "http_error")
        )
        generic.status = status
        response = error_response(generic)
        # A 405 says which methods the path does take (RFC 9110, 15.5.6).
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        generic = GovernanceError("internal server error", code="internal_error")
        generic.status = 500
        return error_response(generic)
