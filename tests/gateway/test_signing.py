"""Signed adapters (OpenSSF model signing): a promoted adapter verifies, with the package's own
verifier too; one swapped by someone who can write the blob store and the database (but not
read the signing key) is refused by the gateway and by `govern model verify`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import openai
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from governance import runtime
from governance.cli import main
from governance.families.models import ModelVersion
from governance.families.signing import BASE_MANIFEST
from tests.gateway.conftest import FAMILY, promote_variant, write_policy

NO_GUARDS = "version: 1\ndefault: {prompts: 'off', answers: 'off', required: false}\n"


def tamper(app, version: ModelVersion, tmp_path) -> None:
    """Re-pack the adapter with changed weights, and record their new hash, as an insider
    with write access to the blob store and the database could."""
    rt = runtime.of(app)
    with rt.store.open(version.adapter_key) as handle:
        payload = handle.read()
    unpacked = tmp_path / "tampered"
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
        tar.extractall(unpacked, filter="data")
    weights = unpacked / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 0.5 for k, v in tensors.items()}, weights)
    repacked = io.BytesIO()
    with tarfile.open(fileobj=repacked, mode="w:gz") as tar:
        tar.add(unpacked / "adapter", arcname="adapter")
    blob = rt.store.root / version.adapter_key
    os.chmod(blob, 0o600)
    blob.write_bytes(repacked.getvalue())
    from trainers.hashing import file_sha256

    with rt.database.unit_of_work() as session:
        session.execute(
            sa.update(ModelVersion)
            .where(ModelVersion.id == version.id)
            .values(adapter_manifest={"adapter/adapter_model.safetensors": file_sha256(weights)})
        )
        session.commit()


def verify_cli(config, number: int, *extra: str):
    return CliRunner().invoke(
        main,
        ["model", "verify", FAMILY, str(number), *extra],
        env={
            "GOVERNANCE_HOME": config["GOVERNANCE_HOME"],
            "GOVERNANCE_DATABASE_URL": config["GOVERNANCE_DATABASE_URL"],
        },
    )


def test_a_signed_adapter_serves_and_verifies_offline(
    gateway, echo_engine, bases, policy_dir, config, tmp_path
):
    write_policy(policy_dir, "guardrails.yaml", NO_GUARDS)
    live = gateway(echo_engine, GATEWAY_RATE_PER_MINUTE=100)
    version = promote_variant(live.app, "tiny-small", bases)
    bundle = json.loads(version.adapter_signature)
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    answer = live.client("taxbot").completions.create(model=FAMILY, prompt="Form", max_tokens=2)
    assert answer.choices[0].text
    exported = tmp_path / "export"
    result = verify_cli(config, version.number, "--export", str(exported))
    assert result.exit_code == 0, result.output
    assert "signature verifies" in result.output
    manifest = json.loads((exported / "adapter" / BASE_MANIFEST).read_text())
    assert manifest["name"] == "tiny-small" and manifest["license"] == "CC0-1.0"
    # The package's own verifier, in its own process, accepts what we export...
    command = [
        sys.executable, "-m", "model_signing", "verify", "key",
        "--signature", str(exported / "adapter.sig"),
        "--public_key", str(exported / "model-signing.pub"),
        str(exported / "adapter"),
    ]  # fmt: skip
    checked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # ... and refuses it once the base's manifest says something else.
    manifest["license"] = "MIT"
    (exported / "adapter" / BASE_MANIFEST).write_text(json.dumps(manifest))
    checked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert checked.returncode != 0


def test_a_tampered_adapter_is_refused_by_the_gateway(
    gateway, echo_engine, bases, policy_dir, config, tmp_path
):
    write_policy(policy_dir, "guardrails.yaml", NO_GUARDS)
    live = gateway(echo_engine, GATEWAY_RATE_PER_MINUTE=100)
    version = promote_variant(live.app, "tiny-small", bases)
    tamper(live.app, version, tmp_path)
    with pytest.raises(openai.InternalServerError) as refused:
        live.client("taxbot").completions.create(model=FAMILY, prompt="Form", max_tokens=2)
    assert refused.value.status_code == 503
    assert refused.value.body["code"] == "adapter_not_trusted"
    entry = live.queries(at_least=1)[-1]
    assert entry["decision"] != "allow", entry
    assert entry["reason"] == "adapter_not_trusted", entry
    result = verify_cli(config, version.number)
    assert result.exit_code != 0 and "does not verify" in result.output
