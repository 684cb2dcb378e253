"""A small JSON client for the service's API, for CLI commands that act as a person.

Commands that decide something in a person's name (approve, reject, reload the policy) go
through the API with that person's token, so the service authenticates, authorizes and
audits them exactly as any other call; they never act on the database directly.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from governance.errors import GovernanceError, InvalidInput

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(GovernanceError):
    """The service answered with an error envelope."""


def api_call(
    method: str, path: str, body: Any = None, *, url: str | None = None, token: str | None = None
) -> Any:
    """Call the API and return the decoded JSON, or raise ApiError with the service's message."""
    data = json.dumps(body).encode() if body is not None else None
    raw = api_request(method, path, data, "application/json", url=url, token=token)
    return json.loads(raw or b"null")


def api_request(
    method: str,
    path: str,
    data: bytes | None = None,
    content_type: str = "application/json",
    *,
    url: str | None = None,
    token: str | None = None,
) -> bytes:
    """Call the API with raw bytes; return the raw answer (empty for 204)."""
    base = (url or os.environ.get("GOVERNANCE_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InvalidInput(f"the service URL must start with http:// or https://, not {base!r}")
    token = token or os.environ.get("GOVERNANCE_TOKEN")
    if not token:
        raise InvalidInput("set GOVERNANCE_TOKEN to your API token (govern token create)")
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (http(s) only)
            return response.read()
    except urllib.error.HTTPError as exc:
        try:
            envelope = json.loads(exc.read()).get("error", {})
        except ValueError:
            envelope = {}
        error = ApiError(
            envelope.get("message") or f"HTTP {exc.code}", details=envelope.get("details")
        )
        error.status = exc.code
        raise error from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach {base}: {exc.reason}") from None
