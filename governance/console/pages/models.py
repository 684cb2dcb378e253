"""Console pages of model families and versions: metrics, lineage, configuration."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from pydantic import ValidationError
from sqlmodel import select

from governance import runtime
from governance.console.blueprint import (
    NOTICES,
    UID,
    bp,
)
from governance.console.charts import line_chart
from governance.console.graph import lineage_svg
from governance.db import get_session
from governance.domains.models import Domain
from governance.errors import NotFound, invalid_input
from governance.families import review, scorecard, sweeps
from governance.families import service as family_service
from governance.families.criteria import load_criteria
from governance.families.models import ExpertScores, ModelFamily
from governance.scheduler.models import RefreshRun
from governance.web.families_lookup import family_for, score_review
from governance.web.guard import (
    get_authorizer,
    log_event,
    mark_checked,
)

# --- models ---------------------------------------------------------------------------------


@bp.get("/models")
def models_home():
    """The model families I may read, by domain."""
    session = get_session()
    policy = get_authorizer().policy
    families = []
    for family in session.exec(select(ModelFamily).order_by(ModelFamily.name)):
        domain = session.get(Domain, family.domain_id)
        if policy.decide(g.principal.name, domain.name, f"model/{family.name}", "read").allowed:
            production = family_service.production_version(session, family)
            families.append((family, domain, production))
    log_event("list", "model", None, "allow", {"visible": [f[0].name for f in families]})
    mark_checked()
    return render_template("console/models.html", section="models", families=families)


@bp.get("/models/<family>")
def family_page(family: str):
    """A family's versions and status, and its latest refresh."""
    found, domain = family_for(family, "read")
    session = get_session()
    versions = list(reversed(family_service.list_versions(session, found)))
    runs = session.exec(
        select(RefreshRun)
        .where(RefreshRun.family_id == found.id)
        .order_by(RefreshRun.id.desc())
        .limit(5)
    ).all()
    serving = family_service.serving_version(session, found)
    return render_template(
        "console/family.html",
        section="models",
        family=found,
        domain=domain,
        versions=versions,
        serving=serving,
        runs=runs,
        charts=metrics_charts(found.name, list(reversed(versions)), serving),
        sweeps=[
            (table, sweep_chart(table))
            for table in (sweeps.table(session, s) for s in sweeps.list_sweeps(session, found)[:3])
        ],
    )


def sweep_chart(table: dict) -> Markup:
    """A sweep across its bases, smallest left: score, and latency per token (each scaled
    to the best base, so both read on one axis); the chosen base marked."""
    rows = sorted(table["rows"], key=lambda r: r["parameters"] or 0)

    def relative(key: str) -> list[float | None]:
        values = [r[key] for r in rows]
        known = [v for v in values if v]
        return [v / min(known) if v and known else None for v in values]

    marked = next((i for i, r in enumerate(rows) if r["chosen"]), None)
    return line_chart(
        f"size sweep {table['uid'][:8]}: {table['metric']} and ms per token by base",
        [f"{r['base_model']} ({r['parameters'] or '?'})" for r in rows],
        {
            f"{table['metric']} / best": relative("score"),
            "ms per token / least": relative("ms_per_token"),
        },
        marked,
        f"kept: {table['chosen']}" if table["chosen"] else "",
        height=190,
    )


def flatten(nested: dict | None, prefix: str = "") -> dict[str, Any]:
    """The leaves of nested dictionaries, named with dots (`lora.r`)."""
    leaves: dict[str, Any] = {}
    for key, value in (nested or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(flatten(value, f"{name}."))
        else:
            leaves[name] = value
    return leaves


# Shown in tables of their own (baseline, candidate, production; the canaries' exposure).
OWN_TABLES = ("evaluation.", "memorization.")


def numeric_metrics(metrics: dict | None) -> dict[str, float]:
    """A version's numeric metrics, nested ones named with dots (counts `n` left out)."""
    return {
        name: float(value)
        for name, value in flatten(metrics).items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and name.rsplit(".", 1)[-1] != "n"
        and not name.startswith(OWN_TABLES)
    }


# Metric leaves that describe how a version was made, not how good it is: left out of charts.
SETUP_SECTIONS = ("lora.", "hyperparameters.", "versions.")
SETUP_KEYS = {"n", "steps", "seed", "seconds"}


def quality_metrics(metrics: dict | None) -> dict[str, float]:
    """The numeric metrics that measure a version (losses, perplexity, accuracies)."""
    return {
        name: value
        for name, value in numeric_metrics(metrics).items()
        if not name.startswith(SETUP_SECTIONS)
        and name.rsplit(".", 1)[-1] not in SETUP_KEYS
        and not name.endswith("_records")
    }


def metrics_charts(name: str, versions: list, serving) -> list[tuple[str, Markup]]:
    """Small multiples across a family's versions, production marked: the losses together
    (one scale); a section's leaves together when all are shares between 0 and 1 (accuracies,
    AUCs), since those read on one axis; every other metric on its own scale (a section such
    as `serving` mixes ms per token, parameters and bytes)."""
    per_version = [quality_metrics(v.metrics) for v in versions]
    names = sorted({k for m in per_version for k in m})

    def shares(section: str) -> bool:
        leaves = [k for k in names if k.rsplit(".", 1)[0] == section]
        values = [m[k] for m in per_version for k in leaves if k in m]
        return len(leaves) > 1 and all(0 <= v <= 1 for v in values)

    panels: dict[str, list[str]] = {}
    for key in names:
        section = key.rsplit(".", 1)[0]
        if "loss" in key:
            panel = "loss"
        elif "." in key and shares(section):
            panel = section
        else:
            panel = key
        panels.setdefault(panel, []).append(key)
    marked = next((i for i, v in enumerate(versions) if serving and v.id == serving.id), None)
    return [
        (
            panel,
            line_chart(
                f"{panel} of {name} across its versions",
                [f"v{v.number}" for v in versions],
                {
                    key.removeprefix(f"{panel}.") if key != panel else key.rsplit(".", 1)[-1]: [
                        m.get(key) for m in per_version
                    ]
                    for key in keys
                },
                marked,
                f"production: v{serving.number}" if serving else "",
                height=170,
            ),
        )
        for panel, keys in panels.items()
    ]


@bp.get("/models/<family>/versions/<int:number>")
def version_page(family: str, number: int):
    """One version's lineage, drawn as a graph and listed in full."""
    found, domain = family_for(family, "read")
    session = get_session()
    version = family_service.get_version(session, found, number)
    document = family_service.signed_lineage(
        session, version, runtime.current().audit_log.signing_key
    )
    href = url_for("console.family_page", family=found.name)
    criteria = load_criteria(runtime.current().policy_dir, domain.name)
    evaluation = document.get("evaluation") or {}
    return render_template(
        "console/version.html",
        # While it trains or waits for its gate, the page shows that job's progress and
        # reloads itself (as the job page does).
        work=family_service.work_in_flight(session, version),
        section="models",
        family=found,
        domain=domain,
        version=version,
        lineage=document,
        graph=lineage_svg(document, href),
        metric_rows=sorted(numeric_metrics(document.get("metrics")).items()),
        config_rows=sorted(config_rows(document.get("training_config")).items()),
        scores=scorecard.rows(evaluation),
        harness=evaluation.get("harness") or {},
        memorization=scorecard.memorization(evaluation),
        privacy=scorecard.privacy(document.get("metrics") or {}, evaluation),
        reviews=review.version_reviews(session, domain, version, criteria),
        may_review=criteria is not None
        and get_authorizer()
        .policy.decide(g.principal.name, domain.name, f"model/{found.name}", "review")
        .allowed,
        notice=NOTICES.get(request.args.get("notice", "")),
    )


@bp.post("/models/<family>/versions/<int:number>/reviews/<uid>")
def review_item(family: str, number: int, uid: str):
    """A domain expert's scores on one sampled conversation, as the API takes them."""
    if not UID.match(uid):
        raise NotFound("no such review item", details={"uid": uid})
    # Unknown criteria are refused by the service, as the API's are.
    try:
        body = ExpertScores(
            scores={
                name.removeprefix("score-"): int(value)
                for name, value in request.form.items()
                if name.startswith("score-") and value.isdigit()
            },
            comment=request.form.get("comment", "").strip(),
        )
    except ValidationError as exc:
        raise invalid_input(exc) from exc
    score_review(family, number, uid, body, runtime.current().policy_dir)
    target = url_for("console.version_page", family=family, number=number, notice="reviewed")
    return redirect(f"{target}#review-{uid}")


def config_rows(config: dict | None) -> dict[str, str]:
    """A nested configuration as `a.b: value` rows."""
    return {
        name: json.dumps(value) if isinstance(value, list | bool) or value is None else str(value)
        for name, value in flatten(config).items()
    }
