"""Schemathesis generates requests from /openapi.json, valid and invalid, with and without
credentials: whatever it sends, the API answers with its JSON envelope and never a 5xx.

The budget is fixed (examples per operation, derandomized) so CI runs the same requests each
time; raise SCHEMATHESIS_EXAMPLES locally to search harder.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

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


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    """An initialized instance on SQLite, shared by the generated requests."""
    home = tmp_path_factory.mktemp("schemathesis") / "home"
    settings = load_config({"GOVERNANCE_HOME": str(home), "AUDIT_CHECKPOINT_SECONDS": 0})
    init_instance(settings)
    app = create_app({**settings, "TESTING": True})
    make_domain(app, "consumer-tax")
    app.config["SCHEMATHESIS_TOKEN"] = principal_token(app, "admin")
    yield app
    close_app(app)


def test_no_request_gets_a_server_error(hostile_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", hostile_app)
    headers = {"Authorization": f"Bearer {hostile_app.config['SCHEMATHESIS_TOKEN']}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} "
                    f"{response.text[:200]}"
                )
            elif response.status_code >= 400 and "json" in response.headers.get("Content-Type", ""):
                assert "error" in response.json(), (case.method, case.formatted_path)

        check()
    assert operations > 40
    assert failures == []


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
