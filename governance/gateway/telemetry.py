"""Gateway telemetry: Prometheus metrics, and OpenTelemetry spans named by the GenAI semantic
conventions.

Metrics are per family, variant and decision. Under gunicorn (`govern serve`) every worker
writes to PROMETHEUS_MULTIPROC_DIR and `GET /metrics` sums them; a single process reports
its own. Spans use only the OpenTelemetry API: they record nothing until the process
configures an SDK (for example with `opentelemetry-instrument`, or the OTEL_* environment of
an SDK set up by the deployment), so the default costs next to nothing.
"""

from __future__ import annotations

import os
import time

from opentelemetry import trace
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

# The gateway's APIs as OpenTelemetry's gen_ai.operation.name.
OPERATIONS = {"chat.completions": "chat"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "governance_gateway_requests",
    "Model queries by family, variant and decision (allow, deny, failed, blocked).",
    ["family", "variant", "decision"],
)
# OpenTelemetry's GenAI metrics, in Prometheus' naming (dots as underscores, the unit as a
# suffix): tokens per query by type (gen_ai.client.token.usage: the gateway is the models'
# client) and the time from a query's arrival to its answer (gen_ai.server.request.duration,
# the whole stream when streamed). The family is the requested model, the variant the model
# that answered.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens per query by type (OpenTelemetry gen_ai.client.token.usage).",
    ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model", "gen_ai_token_type"],
    buckets=TOKEN_BUCKETS,
)
REQUEST_DURATION = Histogram(
    "gen_ai_server_request_duration_seconds",
    "Time from a query's arrival to its answer (OpenTelemetry gen_ai.server.request.duration).",
    ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model"],
    buckets=LATENCY_BUCKETS,
)
GUARD_FINDINGS = Counter(
    "governance_gateway_guard_findings",
    "PII the guardrails found, by family, where (prompt, answer) and entity type.",
    ["family", "where", "entity"],
)
GUARD_LATENCY = Histogram(
    "governance_gateway_guard_seconds",
    "Time the guardrails' scans added to a query.",
    ["family", "where"],
    buckets=LATENCY_BUCKETS,
)

# OpenTelemetry's `http.server.request.duration`, in Prometheus' naming: every request of the
# service, by method, route template (never the raw path: ids would explode the series) and
# status code.
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests (OpenTelemetry http.server.request.duration).",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=LATENCY_BUCKETS,
)

tracer = trace.get_tracer("governance.gateway")


def instrument(app) -> None:
    """Time every request of the app into HTTP_DURATION (register before other hooks, so the
    status observed is the one sent)."""
    from flask import g, request

    @app.before_request
    def _start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("request_started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            HTTP_DURATION.labels(request.method, rule, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format: every worker's, under gunicorn."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def start_span(operation: str, family: str, max_tokens: int, temperature: float):
    """A GenAI client span `{operation} {family}`, ended by `end_span` (a stream outlives the
    view that starts it)."""
    return tracer.start_span(
        f"{operation} {family}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": "governance",
            "gen_ai.request.model": family,
            "gen_ai.request.max_tokens": max_tokens,
            "gen_ai.request.temperature": temperature,
        },
    )


def end_span(current, details: dict, decision: str, finish_reason: str | None = None) -> None:
    """Record the response's model (variant and version), usage and outcome; never text."""
    if current.is_recording():
        if details.get("variant"):
            current.set_attribute(
                "gen_ai.response.model", f"{details['variant']}/{details.get('version_uid')}"
            )
        if "prompt_tokens" in details:
            current.set_attribute("gen_ai.usage.input_tokens", details["prompt_tokens"])
            current.set_attribute("gen_ai.usage.output_tokens", details["completion_tokens"])
        if finish_reason:
            current.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        current.set_attribute("governance.decision", decision)
        if decision != "allow":
            current.set_status(trace.StatusCode.ERROR, str(details.get("reason", decision)))
            current.set_attribute("error.type", str(details.get("reason", decision)))
    current.end()
