"""Small bar charts for the instance page, drawn on the server as inline SVG.

The instance page shows three series at a glance: how long users saw the
maintenance page (503) in each recent swap, and each recent backup's window
and size. A chart is one bar per item, oldest on the left, with its largest
value written on the axis and every bar's value in its own `<title>`; the
tables on the same page remain the text alternative. No script, stylesheet or
font comes from elsewhere, and the size is bounded (`MAX_BARS` newest items).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

MAX_BARS = 50
WIDTH = 360
HEIGHT = 90
LEFT = 56  # room for the largest value's label
BOTTOM = 16
MAX_STEP = 28  # px per bar at most: a handful of bars stay bars, not blocks


@dataclass(frozen=True)
class Point:
    """One bar: what it stands for (e.g. "deployment 12") and its value, None when unknown."""

    label: str
    value: float | None


def seconds(value: float) -> str:
    """Seconds as the charts label them."""
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def size(value: float) -> str:
    """Bytes in binary units, as the charts label them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def bars(
    points: Sequence[Point], title: str, chart_id: str, unit: Callable[[float], str]
) -> Markup:
    """`points` (oldest first) as an inline `<svg role="img">` bar chart titled `title`."""
    shown = list(points)[-MAX_BARS:]
    known = [p.value for p in shown if p.value is not None]
    top = max(known, default=0.0) or 1.0
    plot_w = WIDTH - LEFT - 4
    plot_h = HEIGHT - BOTTOM - 6
    step = min(plot_w / max(len(shown), 1), MAX_STEP)
    bar_w = max(step * 0.7, 1)
    if known:
        low, high = min(known), max(known)
        desc = (
            f"{len(shown)} values, oldest first, from {unit(low)} to {unit(high)}; "
            f"the latest is {unit(known[-1])}."
        )
    else:
        desc = "No values yet."
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id={quoteattr(chart_id)} class="chart" '
        f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" '
        'font-size="11">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<line x1="{LEFT}" y1="6" x2="{LEFT}" y2="{6 + plot_h}" stroke="#555"/>',
        f'<line x1="{LEFT}" y1="{6 + plot_h}" x2="{WIDTH - 4}" y2="{6 + plot_h}" stroke="#555"/>',
        f'<text x="{LEFT - 4}" y="14" text-anchor="end" fill="#222">{escape(unit(top))}</text>',
        f'<text x="{LEFT - 4}" y="{6 + plot_h}" text-anchor="end" fill="#222">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 2}" fill="#222">oldest</text>',
        f'<text x="{WIDTH - 4}" y="{HEIGHT - 2}" text-anchor="end" fill="#222">newest</text>',
    ]
    for i, p in enumerate(shown):
        x = round(LEFT + 2 + i * step, 2)
        if p.value is None:
            # unknown (a run still going or failed before the figure): a hollow stub
            out.append(
                f'<g class="bar unknown" data-label={quoteattr(p.label)}>'
                f'<rect x="{x}" y="{2 + plot_h}" width="{round(bar_w, 2)}" height="4" '
                f'fill="none" stroke="#555"/><title>{escape(p.label)}: unknown</title></g>'
            )
            continue
        h = round(p.value / top * plot_h, 2)
        out.append(
            f'<g class="bar" data-label={quoteattr(p.label)} data-value="{p.value:.6f}">'
            f'<rect x="{x}" y="{round(6 + plot_h - h, 2)}" width="{round(bar_w, 2)}" '
            f'height="{max(h, 0.5)}" fill="#6d8fb3" stroke="#1f3f66"/>'
            f"<title>{escape(p.label)}: {escape(unit(p.value))}</title></g>"
        )
    out.append("</svg>")
    return Markup("".join(out))
