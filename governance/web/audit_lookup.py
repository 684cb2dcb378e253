"""The audit log as a caller may see it: the domains they may read or export, and the
exports and reports built for them. Shared by the API and the console."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flask import Response

from audit.bundle import VerificationError
from governance import runtime
from governance.audit.models import EntryQuery
from governance.authz.policy import SYSTEM_DOMAIN, UNSCOPED_DOMAIN
from governance.db import get_session
from governance.domains.service import list_domains
from governance.errors import Conflict, Forbidden, InvalidInput
from governance.families.service import find_family
from governance.flows import access_reports as reports
from governance.flows.evidence import parse_period
from governance.flows.log_export import EntryFilter, iter_csv, iter_jsonl, write_log_bundle
from governance.jobs.models import JobKind
from governance.web import jobs_lookup as jobs
from governance.web.guard import current_principal, get_authorizer, log_event, mark_checked

_NOUNS = {"audit": "the audit log", "webhook": "webhook deliveries"}


def permitted_domains(action: str, obj: str = "audit") -> frozenset[str]:
    """Return the domains (and `system`) where the caller may perform action on the log (or
    on another per-domain object type, such as `webhook`).

    The decision is logged once, naming the domains it covers.
    """
    principal = current_principal()
    authorizer = get_authorizer()
    candidates = [SYSTEM_DOMAIN, *(d.name for d in list_domains(get_session()))]
    if obj == "audit":
        # Entries about objects that do not exist belong to no data domain: those who may
        # act on the log in every domain read them too, so every entry of the tree can be
        # listed and proven through the API by someone.
        candidates.append(UNSCOPED_DOMAIN)
    allowed = frozenset(
        d for d in candidates if authorizer.decide(principal.name, d, obj, action).allowed
    )
    log_event(action, obj, None, "allow" if allowed else "deny", {"domains": sorted(allowed)})
    mark_checked()
    if not allowed:
        raise Forbidden(
            f"{principal.name} may not {action} {_NOUNS.get(obj, obj)} in any domain",
            details={"object": obj, "action": action},
        )
    return allowed


def entry_filter(query: EntryQuery, allowed: frozenset[str]) -> EntryFilter:
    if query.domain is not None and query.domain not in allowed:
        raise Forbidden(
            f"{current_principal().name} may not read the audit log of domain {query.domain}",
            details={"domain": query.domain},
        )
    return EntryFilter(
        from_time=query.from_time,
        to_time=query.to_time,
        principal=query.principal,
        domain=query.domain,
        model=query.model,
        action=query.action,
        decision=query.decision,
        domains_allowed=allowed,
    )


def export_response(filters: EntryFilter, fmt: str) -> Response:
    """Stream the selected entries as a download in one of the export formats."""
    session = get_session()
    if fmt == "bundle":
        scratch = Path(tempfile.mkdtemp(prefix="audit-export-"))
        try:
            archive = scratch / "audit-bundle.tar.gz"
            try:
                write_log_bundle(session, filters, archive, runtime.current().audit_log)
            except VerificationError as exc:
                # Never sign a fresh checkpoint over a log that fails verification.
                raise Conflict(
                    f"the audit log does not verify, so it is not exported: {exc}",
                    code="log_verification_failed",
                    details={"seq": exc.seq},
                ) from exc
            handle = archive.open("rb")
        finally:
            # The open handle keeps the file readable after its directory is gone.
            shutil.rmtree(scratch, ignore_errors=True)
        return Response(
            stream_file(handle),
            mimetype="application/gzip",
            headers={"Content-Disposition": "attachment; filename=audit-bundle.tar.gz"},
        )
    # Stream the rows as they are read: an export of a large log must not sit in memory. The
    # stream has its own session, closed as soon as the last row is out.
    if fmt == "csv":
        render, mimetype, name = iter_csv, "text/csv", "audit.csv"
    else:
        render, mimetype, name = iter_jsonl, "application/x-ndjson", "audit.jsonl"
    db = runtime.current().database

    def lines():
        with db.session_scope() as stream_session:
            yield from render(stream_session, filters)

    return Response(
        lines(),
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename={name}"},
    )


def stream_file(handle, chunk: int = 1 << 16):
    """Yield a file's bytes and close it, whether or not the client reads to the end."""
    try:
        while data := handle.read(chunk):
            yield data
    finally:
        handle.close()


def report_response(kind: str, query, allowed: frozenset[str]):
    """Build, sign, log and answer an access report as JSON or CSV."""
    filters = entry_filter(query, allowed) if isinstance(query, EntryQuery) else None
    body, csv_text, signature = reports.build_report(
        kind,
        get_session(),
        get_authorizer().policy,
        runtime.current().audit_log.signing_key,
        filters,
        allowed,
    )
    log_event(
        f"report.{kind}",
        "audit",
        None,
        "ok",
        {"rows": len(body["report"]["rows"]), "format": query.format},
    )
    if query.format == "csv":
        return Response(
            csv_text,
            mimetype="text/csv",
            headers={
                "Content-Disposition": f"attachment; filename={kind}.csv",
                "X-Signature-Ed25519": signature,
            },
        )
    return body


def start_evidence_job(session, period: str, family: str | None):
    """Queue an evidence pack for the caller (API and console); 202 with where to follow it.

    A pack covers every domain and the system log, so only a caller who may export the audit
    log in all of them may ask for one. The period and family are checked here, so bad input
    is a 422 now rather than a failed job later."""
    allowed = permitted_domains("export")
    every = {SYSTEM_DOMAIN, *(d.name for d in list_domains(session))}
    if missing := sorted(every - allowed):
        raise Forbidden(
            f"an evidence pack spans every domain; {current_principal().name} may not export "
            f"the audit log of {', '.join(missing)}",
            details={"object": "audit", "action": "export", "domains": missing},
        )
    parse_period(period)
    if family is not None and find_family(session, family) is None:
        raise InvalidInput(f"no model family {family!r}", details={"field": "family"})
    return jobs.start(
        session,
        JobKind.EXPORT,
        "audit",
        SYSTEM_DOMAIN,
        "audit",
        {
            "format": "evidence",
            "period": period,
            "family": family,
            "domains": sorted(allowed),
            "owner_only": True,
        },
    )
