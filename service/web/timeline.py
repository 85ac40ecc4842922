"""A deployment's journaled steps drawn as a timeline: an inline SVG made on the server.

The deployment page opens to answer three questions: where did the time go,
where did it fail, and how long did users see the maintenance page (the 503
window). One bar per step sits on a common time axis, in seconds from the
first step; the window is a hatched band from the start of the step that turns
the maintenance page on to the end of the step after which an instance serves
again; a failed step is hatched, outlined heavier and says "failed" in words;
a restart of the worker between an interrupted attempt and its recovery is a
dashed line labelled as such. Nothing depends on colour, fonts, CSS or
JavaScript from elsewhere: the SVG carries its own attributes, and the page
keeps the step table as its text alternative. Past `MAX_BARS` steps the rest
are left to that table, so the picture stays a bounded size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

MAX_BARS = 150
WIDTH = 760
LABEL_W = 210  # the step names' column
PLOT_X = LABEL_W + 10
PLOT_W = WIDTH - PLOT_X - 20
ROW_H = 20
BAR_H = 14
AXIS_H = 34  # ticks and the window's label above the first bar

# the steps that turn the maintenance page on (swap, backup), and those whose end turns
# it off for users again: the new instance takes the traffic, or the page goes off
WINDOW_OPENS = frozenset({"maintenance_old", "maintenance_on"})
WINDOW_CLOSES = frozenset(
    {"switch_traffic", "maintenance_off", "undo:maintenance_off", "rollback:maintenance_off_old"}
)
FAILED = frozenset({"failed", "error"})
UNFINISHED = "started"  # a step the journal saw begin and never end: the worker died in it
RECOVERED = "recovered"


class StepLike(Protocol):
    """What the timeline reads of a step: the `steps` row or a `HistoryStep`."""

    name: str
    status: str
    started_at: float
    finished_at: float | None
    log: str


@dataclass(frozen=True)
class Bar:
    """One step on the axis: seconds from the first step's start, and its length."""

    name: str
    status: str
    offset: float
    seconds: float
    log: str

    @property
    def failed(self) -> bool:
        """Whether the step failed (or crashed with swapyard's own error)."""
        return self.status in FAILED


@dataclass(frozen=True)
class Window:
    """The maintenance page's time for users, in seconds on the axis; `closed` False while
    the journal shows it still on (the band then runs to the last step's end)."""

    start: float
    end: float
    closed: bool

    @property
    def seconds(self) -> float:
        """How long the window lasted (so far, when it is not closed)."""
        return self.end - self.start


@dataclass
class Timeline:
    """The steps laid on one axis, with the 503 windows and the worker's restarts."""

    bars: list[Bar]
    total: float
    windows: list[Window] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)

    @property
    def failures(self) -> list[Bar]:
        """The failed steps, in order, for the messages shown under the chart."""
        return [b for b in self.bars if b.failed]

    @property
    def window_seconds(self) -> float:
        """All the time users saw the maintenance page, summed over the windows."""
        return sum(w.seconds for w in self.windows)


def build(steps: Sequence[StepLike]) -> Timeline:
    """Lay `steps` (in journal order) on an axis starting at the earliest step's start."""
    if not steps:
        return Timeline([], 0.0)
    origin = min(s.started_at for s in steps)
    bars = [
        Bar(
            s.name,
            str(s.status),
            s.started_at - origin,
            max(0.0, (s.finished_at or s.started_at) - s.started_at),
            s.log or "",
        )
        for s in steps
    ]
    total = max(b.offset + b.seconds for b in bars)
    return Timeline(bars, total, _windows(bars, total), _restarts(bars))


def _windows(bars: list[Bar], total: float) -> list[Window]:
    out: list[Window] = []
    start: float | None = None
    for b in bars:
        if start is None and b.name in WINDOW_OPENS:
            start = b.offset
        elif start is not None and b.name in WINDOW_CLOSES and b.status == "done":
            out.append(Window(start, b.offset + b.seconds, True))
            start = None
    if start is not None:
        out.append(Window(start, total, False))
    return out


def _restarts(bars: list[Bar]) -> list[float]:
    """Where a worker restart falls: before each `recovered` step's swap steps resumed.

    The interrupted attempt ends at a step left `started` (the worker died in it),
    and its recovery begins with the next step; without such a step (the worker died
    between two steps) the widest gap between consecutive starts before the
    `recovered` step is taken.
    """
    out: list[float] = []
    previous = 0
    for i, b in enumerate(bars):
        if b.name != RECOVERED:
            continue
        block = bars[previous:i]
        previous = i + 1
        if len(block) < 2:
            continue
        cut = next(
            (j + 1 for j in range(len(block) - 2, -1, -1) if block[j].status == UNFINISHED),
            None,
        )
        if cut is None:
            gaps = [block[j + 1].offset - block[j].offset for j in range(len(block) - 1)]
            cut = gaps.index(max(gaps)) + 1
        out.append(block[cut].offset)
    return out


def tick_step(total: float) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) for about five ticks."""
    if total <= 0:
        return 1.0
    raw = total / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _seconds(value: float) -> str:
    return f"{value:.3g} s" if value < 10 else f"{value:.0f} s"


def svg(timeline: Timeline, title: str) -> Markup:
    """The timeline as an inline `<svg role="img">` with a title and a description."""
    shown = timeline.bars[:MAX_BARS]
    hidden = len(timeline.bars) - len(shown)
    rows = len(shown) + (1 if hidden else 0)
    height = AXIS_H + rows * ROW_H + 24
    total = timeline.total or 1.0
    scale = PLOT_W / total

    def x(t: float) -> float:
        return round(PLOT_X + t * scale, 2)

    failed = timeline.failures
    summary = [f"{len(timeline.bars)} steps over {_seconds(timeline.total)}"]
    if timeline.windows:
        summary.append(f"maintenance page (503) on for {_seconds(timeline.window_seconds)}")
    if failed:
        summary.append("failed at " + ", ".join(b.name for b in failed))
    if timeline.restarts:
        summary.append(f"worker restarted {len(timeline.restarts)} time(s), then recovered")
    desc = "; ".join(summary) + ". The step table below gives every step's start and length."

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" role="img" '
        f'aria-labelledby="timeline-title timeline-desc" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<title id="timeline-title">{escape(title)}</title>',
        f'<desc id="timeline-desc">{escape(desc)}</desc>',
        "<defs>"
        '<pattern id="hatch-failed" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f6d5d5"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#8b0000" stroke-width="3"/></pattern>'
        '<pattern id="hatch-window" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(-45)"><rect width="8" height="8" fill="#fff4d6"/>'
        '<line x1="0" y1="0" x2="0" y2="8" stroke="#c9a23a" stroke-width="1"/></pattern>'
        "</defs>",
    ]
    plot_bottom = AXIS_H + rows * ROW_H
    for w in timeline.windows:
        label = f"503 window {_seconds(w.seconds)}" + ("" if w.closed else " (still on)")
        out.append(
            f'<g class="window" data-start="{w.start:.6f}" data-end="{w.end:.6f}">'
            f'<rect x="{x(w.start)}" y="{AXIS_H - 14}" width="{max(x(w.end) - x(w.start), 1)}" '
            f'height="{plot_bottom - AXIS_H + 14}" fill="url(#hatch-window)" '
            f'stroke="#6b5200" stroke-dasharray="4 2"/>'
            f'<text x="{x(w.start) + 3}" y="{AXIS_H - 4}" fill="#4a3800">{escape(label)}</text>'
            "</g>"
        )
    step = tick_step(timeline.total)
    ticks = int(timeline.total / step + 1e-9) + 1
    out.append('<g class="axis" fill="#333">')
    for i in range(ticks):
        t = i * step
        out.append(
            f'<line x1="{x(t)}" y1="{AXIS_H - 16}" x2="{x(t)}" y2="{plot_bottom}" '
            f'stroke="#ccc"/><text x="{x(t)}" y="12" text-anchor="middle">{t:g} s</text>'
        )
    out.append("</g>")
    for i, b in enumerate(shown):
        y = AXIS_H + i * ROW_H
        name = b.name + (" — failed" if b.failed else "")
        weight = ' font-weight="bold"' if b.failed else ""
        fill, stroke, width = (
            ("url(#hatch-failed)", "#8b0000", 3)
            if b.failed
            else (("#9ab8d8", "#1f3f66", 1) if b.status == "done" else ("#e0e0e0", "#444", 1))
        )
        out.append(
            f'<g class="bar{" failed" if b.failed else ""}" data-step={quoteattr(b.name)} '
            f'data-status={quoteattr(b.status)} data-offset="{b.offset:.6f}" '
            f'data-seconds="{b.seconds:.6f}">'
            f'<text x="{LABEL_W}" y="{y + BAR_H - 2}" text-anchor="end" fill="#111"{weight}>'
            f"{escape(name)}</text>"
            f'<rect x="{x(b.offset)}" y="{y}" width="{max(round(b.seconds * scale, 2), 1)}" '
            f'height="{BAR_H}" fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>'
            f"<title>{escape(name)}: from {b.offset:.3f} s, took {b.seconds:.3f} s</title>"
            "</g>"
        )
    if hidden:
        y = AXIS_H + len(shown) * ROW_H + BAR_H - 2
        out.append(
            f'<text x="{LABEL_W}" y="{y}" text-anchor="end" fill="#111">'
            f"{hidden} more steps: see the table</text>"
        )
    for t in timeline.restarts:
        out.append(
            f'<g class="restart" data-at="{t:.6f}">'
            f'<line x1="{x(t)}" y1="{AXIS_H - 16}" x2="{x(t)}" y2="{plot_bottom + 4}" '
            f'stroke="#000" stroke-width="2" stroke-dasharray="6 3"/>'
            f'<text x="{x(t) + 3}" y="{plot_bottom + 16}" fill="#000">worker restarted</text>'
            "</g>"
        )
    out.append("</svg>")
    return Markup("".join(out))
