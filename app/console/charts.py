"""Geometry of the verification pictures, from the numbers stored with a version.

The pipeline stores true-label confidence histograms (unlearning/report.py) in a version's
metrics under `confidence.before` / `confidence.after`. This module turns them into SVG
coordinates; the `histogram` macro in templates/_charts.html draws them as inline SVG. No
plotting library, nothing fetched: the page is complete as served (docs/CONSOLE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 360, 170
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 10, 30
GROUPS = (
    # name, label, colour (Okabe-Ito, distinguishable with colour-blindness), dash pattern
    ("forget", "forgotten", "#d55e00", ""),
    ("retain", "retained", "#0072b2", "6 3"),
    ("held_out", "held-out", "#009e73", "2 3"),
)


TICKS = (0.0, 0.5, 0.9, 0.99, 0.999, 1.0)


@dataclass(frozen=True)
class Series:
    name: str
    label: str
    colour: str
    dash: str
    n: int
    path: str
    median_x: float | None
    quantiles: dict[str, float | None]


@dataclass(frozen=True)
class Chart:
    title: str
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom_y: int = HEIGHT - BOTTOM
    right_x: int = WIDTH - RIGHT


def _x(value: float, edges: list[float]) -> float:
    """Bins are drawn equally wide whatever their range (they narrow towards 1)."""
    bins = len(edges) - 1
    pos = float(bins)
    for i in range(bins):
        if value <= edges[i + 1]:
            span = edges[i + 1] - edges[i]
            pos = i + ((value - edges[i]) / span if span else 0.0)
            break
    return round(LEFT + max(pos, 0.0) / bins * (WIDTH - LEFT - RIGHT), 1)


def _y(share: float, top_share: float) -> float:
    plot = HEIGHT - TOP - BOTTOM
    return round(HEIGHT - BOTTOM - (share / top_share) * plot, 1)


def _shares(group: dict[str, Any]) -> list[float]:
    n = int(group.get("n") or 0)
    return [int(c) / n for c in group.get("counts", [])] if n else []


def charts(confidence: Any) -> list[Chart] | None:
    """The before and after charts on one shared scale; None when nothing was recorded."""
    if not isinstance(confidence, dict) or not {"before", "after"} <= confidence.keys():
        return None
    stages = [("before (parent version)", confidence["before"]), ("after", confidence["after"])]
    top = max(
        (s for _, stage in stages for g in stage["groups"].values() for s in _shares(g)),
        default=0.0,
    )
    top = max(top, 0.01)
    out = []
    for title, stage in stages:
        edges = [float(e) for e in stage["bins"]]
        series = []
        for name, label, colour, dash in GROUPS:
            group = stage["groups"].get(name)
            if not group or not group.get("n"):
                continue
            shares = _shares(group)
            points = [f"M{_x(edges[0], edges)},{_y(0, top)}"]
            for i, share in enumerate(shares):
                y = _y(share, top)
                points.append(f"L{_x(edges[i], edges)},{y}L{_x(edges[i + 1], edges)},{y}")
            points.append(f"L{_x(edges[-1], edges)},{_y(0, top)}")
            median = group["quantiles"].get("p50")
            series.append(
                Series(
                    name,
                    label,
                    colour,
                    dash,
                    int(group["n"]),
                    "".join(points),
                    _x(median, edges) if median is not None else None,
                    dict(group["quantiles"]),
                )
            )
        x_ticks = [(_x(v, edges), f"{v:g}") for v in TICKS if v in edges]
        y_ticks = [(_y(top * f, top), f"{top * f * 100:.0f}%") for f in (0.0, 0.5, 1.0)]
        out.append(Chart(title, series, x_ticks, y_ticks))
    return out
