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
SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer"}}
ERROR_RESPONSES: dict[Any, Any] = {
    code: ErrorEnvelope for code in (400, 401, 403, 404, 409, 413, 415, 422)
}
