"""Base-model intake: what a base model is, who approved its use, and its withdrawal.

Registering a base model records where its weights came from, its license (an SPDX
expression, or `LicenseRef-…` for a commercial or custom license), the SHA-256 of every file
and its model card (the directory's README.md). Weights must be safetensors: a pickle can run
code when it is loaded, so any file in a pickle format (or a zip archive holding one, as
`torch.save` writes) is refused by name, as is any file that cannot be read and hashed.

A family may use a base model in a domain only once that domain's reviewers approved it: a
`base-model-use` approval request (roles per approvals.yaml; by default a legal reviewer for
the license and a security reviewer for the weights) bound to the digest of all these facts.
If the record changes, the approval is invalidated; if the base is withdrawn, the approval is
gone and every model version built on it is tainted, as when its data is deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from audit.log import canonical
from governance.approvals import service as approvals
from governance.approvals import subjects
from governance.approvals.models import ApprovalRequest, RequestState
from governance.approvals.rules import ApprovalRules
from governance.approvals.subjects import BASE_MODEL_USE
from governance.audit.service import Actor, record
from governance.db import utcnow
from governance.domains.models import Domain
from governance.errors import Conflict, InvalidInput, NotFound
from governance.families.models import (
    BaseModelRecord,
    BaseModelState,
    ModelVersion,
    VersionState,
)
from governance.families.taint import taint_version
from trainers.hashing import file_sha256, weights_hash

# Serialization formats that run code on load (pickle and what wraps it).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".mar")
# Other weight formats: not executable, but not what the trainers and engines load either.
OTHER_WEIGHT_SUFFIXES = (".gguf", ".onnx", ".h5", ".msgpack", ".ot", ".tflite", ".keras")
CARD = "README.md"
LICENSE_REF = re.compile(r"^LicenseRef-[A-Za-z0-9.-]{1,100}$")
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024


def register() -> None:
    """Register how a base-model-use request recomputes its subject's digest."""
    subjects.register(BASE_MODEL_USE, base_use_now)


# --- what a directory holds -------------------------------------------------------------------


def check_license(expression: str) -> str:
    """The SPDX expression, normalized; `LicenseRef-…` ids are taken as they are."""
    from license_expression import get_spdx_licensing

    text = expression.strip()
    if LICENSE_REF.match(text):
        return text
    info = get_spdx_licensing().validate(text)
    if info.errors or not info.normalized_expression:
        raise InvalidInput(
            f"license {expression!r} is not an SPDX license expression (for example "
            "Apache-2.0, or LicenseRef-<name> for a license SPDX does not list)",
            details={"field": "license"},
        )
    return str(info.normalized_expression)


def _is_pickle(path: Path) -> bool:
    """A pickle by its first bytes (protocol 2 and later), or a zip archive that holds one."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                return any(n.endswith((".pkl", "data.pkl")) for n in archive.namelist())
        except zipfile.BadZipFile:
            return False
    return False


def _check_safetensors(path: Path, relative: str) -> None:
    """A safetensors file starts with the length of its JSON header, then the header."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < size <= SAFETENSORS_HEADER_LIMIT:
            raise InvalidInput(f"{relative} is not a safetensors file", details={"file": relative})
        try:
            header = json.loads(handle.read(size))
        except ValueError:
            header = None
    if not isinstance(header, dict):
        raise InvalidInput(f"{relative} is not a safetensors file", details={"file": relative})


def inspect_directory(root: Path) -> tuple[dict[str, str], str, str]:
    """Check a model directory; return the SHA-256 of each file, the weights' hash and the
    architecture. Refuses pickle weights, other weight formats and unreadable files by name."""
    config = root / "config.json"
    if not config.is_file():
        raise InvalidInput(
            f"{root} is not a Hugging Face model directory (no config.json)",
            details={"field": "path"},
        )
    if not (root / CARD).is_file():
        raise InvalidInput(
            f"{root} has no model card: put the model card in {CARD} (reviewers read it)",
            details={"field": "path", "file": CARD},
        )
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".git/") or path.is_dir():
            continue
        if not path.is_file():
            raise InvalidInput(
                f"{relative} is not a regular file (a broken link or a device?)",
                details={"file": relative},
            )
        try:
            if path.name.endswith(PICKLE_SUFFIXES) or _is_pickle(path):
                raise InvalidInput(
                    f"{relative} is in a pickle format, which runs code when loaded: "
                    "convert the weights to safetensors",
                    details={"file": relative},
                    code="pickle_refused",
                )
            if path.name.endswith(OTHER_WEIGHT_SUFFIXES):
                raise InvalidInput(
                    f"{relative}: only safetensors weights are accepted",
                    details={"file": relative},
                )
            if path.name.endswith(".safetensors"):
                _check_safetensors(path, relative)
            files[relative] = file_sha256(path)
        except OSError as exc:
            raise InvalidInput(
                f"cannot read {relative} to hash it: {exc.strerror or exc}",
                details={"file": relative},
            ) from exc
    if not any(name.endswith(".safetensors") for name in files):
        raise InvalidInput(f"no *.safetensors weights under {root}", details={"field": "path"})
    try:
        architecture = json.loads(config.read_text()).get("model_type", "unknown")
    except ValueError as exc:
        raise InvalidInput(
            f"config.json is not JSON: {exc}", details={"file": "config.json"}
        ) from exc
    return files, weights_hash(root), str(architecture)[:63]


def register_base_model(
    session: Session,
    name: str,
    path: str | Path,
    *,
    source: str,
    license: str,
    actor: Actor,
) -> BaseModelRecord:
    """Take a local Hugging Face model directory in under a name (idempotent for the same
    directory and files); its use still waits for each domain's approval."""
    root = Path(path).resolve()
    if not source.strip():
        raise InvalidInput("say where the weights came from", details={"field": "source"})
    spdx = check_license(license)
    files, digest, architecture = inspect_directory(root)
    existing = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    if existing is not None:
        if existing.files == files and existing.path == str(root):
            return existing
        raise Conflict(f"a base model named {name!r} is registered with other files")
    base = BaseModelRecord(
        name=name,
        path=str(root),
        weights_hash=digest,
        architecture=architecture,
        registered_by=actor.principal,
        source=source.strip(),
        license=spdx,
        files=files,
        card_sha256=files[CARD],
    )
    session.add(base)
    session.flush()
    record(
        session,
        actor,
        "base_model.register",
        f"base-model/{name}",
        "system",
        details={
            "weights_hash": digest,
            "architecture": architecture,
            "source": base.source,
            "license": spdx,
            "files": len(files),
            "card_sha256": base.card_sha256,
        },
    )
    return base


# --- approval of its use in a domain ----------------------------------------------------------


def base_use_digest(base: BaseModelRecord, domain: str) -> str:
    return hashlib.sha256(
        canonical(
            {
                "kind": BASE_MODEL_USE,
                "base_model": base.name,
                "weights_hash": base.weights_hash,
                "files": base.files,
                "source": base.source,
                "license": base.license,
                "card_sha256": base.card_sha256,
                "domain": domain,
            }
        )
    ).hexdigest()


def base_use_now(session: Session, request: ApprovalRequest, policy_dir: Path) -> str | None:
    name = request.subject.removeprefix("base-model/")
    base = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    domain = session.get(Domain, request.domain_id)
    if base is None or domain is None or base.status != BaseModelState.ACTIVE:
        return None
    return base_use_digest(base, domain.name)


def request_base_use(
    session: Session,
    base: BaseModelRecord,
    domain: Domain,
    rules: ApprovalRules,
    *,
    actor: Actor,
) -> ApprovalRequest:
    """Ask the domain's reviewers to approve building models on this base."""
    if base.status != BaseModelState.ACTIVE:
        raise Conflict(
            f"base model {base.name} was withdrawn: {base.withdrawn_reason}",
            details={"field": "base_model"},
        )
    card = Path(base.path) / CARD
    try:
        card_text = card.read_text(errors="replace")[:4000]
    except OSError:
        card_text = ""
    summary: dict[str, Any] = {
        "base_model": base.name,
        "architecture": base.architecture,
        "source": base.source,
        "license": base.license,
        "weights_hash": base.weights_hash,
        "evidence": {
            "files": base.files,
            "card_sha256": base.card_sha256,
            # The card is the publisher's text, shown to reviewers as it is.
            "model_card": card_text,
            "registered_by": base.registered_by,
        },
    }
    return approvals.open_request(
        session,
        domain,
        BASE_MODEL_USE,
        f"base-model/{base.name}",
        base_use_digest(base, domain.name),
        "",
        summary,
        rules,
        actor=actor,
    )


def approved_domains(session: Session, base: BaseModelRecord) -> list[str]:
    """The domains with an approved, unexpired request for this base (not re-checked)."""
    rows = session.exec(
        select(Domain.name)
        .join(ApprovalRequest, ApprovalRequest.domain_id == Domain.id)
        .where(
            ApprovalRequest.kind == BASE_MODEL_USE,
            ApprovalRequest.subject == f"base-model/{base.name}",
            ApprovalRequest.state == RequestState.APPROVED,
        )
    ).all()
    return sorted(set(rows))


def require_base_approved(
    session: Session, base: BaseModelRecord, domain: Domain, policy_dir: Path, actor: Actor
) -> ApprovalRequest:
    """The approval that lets this domain build on this base, or a 409 saying what is missing."""
    if base.status != BaseModelState.ACTIVE:
        raise Conflict(
            f"base model {base.name} was withdrawn: {base.withdrawn_reason}",
            details={"field": "base_model"},
            code="base_withdrawn",
        )
    approval = approvals.approved_request(
        session,
        BASE_MODEL_USE,
        f"base-model/{base.name}",
        "",
        policy_dir,
        actor,
        domain_id=domain.id,
    )
    if approval is None:
        raise Conflict(
            f"base model {base.name} is not approved for use in {domain.name}: ask for a "
            "base-model-use approval (govern approvals request-base)",
            details={"field": "base_model", "base_model": base.name},
            code="not_approved",
        )
    return approval


# --- withdrawal -------------------------------------------------------------------------------


def withdraw_base_model(
    session: Session, base: BaseModelRecord, reason: str, *, actor: Actor
) -> list[ModelVersion]:
    """Withdraw a base model: its approvals lapse and every version built on it is tainted
    (a production version queues a retrain, as a deleted dataset's does)."""
    if base.status == BaseModelState.WITHDRAWN:
        raise Conflict(f"base model {base.name} is already withdrawn")
    base.status = BaseModelState.WITHDRAWN
    base.withdrawn_reason, base.withdrawn_at = reason, utcnow()
    session.add(base)
    record(
        session,
        actor,
        "base_model.withdraw",
        f"base-model/{base.name}",
        "system",
        details={"weights_hash": base.weights_hash, "reason": reason},
    )
    for request in session.exec(
        select(ApprovalRequest).where(
            ApprovalRequest.kind == BASE_MODEL_USE,
            ApprovalRequest.subject == f"base-model/{base.name}",
            ApprovalRequest.state.in_(RequestState.OPEN),
        )
    ).all():
        approvals.close(session, request, RequestState.INVALIDATED, "the base was withdrawn", actor)
    tainted = []
    for version in session.exec(
        select(ModelVersion).where(ModelVersion.base_model_id == base.id)
    ).all():
        if version.status == VersionState.TAINTED:
            continue
        taint_version(
            session,
            version,
            f"built on withdrawn base model {base.name}",
            {"base_model": base.name, "weights_hash": base.weights_hash},
            actor,
        )
        tainted.append(version)
    return tainted


def find_base_model(session: Session, name: str) -> BaseModelRecord:
    base = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    if base is None:
        raise NotFound(f"no base model named {name!r}", details={"base_model": name})
    return base
