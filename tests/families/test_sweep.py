# ruff: noqa: F811 (pytest fixtures imported from tests/pipeline.py)
"""Size sweeps: the same approved data on three tiny bases of different widths, trained by a
real worker, gated, and compared; the table marks the smallest base within tolerance."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from governance.audit.service import Actor
from governance.db import get_db
from governance.families.intake import register_base_model
from governance.families.models import ModelVersion
from tests.families.test_engineer_cli import govern, run_worker
from tests.pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    app,
    approve_base,
    approve_data,
    call,
    live,
    scanner,
    world,
)


def tiny_base(app, tmp_path, name: str, hidden_size: int) -> None:
    path = tmp_path / name
    subprocess.run(
        [sys.executable, "-m", "trainers.tiny", str(path), "--hidden-size", str(hidden_size)],
        check=True,
        capture_output=True,
    )
    with get_db(app).unit_of_work() as session:
        register_base_model(
            session,
            name,
            path,
            source=f"generated:trainers.tiny hidden_size={hidden_size}",
            license="CC0-1.0",
            actor=Actor("admin"),
        )


def sweep_body(world, bases, **extra):
    return {
        "bases": bases,
        "tax_year": 2025,
        "datasets": [{"dataset_id": world["dataset"], "version": 1}],
        **extra,
    }


def test_a_sweep_over_three_bases_keeps_the_smallest_good_enough(
    app, client, world, live, tmp_path
):
    approve_data(client, world)
    tiny_base(app, tmp_path, "tiny-narrow", 32)
    tiny_base(app, tmp_path, "tiny-wide", 96)
    bases = ["tiny-narrow", "tiny-llama", "tiny-wide"]

    def start(names, **extra):
        path = f"/api/v1/models/{FAMILY}/sweeps"
        return call(client, "morgan", world, "POST", path, json=sweep_body(world, names, **extra))

    # A base not yet approved for the domain: refused, and no version is started.
    status, body = start(bases)
    assert status == 409, body
    with get_db(app).unit_of_work() as session:
        assert session.exec(sa.select(sa.func.count()).select_from(ModelVersion)).one()[0] == 0
    status, body = start(["tiny-llama", "tiny-llama"])
    assert status == 422 and "bases" in str(body["error"]), body

    for name in ("tiny-narrow", "tiny-wide"):
        approve_base(client, world, name, "consumer-tax")
    status, sweep = start(bases, tolerance=0.5)
    assert status == 201, sweep
    assert [r["base_model"] for r in sweep["rows"]] == bases
    assert not sweep["complete"] and sweep["chosen"] is None
    # Someone of another domain sees no such family.
    status, _ = call(client, "sam", world, "GET", f"/api/v1/models/{FAMILY}/sweeps/{sweep['uid']}")
    assert status == 404

    for _ in bases:
        run_worker(live, world)
    status, table = call(
        client, "jordan", world, "GET", f"/api/v1/models/{FAMILY}/sweeps/{sweep['uid']}"
    )
    assert status == 200 and table["complete"], table
    rows = {r["base_model"]: r for r in table["rows"]}
    assert all(r["status"] == "evaluated" for r in rows.values()), rows
    sizes = [rows[b]["parameters"] for b in bases]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert all(
        r["score"] > 0 and r["ms_per_token"] > 0 and r["memory_bytes"] > 0 for r in rows.values()
    )
    # The table follows its rule: the best is kept, and the chosen base is the smallest kept.
    best = min(r["score"] for r in rows.values())  # bits per byte: lower is better
    kept = [b for b in bases if rows[b]["score"] <= best + 0.5 * best]
    assert [b for b in bases if rows[b]["within_tolerance"]] == kept
    assert table["chosen"] == kept[0] and rows[kept[0]]["chosen"]

    # The command line writes the same table.
    out = tmp_path / "sweep.md"
    written = govern(
        live, world["morgan"], "family", "sweep-table", FAMILY, sweep["uid"], "--out", str(out)
    )
    assert written.returncode == 0, written.stderr
    text = out.read_text()
    assert f"| {table['chosen']} |" in text and "**chosen**" in text
    status, listed = call(client, "jordan", world, "GET", f"/api/v1/models/{FAMILY}/sweeps")
    assert [s["uid"] for s in listed["items"]] == [sweep["uid"]]

    # The console's family page shows the table and the chart, the chosen base marked.
    from tests.console.conftest import sign_in

    sign_in(client, world["jordan"])
    page = client.get(f"/console/models/{FAMILY}")
    assert page.status_code == 200
    assert 'data-testid="sweep-chart"' in page.text and "<svg" in page.text
    assert f"keep <strong>{table['chosen']}</strong>" in page.text
    # Every version's page shows its harness scores and the canaries' exposure.
    version_page = client.get(f"/console/models/{FAMILY}/versions/{rows['tiny-wide']['version']}")
    assert 'data-testid="scores-table"' in version_page.text
    assert "governance_perplexity / bits_per_byte" in version_page.text
    assert "memorization:" in version_page.text
