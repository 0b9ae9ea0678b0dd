"""The overview's charts as server-rendered SVG (issue 17): geometry computed here, markup in
``templates/chart.html``; no script, nothing fetched, so the strict CSP holds and a chart is
there on first paint. Each chart has a text summary for screen readers, and the page a table
of the same numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mcpexec.dashboard.format import percent, seconds
from mcpexec.history import HistoryPoint

WIDTH, HEIGHT = 480.0, 170.0
LEFT, RIGHT, TOP, BOTTOM = 62.0, 8.0, 12.0, 26.0


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    css: str
    #: SVG ``points`` of each unbroken stretch (an hour without a value breaks the line).
    stretches: list[str]
    dots: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    title: str
    summary: str
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    width: float = WIDTH
    height: float = HEIGHT


def _x(i: int, n: int) -> float:
    """The centre of hour ``i`` of ``n``."""
    return LEFT + (i + 0.5) * (WIDTH - LEFT - RIGHT) / n


def _y(value: float, top: float) -> float:
    return TOP + (1 - value / top) * (HEIGHT - TOP - BOTTOM) if top else HEIGHT - BOTTOM


def _nice(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^k at or above ``value`` (an axis' top)."""
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    return next(step * base for step in (1, 2, 2.5, 5, 10) if step * base >= value * 0.999999)


def _x_ticks(points: Sequence[HistoryPoint]) -> list[tuple[float, str, str]]:
    """The first, middle and last hour: (x, label, text-anchor); the last ends at its hour
    so that it is not cut at the chart's edge."""
    n = len(points)
    picks = sorted({0, n // 2, n - 1})
    return [
        (_x(i, n), points[i].hour.strftime("%H:00"), "end" if i == n - 1 and n > 1 else "middle")
        for i in picks
    ]


def _y_ticks(top: float, label: Callable[[float], str]) -> list[tuple[float, str]]:
    return [(_y(v, top), label(v)) for v in (0.0, top / 2, top)]


def throughput(points: Sequence[HistoryPoint]) -> Chart:
    """Runs finished per hour, stacked by outcome."""
    n = len(points)
    top = _nice(max((p.finished for p in points), default=0))
    width = (WIDTH - LEFT - RIGHT) / n * 0.8
    bars = []
    for i, p in enumerate(points):
        base = 0
        for count, css in ((p.completed, "ok"), (p.failed, "fail"), (p.cancelled, "stop")):
            if count:
                y0, y1 = _y(base, top), _y(base + count, top)
                title = f"{p.hour:%H:00} {css_name(css)}: {count}"
                bars.append(Bar(_x(i, n) - width / 2, y1, width, y0 - y1, css, title))
                base += count
    total = sum(p.finished for p in points)
    peak = max(points, key=lambda p: p.finished)
    return Chart(
        key="throughput",
        title="Runs finished per hour",
        summary=f"{total} runs finished in {n} hours; most in the hour of "
        f"{peak.hour:%H:00} ({peak.finished}).",
        bars=bars,
        y_ticks=_y_ticks(top, lambda v: f"{v:g}"),
        x_ticks=_x_ticks(points),
        legend=[("completed", "ok"), ("failed", "fail"), ("cancelled", "stop")],
    )


def css_name(css: str) -> str:
    return {"ok": "completed", "fail": "failed", "stop": "cancelled"}.get(css, css)


def _line(
    name: str, css: str, values: Sequence[float | None], top: float, show: Callable[[float], str]
) -> Line:
    n = len(values)
    stretches: list[str] = []
    current: list[str] = []
    dots: list[tuple[float, float, str]] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                stretches.append(" ".join(current))
            current = []
            continue
        x, y = _x(i, n), _y(min(v, top), top)
        current.append(f"{x:.1f},{y:.1f}")
        dots.append((round(x, 1), round(y, 1), show(v)))
    if current:
        stretches.append(" ".join(current))
    return Line(name=name, css=css, stretches=stretches, dots=dots)


def success_rate(points: Sequence[HistoryPoint]) -> Chart:
    values = [p.success_rate for p in points]
    known = [v for v in values if v is not None]
    completed = sum(p.completed for p in points)
    ended = completed + sum(p.failed for p in points)
    overall = completed / ended if ended else None
    return Chart(
        key="success",
        title="Success rate",
        summary=f"Success rate over the {len(points)} hours: {percent(overall)}"
        + (f"; lowest hour {percent(min(known))}." if known else "."),
        lines=[_line("success rate", "ok", values, 1.0, percent)],
        y_ticks=_y_ticks(1.0, lambda v: f"{v * 100:.0f} %"),
        x_ticks=_x_ticks(points),
        legend=[("completed of completed + failed", "ok")],
    )


def latency(points: Sequence[HistoryPoint], which: str) -> Chart:
    """``which``: ``duration`` (first start to finish) or ``wait`` (queue wait)."""
    p50 = [getattr(p, f"{which}_p50_s") for p in points]
    p95 = [getattr(p, f"{which}_p95_s") for p in points]
    top = _nice(max((v for v in p95 + p50 if v is not None), default=0.0))
    known = [v for v in p95 if v is not None]
    title = "Run duration" if which == "duration" else "Queue wait"
    return Chart(
        key=which,
        title=f"{title}, p50 and p95",
        summary=f"{title}: highest hourly p95 {seconds(max(known)) if known else '—'}.",
        lines=[
            _line("p50", "run", p50, top, seconds),
            _line("p95", "wait", p95, top, seconds),
        ],
        y_ticks=_y_ticks(top, seconds),
        x_ticks=_x_ticks(points),
        legend=[("p50", "run"), ("p95", "wait")],
    )


def overview_charts(points: Sequence[HistoryPoint]) -> list[Chart]:
    return [throughput(points), success_rate(points), latency(points, "duration"),
            latency(points, "wait")]  # fmt: skip
