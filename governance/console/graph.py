"""The lineage of a model version drawn as SVG, on the server, with no script.

Columns, left to right: base model, dataset versions, their scan receipts, their approvals, the
version itself, and the version it replaced. Each dataset version takes a row; the base model sits
on row 0 with the version, so no edge crosses a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

COLUMNS = ("Base model", "Dataset versions", "PII scans", "Approvals", "Model version", "Parent")
NODE_WIDTH, NODE_HEIGHT = 168, 54
COLUMN_GAP, ROW_GAP = 36, 22
TOP = 34  # room for the column headings

GOOD = {"pass", "redacted", "approved", "production", "evaluated", "retired"}
BAD = {"blocked", "failed", "rejected", "tainted", "invalidated", "expired", "deleted"}


@dataclass
class Node:
    column: int
    row: int
    title: str
    detail: str
    state: str | None = None
    href: str | None = None

    @property
    def x(self) -> int:
        return self.column * (NODE_WIDTH + COLUMN_GAP) + 4

    @property
    def y(self) -> int:
        return TOP + self.row * (NODE_HEIGHT + ROW_GAP)

    @property
    def tone(self) -> str:
        if self.state in BAD:
            return "bad"
        if self.state in GOOD:
            return "good"
        return "plain"


def _clip(text: Any, width: int = 24) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def lineage_nodes(doc: dict[str, Any], family_href: str) -> tuple[list[Node], list[tuple]]:
    """The nodes and edges of one version's lineage document."""
    nodes: list[Node] = []
    edges: list[tuple[Node, Node]] = []
    base = Node(
        0, 0, doc["base_model"]["name"], "sha256 " + _clip(doc["base_model"]["weights_sha256"], 14)
    )
    version = Node(
        4,
        0,
        f"{doc['family']} v{doc['version']}",
        f"tax year {doc['tax_year']} · {doc['status']}",
        doc["status"],
    )
    nodes += [base, version]
    edges.append((base, version))
    for row, used in enumerate(doc["datasets"], start=1):
        scan, approval = used["scan"], used["approval"]
        data = Node(
            1,
            row,
            f"{_clip(used.get('dataset', 'dataset'), 16)} v{used.get('version')}",
            "content " + _clip(used.get("content_hash"), 14),
        )
        receipt = Node(
            2,
            row,
            f"receipt {scan['receipt']}",
            f"verdict {scan['verdict']}",
            scan["verdict"],
        )
        reviewers = ", ".join(d["reviewer"] for d in approval["decisions"]) or "no decisions"
        consent = Node(
            3,
            row,
            f"request {_clip(approval['request'], 10)}",
            f"{approval['state']} · {_clip(reviewers, 18)}",
            approval["state"],
            f"/console/approvals/{approval['request']}" if approval.get("request") else None,
        )
        nodes += [data, receipt, consent]
        edges += [(data, receipt), (receipt, consent), (consent, version)]
    if doc.get("parent"):
        parent = Node(
            5,
            0,
            f"{doc['family']} v{doc['parent']['version']}",
            "replaced by this version",
            href=f"{family_href}/versions/{doc['parent']['version']}",
        )
        nodes.append(parent)
        edges.append((version, parent))
    return nodes, edges


def lineage_svg(doc: dict[str, Any], family_href: str) -> Markup:
    """Render a lineage document as an accessible SVG figure."""
    nodes, edges = lineage_nodes(doc, family_href)
    rows = max(node.row for node in nodes) + 1
    width = len(COLUMNS) * (NODE_WIDTH + COLUMN_GAP)
    height = TOP + rows * (NODE_HEIGHT + ROW_GAP)
    title = f"Lineage of {doc['family']} version {doc['version']}"
    description = (
        f"Base model {doc['base_model']['name']}; {len(doc['datasets'])} dataset version(s), "
        f"each with its PII scan and approval, lead to version {doc['version']}"
        + (f", which replaced version {doc['parent']['version']}." if doc.get("parent") else ".")
    )
    parts = [
        f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-labelledby="lineage-title lineage-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="lineage-title">{escape(title)}</title>',
        f'<desc id="lineage-desc">{escape(description)}</desc>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
    ]
    for index, heading in enumerate(COLUMNS):
        x = index * (NODE_WIDTH + COLUMN_GAP) + 4 + NODE_WIDTH / 2
        parts.append(f'<text class="heading" x="{x}" y="18" text-anchor="middle">{heading}</text>')
    for source, target in edges:
        x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT / 2
        x2, y2 = target.x, target.y + NODE_HEIGHT / 2
        parts.append(
            f'<line class="edge" x1="{x1}" y1="{y1}" x2="{x2 - 2}" y2="{y2}" '
            'marker-end="url(#arrow)"/>'
        )
    for node in nodes:
        box = (
            f'<g class="node {node.tone}"><title>{escape(node.title)}: {escape(node.detail)}'
            f'</title><rect x="{node.x}" y="{node.y}" width="{NODE_WIDTH}" '
            f'height="{NODE_HEIGHT}" rx="6"/>'
            f'<text x="{node.x + 10}" y="{node.y + 22}" class="title">{escape(node.title)}</text>'
            f'<text x="{node.x + 10}" y="{node.y + 42}">{escape(node.detail)}</text></g>'
        )
        if node.href:
            box = f'<a href="{escape(node.href)}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    # Every text and attribute above went through escape(); the rest is fixed markup.
    return Markup("".join(parts))  # noqa: S704
