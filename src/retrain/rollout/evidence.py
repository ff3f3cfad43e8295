"""The evidence a monitor PR carries: a table per version and a plot over time.

The plot has two panels: the live primary metric (on labelled rows) and the p95 latency,
per version and role, in up to ``BINS`` equal time bins since the rollout step began.
Drawn on matplotlib's Agg canvas like :mod:`retrain.report.plots` (no pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from retrain.report.plots import _save
from retrain.rollout.analysis import Check, VersionStats
from retrain.rollout.logview import FrameView, LogView


def live_plot(frame: pd.DataFrame | LogView, metric: str, task: str, path: Path) -> Path:
    """Write the two-panel PNG to ``path`` and return it (``frame``: a checked frame or a
    view of the log, :mod:`retrain.rollout.logview`)."""
    from matplotlib.figure import Figure

    view = FrameView(frame) if isinstance(frame, pd.DataFrame) else frame
    fig = Figure(figsize=(8, 5.5))
    ax_m, ax_l = fig.subplots(2, 1, sharex=True)
    for label, (xs, m, lat) in view.series(metric, task).items():
        ax_m.plot(xs, m, marker="o", label=label)
        ax_l.plot(xs, lat, marker=".", label=label)
    ax_m.set_ylabel(f"live {metric}")
    ax_m.set_title("Live metric (labelled rows) and p95 request latency per version")
    ax_l.set_ylabel("p95 request latency (ms)")
    ax_l.set_xlabel("time (UTC)")
    for ax in (ax_m, ax_l):
        ax.grid(alpha=0.3)
    if ax_m.get_legend_handles_labels()[0]:
        ax_m.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def stats_table(stats: list[VersionStats]) -> str:
    head = (
        "| version | role | requests | failed requests | p95 request latency | labels | live metric "
        "| change vs production | interval | agreement |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    )
    lines = [head]
    for s in stats:
        interval = (
            f"[{s.lower:+.4f}, {s.upper:+.4f}]"
            if s.lower is not None and s.upper is not None
            else "–"
        )
        lines.append(
            f"| {s.version} | {s.role} | {s.requests} | {_f(s.error_rate, '.2%')} "
            f"| {_f(s.p95_latency_ms, '.1f')} ms | {s.labels} | {s.metric} {_f(s.value, '.4f')} "
            f"| {_f(s.delta, '+.4f')} | {interval} | {_f(s.agreement, '.1%')} |"
        )
    return "\n".join(lines)


def checks_table(checks: list[Check]) -> str:
    icon = {"pass": "✅", "fail": "❌", "wait": "⏳", "n/a": "–"}
    lines = ["| check | verdict | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {icon[c.verdict]} {c.verdict} | {c.detail} |" for c in checks]
    return "\n".join(lines)
