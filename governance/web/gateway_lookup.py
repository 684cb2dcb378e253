"""What the gateway's routes share: authorize the caller for a family, run the query through
`gateway.service`, and write the one audit entry that says what happened to it."""

from __future__ import annotations

from collections.abc import Iterator

from governance import runtime
from governance.db import get_session
from governance.errors import GovernanceError
from governance.gateway import service, telemetry
from governance.gateway.backends import Generation, Query
from governance.gateway.service import Prepared, Target
from governance.web.families_lookup import family_for
from governance.web.guard import current_principal, log_event


def _log(prepared_or_family, domain: str, decision: str, details: dict) -> None:
    log_event("model.query", f"model/{prepared_or_family}", domain, decision, details)


def _refusal(family: str, domain: str, error: GovernanceError, span) -> None:
    decision = getattr(error, "audit_decision", "failed")
    details = dict(getattr(error, "audit_details", {}) or {})
    details.setdefault("reason", error.code)
    _log(family, domain, decision, details)
    telemetry.REQUESTS.labels(family, str(details.get("variant", "")), decision).inc()
    telemetry.end_span(span, details, decision)


# The GenAI semantic conventions' operation names.


def prepare(family_name: str, query: Query, task: str | None, api: str) -> Prepared:
    """Authorize (a family of another domain is answered as absent), admit, guard, route."""
    # The decision's entry is queued: it becomes durable with the query's own entry, before
    # the answer leaves (a refusal below is logged, and waits for both).
    family, domain = family_for(family_name, "query", queue=True)
    rt = runtime.current()
    span = telemetry.start_span(
        telemetry.OPERATIONS.get(api, "text_completion"),
        family.name,
        query.max_tokens,
        query.temperature,
    )
    try:
        prepared = service.prepare(
            rt, get_session(), current_principal().name, family, domain, query, task
        )
    except GovernanceError as exc:
        _refusal(family.name, domain.name, exc, span)
        raise
    prepared.details["api"] = api
    prepared.span = span
    return prepared


def complete(prepared: Prepared) -> Generation:
    """The whole answer, audited."""
    try:
        answer = service.complete(runtime.current(), prepared)
    except GovernanceError as exc:
        _refusal(prepared.family.name, prepared.domain.name, exc, prepared.span)
        raise
    _log(prepared.family.name, prepared.domain.name, "allow", prepared.details)
    service.record_metrics(prepared, "allow")
    telemetry.end_span(prepared.span, prepared.details, "allow", answer.finish_reason)
    return answer


def open_stream(prepared: Prepared) -> tuple[Target, Iterator[str | Generation]]:
    """The answer's pieces, audited when the stream ends (or the caller leaves)."""
    rt = runtime.current()
    try:
        target, pieces = service.open_stream(rt, prepared)
    except GovernanceError as exc:
        _refusal(prepared.family.name, prepared.domain.name, exc, prepared.span)
        raise

    def audited() -> Iterator[str | Generation]:
        finished: Generation | None = None
        try:
            for piece in service.stream(rt, prepared, target, pieces):
                if isinstance(piece, Generation):
                    finished = piece
                yield piece
        finally:
            if not finished:
                prepared.details.update(
                    variant=target.choice.variant,
                    version=target.version.number,
                    version_uid=target.version.uid,
                    route=target.choice.reason,
                    reason="stream_interrupted",
                )
            decision = "allow" if finished else "failed"
            _log(prepared.family.name, prepared.domain.name, decision, prepared.details)
            service.record_metrics(prepared, decision)
            telemetry.end_span(
                prepared.span,
                prepared.details,
                decision,
                finished.finish_reason if finished else None,
            )

    return target, audited()
