"""Console pages of datasets: versions with their scans, findings and the quarantine."""

from __future__ import annotations

from flask import (
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from pydantic import ValidationError

from governance import runtime
from governance.console.blueprint import (
    NOTICES,
    bp,
)
from governance.console.charts import bar_chart, line_chart
from governance.datasets import service as datasets
from governance.db import get_session
from governance.domains.models import Domain
from governance.domains.service import find_domain
from governance.errors import (
    NotFound,
    invalid_input,
)
from governance.pii import service as pii
from governance.pii.models import LabelCreate, QuarantineDecide
from governance.web.datasets_lookup import dataset_for
from governance.web.guard import (
    allowed_domains,
    current_actor,
    get_authorizer,
    log_event,
    mark_checked,
    require,
)

# --- datasets -------------------------------------------------------------------------------


def visible_domains(obj: str, action: str) -> list[Domain]:
    """Domains where the caller may act on obj, logged once as a listing."""
    visible = allowed_domains(obj, action)
    log_event("list", obj, None, "allow", {"visible": [d.name for d in visible]})
    mark_checked()
    return visible


@bp.get("/datasets")
def datasets_home():
    """The domains whose datasets I may read."""
    session = get_session()
    domains = [
        (d, len(datasets.list_datasets(session, d))) for d in visible_domains("dataset", "read")
    ]
    return render_template("console/datasets.html", section="datasets", domains=domains)


@bp.get("/domains/<name>/datasets")
def domain_datasets(name: str):
    """A domain's datasets: versions, tax years, scan status, tombstones."""
    require("read", "dataset", name)
    session = get_session()
    domain = find_domain(session, name)
    if domain is None:
        raise NotFound(f"no domain {name!r}", details={"domain": name})
    may_read_scans = get_authorizer().policy.decide(g.principal.name, name, "scan", "read").allowed
    listing = []
    for dataset in datasets.list_datasets(session, domain):
        versions = datasets.list_versions(session, dataset)
        receipts = pii.latest_receipts(session, [v.id for v in versions]) if may_read_scans else {}
        listing.append(
            (dataset, versions, receipts, findings_across(dataset.name, versions, receipts))
        )
    from governance import runtime
    from governance.families import privacy

    book = privacy.ledger(session, domain, runtime.current().policy_dir)
    return render_template(
        "console/domain_datasets.html",
        section="datasets",
        domain=domain,
        listing=listing,
        may_read_scans=may_read_scans,
        ledger=book.as_dict() if book.budget or book.entries else None,
    )


def findings_across(name: str, versions: list, receipts: dict) -> Markup:
    """PII findings per entity type across a dataset's scanned versions, oldest left."""
    scanned = [v for v in versions if v.id in receipts]
    totals = [
        {entity: sum(fields.values()) for entity, fields in (receipts[v.id].counts or {}).items()}
        for v in scanned
    ]
    entities = sorted({entity for counts in totals for entity in counts})
    return line_chart(
        f"PII findings per entity type across the versions of {name}",
        [f"v{v.number}" for v in scanned],
        {entity: [counts.get(entity, 0) for counts in totals] for entity in entities},
        height=180,
        from_zero=True,
    )


@bp.get("/datasets/<int:dataset_id>/versions/<int:number>/quarantine")
def quarantine_page(dataset_id: int, number: int):
    """A version's latest receipt (canary recall, residuals, reasons) and its held-back records."""

    return render_template(
        "console/quarantine.html",
        section="datasets",
        notice=NOTICES.get(request.args.get("notice", "")),
        **quarantine_context(dataset_id, number, dataset_for, pii),
    )


def quarantine_context(dataset_id: int, number: int, dataset_for, pii) -> dict:
    dataset, domain = dataset_for(dataset_id, "read", "scan")
    session = get_session()
    version = datasets.get_version(session, dataset, number)
    receipt = pii.latest_receipts(session, [version.id]).get(version.id)
    may_decide = get_authorizer().policy.decide(g.principal.name, domain.name, "scan", "create")
    rt = runtime.current()
    findings = sorted(
        ((entity, sum(fields.values())) for entity, fields in (receipt.counts or {}).items())
        if receipt
        else [],
        key=lambda item: -item[1],
    )
    return {
        "dataset": dataset,
        "domain": domain,
        "version": version,
        "receipt": receipt,
        "held": pii.list_quarantine(session, version),
        "unflagged": pii.unflagged_sample(session, rt.keyring, receipt) if receipt else None,
        "may_decide": may_decide.allowed,
        "labels": pii.label_items(session, rt.keyring, receipt)
        if receipt and may_decide.allowed
        else [],
        "findings_chart": bar_chart(
            f"PII findings per entity type in {dataset.name} v{version.number}", findings
        ),
    }


@bp.post("/datasets/<int:dataset_id>/versions/<int:number>/quarantine/<int:record>")
def quarantine_decide(dataset_id: int, number: int, record: int):
    """Keep or drop a held-back record, as the API's quarantine endpoint does."""

    dataset, domain = dataset_for(dataset_id, "create", "scan")
    session = get_session()
    version = datasets.get_version(session, dataset, number)
    try:
        body = QuarantineDecide(
            decision=request.form.get("decision", ""),
            comment=request.form.get("comment") or None,
        )
    except ValidationError as exc:
        raise invalid_input(exc) from exc
    pii.decide_quarantine(
        session, version, domain, record, body.decision, actor=current_actor(), comment=body.comment
    )
    return redirect(
        url_for("console.quarantine_page", dataset_id=dataset_id, number=number, notice="decided")
    )


@bp.post("/datasets/<int:dataset_id>/versions/<int:number>/labels/<int:position>")
def label_record(dataset_id: int, number: int, position: int):
    """A steward labels one sampled record, as the API's labels endpoint does."""

    dataset, domain = dataset_for(dataset_id, "create", "scan")
    session = get_session()
    receipt = pii.scanned_receipt(session, datasets.get_version(session, dataset, number))
    try:
        body = LabelCreate(
            missed=request.form.get("missed", ""), comment=request.form.get("comment") or None
        )
    except ValidationError as exc:
        raise invalid_input(exc) from exc
    pii.label_record(
        session,
        receipt,
        domain,
        position,
        body.missed,
        actor=current_actor(),
        comment=body.comment,
    )
    return redirect(
        url_for("console.quarantine_page", dataset_id=dataset_id, number=number, notice="labelled")
        + "#labels"
    )
