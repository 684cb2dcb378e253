"""Access reports for auditors: who may query which model, and who did.

"Who may" is computed from the Casbin policy in force: every principal's role bindings joined
with the rules that grant `query` on a model object, expanded over the domains (and, once model
families exist, the families) they cover. "Who did" is read from the audit log. Each report is
signed with the service key over its canonical encoding.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from audit.log import canonical, key_id
from governance.audit.models import AuditEntry
from governance.audit.service import format_time
from governance.authz.compiled import key_match
from governance.authz.policy import SYSTEM_DOMAIN, UNSCOPED_DOMAIN, PolicySet
from governance.flows.log_export import EntryFilter

REPORT_CONTEXT = b"governance-access-report/1\n"
QUERY_ACTION = "query"


def who_may(
    policy: PolicySet, domains: Iterable[str], models: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Return (principal, domain, model, role, rule) for every grant of query on a model."""
    models = models or {}
    compiled = policy.compiled
    rows = []
    # Only the rules that may grant a query on a model, and only the bindings to their roles:
    # the reverse indexes keep this proportional to the grants, not to rules x bindings.
    for rule in compiled.rules:
        role, rule_domain, rule_object, rule_action = rule[:4]
        if rule_action not in (QUERY_ACTION, "*"):
            continue
        if not (rule_object.startswith("model/") or rule_object == "*"):
            continue
        for principal, bound_domain in compiled.holders.get(role, ()):
            for domain in sorted(domains):
                if not (key_match(domain, bound_domain) and key_match(domain, rule_domain)):
                    continue
                families = models.get(domain) or []
                matched = [f for f in families if key_match(f"model/{f}", rule_object)]
                for model in matched or [rule_object.removeprefix("model/")]:
                    rows.append(
                        {
                            "principal": principal,
                            "domain": domain,
                            "model": model,
                            "role": role,
                            "rule": ", ".join(["p", *rule[:4]]),
                            "binding": ", ".join(["g", principal, role, bound_domain]),
                        }
                    )
    unique = {tuple(r.values()): r for r in rows}
    return sorted(unique.values(), key=lambda r: (r["principal"], r["domain"], r["model"]))


def who_did(session: Session, entry_filter: EntryFilter) -> list[dict[str, Any]]:
    """Return per principal, domain and model: queries allowed and denied, first and last."""
    c = AuditEntry
    query = entry_filter.apply(
        sa.select(
            c.principal,
            c.domain,
            c.object,
            sa.func.sum(sa.case((c.decision == "allow", 1), else_=0)).label("allowed"),
            sa.func.sum(sa.case((c.decision == "deny", 1), else_=0)).label("denied"),
            sa.func.min(c.time).label("first"),
            sa.func.max(c.time).label("last"),
        )
        .where(c.action == QUERY_ACTION, c.object.like("model/%"))
        .group_by(c.principal, c.domain, c.object)
        .order_by(c.principal, c.domain, c.object)
    )
    return [
        {
            "principal": row.principal,
            "domain": row.domain,
            "model": row.object.removeprefix("model/"),
            "queries": int(row.allowed or 0),
            "denied": int(row.denied or 0),
            "first": format_time(_aware(row.first)),
            "last": format_time(_aware(row.last)),
        }
        for row in session.execute(query)
    ]


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def signed_report(
    kind: str, rows: list[dict[str, Any]], meta: dict[str, Any], key: Ed25519PrivateKey
) -> dict[str, Any]:
    """Wrap report rows with metadata and an Ed25519 signature over the canonical body."""
    body = {"kind": kind, **meta, "rows": rows}
    signature = key.sign(REPORT_CONTEXT + canonical(body))
    return {
        "report": body,
        "signature": {
            "algorithm": "Ed25519",
            "key_id": key_id(key.public_key()),
            "value": base64.b64encode(signature).decode(),
            "signed": "governance-access-report/1 context + canonical JSON of `report`",
        },
    }


def report_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Render report rows as CSV."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def sign_bytes(data: bytes, key: Ed25519PrivateKey) -> str:
    """Sign a CSV rendering; the base64 signature travels beside it."""
    return base64.b64encode(key.sign(REPORT_CONTEXT + data)).decode()


WHO_MAY_COLUMNS = ["principal", "domain", "model", "role", "rule", "binding"]
WHO_DID_COLUMNS = ["principal", "domain", "model", "queries", "denied", "first", "last"]


def families_by_domain(session: Session) -> dict[str, list[str]]:
    """The model families of each domain, so grants on `model/*` name the models they cover."""
    from governance.domains.models import Domain
    from governance.families.models import ModelFamily

    found: dict[str, list[str]] = {}
    statement = select(ModelFamily.name, Domain.name).join(
        Domain, ModelFamily.domain_id == Domain.id
    )
    for family, domain in session.exec(statement.order_by(ModelFamily.name)):
        found.setdefault(domain, []).append(family)
    return found


def build_report(
    kind: str,
    session: Session,
    policy: PolicySet,
    key: Ed25519PrivateKey,
    entry_filter: EntryFilter | None,
    domains: Iterable[str],
) -> tuple[dict[str, Any], str, str]:
    """Build a report as signed JSON, and as CSV with its detached signature."""
    from governance.db import utcnow

    hidden = (SYSTEM_DOMAIN, UNSCOPED_DOMAIN)
    visible = sorted(d for d in domains if d not in hidden) if "*" not in domains else None
    if kind == "who-may":
        if visible is None:
            from governance.domains.service import list_domains

            visible = [d.name for d in list_domains(session)]
        rows = who_may(policy, visible, families_by_domain(session))
        columns = WHO_MAY_COLUMNS
        meta: dict[str, Any] = {"policy_hash": policy.hash, "domains": visible}
    elif kind == "who-did":
        rows = who_did(session, entry_filter or EntryFilter())
        columns = WHO_DID_COLUMNS
        meta = {"filters": (entry_filter or EntryFilter()).as_dict()}
    else:
        raise ValueError(f"unknown report {kind!r}")
    meta["generated_at"] = format_time(utcnow())
    body = signed_report(kind, rows, meta, key)
    text = report_csv(rows, columns)
    return body, text, sign_bytes(text.encode(), key)


def utc_day(column: Any, dialect: str) -> Any:
    """A SQL expression for the UTC calendar day (YYYY-MM-DD) of a timestamp column."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    # SQLite keeps naive UTC text ("YYYY-MM-DD HH:MM:SS..."), see governance.db.UTCDateTime.
    return sa.func.substr(sa.cast(column, sa.String), 1, 10)


def activity_by_day(
    session: Session, entries: EntryFilter, days: int = 30
) -> tuple[list[str], dict[str, list[int]], int]:
    """Entries per UTC day for the filtered log: (days, {allow, deny, other: counts}, total).

    Only the `days` most recent days that have entries are returned; the total counts all of
    the filtered entries. Counting happens in the database, grouped by day and decision.
    """
    day = utc_day(AuditEntry.time, session.get_bind().dialect.name).label("day")
    grouped = entries.apply(select(day, AuditEntry.decision, sa.func.count().label("n")))
    rows = session.exec(grouped.group_by(day, AuditEntry.decision)).all()
    per_day: dict[str, dict[str, int]] = {}
    for when, decision, count in rows:
        kind = decision if decision in ("allow", "deny") else "other"
        bucket = per_day.setdefault(str(when), {"allow": 0, "deny": 0, "other": 0})
        bucket[kind] += count
    labels = sorted(per_day)[-days:]
    series = {kind: [per_day[d][kind] for d in labels] for kind in ("allow", "deny", "other")}
    total = sum(sum(bucket.values()) for bucket in per_day.values())
    return labels, series, total
