"""The gateway keeps a family's serving variants between queries and reads them again when
the family's serving revision moves; the database moves it on every change to a version,
whoever writes it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from governance.families.models import ModelFamily, ModelVersion, VersionState
from governance.families.service import find_family
from governance.gateway.serving import ServingCache
from tests.factories import get_db, make_domain, make_family


def add_version(session, family: ModelFamily, number: int, status: str) -> ModelVersion:
    version = ModelVersion(
        uid=uuid.uuid4().hex,
        family_id=family.id,
        number=number,
        tax_year=2025,
        status=status,
        base_model_id=family.base_model_id,
        base_weights_hash="0" * 64,
        code_version="test",
        policy_hash="0" * 64,
        trained_by="test",
    )
    session.add(version)
    session.commit()
    return version


def revision(db, name: str) -> int:
    with db.unit_of_work() as session:
        return find_family(session, name)[0].serving_revision


def served(db, cache: ServingCache, name: str) -> list[int]:
    with db.unit_of_work() as session:
        family, _domain = find_family(session, name)
        return [c.version.number for c in cache.candidates(session, family)]


def test_every_change_to_a_version_moves_its_family_revision_and_only_its(app):
    make_domain(app, "consumer-tax")
    make_family(app, "tax-helper", "consumer-tax")
    make_family(app, "other", "consumer-tax")
    db = get_db(app)
    start, other = revision(db, "tax-helper"), revision(db, "other")
    with db.unit_of_work() as session:
        family = find_family(session, "tax-helper")[0]
        version = add_version(session, family, 1, VersionState.TRAINING)
    assert revision(db, "tax-helper") == start + 1
    with db.unit_of_work() as session:
        session.get(ModelVersion, version.id).status = VersionState.PRODUCTION
        session.commit()
    assert revision(db, "tax-helper") == start + 2
    # A writer that bypasses the service (an operator's SQL) moves it too.
    with db.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE model_versions SET status = 'retired' WHERE id = :id"),
            {"id": version.id},
        )
    assert revision(db, "tax-helper") == start + 3
    with db.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM model_versions WHERE id = :id"), {"id": version.id})
    assert revision(db, "tax-helper") == start + 4
    assert revision(db, "other") == other


def test_the_cache_serves_what_the_database_says_after_each_change(app):
    make_domain(app, "consumer-tax")
    make_family(app, "tax-helper", "consumer-tax")
    db = get_db(app)
    cache = ServingCache()
    assert served(db, cache, "tax-helper") == []
    with db.unit_of_work() as session:
        family = find_family(session, "tax-helper")[0]
        first = add_version(session, family, 1, VersionState.PRODUCTION)
    assert served(db, cache, "tax-helper") == [1]
    with db.unit_of_work() as session:
        family = find_family(session, "tax-helper")[0]
        second = add_version(session, family, 2, VersionState.EVALUATED)
    assert served(db, cache, "tax-helper") == [1]
    # Promotion: 2 serves, 1 is retired.
    with db.unit_of_work() as session:
        session.get(ModelVersion, first.id).status = VersionState.RETIRED
        session.get(ModelVersion, second.id).status = VersionState.PRODUCTION
        session.commit()
    assert served(db, cache, "tax-helper") == [2]
    # A taint written as SQL: the newest untainted retired version serves again.
    with db.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE model_versions SET status = 'tainted' WHERE id = :id"),
            {"id": second.id},
        )
    assert served(db, cache, "tax-helper") == [1]
    # Unchanged, the cache answers without reading the versions.
    with db.unit_of_work() as session:
        family, _domain = find_family(session, "tax-helper")
        statements: list[str] = []

        def seen(_conn, _cursor, statement, *_rest) -> None:
            statements.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", seen)
        try:
            assert [c.version.number for c in cache.candidates(session, family)] == [1]
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", seen)
        assert statements == []
