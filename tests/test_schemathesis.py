"""Schemathesis generates requests from /openapi.json, valid and invalid, on SQLite and on
PostgreSQL: whatever it sends, the API answers with its JSON envelope, never a 5xx, and as its
schema documents (status codes, bodies, media types, headers).

The budget is fixed (examples per operation, derandomized) so CI runs the same requests each
time; raise SCHEMATHESIS_EXAMPLES locally to search harder.
"""

from __future__ import annotations

import os
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from governance.app import create_app
from governance.config import load_config
from governance.instance import init_instance
from tests.factories import close_app, make_domain, principal_token

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))


@schemathesis.serializer("application/x-ndjson", "application/gzip")
def raw_bytes(_context, value) -> bytes:
    """Streamed bodies (JSON lines, gzipped results) go as the bytes generated for them."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


# What every answer must satisfy: no 5xx, a status code the operation documents, a body that
# matches its documented schema, and the documented media type.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.response_schema_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def hostile_app(backend, tmp_path_factory):
    """An initialized instance on each database, shared by the generated requests."""
    home = tmp_path_factory.mktemp("schemathesis") / "home"
    overrides: dict = {
        "GOVERNANCE_HOME": str(home),
        "AUDIT_CHECKPOINT_SECONDS": 0,
        "AUTH_FAILURES_PER_MINUTE": 100000,
    }
    if backend.name == "postgresql":
        backend.emptier.empty()
        overrides["GOVERNANCE_DATABASE_URL"] = backend.url
    else:
        home.mkdir(parents=True, mode=0o700)
        shutil.copy(backend.template, home / "governance.db")
    settings = load_config(overrides)
    init_instance(settings)
    app = create_app({**settings, "TESTING": True})
    make_domain(app, "consumer-tax")
    app.config["SCHEMATHESIS_TOKEN"] = principal_token(app, "admin")
    yield app
    close_app(app)


def describe(failure: BaseException) -> list[str]:
    """One line per check that failed, without the (long) rendered request and response."""
    found = getattr(failure, "exceptions", None) or [failure]
    return [f"{type(f).__name__}: {str(f).splitlines()[0][:200]}" for f in found]


def exercise(operation, mode: GenerationMode, headers: dict, failures: set[str]) -> None:
    """Send the operation's generated cases; note every failed check."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        response = case.call(headers=headers)
        where = f"{case.method} {operation.path} -> {response.status_code}"
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseExceptionGroup as failure:
            failures.update(f"{where}: {line}" for line in describe(failure))
        if response.status_code >= 400 and "json" in response.headers.get("Content-Type", ""):
            assert "error" in response.json(), where

    try:
        check()
    except Unsatisfiable:
        # Nothing of the operation can be made invalid (no parameters, no body).
        assert mode == GenerationMode.NEGATIVE, operation.path


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_every_answer_is_documented_and_never_a_server_error(hostile_app, mode):
    """Valid requests and invalid ones (negative mode), with credentials: every answer keeps
    the JSON envelope, is no 5xx, and conforms to /openapi.json (status code, body, media type,
    headers)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", hostile_app)
    headers = {"Authorization": f"Bearer {hostile_app.config['SCHEMATHESIS_TOKEN']}"}
    failures: set[str] = set()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Schemathesis reuses ids it read in answers: it could revoke the very token it
        # sends, and every later request would test only the 401 (revocation has its tests).
        if (operation.method.upper(), operation.path) != ("DELETE", "/api/v1/tokens/{token_id}"):
            exercise(operation, mode, headers, failures)
    assert operations > 40
    # The run was authenticated to its end.
    me = hostile_app.test_client().get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.get_json()
    assert not failures, "\n".join(sorted(failures))


def test_every_schema_name_is_one_model():
    """flask-openapi3 names a component after its model's class: two models of one name (a
    dataset's VersionRead and a model family's) would document one under the other's schema."""
    import importlib
    import pkgutil
    from collections import defaultdict

    from pydantic import BaseModel

    import governance

    for module in pkgutil.walk_packages(governance.__path__, "governance."):
        if module.name.endswith(("__main__", "demo")):
            continue
        importlib.import_module(module.name)
    owners: dict[str, set[str]] = defaultdict(set)
    pending = list(BaseModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__.startswith("governance.") and not model.__name__.endswith(
            ("Path", "Query")
        ):
            owners[model.__name__].add(model.__module__)
    assert {name: mods for name, mods in owners.items() if len(mods) > 1} == {}
