"""The OpenLineage emitter: events of newly committed entries after a cursor, to a JSONL file
or an HTTP backend (a receiver process the test starts); a backend that fails delays events
and loses none."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from jsonschema import Draft202012Validator

from governance.audit.openlineage import Emitter
from governance.audit.service import Actor, record
from governance.db import Database
from tests.webhooks.support import Receiver

ACTOR = Actor("jordan", "req-1", "f" * 64)


@pytest.fixture
def db(config):
    database = Database(config["GOVERNANCE_DATABASE_URL"])
    yield database
    database.dispose()


def decide(db: Database, n: int) -> list[int]:
    with db.unit_of_work() as session:
        seqs = [
            record(
                session,
                ACTOR,
                "approval.decide",
                f"approval/{i:032x}",
                "consumer-tax",
                decision="approve",
                details={
                    "role": "legal-reviewer",
                    "subject": f"dataset-version/{i}",
                    "subject_digest": "d" * 64,
                    "digest": "e" * 64,
                },
            )
            for i in range(n)
        ]
        record(session, ACTOR, "model.query", "model/x", "consumer-tax", decision="allow")
        session.commit()
    return seqs


def test_events_go_to_a_file_once_each_in_order(config, db, tmp_path):
    out = tmp_path / "lineage.jsonl"
    emitter = Emitter({**config, "OPENLINEAGE_FILE": str(out)})
    assert emitter.enabled and not Emitter(config).enabled
    seqs = decide(db, 3)
    with db.unit_of_work() as session:
        assert emitter.pump(session) == 6  # each decision: a run that starts and completes
        assert emitter.pump(session) == 0
    seqs += decide(db, 1)
    with db.unit_of_work() as session:
        assert emitter.pump(session) == 2
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["run"]["facets"]["governance_audit"]["seq"] for e in events] == [
        seq for seq in seqs for _ in range(2)
    ]
    assert {e["job"]["name"] for e in events} == {"approval.decide"}
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * len(seqs)


def test_every_run_starts_and_every_custom_facet_names_a_schema_the_service_serves(
    config, db, tmp_path, client
):
    out = tmp_path / "lineage.jsonl"
    public = "https://governance.example.test"
    emitter = Emitter({**config, "OPENLINEAGE_FILE": str(out), "GOVERNANCE_PUBLIC_URL": public})
    decide(db, 2)
    with db.unit_of_work() as session:
        emitter.pump(session)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
        for name, facet in event["run"]["facets"].items():
            url = urllib.parse.urlsplit(facet["_schemaURL"])
            assert f"{url.scheme}://{url.netloc}" == public, name
            served = client.get(url.path)
            assert served.status_code == 200, url.path
            schema = served.get_json()
            definition = schema["$defs"][url.fragment.rsplit("/", 1)[1]]
            # Ours is the second part (the first is OpenLineage's own RunFacet).
            Draft202012Validator(definition["allOf"][1]).validate(facet)
    assert all(states == ["START", "COMPLETE"] for states in runs.values()), runs
    assert client.get("/openlineage/spec/nothing.json").status_code == 404


def test_a_failing_backend_delays_events_and_loses_none(config, db, tmp_path):
    receiver = Receiver(tmp_path, "unused", "--plain", "--fail", "1")
    try:
        backend = receiver.url.removesuffix("/hooks")
        emitter = Emitter({**config, "OPENLINEAGE_URL": backend}, retries=0)
        seqs = decide(db, 2)
        with db.unit_of_work() as session, pytest.raises(Exception):  # noqa: B017
            emitter.pump(session)
        with db.unit_of_work() as session:
            assert emitter.pump(session) == 4
            assert emitter.pump(session) == 0
        got = receiver.received()
    finally:
        receiver.stop()
    # The first try failed at the first event; the batch went again whole.
    assert [r["status"] for r in got] == [500, 204, 204, 204, 204]
    assert {r["path"] for r in got} == {"/api/v1/lineage"}
    delivered = [r["event"]["run"]["facets"]["governance_audit"]["seq"] for r in got[1:]]
    assert delivered == [seq for seq in seqs for _ in range(2)]
