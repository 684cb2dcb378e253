"""Size sweeps: fine-tune the same approved data on bases of several sizes and keep the
smallest that is good enough.

A sweep starts one version per base (a variant of the family, trained and gated as any
other) and reads its table back from the versions: the chosen metric from the harness, the
serving cost the worker measured (latency per generated token, peak accelerator memory or
the weight bytes on a CPU) and the parameter count. Among the versions that passed their
gate, the best score sets the bar; a base whose score is within `tolerance` of it (relative)
is good enough, and the one with the fewest parameters among those is chosen.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from governance.audit.service import Actor, record
from governance.domains.models import Domain
from governance.errors import NotFound
from governance.families import intake
from governance.families.models import (
    ModelFamily,
    ModelSweep,
    ModelVersion,
    SweepCreate,
    VersionCreate,
    VersionState,
)
from governance.families.service import get_base_model, start_version
from governance.jobs.executors import Executor
from trainers.harness import metric, orient

GATED = (VersionState.EVALUATED, VersionState.PRODUCTION, VersionState.RETIRED)


def start_sweep(
    session: Session,
    family: ModelFamily,
    domain: Domain,
    data: SweepCreate,
    policy_dir: Path,
    *,
    actor: Actor,
    executor: Executor,
) -> tuple[ModelSweep, list[ModelVersion]]:
    """Check every base first (registered, approved for the domain), then start a version on
    each; the sweep records which version is which base's."""
    bases = [get_base_model(session, name) for name in data.bases]
    for base in bases:
        intake.require_base_approved(session, base, domain, policy_dir, actor)
    versions = [
        start_version(
            session,
            family,
            domain,
            VersionCreate(tax_year=data.tax_year, datasets=data.datasets, base_model=base.name),
            policy_dir,
            actor=actor,
            executor=executor,
        )
        for base in bases
    ]
    sweep = ModelSweep(
        uid=uuid.uuid4().hex,
        family_id=family.id,
        metric=data.metric,
        tolerance=data.tolerance,
        runs=[
            {"base": base.name, "version_id": version.id}
            for base, version in zip(bases, versions, strict=True)
        ],
        requested_by=actor.principal,
    )
    session.add(sweep)
    record(
        session,
        actor,
        "model.sweep",
        f"model/{family.name}",
        domain.name,
        details={
            "sweep": sweep.uid,
            "bases": data.bases,
            "versions": [v.number for v in versions],
            "metric": data.metric,
            "tolerance": data.tolerance,
        },
    )
    return sweep, versions


def get_sweep(session: Session, family: ModelFamily, uid: str) -> ModelSweep:
    sweep = session.exec(
        select(ModelSweep).where(ModelSweep.uid == uid, ModelSweep.family_id == family.id)
    ).first()
    if sweep is None:
        raise NotFound(f"no sweep {uid} of {family.name}")
    return sweep


def list_sweeps(session: Session, family: ModelFamily) -> list[ModelSweep]:
    return list(
        session.exec(
            select(ModelSweep)
            .where(ModelSweep.family_id == family.id)
            .order_by(ModelSweep.id.desc())  # type: ignore[union-attr]
        )
    )


def _score(version: ModelVersion, key: str) -> dict[str, Any] | None:
    """The version's candidate score on `task/metric`, if the harness reported it."""
    task, _, name = key.partition("/")
    return metric(((version.metrics.get("evaluation") or {}).get("candidate")), task, name)


def table(session: Session, sweep: ModelSweep) -> dict[str, Any]:
    """The sweep's table, read from its versions as they stand now."""
    rows = []
    for run in sweep.runs:
        version = session.get(ModelVersion, run["version_id"])
        serving = version.metrics.get("serving") or {}
        scored = _score(version, sweep.metric)
        rows.append(
            {
                "base_model": run["base"],
                "version": version.number,
                "status": version.status,
                "parameters": serving.get("parameters"),
                "score": scored["value"] if scored else None,
                "higher_is_better": scored["higher_is_better"] if scored else None,
                "ms_per_token": serving.get("ms_per_token"),
                "memory_bytes": serving.get("peak_memory_bytes") or serving.get("weight_bytes"),
                "within_tolerance": False,
                "chosen": False,
            }
        )
    good = [r for r in rows if r["status"] in GATED and r["score"] is not None]
    chosen = None
    if good:

        def oriented(row: dict[str, Any]) -> float:
            return orient({"value": row["score"], "higher_is_better": row["higher_is_better"]})

        best = max(good, key=oriented)
        bar = oriented(best) - sweep.tolerance * abs(best["score"])
        for row in good:
            row["within_tolerance"] = oriented(row) >= bar
        kept = [r for r in good if r["within_tolerance"]]
        smallest = min(kept, key=lambda r: (r["parameters"] or 0, r["ms_per_token"] or 0))
        smallest["chosen"] = True
        chosen = smallest["base_model"]
    family = session.get(ModelFamily, sweep.family_id)
    return {
        "uid": sweep.uid,
        "family": family.name,
        "metric": sweep.metric,
        "tolerance": sweep.tolerance,
        "complete": all(
            r["status"] not in (VersionState.TRAINING, VersionState.TRAINED) for r in rows
        ),
        "chosen": chosen,
        "rows": rows,
        "requested_by": sweep.requested_by,
        "created_at": sweep.created_at,
    }


def render(document: dict[str, Any]) -> str:
    """The table as Markdown (what `govern family sweep --out` writes)."""
    lines = [
        f"# Size sweep {document['uid'][:12]} of {document['family']}",
        "",
        f"Compared on `{document['metric']}`; a base within {document['tolerance']:.0%} of the "
        "best is good enough, and the smallest of those is chosen.",
        "",
        "| base | version | status | parameters | score | ms/token | memory (bytes) | kept |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in document["rows"]:
        mark = "**chosen**" if row["chosen"] else ("within" if row["within_tolerance"] else "")
        score = "-" if row["score"] is None else f"{row['score']:.4g}"
        lines.append(
            f"| {row['base_model']} | v{row['version']} | {row['status']} | "
            f"{row['parameters'] or '-'} | {score} | {row['ms_per_token'] or '-'} | "
            f"{row['memory_bytes'] or '-'} | {mark} |"
        )
    if not document["complete"]:
        lines += ["", "Some versions have not been through their gate yet."]
    return "\n".join(lines) + "\n"
