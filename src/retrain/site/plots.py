"""The site's figures, as SVG: the primary metric per version with its interval, the secondary
metrics (guardrails), drift per batch and the live metric per version.

Drawn on matplotlib's Agg-free Figure API (no pyplot state, no display), glyphs as paths so
the file needs no font, and without a date or a random id, so the same history gives the
same bytes.  Colours are the Okabe-Ito palette, told apart by marker shape as well.  Every
figure has a table with the same numbers on the page, and a text alternative built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
BLUE, ORANGE, GREEN, VERMILION, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#555555"
STATUS_STYLE = {  # status -> (colour, marker, label)
    "production": (GREEN, "*", "in production"),
    "rolled_back": (VERMILION, "X", "rolled back"),
    "proposed": (ORANGE, "D", "proposed"),
    "canary": (ORANGE, "^", "canary"),
    "shadow": (ORANGE, "v", "shadow"),
    "retired": (BLUE, "o", "was in production"),
    "registered": (GREY, "s", "never in production"),
}
_RC: Any = {"svg.hashsalt": "retrain-site", "svg.fonttype": "path", "font.size": 10}


@dataclass
class Point:
    label: str  # the version
    value: float | None
    lower: float | None = None
    upper: float | None = None
    status: str = "registered"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasSVG(fig)
    with matplotlib.rc_context(_RC):
        fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return path


_SIZE = re.compile(r'<svg[^>]*\swidth="([\d.]+)pt"\s+height="([\d.]+)pt"')


def svg_size(path: Path) -> tuple[int, int]:
    """The figure's size in CSS pixels (matplotlib writes points: 1 pt = 4/3 px), for the
    ``<img>`` width and height, so the page does not jump while it loads."""
    m = _SIZE.search(path.read_text(encoding="utf-8")[:2000])
    if m is None:
        return 640, 480
    return round(float(m.group(1)) * 4 / 3), round(float(m.group(2)) * 4 / 3)


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _errorbar(ax: Axes, x: int, p: Point, colour: str) -> None:
    if p.value is None or p.lower is None or p.upper is None:
        return
    low, high = min(p.lower, p.upper), max(p.lower, p.upper)
    ax.errorbar(
        [x],
        [p.value],
        yerr=[[max(p.value - low, 0.0)], [max(high - p.value, 0.0)]],
        fmt="none",
        ecolor=colour,
        elinewidth=2,
        capsize=6,
    )


def _points(ax: Axes, points: list[Point], *, legend: bool, connect: bool = True) -> None:
    known = [(i, p.value) for i, p in enumerate(points) if p.value is not None]
    if connect:  # versions in order; unconnected where the points are not a sequence
        ax.plot(
            [i for i, _ in known],
            [y for _, y in known],
            color=GREY,
            linewidth=1,
            linestyle=":",
            zorder=1,
        )
    seen: set[str] = set()
    for i, p in enumerate(points):
        if p.value is None:
            continue
        colour, marker, label = STATUS_STYLE.get(p.status, STATUS_STYLE["registered"])
        _errorbar(ax, i, p, colour)
        ax.scatter(
            [i],
            [p.value],
            s=140 if marker == "*" else 70,
            marker=marker,
            color=colour,
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
            label=None if p.status in seen else label,
        )
        seen.add(p.status)
    ax.set_xticks(range(len(points)), [p.label for p in points])
    ax.set_xlim(-0.5, max(len(points) - 0.5, 0.5))
    ax.grid(axis="y", alpha=0.3)
    if legend and seen:
        ax.legend(loc="best", fontsize=8)


def metric_plot(path: Path, metric: str, points: list[Point], direction: str) -> Path:
    """The primary metric on the frozen holdout per version, oldest first, with intervals."""
    fig = _figure(max(4.5, 1.1 * len(points) + 2.5), 3.6)
    ax = fig.subplots()
    _points(ax, points, legend=True)
    ax.set_xlabel("version (oldest first)")
    ax.set_ylabel(f"{metric} ({direction} is better)")
    ax.set_title(f"{metric} on the frozen holdout, per version", fontsize=11)
    return _save(fig, path)


def secondary_plot(path: Path, series: dict[str, list[Point]]) -> Path:
    """One small panel per secondary metric (guardrails), two per row."""
    names = list(series)
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    width = max(4.5, 0.8 * max(len(p) for p in series.values()) + 2.5) * (cols / 1.4)
    fig = _figure(width, 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        _points(ax, series[name], legend=False)
        ax.set_title(name, fontsize=10)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return _save(fig, path)


def drift_plot(path: Path, batches: list[tuple[str, float]], threshold: float | None) -> Path:
    """The share of drifted features per received batch, with the trigger's threshold."""
    fig = _figure(max(4.5, 0.9 * len(batches) + 2.5), 3.2)
    ax = fig.subplots()
    names = [b for b, _ in batches]
    shares = [s for _, s in batches]
    colours = [VERMILION if threshold is not None and s > threshold else BLUE for s in shares]
    ax.bar(range(len(names)), shares, width=0.6, color=colours, edgecolor="black", linewidth=0.6)
    pad = 0.5 if len(names) < 3 else 0.2
    ax.set_xlim(-0.5 - pad, len(names) - 0.5 + pad)
    if threshold is not None:
        ax.axhline(
            threshold,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"data_drift trigger fires above {threshold:g}",
        )
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("share of features drifted")
    ax.set_title("Drift of each received batch", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def live_plot(path: Path, metric: str, points: list[Point]) -> Path:
    """The live metric on labelled served rows per version and role, with intervals."""
    fig = _figure(max(4.5, 1.2 * len(points) + 2.5), 3.4)
    ax = fig.subplots()
    _points(ax, points, legend=True, connect=False)
    ax.set_ylabel(f"live {metric}")
    ax.set_title(f"Live {metric} on labelled rows, per version", fontsize=11)
    return _save(fig, path)
