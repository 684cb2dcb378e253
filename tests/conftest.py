"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, migrated by Alembic.

SQLite: the schema is migrated once into a template file that each test copies.
PostgreSQL: the schema is migrated once into a schema of its own in the `test` database
(GOVERNANCE_TEST_POSTGRES_URL), and each test starts from truncated tables.
GOVERNANCE_TEST_DATABASES=sqlite (or postgresql) narrows the run to one backend.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import flask_openapi3.openapi
import psycopg
import pytest
from psycopg import sql
from werkzeug.routing.rules import Rule

from governance.app import create_app
from governance.config import load_config
from governance.instance import init_instance, migrate
from tests.factories import close_app

POSTGRES_URL = os.environ.get(
    "GOVERNANCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [
    b.strip()
    for b in os.environ.get("GOVERNANCE_TEST_DATABASES", "sqlite,postgresql").split(",")
    if b.strip()
]


# What makes a test slow: the real PII scanner (spaCy and Presidio load in seconds), a real
# serving engine, a trained model, live servers and worker processes, a browser, Celery.
SLOW_FIXTURES = frozenset({"scanner", "engine", "tiny", "live", "adapter", "page", "browser"})
SLOW_MODULES = frozenset(
    {
        "test_browser",
        "test_cli",
        "test_client",
        "test_concurrency",
        "test_keys_and_crashes",
        "test_witnessed_log",
        "test_tamper_defaults",
        "test_tooling",
        "test_privacy",  # torch and opacus
        "test_scanner",
        "test_forms",
        "test_lora",
        "test_schemathesis",
        "test_serve",
    }
)


# Tests that use no database but run in `make test`'s second process (the database-only one),
# to even out the two processes' time: the first runs every other test that uses none.
HANDED_OVER = ("tests/trainers/test_privacy.py",)


def pytest_collection_modifyitems(config, items):
    """Mark the slow tests (`pytest -m "not slow"` runs the rest in under a minute). In the
    second process of `make test` (tests/run_backends.py), run only database tests: the first
    process runs the rest once."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)

    def handed_over(item) -> bool:
        return any(item.nodeid.startswith(prefix) for prefix in HANDED_OVER)

    if os.environ.get("GOVERNANCE_TEST_HAND_OVER") == "1":
        moved = [item for item in items if handed_over(item)]
        if moved:
            config.hook.pytest_deselected(items=moved)
            items[:] = [item for item in items if not handed_over(item)]
    if os.environ.get("GOVERNANCE_TEST_DATABASE_TESTS_ONLY") != "1":
        return
    keep = [
        item
        for item in items
        if "backend" in getattr(item, "fixturenames", ()) or handed_over(item)
    ]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def reuse_url_builders() -> None:
    """Compile each route's URL builder once a test process, not once an app.

    Every test builds its own app, and werkzeug compiles two Python functions per route (about
    130 routes) when an app registers them: three quarters of `create_app`'s 60 to 100 ms,
    paid some 300 times a quick loop. A builder is a pure function of the rule's text, its
    defaults and converters, and whether unknown arguments become a query string; the rule
    object it serves is passed in when it is called. So one compiled for an identical rule of
    an earlier app is the function werkzeug would compile again. Production builds one app a
    process and is untouched. Should werkzeug change this private method, the tests compile
    as before."""
    original = getattr(Rule, "_compile_builder", None)
    if original is None:
        return
    compiled: dict[tuple, object] = {}

    def compile_builder(self, append_unknown: bool = True):
        key = (
            self.rule, self.subdomain, self.host, self.map.host_matching, self.merge_slashes,
            repr(sorted((self.defaults or {}).items())), append_unknown,
            tuple(sorted((name, type(c).__qualname__) for name, c in self._converters.items())),
        )  # fmt: skip
        if key not in compiled:
            compiled[key] = original(self, append_unknown)
        return compiled[key]

    Rule._compile_builder = compile_builder


def read_plugins_once() -> None:
    """flask-openapi3 looks for its documentation plugins' entry points at every app, reading
    the metadata of every installed distribution (about 25 ms an app here); what is installed
    does not change during a test process, so the answer is read once."""
    if callable(getattr(flask_openapi3.openapi, "entry_points", None)):
        flask_openapi3.openapi.entry_points = functools.cache(flask_openapi3.openapi.entry_points)


reuse_url_builders()
read_plugins_once()


@dataclass
class Backend:
    name: str
    url: str | None = None
    template: Path | None = None
    emptier: Emptier | None = None


def postgres_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request, tmp_path_factory):
    """A migrated database of one kind, shared by the session's tests."""
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("sqlite-template")
        template = directory / "governance.db"
        migrate(f"sqlite:///{template}")
        yield Backend("sqlite", template=template)
        return
    schema = f"gov_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_conninfo(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        migrate(url)
        emptier = Emptier(url)
        yield Backend("postgresql", url=url, emptier=emptier)
        emptier.close()
    finally:
        with psycopg.connect(postgres_conninfo(POSTGRES_URL), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class Emptier:
    """Empties a PostgreSQL test schema between tests over one connection kept for the
    session: DELETE from every table with foreign keys and triggers off for the transaction
    (session_replication_role), identities back to 1, the audit log's head row as migrated.
    DELETE costs next to nothing on the many tables a test leaves empty, where TRUNCATE pays
    a fixed price per table (about 0.1 s a test for all of them)."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg.connect(postgres_conninfo(url.split("?")[0]), autocommit=True)
        schema = url.partition("search_path%3D")[2] or "public"
        self.connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        self.tables: list[str] = []
        self.deletes: sql.Composable = sql.SQL("")

    def known_tables(self) -> None:
        """The schema's tables, read again each time: a test may create one outside the
        migrations (APScheduler's job store)."""
        tables = [
            row[0]
            for row in self.connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename <> 'alembic_version' ORDER BY tablename"
            )
        ]
        if tables != self.tables:
            self.tables = tables
            self.deletes = sql.SQL("; ").join(
                sql.SQL("DELETE FROM {}").format(sql.Identifier(t)) for t in tables
            )

    def empty(self) -> None:
        self.known_tables()
        with self.connection.transaction():
            self.connection.execute("SET LOCAL session_replication_role = replica")
            self.connection.execute(self.deletes)
            self.connection.execute(
                "SELECT setval(c.oid, 1, false) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'S' AND n.nspname = current_schema()"
            )
            # The migration seeds the audit log's head row; put it back as migrated.
            self.connection.execute("INSERT INTO audit_head (id, size) VALUES (1, 0)")

    def close(self) -> None:
        self.connection.close()


def truncate_all(url: str) -> None:
    """Empty the test schema behind `url` (one connection for this call)."""
    emptier = Emptier(url)
    try:
        emptier.empty()
    finally:
        emptier.close()


@pytest.fixture
def database_url(backend, tmp_path) -> str:
    """A migrated, empty database for one test."""
    if backend.name == "sqlite":
        home = tmp_path / "home"
        home.mkdir(mode=0o700)
        shutil.copy(backend.template, home / "governance.db")
        return f"sqlite:///{home / 'governance.db'}"
    backend.emptier.empty()
    return backend.url


@pytest.fixture
def config(tmp_path, database_url) -> dict:
    """Settings of an initialized instance in a fresh GOVERNANCE_HOME."""
    settings = load_config(
        {
            "GOVERNANCE_HOME": str(tmp_path / "home"),
            "GOVERNANCE_DATABASE_URL": database_url,
            # Tests knock without credentials on purpose, far more often than a client would;
            # the limit itself has its own test.
            "AUTH_FAILURES_PER_MINUTE": 100000,
        }
    )
    init_instance(settings)
    return settings


@pytest.fixture
def env(tmp_path, database_url) -> dict:
    """The environment of a `govern` process on the test's instance (real processes)."""
    return {
        **os.environ,
        "GOVERNANCE_HOME": str(tmp_path / "home"),
        "GOVERNANCE_DATABASE_URL": database_url,
    }


@pytest.fixture
def app(config):
    application = create_app({**config, "TESTING": True})
    yield application
    close_app(application)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def engine():
    """One real serving engine process (`govern engine`) for the session: (url, api key)."""
    from governance.gateway.serving_engine import engine_process

    with engine_process() as started:
        yield started


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A tiny Llama base (trainers.tiny), built once per session; tests only read it."""
    path = tmp_path_factory.mktemp("base") / "tiny"
    subprocess.run(
        [sys.executable, "-m", "trainers.tiny", str(path)], check=True, capture_output=True
    )
    return path
