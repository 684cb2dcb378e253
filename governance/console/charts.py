"""Small charts drawn as SVG on the server: no script, no external assets, readable as text.

Each chart carries a `<title>` and an `aria-label` and every mark a `<title>` with its value,
so a screen reader (or a reviewer without the picture) gets the same numbers; the pages keep
the tables beside them.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

# Okabe and Ito's colours, told apart with any colour vision; past seven series the colours
# repeat with a dash pattern of their own, so no two series ever look the same.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
DASHES = ("", "7 3", "2 2")
LEGEND_COLUMNS = 2
LEGEND_ROW = 16
# With this few positions on the x axis, each point is labelled with its value too.
LABELLED_POINTS = 4
WIDTH = 640
BAR_HEIGHT = 18
GAP = 6
LABEL_WIDTH = 180


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def bar_chart(title: str, items: Sequence[tuple[str, float]]) -> Markup:
    """Horizontal bars, one per (label, value), longest first as given."""
    if not items:
        return Markup("")
    top = max(v for _, v in items) or 1
    height = len(items) * (BAR_HEIGHT + GAP) + GAP
    span = WIDTH - LABEL_WIDTH - 70
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} '
        f'{height}" width="100%" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}'
        "</title>"
    ]
    for index, (label, value) in enumerate(items):
        y = GAP + index * (BAR_HEIGHT + GAP)
        width = max(1, round(span * value / top))
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 13}" text-anchor="end" font-size="12">'
            f"{escape(label)}</text>"
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width}" height="{BAR_HEIGHT}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {_number(value)}</title></rect>'
            f'<text x="{LABEL_WIDTH + width + 6}" y="{y + 13}" font-size="12">'
            f"{_number(value)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and title above is escaped


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    marked: int | None = None,
    marked_label: str = "",
    height: int = 220,
    from_zero: bool = False,
) -> Markup:
    """Lines over a common x axis (gaps where a value is None), with one x position marked
    (the version in production, say) by a dashed line."""
    values = [v for points in series.values() for v in points if v is not None]
    if not x_labels or not values:
        return Markup("")
    names = list(series)
    legend_rows = -(-len(names) // LEGEND_COLUMNS)
    height += legend_rows * LEGEND_ROW
    low, high = min(values), max(values)
    if from_zero:  # counts: the axis starts at 0 so bar-like heights compare honestly
        low, high = min(0, low), max(0, high)
    if high == low:  # one value: a band around it, so the point sits mid-chart
        pad = abs(high) * 0.1 or 1.0
        high, low = high + pad, low - pad
    left, right, top = 56, WIDTH - 24, 16
    bottom = height - 34 - legend_rows * LEGEND_ROW
    label_points = len(x_labels) <= LABELLED_POINTS
    step = (right - left) / max(1, len(x_labels) - 1)

    def x(index: int) -> float:
        return left + index * step

    def y(value: float) -> float:
        return bottom - (value - low) / (high - low) * (bottom - top)

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} '
        f'{height}" width="100%" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}'
        "</title>",
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">'
        f"{_number(high)}</text>",
        f'<text x="{left - 6}" y="{bottom}" text-anchor="end" font-size="11">{_number(low)}</text>',
    ]
    every = -(-len(x_labels) // 12)  # at most about a dozen axis labels, so they never overlap
    for index, label in enumerate(x_labels):
        if index % every and index != len(x_labels) - 1:
            continue
        parts.append(
            f'<text x="{x(index):.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
            f"{escape(label)}</text>"
        )
    if marked is not None and 0 <= marked < len(x_labels):
        parts.append(
            f'<line x1="{x(marked):.1f}" y1="{top}" x2="{x(marked):.1f}" y2="{bottom}" '
            f'stroke="#333" stroke-dasharray="4 3"><title>{escape(marked_label)}</title></line>'
            f'<text x="{x(marked) + 4:.1f}" y="{top + 10}" font-size="11">'
            f"{escape(marked_label)}</text>"
        )
    column = (right - left) / LEGEND_COLUMNS
    for number, (name, points) in enumerate(series.items()):
        color = PALETTE[number % len(PALETTE)]
        dash = DASHES[(number // len(PALETTE)) % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        path = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points) if v is not None]
        if len(path) > 1:
            parts.append(
                f'<polyline points="{" ".join(path)}" fill="none" stroke="{color}" '
                f'stroke-width="2"{dashed}/>'
            )
        for i, value in enumerate(points):
            if value is not None:
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="4" fill="{color}">'
                    f"<title>{escape(name)} at {escape(x_labels[i])}: {_number(value)}</title>"
                    "</circle>"
                )
                if label_points:
                    parts.append(
                        f'<text x="{x(i) + 7:.1f}" y="{y(value) - 6:.1f}" font-size="10" '
                        f'fill="{color}">{_number(value)}</text>'
                    )
        # The legend sits under the plot, in columns, so no name is cut at the edge.
        row, col = divmod(number, LEGEND_COLUMNS)
        lx, ly = left + col * column, bottom + 34 + row * LEGEND_ROW
        shown = name if len(name) <= 40 else name[:39] + "…"
        parts.append(
            f'<line x1="{lx:.1f}" y1="{ly - 4}" x2="{lx + 18:.1f}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="2"{dashed}/>'
            f'<text x="{lx + 24:.1f}" y="{ly}" font-size="12"><title>{escape(name)}</title>'
            f"{escape(shown)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and title above is escaped
