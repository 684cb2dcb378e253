"""A production version of a family without training: a base model registered through the
service, and an adapter (made by the caller) packed into the blob store as a training job's
result leaves it. The gateway's benchmark and its tests serve these; the pipeline tests train
for real."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlmodel

from governance.audit.service import Actor
from governance.db import Database
from governance.domains.models import Domain
from governance.families.intake import register_base_model
from governance.families.models import BaseModelRecord, ModelFamily, ModelVersion, VersionState
from governance.families.service import get_base_model
from governance.storage import BlobStore
from trainers.hashing import file_sha256


def serve_version(
    database: Database,
    store: BlobStore,
    family_name: str,
    domain_name: str,
    base_name: str,
    base_path: Path,
    adapter_path: Path,
    sign: Callable[[ModelVersion, BaseModelRecord], str],
    metrics: dict | None = None,
) -> ModelVersion:
    """Register the base (once), create the family on its first base, and put a new version
    on base_name in production with the adapter at adapter_path, signed with `sign` (the
    runtime's sign_version) as a promotion signs it."""
    with database.unit_of_work() as session:
        register_base_model(
            session,
            base_name,
            base_path,
            source="generated:trainers.tiny",
            license="CC0-1.0",
            actor=Actor("admin"),
        )
        base = get_base_model(session, base_name)
        family = session.exec(
            sqlmodel.select(ModelFamily).where(ModelFamily.name == family_name)
        ).first()
        if family is None:
            owner = session.exec(sqlmodel.select(Domain).where(Domain.name == domain_name)).one()
            family = ModelFamily(
                name=family_name,
                domain_id=owner.id,
                base_model_id=base.id,
                refresh_schedule="0 6 15 1 *",
                created_by="admin",
            )
            session.add(family)
            session.flush()
        number = 1 + len(
            session.exec(
                sqlmodel.select(ModelVersion).where(ModelVersion.family_id == family.id)
            ).all()
        )
        uid = uuid.uuid4().hex
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w:gz") as tar:
            tar.add(adapter_path, arcname="adapter")
        with store.stage(uid) as staged:
            staged.write(payload.getvalue())
        key = f"adapters/{uid}.tar.gz"
        store.publish(uid, key)
        version = ModelVersion(
            uid=uid,
            family_id=family.id,
            number=number,
            tax_year=2025,
            status=VersionState.PRODUCTION,
            base_model_id=base.id,
            base_weights_hash=base.weights_hash,
            code_version="not trained: benchmarks.served",
            policy_hash="",
            trained_by="admin",
            metrics=metrics or {},
            adapter_key=key,
            adapter_manifest={
                "adapter/adapter_model.safetensors": file_sha256(
                    adapter_path / "adapter_model.safetensors"
                )
            },
        )
        version.adapter_signature = sign(version, base)
        session.add(version)
        session.commit()
        session.refresh(version)
        return version


def tiny_adapter(base: Path, target: Path, hidden_size: int = 64, seed: int = 0) -> None:
    """A tiny base model at `base` and an untrained LoRA adapter for it at `target`."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.tiny import create_tiny

    create_tiny(base, seed=seed, hidden_size=hidden_size)
    with warnings.catch_warnings():
        # peft 0.21 still asks transformers 5 for a deprecated attribute.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(
                r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
            ),
        )
    model.save_pretrained(target)
