"""Base-model intake: safetensors only, every file hashed, a card and an SPDX license; a family
may build on a base only in a domain whose legal and security reviewers approved it; an
insider's change to the record voids the approval; withdrawal taints what was built on it."""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from governance.audit.service import Actor
from governance.db import get_db
from governance.errors import InvalidInput
from governance.families.intake import inspect_directory, register_base_model
from governance.families.models import (
    BaseModelRecord,
    ModelFamily,
    ModelVersion,
    RetrainRequest,
    VersionState,
)
from tests.factories import auth, make_domain, principal_token

ADMIN = Actor("admin")


def safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0\0\0\0"


def model_dir(root: Path, weights: dict[str, bytes], card: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if card:
        (root / "README.md").write_text("# A model\n\nLicense: Apache-2.0\n")
    for name, content in weights.items():
        (root / name).write_bytes(content)
    return root


def refusal(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        inspect_directory(path)
    return caught.value


def test_pickle_weights_are_refused_by_name(tmp_path):
    # A PyTorch checkpoint by its name, a pickle by its first bytes whatever its name, and a
    # torch.save zip archive (which holds data.pkl) are all refused.
    error = refusal(model_dir(tmp_path / "a", {"pytorch_model.bin": b"\x80\x04K\x01."}))
    assert error.code == "pickle_refused" and error.details["file"] == "pytorch_model.bin"
    error = refusal(model_dir(tmp_path / "b", {"model.safetensors": b"\x80\x02}q\x00."}))
    assert error.code == "pickle_refused" and error.details["file"] == "model.safetensors"
    import zipfile

    archive = tmp_path / "c-src.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("archive/data.pkl", b"\x80\x02.")
    error = refusal(model_dir(tmp_path / "c", {"weights.data": archive.read_bytes()}))
    assert error.code == "pickle_refused" and error.details["file"] == "weights.data"


def test_what_intake_refuses_besides_pickle(tmp_path):
    assert "safetensors" in str(refusal(model_dir(tmp_path / "a", {"model.gguf": b"GGUF"})))
    error = refusal(model_dir(tmp_path / "b", {"model.safetensors": b"not a header"}))
    assert error.details["file"] == "model.safetensors"
    error = refusal(model_dir(tmp_path / "c", {"model.safetensors": safetensors_bytes()}, False))
    assert "model card" in str(error)
    broken = model_dir(tmp_path / "d", {"model.safetensors": safetensors_bytes()})
    (broken / "tokenizer.json").symlink_to(tmp_path / "nowhere")
    assert refusal(broken).details["file"] == "tokenizer.json"
    assert "no *.safetensors" in str(refusal(model_dir(tmp_path / "e", {"vocab.txt": b"a"})))
    files, digest, architecture = inspect_directory(
        model_dir(tmp_path / "f", {"model.safetensors": safetensors_bytes()})
    )
    assert set(files) == {"config.json", "README.md", "model.safetensors"}
    assert architecture == "llama" and len(digest) == 64


def test_license_must_be_spdx(app, tmp_path):
    path = model_dir(tmp_path / "m", {"model.safetensors": safetensors_bytes()})
    with get_db(app).unit_of_work() as session:
        with pytest.raises(InvalidInput) as caught:
            register_base_model(session, "m", path, source="x", license="Apache 2", actor=ADMIN)
        assert caught.value.details == {"field": "license"}
        base = register_base_model(
            session, "m", path, source="vendor", license="apache-2.0", actor=ADMIN
        )
        assert base.license == "Apache-2.0"
        other = register_base_model(
            session, "n", path, source="vendor", license="LicenseRef-acme-eula", actor=ADMIN
        )
        assert other.license == "LicenseRef-acme-eula"


@pytest.fixture
def intake_world(app, client, tmp_path):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    people = {n: principal_token(app, n) for n in ("admin", "morgan", "riley", "lee", "quinn")}
    path = model_dir(tmp_path / "base", {"model.safetensors": safetensors_bytes()})
    with get_db(app).unit_of_work() as session:
        register_base_model(
            session, "acme-1b", path, source="https://example.test/acme-1b@r1",
            license="Apache-2.0", actor=ADMIN,
        )  # fmt: skip
    return people


def create_family(client, people, who="morgan", domain="consumer-tax", name="tax-assistant"):
    return client.post(
        f"/api/v1/domains/{domain}/models",
        json={"name": name, "base_model": "acme-1b"},
        headers=auth(people[who]),
    )


def request_use(client, people, who="morgan", domain="consumer-tax") -> dict:
    response = client.post(
        "/api/v1/approvals/base-model-use",
        json={"base_model": "acme-1b", "domain": domain},
        headers=auth(people[who]),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def decide(client, people, uid, who):
    return client.post(
        f"/api/v1/approvals/{uid}/decisions",
        json={"decision": "approve", "comment": "license, card and hashes reviewed"},
        headers=auth(people[who]),
    )


def test_a_base_waits_for_legal_and_security_review_in_each_domain(app, client, intake_world):
    people = intake_world
    refused = create_family(client, people)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_approved"
    request = request_use(client, people)
    assert request["kind"] == "base-model-use"
    assert sorted(request["missing_roles"]) == ["legal-reviewer", "security-reviewer"]
    detail = client.get(f"/api/v1/approvals/{request['uid']}", headers=auth(people["quinn"]))
    evidence = detail.get_json()["evidence"]
    assert set(evidence["files"]) == {"config.json", "README.md", "model.safetensors"}
    assert evidence["model_card"].startswith("# A model")
    # The requester cannot approve; one role is not enough.
    assert decide(client, people, request["uid"], "morgan").status_code == 403
    assert decide(client, people, request["uid"], "lee").status_code == 201
    assert create_family(client, people).status_code == 409
    assert decide(client, people, request["uid"], "quinn").status_code == 201
    created = create_family(client, people)
    assert created.status_code == 201, created.get_json()
    # Approval is per domain: smb-accounting's engineers still cannot build on it.
    other = create_family(client, people, "riley", "smb-accounting", "books-assistant")
    assert other.status_code == 409
    listed = client.get("/api/v1/base-models", headers=auth(people["admin"])).get_json()
    assert listed["items"][0]["approved_domains"] == ["consumer-tax"]
    assert "path" not in listed["items"][0]


def test_the_console_shows_reviewers_what_they_approve_of_a_base(app, client, intake_world):
    from tests.console.conftest import sign_in

    people = intake_world
    request = request_use(client, people)
    sign_in(client, people["quinn"])
    page = client.get(f"/console/approvals/{request['uid']}").text
    assert "Use of base model acme-1b (Apache-2.0)" in page and "vNone" not in page
    for shown in (
        "Apache-2.0",
        "https://example.test/acme-1b@r1",
        "# A model",
        "model.safetensors",
    ):
        assert shown in page, shown
    assert 'data-testid="base-files"' in page


def test_an_insider_edit_of_the_record_voids_the_approval(app, client, intake_world):
    people = intake_world
    request = request_use(client, people)
    for reviewer in ("lee", "quinn"):
        assert decide(client, people, request["uid"], reviewer).status_code == 201
    with get_db(app).unit_of_work() as session:
        # Someone with database access swaps a file's hash (say, after replacing the weights).
        base = session.exec(select(BaseModelRecord)).one()
        session.execute(
            sa.update(BaseModelRecord)
            .where(BaseModelRecord.id == base.id)
            .values(files={**base.files, "model.safetensors": "0" * 64})
        )
        session.commit()
    refused = create_family(client, people)
    assert refused.status_code == 409
    shown = client.get(f"/api/v1/approvals/{request['uid']}", headers=auth(people["lee"]))
    assert shown.get_json()["state"] == "invalidated"


def test_withdrawal_taints_the_versions_built_on_the_base(app, client, intake_world):
    people = intake_world
    request = request_use(client, people)
    for reviewer in ("lee", "quinn"):
        assert decide(client, people, request["uid"], reviewer).status_code == 201
    assert create_family(client, people).status_code == 201
    with get_db(app).unit_of_work() as session:
        family = session.exec(select(ModelFamily)).one()
        base = session.exec(select(BaseModelRecord)).one()
        for number, status in ((1, VersionState.RETIRED), (2, VersionState.PRODUCTION)):
            session.add(
                ModelVersion(
                    uid=uuid.uuid4().hex, family_id=family.id, number=number, tax_year=2025,
                    status=status, base_model_id=base.id, base_weights_hash=base.weights_hash,
                    code_version="test", policy_hash="", trained_by="morgan",
                )
            )  # fmt: skip
        session.commit()
    # Only an admin may withdraw (deny by default for the reviewers and engineers).
    body = {"reason": "the vendor revoked the license"}
    denied = client.post(
        "/api/v1/base-models/acme-1b/withdraw", json=body, headers=auth(people["lee"])
    )
    assert denied.status_code == 403
    done = client.post(
        "/api/v1/base-models/acme-1b/withdraw", json=body, headers=auth(people["admin"])
    )
    assert done.status_code == 200 and done.get_json()["status"] == "withdrawn"
    with get_db(app).unit_of_work() as session:
        versions = session.exec(select(ModelVersion).order_by(ModelVersion.number)).all()
        assert [v.status for v in versions] == [VersionState.TAINTED] * 2
        assert "withdrawn base model acme-1b" in versions[1].status_reason
        assert len(session.exec(select(RetrainRequest)).all()) == 1
    entries = client.get(
        "/api/v1/audit/entries", query_string={"action": "model.taint"},
        headers=auth(people["admin"]),
    ).get_json()["items"]  # fmt: skip
    assert len(entries) == 2 and entries[0]["details"]["base_model"] == "acme-1b"
    assert create_family(client, people, name="tax-assistant-2").status_code == 409
    shown = client.get(f"/api/v1/approvals/{request['uid']}", headers=auth(people["lee"]))
    assert shown.get_json()["state"] == "invalidated"
