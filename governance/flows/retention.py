"""Retention: each domain's records are kept for the periods `policies/domains.yaml` names,
then pruned by a scheduled job (`govern scheduler`, daily) or `govern retention run`.

What pruning does, per record kind:

audit_entries  An entry older than the period, in the domain, and covered by a signed
               checkpoint loses its content (principal, object, request id, details become a
               fixed tombstone) but keeps its sequence number, time, action, decision and its
               leaf hash. The Merkle tree is over leaf hashes, so every checkpoint, witness
               cosignature, consistency and inclusion proof still verifies; whoever kept a copy
               of a pruned entry can still prove it was logged. Before pruning, each entry's
               content is checked against its leaf hash (pruning never launders tampering).
               Each pruning appends an `audit.prune` entry in the system domain (never
               pruned) naming the exact ranges; verification refuses any tombstone that no
               such entry accounts for, so an insider cannot erase an entry and call it
               retention. Entries of the system domain are never pruned.
receipts       A scan receipt older than the period loses its text samples (sanitized excerpts
               reviewers read); its verdict, counts and hashes, which lineage and ML-BOMs
               cite, stay.
reports        Finished scan, evaluation and export jobs older than the period are deleted,
               with an export's file; an export spanning domains goes with the shortest
               period among them.

Each pass is audited with what it pruned (counts and ranges, never content).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from governance.audit.pruning import Pruned, prune_audit_entries
from governance.audit.service import Actor, record
from governance.crypto import load_signing_key
from governance.db import utcnow
from governance.domains.models import Domain
from governance.domains.settings import load_domain_settings
from governance.jobs.models import Job, JobKind
from governance.jobs.service import export_file
from governance.pii.models import ScanReceipt

log = logging.getLogger(__name__)

FINISHED = ("succeeded", "failed")


def prune_receipts(session: Session, domain_id: int, domain: str, before: dt.datetime) -> Pruned:
    done = Pruned(domain, "receipts", before)
    table = ScanReceipt.__table__
    done.count = session.execute(
        sa.update(table)
        .where(table.c.domain_id == domain_id, table.c.created_at < before)
        .where(table.c.pruned_at.is_(None))
        .values(samples=[], unflagged_sealed=None, label_sealed=None, pruned_at=utcnow())
    ).rowcount
    return done


def prune_reports(
    session: Session, home: Path, periods: dict[str, int], domain: str, now: dt.datetime
) -> Pruned:
    """Finished service jobs of the domain (and exports covering it) past their period."""
    days = periods[domain]
    before = now - dt.timedelta(days=days)
    done = Pruned(domain, "reports", before)
    jobs = session.exec(
        select(Job)
        .where(col(Job.kind).in_(JobKind.INTERNAL), col(Job.state).in_(FINISHED))
        .where(Job.finished_at < before)
        .where(sa.or_(Job.domain == domain, Job.kind == JobKind.EXPORT))
    ).all()
    for job in jobs:
        if job.kind == JobKind.EXPORT:
            covered = [d for d in job.params.get("domains", []) if d in periods]
            if domain not in covered or min(periods[d] for d in covered) != days:
                continue  # another domain's (shorter) period decides, or it is not ours
            export_file(home, job.uid, job.params.get("format", "jsonl")).unlink(missing_ok=True)
        session.delete(job)
        done.count += 1
    return done


def enforce(
    session: Session,
    policy_dir: str | Path,
    home: str | Path,
    actor: Actor,
    now: dt.datetime | None = None,
) -> list[Pruned]:
    """Apply every domain's retention once; return what was pruned (audited when anything
    was)."""
    now = now or utcnow()
    settings = load_domain_settings(policy_dir)
    periods = {name: s.retention.days() for name, s in settings.items()}
    report_periods = {n: p["reports"] for n, p in periods.items() if "reports" in p}
    results: list[Pruned] = []
    for domain in session.exec(select(Domain).order_by(Domain.name)).all():
        own = periods.get(domain.name, {})
        if "audit_entries" in own:
            before = now - dt.timedelta(days=own["audit_entries"])
            key = load_signing_key(home)
            results.append(prune_audit_entries(session, domain.name, before, actor, key))
        if "receipts" in own:
            before = now - dt.timedelta(days=own["receipts"])
            results.append(prune_receipts(session, domain.id, domain.name, before))
        if domain.name in report_periods:
            results.append(prune_reports(session, Path(home), report_periods, domain.name, now))
        others = [r for r in results if r.domain == domain.name and r.kind != "audit_entries"]
        if any(r.count for r in others):
            record(
                session,
                actor,
                "retention.prune",
                f"domain/{domain.name}",
                domain.name,
                details={"pruned": [r.as_dict() for r in others if r.count]},
            )
    return results
