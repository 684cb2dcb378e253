"""The console's SVG charts: escaped text, honest gaps, readable axes, and per-day counts."""

from __future__ import annotations

import re
from collections import Counter

from sqlmodel import select

from governance.audit.models import AuditEntry
from governance.console.charts import bar_chart, line_chart
from governance.db import get_db
from governance.flows.access_reports import activity_by_day
from governance.flows.log_export import EntryFilter
from tests.console.conftest import sign_in


def test_labels_are_escaped_and_every_bar_carries_its_value():
    svg = str(bar_chart("Findings <b>", [("<script>alert(1)</script>", 12), ("US_SSN", 3.5)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'aria-label="Findings &lt;b&gt;"' in svg
    assert svg.count("<rect") == 2
    assert "US_SSN: 3.5</title>" in svg and ": 12</title>" in svg
    widths = [int(w) for w in re.findall(r'<rect [^>]*width="(\d+)"', svg)]
    assert widths[0] > widths[1] > 0  # proportional to the values
    assert str(bar_chart("nothing", [])) == ""


def test_a_line_chart_leaves_gaps_for_missing_values_and_marks_production():
    svg = str(
        line_chart(
            "Metrics",
            ["v1", "v2", "v3"],
            {"eval_loss": [2.0, None, 1.5], "accuracy": [None, 0.5, 0.7]},
            marked=1,
            marked_label="production: v2",
        )
    )
    assert svg.count("<circle") == 4  # one per known value, none for the gaps
    assert svg.count("<polyline") == 2
    assert "eval_loss at v3: 1.5" in svg and "production: v2" in svg
    assert 'stroke-dasharray="4 3"' in svg
    assert str(line_chart("empty", ["v1"], {"loss": [None]})) == ""


def test_long_axes_show_about_a_dozen_labels():
    days = [f"d{i:02}" for i in range(40)]
    svg = str(line_chart("Busy", days, {"n": list(range(40))}))
    shown = re.findall(r'text-anchor="middle" font-size="11">(d\d\d)</text>', svg)
    assert 8 <= len(shown) <= 15 and shown[-1] == "d39"


def test_the_audit_page_counts_entries_per_day_in_the_database(app, client, console_world):
    with get_db(app).session() as session:
        entries = session.exec(select(AuditEntry)).all()
        days, series, total = activity_by_day(session, EntryFilter(principal="morgan"))
        everything = activity_by_day(session, EntryFilter())
    morgan = [e for e in entries if e.principal == "morgan"]
    assert total == len(morgan) > 0
    by_day = Counter(e.time.strftime("%Y-%m-%d") for e in morgan)
    assert days == sorted(by_day)
    assert [sum(n) for n in zip(*series.values(), strict=True)] == [by_day[d] for d in days]
    assert sum(series["allow"]) == sum(e.decision == "allow" for e in morgan)
    assert everything[2] == len(entries)

    sign_in(client, console_world["audrey"])
    page = client.get("/console/audit?principal=morgan")
    assert f"<strong>{len(morgan)}</strong> entr" in page.text
    assert 'aria-label="Audit entries per day (UTC) matching these filters"' in page.text


def test_counts_start_at_zero():
    axis = r'text-anchor="end" font-size="11">([^<]+)</text>'
    counted = str(line_chart("Counts", ["a", "b"], {"n": [5, 7]}, from_zero=True))
    assert re.findall(axis, counted) == ["7", "0"]
    measured = str(line_chart("Loss", ["a", "b"], {"loss": [5, 7]}))
    assert re.findall(axis, measured) == ["7", "5"]


def test_nine_series_each_have_a_style_and_a_legend_entry_that_fits():
    series = {f"entity type {i} with a long name to see it whole": [i, i + 1] for i in range(9)}
    svg = str(line_chart("Findings", ["v1", "v2"], series))
    styles = set(
        re.findall(
            r'<polyline [^>]*stroke="(#[0-9a-f]{6})"(?: stroke-width="2")?'
            r'(?: stroke-dasharray="([^"]+)")?',
            svg,
        )
    )
    assert len(styles) == 9  # colour and dash together tell every series apart
    for name in series:  # each name in the legend, under the plot (none cut at the edge)
        assert f"<title>{name}</title>" in svg


def test_a_few_points_are_labelled_with_their_values():
    few = str(line_chart("One day", ["2026-12-06"], {"allow": [12], "deny": [3]}))
    assert 'font-size="10" fill="#0072b2">12</text>' in few
    many = str(line_chart("Busy", [f"d{i}" for i in range(10)], {"n": list(range(10))}))
    assert 'font-size="10"' not in many


def test_a_sections_leaves_share_a_panel_only_when_they_are_shares():
    from types import SimpleNamespace

    from governance.console.pages.models import metrics_charts

    versions = [
        SimpleNamespace(
            id=i,
            number=i,
            metrics={
                "eval_loss": 2.0 - i / 10,
                "multiple_choice": {"acc": 0.5, "acc_norm": 0.6},
                "serving": {"ms_per_token": 12.0, "parameters": 119616, "weight_bytes": 478464},
            },
        )
        for i in (1, 2)
    ]
    panels = [name for name, _chart in metrics_charts("f", versions, None)]
    assert "multiple_choice" in panels and "serving" not in panels
    assert {"serving.ms_per_token", "serving.parameters", "serving.weight_bytes"} <= set(panels)
