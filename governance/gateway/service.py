"""One model query through the gateway: limits, the prompt guard, routing across variants,
the engine, the answer guard, and what the audit entry says of it.

The views (`/v1/...` and `/api/v1/models/{family}/generate`) authorize the caller first and
log the audit entry; everything between is here, without Flask. A refusal raises a
`GovernanceError` with `audit_decision` and `audit_details` attached, so the view logs the
refusal it answers.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlmodel import Session

from governance.domains.models import Domain
from governance.errors import Conflict, GovernanceError, InvalidInput
from governance.families.models import ModelFamily
from governance.gateway import guardrails, routing, telemetry
from governance.gateway.backends import BackendError, Generation, Query, Servable
from governance.gateway.guardrails import GuardrailsUnavailable, Span
from governance.gateway.serving import ServingVersion
from governance.pii.cache import content_key, keyed_hash

if TYPE_CHECKING:
    from pathlib import Path

    from governance.domains.keys import KeyRing
    from governance.gateway.backends import ServingBackend
    from governance.gateway.guardrails import GuardrailsScanner
    from governance.gateway.limits import QueryLimits
    from governance.gateway.serving import ServingCache


class Parts(Protocol):
    """What a query needs of the process that serves it (the runtime has all of it): the
    domains' keys, the guardrails, the serving engines and what is served, the limits and the
    policy directory."""

    @property
    def keyring(self) -> KeyRing: ...
    @property
    def guardrails(self) -> GuardrailsScanner: ...
    @property
    def backend(self) -> ServingBackend: ...
    @property
    def serving_cache(self) -> ServingCache: ...
    @property
    def query_limits(self) -> QueryLimits: ...
    @property
    def policy_dir(self) -> Path: ...


class PromptBlocked(GovernanceError):
    status = 400
    code = "prompt_blocked"


@dataclass
class Target:
    choice: routing.Choice
    servable: Servable
    version: ServingVersion


@dataclass
class Prepared:
    """A query admitted, guarded and routed; ready to send to an engine."""

    family: ModelFamily
    domain: Domain
    principal: str
    query: Query
    targets: list[Target]
    family_routing: routing.FamilyRouting
    guard: guardrails.DomainGuard
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    span: Any = None  # the OpenTelemetry span of the query (gateway.access)


def refused(error: GovernanceError, decision: str, **details: Any) -> GovernanceError:
    error.audit_decision = decision  # type: ignore[attr-defined]
    error.audit_details = details  # type: ignore[attr-defined]
    return error


def prompt_texts(query: Query) -> list[str]:
    if query.chat:
        return [m["content"] for m in query.messages or ()]
    return [query.prompt or ""]


def with_texts(query: Query, texts: list[str]) -> Query:
    if query.chat:
        messages = tuple(
            {"role": m["role"], "content": text}
            for m, text in zip(query.messages or (), texts, strict=True)
        )
        return dataclasses.replace(query, messages=messages)
    return dataclasses.replace(query, prompt=texts[0])


# Domain content keys as the gateway last derived them: (key ring, domain id) -> (expiry,
# key). Unwrapping a domain key costs a query and a decryption per query otherwise; after a
# domain's keys are shredded, a process forgets the derived key within this many seconds.
CONTENT_KEY_SECONDS = 30.0
_content_keys: dict[tuple[int, int], tuple[float, bytes]] = {}


def domain_content_key(rt: Parts, session: Session, domain: Domain) -> bytes:
    slot = (id(rt.keyring), int(domain.id or 0))
    cached = _content_keys.get(slot)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    # The domain's first query makes its key in a transaction of its own (KeyRing.domain_key).
    key = content_key(rt.keyring, session, domain)
    _content_keys[slot] = (time.monotonic() + CONTENT_KEY_SECONDS, key)
    return key


def prompt_hmac(rt: Parts, session: Session, domain: Domain, query: Query) -> str:
    """The prompt's keyed hash under the domain's content key: a short prompt cannot be
    confirmed by guessing, and shredding the domain's keys unlinks it."""
    text = (
        json.dumps([[m["role"], m["content"]] for m in query.messages or ()])
        if query.chat
        else query.prompt or ""
    )
    return keyed_hash(domain_content_key(rt, session, domain), text)


def _scan(rt: Parts, texts: list[str], domain: str, guard, family: str, where: str):
    started = time.perf_counter()
    try:
        found = rt.guardrails.analyze(texts, domain)
    except GuardrailsUnavailable:
        if guard.required:
            raise
        return None, 0.0
    seconds = time.perf_counter() - started
    telemetry.GUARD_LATENCY.labels(family, where).observe(seconds)
    for spans in found:
        for span in spans:
            telemetry.GUARD_FINDINGS.labels(family, where, span.entity_type).inc()
    return found, seconds


def guard_prompt(rt: Parts, prepared: Prepared) -> None:
    guard = prepared.guard
    if guard.prompts == "off" and not guard.block:
        return
    texts = prompt_texts(prepared.query)
    found, seconds = _scan(rt, texts, prepared.domain.name, guard, prepared.family.name, "prompt")
    if found is None:
        prepared.details["guard"] = {"prompt": "unavailable"}
        return
    counts = guardrails.counts(found)
    blocking = sorted({s.entity_type for spans in found for s in spans} & guard.block)
    entry = {"prompt": counts, "prompt_ms": round(seconds * 1000, 2)}
    prepared.details["guard"] = entry
    if blocking or (guard.prompts == "block" and counts):
        entry["action"] = "blocked"
        raise refused(
            PromptBlocked(
                "the prompt holds personal data this domain does not let reach a model: "
                + ", ".join(blocking or sorted(counts)),
                details={"entities": counts},
            ),
            "blocked",
            reason="prompt_pii",
            guard=entry,
        )
    if counts and guard.prompts == "mask":
        entry["action"] = "masked"
        prepared.query = with_texts(
            prepared.query, [guardrails.mask(t, s) for t, s in zip(texts, found, strict=True)]
        )


def guard_answer(rt: Parts, prepared: Prepared, text: str) -> str:
    guard = prepared.guard
    if guard.answers == "off" or not text:
        return text
    found, seconds = _scan(rt, [text], prepared.domain.name, guard, prepared.family.name, "answer")
    entry = prepared.details.setdefault("guard", {})
    if found is None:
        entry["answer"] = "unavailable"
        return text
    spans: list[Span] = found[0]
    entry["answer"] = guardrails.counts([spans])
    entry["answer_ms"] = round(seconds * 1000, 2)
    return guardrails.mask(text, spans) if spans else text


def variants(rt: Parts, session: Session, family: ModelFamily, family_routing):
    """The family's serving variants as routing sees them, with what each needs to serve."""
    found = []
    for candidate in rt.serving_cache.candidates(session, family):
        version = candidate.version
        score = routing.score_of(version.evaluation, version.metrics, family_routing.metric)
        variant = routing.Variant(
            candidate.base_name,
            score,
            routing.cost_of(family_routing, candidate.base_name, candidate.weights_bytes),
            rt.backend.healthy(candidate.servable),
        )
        found.append((variant, candidate.servable, version))
    return found


def prepare(
    rt: Parts,
    session: Session,
    principal: str,
    family: ModelFamily,
    domain: Domain,
    query: Query,
    task: str | None = None,
) -> Prepared:
    """Admit, guard and route a query the caller was authorized to make."""
    policy = routing.load(rt.policy_dir)
    family_routing = policy.for_family(family.name)
    prepared = Prepared(
        family=family,
        domain=domain,
        principal=principal,
        query=query,
        targets=[],
        family_routing=family_routing,
        guard=guardrails.load(rt.policy_dir).for_domain(domain.name),
    )
    prepared.details["prompt_hmac"] = prompt_hmac(rt, session, domain, query)
    if task is not None:
        prepared.details["task"] = task
    try:
        rt.query_limits.admit(principal, family.name, family_routing.limits)
    except GovernanceError as exc:
        raise refused(exc, "deny", reason="rate_limited", **prepared.details) from None
    prompt_chars = sum(len(t) for t in prompt_texts(query))
    try:
        guard_prompt(rt, prepared)
    except GuardrailsUnavailable as exc:
        raise refused(exc, "failed", reason="guard_unavailable", **prepared.details) from None
    found = variants(rt, session, family, family_routing)
    by_name = {v.name: (t, ver) for v, t, ver in found}
    # The family's own base, if it serves (routing's default when no rule names a variant).
    base_name = next(
        (v.name for v, _t, ver in found if ver.base_model_id == family.base_model_id), ""
    )
    choices = routing.route(
        family_routing,
        [v for v, _t, _ver in found],
        routing.RouteRequest(principal, prompt_chars, task),
        base_name,
    )
    if not choices:
        raise refused(
            Conflict(f"{family.name} has no version that may serve", code="no_serving_version"),
            "failed",
            reason="no_serving_version",
            **prepared.details,
        )
    prepared.targets = [Target(c, *by_name[c.variant]) for c in choices]
    prepared.details["routing_policy"] = policy.hash or None
    return prepared


def _finish(
    rt: Parts, prepared: Prepared, target: Target, answer: Generation, text: str, tried
) -> Generation:
    """The answer the caller gets (its text guarded), recorded for the audit entry, its
    tokens counted against the limits."""
    answer = dataclasses.replace(answer, text=text)
    _served(prepared, target, answer, tried)
    rt.query_limits.spend(
        prepared.principal,
        prepared.family.name,
        prepared.family_routing.limits,
        answer.prompt_tokens + answer.completion_tokens,
    )
    return answer


def _served(prepared: Prepared, target: Target, answer: Generation, tried: list[str]) -> None:
    details = prepared.details
    details.update(
        version=target.version.number,
        version_uid=target.version.uid,
        variant=target.choice.variant,
        route=target.choice.reason,
        latency_ms=round((time.perf_counter() - prepared.started) * 1000, 1),
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    )
    if tried:
        details["unavailable"] = tried


def record_metrics(prepared: Prepared, decision: str) -> None:
    variant = str(prepared.details.get("variant", ""))
    family = prepared.family.name
    telemetry.REQUESTS.labels(family, variant, decision).inc()
    if decision == "allow":
        operation = telemetry.OPERATIONS.get(str(prepared.details.get("api")), "text_completion")
        for kind, key in (("input", "prompt_tokens"), ("output", "completion_tokens")):
            telemetry.TOKEN_USAGE.labels(operation, family, variant, kind).observe(
                prepared.details.get(key, 0)
            )
        telemetry.REQUEST_DURATION.labels(operation, family, variant).observe(
            time.perf_counter() - prepared.started
        )


def _fail(prepared: Prepared, error: BackendError, tried: list[str]) -> GovernanceError:
    return refused(
        error, "failed", reason="backend_unavailable", unavailable=tried, **prepared.details
    )


def complete(rt: Parts, prepared: Prepared) -> Generation:
    """The answer, from the first variant whose engine answers; guarded; limits spent."""
    tried: list[str] = []
    for target in prepared.targets:
        try:
            answer = rt.backend.complete(target.servable, prepared.query)
        except BackendError as exc:
            tried.append(target.choice.variant)
            if target is prepared.targets[-1]:
                raise _fail(prepared, exc, tried) from None
            continue
        return _finish(rt, prepared, target, answer, guard_answer(rt, prepared, answer.text), tried)
    raise AssertionError("no targets")  # prepare() never returns an empty list


def open_stream(rt: Parts, prepared: Prepared) -> tuple[Target, Iterator[str | Generation]]:
    """Start streaming from the first variant whose engine answers; the engine's first piece
    has arrived (so a refusal is still an HTTP error, not a broken stream)."""
    tried: list[str] = []
    for target in prepared.targets:
        pieces = rt.backend.stream(target.servable, prepared.query)
        try:
            first = next(pieces)
        except BackendError as exc:
            tried.append(target.choice.variant)
            if target is prepared.targets[-1]:
                raise _fail(prepared, exc, tried) from None
            continue
        if tried:
            prepared.details["unavailable"] = tried
        return target, _chain(first, pieces)
    raise AssertionError("no targets")


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def stream(rt: Parts, prepared: Prepared, target: Target, pieces) -> Iterator[str | Generation]:
    """The pieces of an answer for the caller; masked whole when the domain guards answers
    (the answer is then held back until it is complete: a value split across pieces could
    not be found otherwise). Ends with the Generation; limits are spent at the end."""
    hold = prepared.guard.answers != "off"
    held: list[str] = []
    for piece in pieces:
        if isinstance(piece, Generation):
            text = piece.text
            if hold:
                text = guard_answer(rt, prepared, "".join(held))
                if text:
                    yield text
            tried = list(prepared.details.get("unavailable", []))
            yield _finish(rt, prepared, target, piece, text, tried)
            return
        if hold:
            held.append(piece)
        else:
            yield piece


def parse_messages(messages: list[Any]) -> tuple[dict[str, str], ...]:
    """Chat messages as role and text; a content given as parts keeps its text parts."""
    found = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if not (isinstance(part, dict) and part.get("type") == "text"):
                    raise InvalidInput(
                        "only text content parts are supported",
                        details={"field": f"messages.{index}.content"},
                    )
                texts.append(str(part.get("text", "")))
            content = "".join(texts)
        if content is None:
            content = ""
        found.append({"role": str(role), "content": str(content)})
    return tuple(found)
