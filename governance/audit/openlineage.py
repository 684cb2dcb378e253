"""OpenLineage run events, projected from the audit log.

The audit log is the one source of truth: every upload, scan, approval decision, training
run, evaluation and promotion is an entry there, committed with the change it records. The
events are derived from committed entries (never from a transaction that might roll back),
in order, so a consumer (Marquez, a data catalog, an auditor's tool) sees exactly what the
log proves. Each event carries a `governance_audit` run facet (sequence number and leaf hash)
that ties it to the entry, verifiable against an audit bundle, plus facets for what the step
was judged on: the scan receipt, the approval decision, the policy hash.

Events are built with the `openlineage-python` client's classes (generated from the
OpenLineage JSON schema, with its validators) and written as JSONL, or posted to an HTTP
endpoint by the client's own transport (`OPENLINEAGE_URL`).

Runs: a training run is one run (START at `model.train`, COMPLETE at `job.complete`, FAIL at
`job.fail`), keyed by the model version; every other step is a run of its own that completes
at once. Run ids are UUIDs derived from the audit facts, so a re-export gives the same ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet
from openlineage.client.serde import Serde

from governance import __version__
from governance.audit.cursors import entries_after, locked_cursor
from governance.audit.service import format_time

PRODUCER = f"https://governance.invalid/producer/{__version__}"
# The custom facets' JSON Schemas ship in governance/audit/schemas and the service serves them
# (public) at {GOVERNANCE_PUBLIC_URL}/openlineage/spec/{name}.json, so a consumer resolves
# every `_schemaURL` an event carries.
SCHEMA_DIR = Path(__file__).with_name("schemas")
SCHEMA_PATH = "/openlineage/spec/{name}.json"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
NAMESPACE = "governance"
RUN_NAMESPACE = uuid.UUID("7d3f0b8e-1c55-4d0e-9a51-6b1f0c2a9e44")


@attr.define
class GovernanceAuditRunFacet(RunFacet):
    """The audit entry this event was derived from."""

    seq: int
    leafHash: str
    principal: str
    action: str
    policyHash: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return schema_url(DEFAULT_PUBLIC_URL, "GovernanceAuditRunFacet")


@attr.define
class GovernanceEvidenceRunFacet(RunFacet):
    """What the step was judged on: a scan receipt, an approval decision, a gate's verdict."""

    kind: str
    facts: dict[str, Any]

    @staticmethod
    def _get_schema() -> str:
        return schema_url(DEFAULT_PUBLIC_URL, "GovernanceEvidenceRunFacet")


def schema_url(public_url: str, name: str) -> str:
    """Where a custom facet's schema is served: the file's URL and the facet's definition."""
    return f"{public_url.rstrip('/')}{SCHEMA_PATH.format(name=name)}#/$defs/{name}"


def _run_id(*parts: Any) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, "/".join(str(p) for p in parts)))


def _dataset(domain: str, name: str) -> dict[str, str]:
    return {"namespace": f"{NAMESPACE}://{domain}", "name": name}


def _event(
    entry, state, job: str, run_id: str, inputs=(), outputs=(), evidence=None, public_url=None
) -> RunEvent:
    facets: dict[str, Any] = {
        "governance_audit": GovernanceAuditRunFacet(
            seq=entry.seq,
            leafHash=entry.leaf_hash,
            principal=entry.principal,
            action=entry.action,
            policyHash=entry.policy_hash,
            producer=PRODUCER,
        )
    }
    if evidence is not None:
        kind, facts = evidence
        facets["governance_evidence"] = GovernanceEvidenceRunFacet(
            kind=kind, facts=facts, producer=PRODUCER
        )
    for facet in facets.values():
        facet._schemaURL = schema_url(public_url or DEFAULT_PUBLIC_URL, type(facet).__name__)
    return RunEvent(
        eventType=state,
        eventTime=format_time(entry.time),
        run=Run(runId=run_id, facets=facets),
        job=Job(namespace=f"{NAMESPACE}://{entry.domain or 'system'}", name=job),
        inputs=[InputDataset(**d) for d in inputs],
        outputs=[OutputDataset(**d) for d in outputs],
        producer=PRODUCER,
    )


def events_for(entry, public_url: str | None = None) -> list[RunEvent]:
    """The OpenLineage events an audit entry stands for (most entries stand for none). A step
    done at once (an upload, a scan, a decision, a gate, a promotion) is a run that starts and
    completes at the entry's time: START, then COMPLETE with its outputs and evidence."""
    details = entry.details if isinstance(entry.details, dict) else json.loads(entry.details)
    domain = entry.domain or "system"
    action, obj = entry.action, entry.object
    if entry.decision == "deny":  # a refused call changed nothing: no lineage
        return []
    if getattr(entry, "pruned_at", None) is not None:  # retention removed what it said
        return []

    def event(state, job: str, run_id: str, **parts: Any) -> RunEvent:
        return _event(entry, state, job, run_id, public_url=public_url, **parts)

    def once(job: str, inputs=(), outputs=(), evidence=None) -> list[RunEvent]:
        run_id = _run_id(entry.seq)
        return [
            event(RunState.START, job, run_id, inputs=inputs),
            event(RunState.COMPLETE, job, run_id, inputs=inputs, outputs=outputs,
                  evidence=evidence),
        ]  # fmt: skip

    if action == "dataset.upload":
        return once(
            "dataset.upload",
            outputs=[_dataset(domain, f"dataset-version/{details['uid']}")],
            evidence=("upload", {k: details.get(k) for k in ("content_hash", "tax_year")}),
        )
    if action == "scan.complete":
        receipt = {k: details.get(k) for k in ("receipt", "verdict", "rules_hash", "records")}
        return once(
            "pii.scan",
            inputs=[_dataset(domain, obj)],
            outputs=[_dataset(domain, f"{obj}/sanitized")],
            evidence=("scan-receipt", receipt),
        )
    if action == "approval.decide":
        decision = {k: details.get(k) for k in ("role", "subject", "subject_digest", "digest")}
        decision["decision"] = entry.decision
        return once(
            "approval.decide",
            inputs=[_dataset(domain, str(details.get("subject")))],
            evidence=("approval-decision", decision),
        )
    family = obj.removeprefix("model/")
    version = details.get("version")
    model = _dataset(domain, f"model-version/{family}/{version}")
    if action == "model.train":
        inputs = [
            _dataset(domain, f"dataset-version/{uid}/sanitized") for uid in details["datasets"]
        ]
        inputs.append(_dataset("system", f"base-model/{details.get('base_weights_hash')}"))
        return [
            event(
                RunState.START, f"model.train.{family}", _run_id("train", family, version),
                inputs=inputs, evidence=("training", {"tax_year": details.get("tax_year")}),
            )
        ]  # fmt: skip
    if action in ("job.complete", "job.fail") and version is not None:
        state = RunState.COMPLETE if action == "job.complete" else RunState.FAIL
        return [
            event(
                state, f"model.train.{family}", _run_id("train", family, version),
                outputs=[model] if state == RunState.COMPLETE else [],
                evidence=("training-result", {k: v for k, v in details.items() if k != "error"}),
            )
        ]  # fmt: skip
    if action == "model.evaluate":
        return once(
            f"model.evaluate.{family}",
            inputs=[model],
            evidence=("gate", {"reasons": details.get("reasons")}),
        )
    if action == "model.promote":
        return once(
            f"model.promote.{family}",
            inputs=[model],
            evidence=("promotion", {k: details.get(k) for k in ("approval", "variant")}),
        )
    return []


def lineage_events(entries: Iterable, public_url: str | None = None) -> Iterator[dict[str, Any]]:
    """The events of a run of audit entries, in order, as JSON-ready dicts."""
    for entry in entries:
        for event in events_for(entry, public_url):
            yield Serde.to_dict(event)


# --- the emitter ------------------------------------------------------------------------------

CURSOR = "openlineage"
EMIT_BATCH = 500


class Emitter:
    """Emits the events of newly committed entries after its cursor, to OPENLINEAGE_URL (the
    client's HTTP transport: Marquez and other OpenLineage backends) or appended to
    OPENLINEAGE_FILE (JSON lines). The cursor moves only once the batch was accepted, so a
    backend that is down delays events and loses none (delivery is at least once: a consumer
    keys events by run id, state and time)."""

    def __init__(self, settings: dict[str, Any], retries: int = 2) -> None:
        self.url = settings.get("OPENLINEAGE_URL") or ""
        self.public_url = settings.get("GOVERNANCE_PUBLIC_URL") or DEFAULT_PUBLIC_URL
        self.file = settings.get("OPENLINEAGE_FILE") or ""
        self.transport = None
        if self.url:
            from openlineage.client.transport.http import HttpConfig, HttpTransport

            self.transport = HttpTransport(
                HttpConfig.from_dict(
                    {"url": self.url, "timeout": 10.0, "retry": {"total": retries}}
                )
            )

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.file)

    def pump(self, session, batch: int = EMIT_BATCH) -> int:
        """Emit one batch; return how many events went out."""
        cursor = locked_cursor(session, CURSOR)
        entries, position = entries_after(session, cursor.audit_seq, batch)
        events = [event for entry in entries for event in events_for(entry, self.public_url)]
        try:
            if self.transport is not None:
                for event in events:
                    self.transport.emit(event)
            elif events:
                with open(self.file, "a", encoding="utf-8") as handle:
                    for event in events:
                        handle.write(json.dumps(Serde.to_dict(event), sort_keys=True) + "\n")
        except Exception:
            session.rollback()  # the cursor stays: the batch goes again next time
            raise
        cursor.audit_seq = position
        session.add(cursor)
        session.commit()
        return len(events)
