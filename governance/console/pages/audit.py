"""Console pages of the audit log and the access reports."""

from __future__ import annotations

import datetime as dt

from flask import (
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from pydantic import ValidationError
from sqlmodel import select

from governance import runtime
from governance.audit.models import (
    AUDIT_DECISIONS,
    AuditEntry,
    EntryQuery,
    ReportQuery,
    WhoDidQuery,
)
from governance.audit.service import log_size
from governance.authz.policy import SYSTEM_DOMAIN
from governance.console.blueprint import (
    UID,
    bp,
)
from governance.console.charts import line_chart
from governance.db import get_session
from governance.domains.service import list_domains
from governance.errors import (
    InvalidInput,
    NotFound,
    invalid_input,
)
from governance.families.models import ModelFamily
from governance.flows import access_reports as reports
from governance.flows.log_verification import CheckpointStatus
from governance.web.audit_lookup import (
    entry_filter,
    export_response,
    permitted_domains,
    report_response,
    start_evidence_job,
)
from governance.web.guard import (
    get_authorizer,
)
from governance.web.jobs_lookup import job_file, readable_job

# --- audit ----------------------------------------------------------------------------------


def checkpoint_status() -> CheckpointStatus:
    """This process's verification state, made on first use."""
    return runtime.current().checkpoint_status


def parse_entry_query(args) -> EntryQuery:
    """Read the filter form; an invalid field is a 422 naming it."""
    values = {k: v for k, v in args.items() if v not in ("", None) and k in ENTRY_QUERY_FIELDS}
    try:
        query = EntryQuery.model_validate(values)
    except ValidationError as exc:
        raise invalid_input(exc) from exc
    # The form's datetime-local fields carry no zone; the console labels them UTC.
    for name in ("from_time", "to_time"):
        moment = getattr(query, name)
        if moment is not None and moment.tzinfo is None:
            setattr(query, name, moment.replace(tzinfo=dt.UTC))
    return query


ENTRY_QUERY_FIELDS = frozenset(
    {"from", "to", "principal", "domain", "model", "action", "decision", "after_seq", "limit"}
)


def filtered(action: str):
    """The domains where the caller may `action` the log (decided and logged once), the filter
    form as read, and the entry filter it makes."""
    allowed = permitted_domains(action)
    query = parse_entry_query(request.args)
    return allowed, query, entry_filter(query, allowed)


@bp.get("/audit")
def audit():
    """Search the log, see how far it is verified and signed, download exports."""
    allowed, query, filters = filtered("read")
    session = get_session()
    statement = filters.apply(select(AuditEntry).where(AuditEntry.seq > query.after_seq))
    rows = session.exec(statement.order_by(AuditEntry.seq).limit(query.limit + 1)).all()
    page, more = rows[: query.limit], len(rows) > query.limit
    status = checkpoint_status().view(session, from_start=request.args.get("verify") == "all")
    policy = get_authorizer().policy
    may_export = any(policy.decide(g.principal.name, d, "audit", "export").allowed for d in allowed)
    every = {SYSTEM_DOMAIN, *(d.name for d in list_domains(session))}
    may_export_all = all(
        policy.decide(g.principal.name, d, "audit", "export").allowed for d in every
    )
    today = dt.datetime.now(dt.UTC).date()
    days, series, total = reports.activity_by_day(session, filters)
    filter_args = {
        k: v for k, v in request.args.items() if k in ENTRY_QUERY_FIELDS - {"after_seq"} and v
    }
    return render_template(
        "console/audit.html",
        section="audit",
        entries=page,
        more=more,
        next_after=page[-1].seq if more else None,
        args=filter_args,
        allowed=sorted(allowed),
        status=status,
        verified=status.result,
        may_export=may_export,
        may_export_all=may_export_all,
        period_from=today.replace(month=1, day=1).isoformat(),
        period_to=today.isoformat(),
        families=sorted(session.exec(select(ModelFamily.name)).all()) if may_export_all else [],
        decisions=AUDIT_DECISIONS,
        unanchored=log_size(session) - (status.result.verified_upto if status.result else 0),
        total=total,
        activity=line_chart(
            "Audit entries per day (UTC) matching these filters",
            [day[5:] for day in days],
            {"allowed": series["allow"], "denied": series["deny"], "other": series["other"]},
            height=180,
            from_zero=True,
        ),
    )


@bp.get("/audit/export")
def audit_export():
    """Download the filtered entries as CSV, JSONL or an offline-verifiable bundle."""
    _allowed, _query, filters = filtered("export")
    fmt = request.args.get("format", "jsonl")
    if fmt not in ("csv", "jsonl", "bundle"):
        raise InvalidInput("format must be csv, jsonl or bundle", details=[{"field": "format"}])
    return export_response(filters, fmt)


@bp.post("/audit/evidence")
def audit_evidence():
    """Start an evidence pack for the period, then follow its job."""
    period = f"{request.form.get('from', '')}..{request.form.get('to', '')}"
    job, _status, _headers = start_evidence_job(
        get_session(), period, request.form.get("family") or None
    )
    return redirect(url_for("console.job", uid=job["job"]))


@bp.get("/jobs/<uid>")
def job(uid: str):
    """A job the caller started from the console: its state, then its download."""
    if not UID.match(uid):
        raise NotFound("no such job", details={"job": uid})
    found = readable_job(get_session(), uid)
    titles = {"evidence": "Evidence pack"}
    return render_template(
        "console/job.html",
        section="audit",
        job=found,
        title=titles.get(found["result"].get("format", ""), "Job"),
        running=found["state"] in ("queued", "running"),
    )


@bp.get("/jobs/<uid>/file")
def job_download(uid: str):
    """Download what a finished export job wrote (its requester only)."""
    if not UID.match(uid):
        raise NotFound("no such job", details={"job": uid})
    return job_file(get_session(), uid)


# --- access reports -------------------------------------------------------------------------


@bp.get("/access")
def access():
    """Who may query which model (from the policy) and who did (from the log)."""
    allowed, _query, filters = filtered("export")
    session = get_session()
    policy = get_authorizer().policy
    key = runtime.current().audit_log.signing_key
    may, _, _ = reports.build_report("who-may", session, policy, key, None, allowed)
    did, _, _ = reports.build_report("who-did", session, policy, key, filters, allowed)
    filter_args = {k: v for k, v in request.args.items() if k in ("from", "to", "domain") and v}
    return render_template(
        "console/access.html",
        section="access",
        who_may=may["report"]["rows"],
        who_did=did["report"]["rows"],
        args=filter_args,
        allowed=sorted(d for d in allowed if d != SYSTEM_DOMAIN),
    )


@bp.get("/access/<kind>.<fmt>")
def access_download(kind: str, fmt: str):
    """Download a signed access report as JSON or CSV."""
    if kind not in ("who-may", "who-did") or fmt not in ("json", "csv"):
        raise NotFound("no such report", details={"report": f"{kind}.{fmt}"})
    allowed = permitted_domains("export")
    if kind == "who-may":
        response = report_response(kind, ReportQuery(format=fmt), allowed)
    else:
        # The same reading of the period as the page's, so the download matches what it showed.
        period = parse_entry_query(request.args)
        response = report_response(kind, WhoDidQuery(**dict(period), format=fmt), allowed)
    if isinstance(response, dict):
        response = current_app.make_response(response)
        response.headers["Content-Disposition"] = f"attachment; filename={kind}.json"
    return response
