"""The gateway's routes: the OpenAI-compatible API under /v1 (models, chat completions,
completions), and `POST /api/v1/models/{family}/generate`.

The caller's API key is its governance token. `model` names a model family; the gateway
picks the variant (routing.yaml), guards the prompt and the answer (guardrails.yaml), and
answers in OpenAI's shapes, streamed as server-sent events when `stream` is true. Errors take
OpenAI's error shape with its status codes (401 bad key, 404 a family the caller may not
query or that does not exist, 429 with Retry-After). A task tag for routing comes as
`metadata: {"task": ...}` or the `X-Governance-Task` header.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any, Literal

from flask import Response, request, stream_with_context
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, field_validator

from governance import runtime
from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import QueryTime, get_session
from governance.domains.models import Domain
from governance.errors import InvalidInput
from governance.families import service as families
from governance.families.models import ModelFamily
from governance.gateway import routing, telemetry
from governance.gateway.backends import Query
from governance.gateway.service import parse_messages
from governance.gateway.serving_engine import completion_body, stream_chunks
from governance.gateway.traffic import traffic
from governance.web import gateway_lookup as access
from governance.web.common import ERROR_RESPONSES, SECURITY, UNAVAILABLE
from governance.web.families_lookup import family_for, permitted_families
from governance.web.guard import require


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """An error in OpenAI's shape (`openai` SDKs raise it as their APIError)."""

    error: OpenAIErrorDetail


# A request that does not validate is a 400 here, as OpenAI answers it (never a 422); 503 when
# the serving engine or the guardrails are down.
OPENAI_ERRORS: dict[Any, Any] = {
    code: OpenAIError for code in (400, 401, 403, 404, 409, 413, 415, 429, 503)
}

bp = APIBlueprint(
    "openai",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="openai", description="OpenAI-compatible model queries")],
    abp_security=SECURITY,
    abp_responses=OPENAI_ERRORS,
)

MAX_TOKENS = 2048
DEFAULT_MAX_TOKENS = 256
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "logit_bias", "audio")


class OpenAIParams(BaseModel):
    # Clients send fields this gateway does not use (LangChain sends many); unknown ones are
    # ignored, unsupported ones that would change the answer are refused by name.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=63, description="A model family's name.")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(default=1.0, ge=0, le=2)
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is generated.")
    user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = Field(
        default=None, description="`task` names the task for routing rules."
    )

    def common(self) -> dict[str, Any]:
        for name in UNSUPPORTED:
            if (self.model_extra or {}).get(name) not in (None, [], {}):
                raise InvalidInput(f"{name} is not supported", details={"field": name})
        for name in ("logprobs", "echo"):
            if (self.model_extra or {}).get(name):
                raise InvalidInput(f"{name} is not supported", details={"field": name})
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or not all(0 < len(s) <= 100 for s in stops):
            raise InvalidInput(
                "stop takes up to 4 strings of 1 to 100 characters", details={"field": "stop"}
            )
        return {
            "temperature": self.temperature,
            "stop": tuple(stops),
            "seed": self.seed,
        }

    def task(self) -> str | None:
        return (self.metadata or {}).get("task") or request.headers.get("X-Governance-Task")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(OpenAIParams):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)


MAX_PROMPTS = 16


class CompletionRequest(OpenAIParams):
    # OpenAI takes a string or a list of them (LangChain's client always sends a list): one
    # choice per prompt, in order, each with its `index`. Token-id prompts are not taken.
    prompt: str | list[str] = Field(
        description=f"A prompt, or a list of up to {MAX_PROMPTS}: one choice each"
    )

    @field_validator("prompt")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        prompts = [value] if isinstance(value, str) else value
        if not 1 <= len(prompts) <= MAX_PROMPTS:
            raise ValueError(f"give 1 to {MAX_PROMPTS} prompts")
        if any(len(p) > 32_000 for p in prompts):
            raise ValueError("a prompt has at most 32000 characters")
        return value


class ModelPath(BaseModel):
    model: str = Field(max_length=63)


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelObjectList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    finish_reason: str | None
    message: AssistantMessage


class TextChoice(BaseModel):
    index: int
    finish_reason: str | None
    text: str
    logprobs: None = None


# A streamed answer is a series of server-sent events, each `data: <chunk JSON>`, then
# `data: [DONE]`.
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}


class ChatCompletion(BaseModel):
    """`chat.completion`; with `stream: true`, `chat.completion.chunk` events instead."""

    model_config = ConfigDict(openapi_extra={"content": EVENT_STREAM})  # type: ignore[typeddict-unknown-key]

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage


class TextCompletion(BaseModel):
    """`text_completion`; with `stream: true`, `text_completion` events instead."""

    model_config = ConfigDict(openapi_extra={"content": EVENT_STREAM})  # type: ignore[typeddict-unknown-key]

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[TextChoice]
    usage: Usage


def _model(family: ModelFamily, domain: Domain) -> dict:
    return {
        "id": family.name,
        "object": "model",
        "created": int(family.created_at.timestamp()),
        "owned_by": domain.name,
    }


@bp.get("/models", responses={200: ModelObjectList})
def list_models():
    """The model families the caller may query (other families are not shown)."""
    families = permitted_families("query", api="openai")
    return {"object": "list", "data": [_model(family, domain) for family, domain in families]}


@bp.get("/models/<model>", responses={200: ModelObject})
def retrieve_model(path: ModelPath):
    """One model family, if the caller may query it."""
    family, domain = family_for(path.model, "query")
    return _model(family, domain)


def _respond(prepared, body: OpenAIParams, chat: bool):
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    model = prepared.family.name
    if body.stream:
        target, pieces = access.open_stream(prepared)
        usage_too = bool((body.stream_options or {}).get("include_usage"))
        fingerprint = f"{target.choice.variant}-v{target.version.number}"
        return Response(
            stream_with_context(
                stream_chunks(ident, created, model, chat, pieces, usage_too, fingerprint)
            ),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    answer = access.complete(prepared)
    fingerprint = f"{prepared.details['variant']}-v{prepared.details['version']}"
    return completion_body(ident, created, model, chat, answer, fingerprint)


@bp.post("/chat/completions", responses={200: ChatCompletion})
def chat_completions(body: ChatRequest):
    """A chat completion from the family's routed variant (streamed when `stream` is true)."""
    query = Query(
        messages=parse_messages([m.model_dump() for m in body.messages]),
        max_tokens=body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
        **body.common(),
    )
    prepared = access.prepare(body.model, query, body.task(), "chat.completions")
    return _respond(prepared, body, chat=True)


@bp.post("/completions", responses={200: TextCompletion})
def completions(body: CompletionRequest):
    """A text completion from the family's routed variant (streamed when `stream` is true);
    with a list of prompts, one choice per prompt, each prompt guarded and audited as its own
    query."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    common = body.common()
    max_tokens = body.max_tokens or DEFAULT_MAX_TOKENS
    if len(prompts) == 1:
        query = Query(prompt=prompts[0], max_tokens=max_tokens, **common)
        prepared = access.prepare(body.model, query, body.task(), "completions")
        return _respond(prepared, body, chat=False)
    if body.stream:
        raise InvalidInput(
            "stream takes one prompt; send the prompts one by one", details={"field": "stream"}
        )
    # One query per prompt, each authorized, limited, guarded and audited as if sent alone;
    # a refusal of any fails the request (the answered ones stay in the log as answered).
    prepared_all, answers = [], []
    for prompt in prompts:
        query = Query(prompt=prompt, max_tokens=max_tokens, **common)
        prepared_all.append(access.prepare(body.model, query, body.task(), "completions"))
        answers.append(access.complete(prepared_all[-1]))
    first = prepared_all[0]
    body_out = completion_body(
        f"cmpl-{uuid.uuid4().hex}",
        int(time.time()),
        first.family.name,
        False,
        answers[0],
        f"{first.details['variant']}-v{first.details['version']}",
    )
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for index, answer in enumerate(answers):
        one = completion_body("", 0, "", False, answer)
        choices.append({**one["choices"][0], "index": index})
        for key in usage:
            usage[key] += one["usage"][key]
    return {**body_out, "choices": choices, "usage": usage}


# --- the gateway's own route ----------------------------------------------------------------

legacy_bp = APIBlueprint(
    "gateway",
    __name__,
    url_prefix="/api/v1/models",
    abp_tags=[Tag(name="gateway", description="Queries to production models")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class FamilyPath(BaseModel):
    family: str = Field(max_length=63)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=8000)
    max_new_tokens: int = Field(default=64, ge=1, le=512)
    task: str | None = Field(default=None, max_length=63, description="For routing rules.")


class GenerateResponse(BaseModel):
    family: str
    version: int
    version_uid: str
    variant: str
    text: str
    prompt_tokens: int
    completion_tokens: int


@legacy_bp.post("/<family>/generate", responses={200: GenerateResponse, **UNAVAILABLE})
def generate(path: FamilyPath, body: GenerateRequest):
    """Answer a prompt greedily with the family's routed variant; the query is audited, the
    prompt only by its keyed hash. (The OpenAI-compatible routes under /v1 do the same.)"""
    query = Query(prompt=body.prompt, max_tokens=body.max_new_tokens, temperature=0.0)
    prepared = access.prepare(path.family, query, body.task, "generate")
    answer = access.complete(prepared)
    return GenerateResponse(
        family=prepared.family.name,
        version=prepared.details["version"],
        version_uid=prepared.details["version_uid"],
        variant=prepared.details["variant"],
        text=answer.text,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    ).model_dump()


class TrafficQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: QueryTime | None = Field(default=None, description="Default: 30 days ago.")
    until: QueryTime | None = Field(default=None, description="Default: now.")


class VariantTraffic(BaseModel):
    variant: str = Field(description='A variant\'s name; "-" for refusals before routing.')
    answered: int
    refused: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    routes: dict[str, int] = Field(description="Answers per routing rule that chose it.")
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    price_per_1k_tokens: float
    cost: float


class TrafficReport(BaseModel):
    family: str
    since: str
    until: str
    variants: list[VariantTraffic]


@legacy_bp.get("/<family>/traffic", responses={200: TrafficReport})
def family_traffic(path: FamilyPath, query: TrafficQuery):
    """Traffic, latency and token cost per variant over a period, from the audit log."""
    family, _domain = family_for(path.family, "read")
    now = dt.datetime.now(dt.UTC)
    until = _aware(query.until) if query.until else now
    try:
        since = _aware(query.since) if query.since else until - dt.timedelta(days=30)
    except OverflowError:
        raise InvalidInput("until is too early", details={"field": "until"}) from None
    if since >= until:
        raise InvalidInput("since must be before until", details={"field": "since"})
    rt = runtime.current()
    session = get_session()
    sizes = {
        base.name: routing.weights_size(base.path)
        for base, _version in families.serving_variants(session, family)
    }
    family_routing = routing.load(rt.policy_dir).for_family(family.name)
    return traffic(session, family.name, since, until, family_routing, sizes)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# --- metrics --------------------------------------------------------------------------------

telemetry_bp = APIBlueprint(
    "telemetry",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="telemetry", description="Prometheus metrics")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


@telemetry_bp.get(
    "/metrics",
    responses={
        200: {
            "description": "Prometheus' text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics():
    """The gateway's Prometheus metrics (scrape with a token allowed `read` on `metrics`)."""
    require("read", "metrics", SYSTEM_DOMAIN)
    body, content_type = telemetry.exposition()
    return Response(body, content_type=content_type)
