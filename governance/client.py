"""A small JSON client for the service's API, for CLI commands that act as a person.

Commands that decide something in a person's name (approve, reject, reload the policy) go
through the API with that person's token, so the service authenticates, authorizes and
audits them exactly as any other call; they never act on the database directly.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from governance.errors import GovernanceError, InvalidInput

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(GovernanceError):
    """The service answered with an error envelope (or could not be reached: `unreachable`)."""

    unreachable = False


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
    with _response(method, path, data, content_type, url=url, token=token) as response:
        return response.read()


def api_download(
    path: str, target, *, url: str | None = None, token: str | None = None
) -> dict[str, str]:
    """GET a file from the API into `target` (a binary file object), a chunk at a time;
    return the answer's headers (a detached signature travels in one). Errors raise
    ApiError as api_call's do."""
    with _response("GET", path, url=url, token=token) as response:
        while chunk := response.read(1 << 20):
            target.write(chunk)
        return dict(response.headers.items())


@contextmanager
def _response(
    method: str,
    path: str,
    data: bytes | None = None,
    content_type: str = "application/json",
    *,
    url: str | None,
    token: str | None,
) -> Iterator[Any]:
    """The service's answer to one call, with the caller's token; an error answer or an
    unreachable service raises ApiError with the service's message."""
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
            yield response
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
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        error = ApiError(f"cannot reach {base}: {getattr(exc, 'reason', exc)}")
        error.unreachable = True
        raise error from None


def wait_for_job(
    job: dict[str, Any],
    *,
    url: str | None = None,
    token: str | None = None,
    limit_seconds: float = 3600.0,
    poll_seconds: float = 0.5,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Follow a job the service accepted (`202` + its status) until it ends; return it.

    A cold job runner may take a minute to load the scanner, so there is no short timeout:
    `limit_seconds` bounds the whole wait, and reaching it raises ApiError naming the job
    (which goes on running; its status stays at its location).
    """
    deadline = time.monotonic() + limit_seconds
    while job["state"] in ("queued", "running"):
        if on_progress is not None:
            on_progress(job)
        if time.monotonic() > deadline:
            raise ApiError(
                f"job {job['job']} is still {job['state']} after {limit_seconds:.0f} s; "
                f"follow it at {job['location']}",
                details={"job": job["job"], "state": job["state"]},
            )
        time.sleep(poll_seconds)
        job = api_call("GET", job["location"], url=url, token=token)
    if on_progress is not None:
        on_progress(job)
    if job["state"] != "succeeded":
        error = ApiError(
            f"job {job['job']} ({job['kind']}) failed: {job.get('error') or 'no reason given'}",
            details={"job": job["job"], **(job.get("result") or {})},
        )
        raise error
    return job


class Client:
    """The service's API for applications and reviewers' scripts, as one object.

        from governance.client import Client
        api = Client("https://governance.internal", token)     # or GOVERNANCE_URL/_TOKEN
        version = api.upload(dataset_id, 2026, records)        # records: an iterable of dicts
        receipt = api.scan(dataset_id, version["version"])
        for request in api.inbox():
            api.decide(request["uid"], "approve", "receipt and samples reviewed")

    Every call is made with the caller's own token, so the service authenticates, authorizes
    and audits it as that principal. Errors raise `ApiError` with the service's message and
    `status`; `call` reaches any endpoint the methods do not cover.
    """

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Any endpoint: the decoded JSON answer."""
        return api_call(method, path, body, url=self.url, token=self.token)

    def upload(self, dataset_id: int, tax_year: int, records) -> dict[str, Any]:
        """Upload a dataset version from an iterable of records (sent as JSON lines)."""
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        raw = api_request(
            "POST",
            f"/api/v1/datasets/{dataset_id}/versions?tax_year={int(tax_year)}",
            data,
            "application/x-ndjson",
            url=self.url,
            token=self.token,
        )
        return json.loads(raw)

    def scan(self, dataset_id: int, version: int, limit_seconds: float = 3600.0) -> dict[str, Any]:
        """Scan a version for PII (a job; this waits for it): the receipt (verdict, counts,
        canary recall)."""
        job = self.call("POST", f"/api/v1/datasets/{dataset_id}/versions/{version}/scans")
        done = wait_for_job(job, url=self.url, token=self.token, limit_seconds=limit_seconds)
        return done["result"]["receipt"]

    def quarantine(self, dataset_id: int, version: int) -> list[dict[str, Any]]:
        """The records the residual pass held back, digits masked."""
        path = f"/api/v1/datasets/{dataset_id}/versions/{version}/quarantine"
        return self.call("GET", path)["items"]

    def inbox(self) -> list[dict[str, Any]]:
        """Approval requests waiting for a role the caller holds."""
        return self.call("GET", "/api/v1/approvals/inbox")["items"]

    def decide(
        self, uid: str, decision: str, comment: str, role: str | None = None
    ) -> dict[str, Any]:
        """Approve or reject a request, with a comment (signed and audited)."""
        body: dict[str, Any] = {"decision": decision, "comment": comment}
        if role:
            body["role"] = role
        return self.call("POST", f"/api/v1/approvals/{uid}/decisions", body)

    def authorize(self, subject: str, domain: str, obj: str, action: str) -> dict[str, Any]:
        """Ask the policy whether subject may act (the caller needs decision rights)."""
        return self.call(
            "POST",
            "/api/v1/authorize",
            {"subject": subject, "domain": domain, "object": obj, "action": action},
        )

    def generate(self, family: str, prompt: str, max_new_tokens: int = 32) -> dict[str, Any]:
        """Query a model family's serving version."""
        return self.call(
            "POST",
            f"/api/v1/models/{family}/generate",
            {"prompt": prompt, "max_new_tokens": max_new_tokens},
        )

    def audit_entries(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit entries matching filters (principal, domain, model, action, decision...)."""
        query = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in filters.items())
        return self.call("GET", f"/api/v1/audit/entries?{query}")["items"]


# What makes a new progress line: a new step, epoch or stage.
KEYS = ("step", "epoch", "stage")


class WorkClock:
    """Progress lines for a version's job, with the time left estimated from the rate seen
    since the first report of this clock (a training job reports `step` of `of`)."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None

    @staticmethod
    def key(work: dict) -> tuple:
        """What makes a new line worth printing: a new state, attempt, step, epoch or stage."""
        return (work["state"], work.get("attempt"), *map((work["progress"] or {}).get, KEYS))

    def line(self, work: dict) -> str:
        progress = work.get("progress") or {}
        what = "training" if work["kind"] == "train" else "evaluation gate"
        if work["state"] == "queued":
            return f"{what}: queued (job {work['job'][:8]}), waiting for a worker"
        parts = [f"{what}: {work['state']}"]
        step, of = progress.get("step"), progress.get("of")
        if isinstance(step, int) and isinstance(of, int) and of:
            parts.append(f"step {step}/{of} ({step / of:.0%})")
            if progress.get("epoch"):
                parts.append(f"epoch {progress['epoch']}")
            if isinstance(progress.get("loss"), int | float):
                parts.append(f"loss {progress['loss']:.4g}")
            now = time.monotonic()
            if self.first is None or step < self.first[1]:
                self.first = (now, step)
            elapsed, done = now - self.first[0], step - self.first[1]
            if done > 0 and elapsed > 0:
                parts.append(f"about {max(0, round((of - step) * elapsed / done))} s left")
        elif progress.get("stage"):
            parts.append(f"stage {progress['stage']}")
        if work.get("attempt", 0) > 1:
            parts.append(f"attempt {work['attempt']}")
        return ", ".join(parts)
