"""The composition root: every long-lived runtime object of a process, built in one place.

The app factory, the CLI, the scheduler, the job runner and the benchmarks all build a
`Runtime` from the configuration here, and take the key ring, blob store, scanner, serving
backend, audit log and authorizer from it. Views ask for it with `current()`; tests replace
a part with `build(settings, scanner=fake)` or `create_app(config, runtime_overrides=...)`,
never by writing into `app.extensions`.

Heavy parts are made on first use: the PII scanner (spaCy, Presidio) and the serving
engine's models (torch) are loaded only by the processes that use them (the job runner and
`govern engine`), never by the web process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from governance.audit.service import AuditLog
from governance.audit.witnessing import configured_witnesses
from governance.authz.service import Authorizer
from governance.config import load_config
from governance.db import Database
from governance.domains.keys import KeyRing
from governance.families import intake
from governance.families import service as family_service
from governance.families.signing import ModelSigner, sign_version
from governance.flows import dataset_use
from governance.flows.log_verification import CheckpointStatus
from governance.gateway.backends import EngineBackend, LocalBackend, ServingBackend
from governance.gateway.guardrails import GuardrailsClient, GuardrailsScanner, LocalGuardrails
from governance.gateway.limits import QueryLimits, RateLimiter
from governance.gateway.serving import ServingCache
from governance.jobs.executors import Executor, executor_from_config
from governance.pii.rules import DomainRules, load_rules
from governance.policy_review import changes as policy_changes
from governance.policy_review.validate import validate_policy
from governance.storage import BlobStore, LocalBlobStore

if TYPE_CHECKING:
    from governance.pii.scanner import TextScanner

EXTENSION_KEY = "governance.runtime"


# --- the narrow builders ---------------------------------------------------------------------
# Every process gets its long-lived objects here: `build` (below) makes a whole runtime from
# them, and a process that needs one part (the scheduler's database, the CLI's store and signer)
# asks for that part alone. Nothing outside this module constructs them.


def database_for(settings: Mapping[str, Any] | str) -> Database:
    """The database of these settings (or of this URL)."""
    url = settings if isinstance(settings, str) else settings["GOVERNANCE_DATABASE_URL"]
    return Database(url)


def default_scanner(settings: Mapping[str, Any], model: str | None = None) -> TextScanner:
    """The Presidio + spaCy scanner (imported only here, in the processes that scan)."""
    from governance.pii.scanner import Scanner

    return Scanner(model or settings["PII_MODEL"])


def default_store(settings: Mapping[str, Any]) -> BlobStore:
    return LocalBlobStore(settings.get("BLOB_ROOT") or f"{settings['GOVERNANCE_HOME']}/blobs")


def signer_for(settings: Mapping[str, Any]) -> ModelSigner:
    """Signs promoted adapters and verifies them before they are served."""
    return ModelSigner(settings["GOVERNANCE_HOME"])


def keyring_for(settings: Mapping[str, Any]) -> KeyRing:
    return KeyRing(settings["GOVERNANCE_HOME"], settings.get("GOVERNANCE_MASTER_KEY"))


def executor_for(settings: Mapping[str, Any]) -> Executor:
    """How this deployment announces queued jobs (JOBS_EXECUTOR)."""
    return executor_from_config(settings)


def audit_log_for(
    database: Database, settings: Mapping[str, Any], checkpoint_seconds: float | None = None
) -> AuditLog:
    """The audit log's writer, signer and witnesses for these settings (`checkpoint_seconds`
    0: a short-lived process that signs only when asked)."""
    home = settings["GOVERNANCE_HOME"]
    if checkpoint_seconds is None:
        checkpoint_seconds = float(settings["AUDIT_CHECKPOINT_SECONDS"])
    return AuditLog(
        database,
        home,
        checkpoint_seconds=checkpoint_seconds,
        checkpoint_entries=int(settings["AUDIT_CHECKPOINT_ENTRIES"]),
        origin=settings.get("AUDIT_ORIGIN") or None,
        witnesses=configured_witnesses(settings.get("AUDIT_WITNESSES"), home),
    )


def version_signer(settings: Mapping[str, Any]) -> Callable[[Any, Any], str]:
    """Sign a version's adapter at promotion, for processes that hold no runtime (the
    scheduler, the CLI's refresh)."""
    return partial(sign_version, default_store(settings), signer_for(settings))


def default_backend(
    settings: Mapping[str, Any], store: BlobStore, signer: ModelSigner
) -> ServingBackend:
    """The serving backend: a serving engine over HTTP (the embedded one on SERVING_PORT, or
    SERVING_URL), or this process itself when SERVING_URL is `inprocess`."""
    cache = Path(settings["GOVERNANCE_HOME"]) / "cache" / "adapters"
    url = settings.get("SERVING_URL") or ""
    if url == "inprocess":
        return LocalBackend(store, cache, signer=signer)
    return EngineBackend(
        url or f"http://127.0.0.1:{int(settings['SERVING_PORT'])}",
        store,
        cache,
        api_key=settings.get("SERVING_API_KEY") or "",
        timeout=float(settings["SERVING_TIMEOUT_SECONDS"]),
        engines=engine_map(settings.get("SERVING_ENGINES") or ""),
        signer=signer,
    )


def engine_map(text: str) -> dict[str, str]:
    """SERVING_ENGINES: `BASE=URL,BASE=URL`."""
    engines = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        base, sep, url = item.partition("=")
        if not sep or not base.strip() or not url.strip().startswith(("http://", "https://")):
            raise ValueError(f"SERVING_ENGINES: {item!r} is not BASE=http(s)://HOST:PORT")
        engines[base.strip()] = url.strip()
    return engines


def default_guardrails(
    settings: Mapping[str, Any], scanner: Callable[[], TextScanner]
) -> GuardrailsScanner:
    """The guardrails that scan prompts and answers: their process over HTTP (the embedded one
    on GUARDRAILS_PORT, or GUARDRAILS_URL), or this process when GUARDRAILS_URL is `inprocess`."""
    url = settings.get("GUARDRAILS_URL") or ""
    if url == "inprocess":
        return LocalGuardrails(scanner(), settings["GOVERNANCE_POLICY_DIR"])
    return GuardrailsClient(
        url or f"http://127.0.0.1:{int(settings['GUARDRAILS_PORT'])}",
        api_key=settings.get("GUARDRAILS_API_KEY") or settings.get("SERVING_API_KEY") or "",
        timeout=float(settings["GUARDRAILS_TIMEOUT_SECONDS"]),
    )


def constant(part: Any) -> Callable[[], Any]:
    """A factory that returns a part made elsewhere (an override)."""

    def given() -> Any:
        return part

    given.given = True  # type: ignore[attr-defined]
    return given


# spaCy interns every new string it sees for the life of a model, so a job runner's scanner
# grows with the texts it has scanned (measured: 400 MiB fresh, 945 MiB after 100,000 tax
# questions with case numbers); past this many texts the runner loads a fresh one (a few
# seconds, about 3% of the time it took to scan them).
SCANNER_RECYCLE_TEXTS = 50_000


@dataclasses.dataclass
class Runtime:
    """What a process needs to do the service's work, owned by nobody but this object."""

    settings: dict[str, Any]
    database: Database
    authorizer: Authorizer
    audit_log: AuditLog
    keyring: KeyRing
    store: BlobStore
    limiter: RateLimiter
    auth_limiter: RateLimiter
    scanner_factory: Callable[[], TextScanner]
    backend_factory: Callable[[], ServingBackend]
    # Signs promoted adapters and verifies them before they are served (one per process, so
    # a verified adapter is verified once).
    model_signer: ModelSigner
    # Each family's serving variants, read again when its serving revision moves.
    serving_cache: ServingCache = dataclasses.field(default_factory=ServingCache)
    _scanner: TextScanner | None = None
    _scanned: int = 0
    _backend: ServingBackend | None = None
    _guardrails: GuardrailsScanner | None = None
    _query_limits: QueryLimits | None = None
    _checkpoint_status: CheckpointStatus | None = None
    _job_executor: Executor | None = None

    def sign_version(self, version, base) -> str:
        return sign_version(self.store, self.model_signer, version, base)

    @property
    def scanner(self) -> TextScanner:
        """The PII scanner, loaded on first use (spaCy takes a while to load)."""
        if self._scanner is None:
            self._scanner = self.scanner_factory()
            self._scanned = 0
        return self._scanner

    def scanned(self, texts: int) -> bool:
        """Count texts this process's scanner has scanned; past SCANNER_RECYCLE_TEXTS, drop
        it so the next use loads a fresh one (not a scanner given with `use`). True if it
        was dropped."""
        self._scanned += texts
        if self._scanned < SCANNER_RECYCLE_TEXTS or getattr(self.scanner_factory, "given", False):
            return False
        self._scanner, self._scanned = None, 0
        return True

    @property
    def backend(self) -> ServingBackend:
        if self._backend is None:
            self._backend = self.backend_factory()
        return self._backend

    @property
    def guardrails(self) -> GuardrailsScanner:
        """What scans prompts and answers at query time (the guardrails process, by default)."""
        if self._guardrails is None:
            self._guardrails = default_guardrails(self.settings, lambda: self.scanner)
        return self._guardrails

    @property
    def query_limits(self) -> QueryLimits:
        """The gateway's request and token limits (over `limiter`'s storage)."""
        if self._query_limits is None or self._query_limits.requests is not self.limiter:
            self._query_limits = QueryLimits(
                self.limiter, int(self.settings.get("GATEWAY_TOKENS_PER_MINUTE") or 0)
            )
        return self._query_limits

    @property
    def checkpoint_status(self) -> CheckpointStatus:
        """How far the console has verified the log (made on first use)."""
        if self._checkpoint_status is None:
            self._checkpoint_status = CheckpointStatus(
                self.database, self.audit_log.signing_key.public_key()
            )
        return self._checkpoint_status

    @property
    def job_executor(self) -> Executor:
        """Where jobs of every kind are announced (runners and workers poll; or Celery gets a
        message), made once (a Celery client is not built per request)."""
        if self._job_executor is None:
            self._job_executor = executor_for(self.settings)
        return self._job_executor

    @property
    def home(self) -> Path:
        return Path(self.settings["GOVERNANCE_HOME"])

    @property
    def policy_dir(self) -> Path:
        return Path(self.settings["GOVERNANCE_POLICY_DIR"])

    def rules(self, domain: str) -> DomainRules:
        """The PII rules in force for a domain."""
        return load_rules(self.policy_dir, domain)

    def use(self, **parts: Any) -> None:
        """Replace parts of a running runtime (tests: a fake scanner, a tighter limiter)."""
        for name, part in parts.items():
            if name == "scanner":
                self._scanner, self.scanner_factory = part, constant(part)
            elif name == "backend":
                self._backend, self.backend_factory = part, constant(part)
            elif name == "guardrails":
                self._guardrails = part
            elif name in ("keyring", "store", "limiter", "auth_limiter", "audit_log"):
                setattr(self, name, part)
            else:
                raise TypeError(f"no runtime part {name!r} to replace")

    def close(self) -> None:
        """Finish pending audit appends; close the database's connections and those kept
        to the engines, the guardrails and the limits' storage."""
        self.audit_log.close()
        self.database.dispose()
        for part in (self._backend, self._guardrails, self.limiter, self.auth_limiter):
            closer = getattr(part, "close", None)
            if closer is not None:
                closer()


def build(settings: Mapping[str, Any] | None = None, **overrides: Any) -> Runtime:
    """Build every runtime object from the configuration (defaults, environment, `settings`).

    `overrides` replace parts by name: `scanner`, `backend`, `store`, `keyring`, `audit_log`,
    `authorizer`, `database`, `limiter`, `guardrails` (tests use these; nothing else does).
    """
    # Defaults, then the environment, then `settings` (so settings already loaded load the same).
    config = load_config(settings)
    home = config["GOVERNANCE_HOME"]
    database = overrides.pop("database", None) or database_for(config)
    store: BlobStore = overrides.pop("store", None) or default_store(config)
    scanner = overrides.pop("scanner", None)
    backend = overrides.pop("backend", None)
    guardrails = overrides.pop("guardrails", None)
    signer = signer_for(config)
    runtime = Runtime(
        settings=config,
        database=database,
        authorizer=overrides.pop("authorizer", None)
        or Authorizer(
            config["GOVERNANCE_POLICY_DIR"],
            float(config["POLICY_CHECK_SECONDS"]),
            validate=validate_policy,
        ),
        audit_log=overrides.pop("audit_log", None) or audit_log_for(database, config),
        keyring=overrides.pop("keyring", None) or keyring_for(config),
        store=store,
        limiter=overrides.pop("limiter", None)
        or RateLimiter(int(config["GATEWAY_RATE_PER_MINUTE"]), config.get("GATEWAY_RATE_STORAGE")),
        auth_limiter=overrides.pop("auth_limiter", None)
        or RateLimiter(int(config["AUTH_FAILURES_PER_MINUTE"]), config.get("AUTH_RATE_STORAGE")),
        scanner_factory=constant(scanner)
        if scanner is not None
        else partial(default_scanner, config),
        backend_factory=constant(backend)
        if backend is not None
        else partial(default_backend, config, store, signer),
        model_signer=signer,
    )
    if overrides:
        raise TypeError(f"unknown runtime parts: {sorted(overrides)}")
    if runtime.authorizer.gate is None:
        runtime.authorizer.gate = policy_changes.approval_gate(database, runtime.authorizer)
        runtime.authorizer.on_loaded = partial(policy_changes.keep_version_quietly, Path(home))
        policy_changes.keep_version_quietly(Path(home), runtime.authorizer.policy)
    runtime._guardrails = guardrails
    register_subject_kinds()
    return runtime


def register_subject_kinds() -> None:
    """Each kind of approval subject registers how to recompute its digest (at start-up)."""
    dataset_use.register()
    family_service.register_subject_kind()
    intake.register()
    policy_changes.register()


def init_app(app: Flask, runtime: Runtime) -> Runtime:
    """Attach the runtime to the app, and its database's per-request session. From here on
    the runtime reads the app's config, so the two never disagree."""
    app.config.update(runtime.settings)
    runtime.settings = app.config
    app.extensions[EXTENSION_KEY] = runtime
    runtime.database.init_app(app)
    return runtime


def of(app: Flask) -> Runtime:
    return app.extensions[EXTENSION_KEY]


def current() -> Runtime:
    """The runtime of the app handling this request (or of the pushed app context)."""
    return current_app.extensions[EXTENSION_KEY]
