"""Pieces every API blueprint declares: the security scheme and the error responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


SECURITY = [{"bearer": []}]
SECURITY_SCHEMES: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
# Every authenticated call may meet 429: failed authentications are throttled per address and
# per credential (a valid token is never refused by that count).
ERROR_RESPONSES: dict[Any, Any] = {
    code: ErrorEnvelope for code in (400, 401, 403, 404, 409, 413, 415, 422, 429)
}
# What was derived from a deleted dataset version answers 410.
GONE: dict[Any, Any] = {410: ErrorEnvelope}
# The serving engine or the guardrails are down.
UNAVAILABLE: dict[Any, Any] = {503: ErrorEnvelope}


def binary_body(media_type: str, description: str) -> dict:
    """An operation's request body that the view streams itself (not a JSON model)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    }


def json_document(description: str) -> dict:
    """A 2xx response that is a JSON document whose shape its description gives (a signed or
    nested document that the API passes on as built, such as a lineage)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def download(description: str, *media_types: str) -> dict:
    """A 2xx response that is a file download in one of these media types."""
    return {
        "description": description,
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types},
    }
