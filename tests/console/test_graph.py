"""The lineage graph: one node per step of the path, escaped text, links to approvals."""

from __future__ import annotations

from governance.console.graph import lineage_nodes, lineage_svg


def lineage(datasets: int, parent: bool) -> dict:
    return {
        "family": "tax-assistant",
        "version": 3,
        "tax_year": 2027,
        "status": "production",
        "base_model": {"name": "tiny<llama>", "weights_sha256": "ab" * 32},
        "parent": {"version": 2, "uid": "p"} if parent else None,
        "datasets": [
            {
                "dataset": f"returns-{i}",
                "version": i,
                "content_hash": "cd" * 32,
                "scan": {"receipt": 10 + i, "verdict": "redacted"},
                "approval": {
                    "request": f"{i:032x}",
                    "state": "approved",
                    "decisions": [{"reviewer": "priya"}, {"reviewer": "lee"}],
                },
            }
            for i in range(1, datasets + 1)
        ],
    }


def test_every_dataset_version_gets_its_scan_and_approval_and_the_parent_comes_last():
    nodes, edges = lineage_nodes(lineage(2, parent=True), "/console/models/tax-assistant")
    assert [n.column for n in nodes].count(1) == 2 and len(nodes) == 2 + 3 * 2 + 1
    assert len(edges) == 1 + 3 * 2 + 1
    parent = nodes[-1]
    assert parent.column == 5 and parent.href == "/console/models/tax-assistant/versions/2"
    nodes, edges = lineage_nodes(lineage(1, parent=False), "/x")
    assert all(n.column != 5 for n in nodes) and len(edges) == 4


def test_the_svg_escapes_names_and_links_each_approval():
    svg = str(lineage_svg(lineage(2, parent=False), "/console/models/tax-assistant"))
    assert "tiny&lt;llama&gt;" in svg and "tiny<llama>" not in svg
    assert svg.count('<a href="/console/approvals/') == 2
    assert 'role="img"' in svg and '<title id="lineage-title">' in svg
