"""Evidence packs verify offline with `python -m audit verify`, and any change is caught: an
edited file, a file slipped in, an edited index, a key that is not the service's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance import crypto, runtime
from governance.db import get_db, utcnow
from governance.errors import InvalidInput
from governance.flows.evidence import parse_period, write_evidence_pack
from tests.factories import make_domain, principal_token

ROOT = Path(__file__).resolve().parents[2]


def verify(pack: Path, key: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(pack), "--public-key", str(key)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


@pytest.fixture
def pack(app, tmp_path):
    make_domain(app, "consumer-tax")
    principal_token(app, "casey")
    rt = runtime.of(app)
    year = utcnow().year
    with get_db(app).unit_of_work() as session:
        index = write_evidence_pack(
            session,
            tmp_path / "pack",
            rt.audit_log.signing_key,
            rt.authorizer.policy,
            f"{year}-01-01..{year}-12-31",
        )
    key = tmp_path / "service.pem"
    key.write_bytes(crypto.public_key_pem(rt.audit_log.signing_key.public_key()))
    return tmp_path / "pack", key, index


def test_a_pack_verifies_and_each_file_answers_a_duty(pack, tmp_path):
    directory, key, index = pack
    kinds = {item["kind"] for item in index["items"]}
    assert {"audit-bundle", "who-may", "who-did", "openlineage"} <= kinds
    assert all(item["answers"] for item in index["items"])
    assert any("Art. 12" in a for item in index["items"] for a in item["answers"])
    result = verify(directory, key)
    assert result.returncode == 0, result.stderr
    assert "evidence pack" in result.stdout
    archive = tmp_path / "pack.tar.gz"
    from audit.bundle import pack as pack_dir

    pack_dir(directory, archive)
    assert verify(archive, key).returncode == 0


@pytest.mark.parametrize("change", ["edit", "extra", "index", "key"])
def test_any_change_to_a_pack_is_caught(pack, tmp_path, change):
    directory, key, _ = pack
    copy = tmp_path / f"copy-{change}"
    shutil.copytree(directory, copy)
    if change == "edit":
        report = copy / "reports" / "who-may.json"
        report.write_text(report.read_text().replace("casey", "mallory") + " ")
        expected = "reports/who-may.json"
    elif change == "extra":
        (copy / "reports" / "note.txt").write_text("trust me")
        expected = "reports/note.txt"
    elif change == "index":
        index = json.loads((copy / "index.json").read_text())
        index["period"] = "2000-01-01..2000-12-31"
        (copy / "index.json").write_text(json.dumps(index))
        expected = "index.sig"
    else:
        key = tmp_path / "other.pem"
        key.write_bytes(crypto.public_key_pem(Ed25519PrivateKey.generate().public_key()))
        expected = "index.sig"
    result = verify(copy, key)
    assert result.returncode == 1 and expected in result.stderr, result.stderr


def test_a_bad_period_is_refused_by_field():
    with pytest.raises(InvalidInput) as caught:
        parse_period("2026-13-01..2026-12-31")
    assert caught.value.details == {"field": "period"}
    with pytest.raises(InvalidInput):
        parse_period("2026-12-31..2026-01-01")


def test_the_api_writes_a_pack_as_a_job_for_whoever_may_export_every_domain(app, client, tmp_path):
    from governance.workers.runner import run_pending
    from tests.factories import auth

    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    audrey, casey = principal_token(app, "audrey"), principal_token(app, "casey")
    path = "/api/v1/audit/evidence-packs"
    refused = client.post(
        path, query_string={"period": "2026-01-01..2026-12-31"}, headers=auth(casey)
    )
    assert refused.status_code == 403
    for period in ("2026-13-01..2026-12-31", "2026-12-31..2026-01-01", "last year"):
        bad = client.post(path, query_string={"period": period}, headers=auth(audrey))
        assert bad.status_code == 422, (period, bad.get_json())
    unknown = client.post(
        path,
        query_string={"period": "2026-01-01..2026-12-31", "family": "nope"},
        headers=auth(audrey),
    )
    assert unknown.status_code == 422 and unknown.get_json()["error"]["details"] == {
        "field": "family"
    }
    year = utcnow().year
    started = client.post(
        path, query_string={"period": f"{year}-01-01..{year}-12-31"}, headers=auth(audrey)
    )
    assert started.status_code == 202, started.get_json()
    location = started.headers["Location"]
    assert run_pending(runtime.of(app)) == 1
    job = client.get(location, headers=auth(audrey)).get_json()
    assert job["state"] == "succeeded" and job["result"]["format"] == "evidence", job
    download = client.get(job["result"]["download"], headers=auth(audrey))
    pack = tmp_path / "api-pack.tar.gz"
    pack.write_bytes(download.data)
    download.close()
    key = tmp_path / "service.pem"
    key.write_bytes(crypto.public_key_pem(runtime.of(app).audit_log.signing_key.public_key()))
    result = verify(pack, key)
    assert result.returncode == 0, result.stderr
