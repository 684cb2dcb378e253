"""Traffic per variant over a period, read back from the audit log's query entries: what
each variant served, how fast, at what token cost, and what was refused."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from governance.audit.models import AuditEntry
from governance.gateway import routing


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def traffic(
    session: Session,
    family: str,
    since: dt.datetime,
    until: dt.datetime,
    family_routing: routing.FamilyRouting,
    weights_bytes: dict[str, int],
) -> dict[str, Any]:
    """Rows per variant: requests answered, refused and failed, latency p50/p95 (ms), prompt
    and completion tokens, and their cost at routing.yaml's prices (or the weights-size
    stand-in). Refusals before routing (limits, blocked prompts) count under variant "-"."""
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "answered": 0,
            "refused": 0,
            "failed": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "latencies": [],
            "routes": defaultdict(int),
        }
    )
    table = AuditEntry.__table__.c  # type: ignore[attr-defined]
    statement = sa.select(table.decision, table.details).where(
        table.action == "model.query",
        table.object == f"model/{family}",
        table.time >= since,
        table.time < until,
    )
    for decision, raw in session.execute(statement):
        details = json.loads(raw or "{}")
        row = rows[str(details.get("variant") or "-")]
        if decision == "allow":
            row["answered"] += 1
            row["prompt_tokens"] += int(details.get("prompt_tokens") or 0)
            row["completion_tokens"] += int(details.get("completion_tokens") or 0)
            if isinstance(details.get("latency_ms"), int | float):
                row["latencies"].append(float(details["latency_ms"]))
            route = str(details.get("route") or "")
            row["routes"][route.split(":")[0] or "unrecorded"] += 1
        elif decision == "failed":
            row["failed"] += 1
        else:
            row["refused"] += 1
    report = []
    for name, row in sorted(rows.items()):
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        price = (
            routing.cost_of(family_routing, name, weights_bytes.get(name, 0))
            if name != "-"
            else 0.0
        )
        latencies = row.pop("latencies")
        report.append(
            {
                "variant": name,
                **{k: v for k, v in row.items() if k != "routes"},
                "routes": dict(row["routes"]),
                "latency_ms_p50": _percentile(latencies, 0.5),
                "latency_ms_p95": _percentile(latencies, 0.95),
                "price_per_1k_tokens": round(price, 6),
                "cost": round(tokens / 1000 * price, 6),
            }
        )
    return {
        "family": family,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "variants": report,
    }
