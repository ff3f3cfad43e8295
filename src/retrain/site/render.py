"""From the story to pages: the numbers per version (with their intervals), the figures, and
the HTML from the Jinja2 templates in ``templates/`` (the wording lives there).

Records are read generically: every gate in ``gate.json`` is shown with its value, threshold,
verdict and detail, whatever gates a version was judged by, and every key of a model card or
a churn record is shown, so a field added later appears without a change here.  A record or
field a version lacks reads "not recorded".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core.config import Config
from retrain.core.errors import ConfigError
from retrain.core.metric_names import greater_is_better
from retrain.site import plots
from retrain.site.drift import DriftSection
from retrain.site.live import LiveSection
from retrain.site.story import NOT_RECORDED, Story, Version

TEMPLATES = Path(__file__).parent / "templates"
PLOTS = "plots"
# Model card keys shown in their own sections; the others are listed generically.
CARD_SECTIONS = (
    "known_limitations",
    "training_data",
    "parameters",
    "input_schema",
    "output_schema",
    "environment",
)
CARD_SHOWN_ELSEWHERE = ("gates", "metrics", "version", "model")


def higher_is_better(metric: str, recorded: Any = None) -> bool:
    if isinstance(recorded, bool):
        return recorded
    try:
        return greater_is_better(metric)
    except ConfigError:  # a metric this version of retrain does not know
        return True


@dataclass
class Interval:
    """A bootstrap interval recorded with a version: ``lower``/``upper`` are the
    ``(1 - confidence)`` and ``confidence`` percentiles, so each end is a one-sided bound at
    ``confidence`` and together they cover ``2 * confidence - 1``."""

    lower: float
    upper: float
    confidence: float
    against: str | None = None  # the baseline version, for a gain's interval

    @property
    def coverage(self) -> float:
        return max(2 * self.confidence - 1, 0.0)


@dataclass
class MetricRow:
    version: Version
    value: float | None
    interval: Interval | None
    note: str = ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def gate_metrics(v: Version) -> dict[str, Any]:
    return _dict(_dict(v.gate).get("metrics"))


def metric_interval(v: Version, metric: str) -> Interval | None:
    """The interval of ``v``'s value of ``metric`` that its paired bootstrap against its
    baseline implies (the baseline's value plus the interval of the gain), when recorded."""
    m = gate_metrics(v)
    boot = _dict(m.get("bootstrap"))
    lower, upper, delta = boot.get("lower"), boot.get("upper"), boot.get("delta")
    if boot.get("metric", metric) != metric or lower is None or upper is None:
        return None
    sign = 1.0 if higher_is_better(metric, m.get("greater_is_better")) else -1.0
    base = _dict(m.get("baseline")).get(metric)
    value = v.entry.metrics.overall.get(metric)
    if not isinstance(base, int | float):
        if not isinstance(value, int | float) or not isinstance(delta, int | float):
            return None
        base = value - sign * delta
    ends = sorted((base + sign * lower, base + sign * upper))
    baseline = v.entry.gates.baseline or _dict(v.gate).get("baseline")
    return Interval(ends[0], ends[1], float(boot.get("confidence") or 0.95), baseline)


def metric_rows(story: Story, metric: str) -> list[MetricRow]:
    rows = []
    for v in story.versions:
        value = v.entry.metrics.overall.get(metric)
        value = float(value) if isinstance(value, int | float) else None
        interval = metric_interval(v, metric)
        note = ""
        if value is None:
            note = NOT_RECORDED
        elif interval is None:
            note = (
                "no interval: nothing to compare with (first version)"
                if v.entry.bump == "initial"
                else f"interval {NOT_RECORDED}"
            )
        rows.append(MetricRow(v, value, interval, note))
    return rows


def secondary_metrics(cfg: Config, story: Story) -> tuple[list[str], bool]:
    """The guardrails of ``gates.yaml``, or every other recorded metric when none is declared
    (second item: whether they are declared guardrails)."""
    declared = sorted(cfg.gates.guardrails)
    if declared:
        return declared, True
    primary = cfg.gates.primary_metric
    names = {k for v in story.versions for k in v.entry.metrics.overall if k != primary}
    return sorted(names), False


@dataclass
class Figure:
    src: str
    alt: str
    width: int = 640
    height: int = 480


def _figure(folder: Path, name: str, alt: str) -> Figure:
    width, height = plots.svg_size(folder / name)
    return Figure(f"{PLOTS}/{name}", alt, width, height)


@dataclass
class Figures:
    metric: Figure | None = None
    secondary: Figure | None = None
    drift: Figure | None = None
    live: Figure | None = None


def _status_of(story: Story, version: str) -> str:
    known = story.get(version)
    return known.status if known else "registered"


def _fmt(x: float | None) -> str:
    return NOT_RECORDED if x is None else f"{x:.4f}"


def draw(
    out: Path,
    cfg: Config,
    story: Story,
    rows: list[MetricRow],
    secondary: list[str],
    drift: DriftSection,
    live: LiveSection,
) -> Figures:
    """Write the SVG figures under ``out/plots`` and return how the pages show them."""
    folder = out / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    figs = Figures()
    metric = cfg.gates.primary_metric
    direction = "higher" if higher_is_better(metric) else "lower"
    if any(r.value is not None for r in rows):
        points = [
            plots.Point(
                r.version.version,
                r.value,
                r.interval.lower if r.interval else None,
                r.interval.upper if r.interval else None,
                r.version.status,
            )
            for r in rows
        ]
        plots.metric_plot(folder / "metric.svg", metric, points, direction)
        described = "; ".join(
            f"v{r.version.version} {_fmt(r.value)}"
            + (f" (from {r.interval.lower:.4f} to {r.interval.upper:.4f})" if r.interval else "")
            + f", {r.version.status_text}"
            for r in rows
        )
        figs.metric = _figure(
            folder,
            "metric.svg",
            f"{metric} on the frozen holdout per version, oldest first ({direction} is "
            f"better): {described}.",
        )
    series = {
        name: [
            plots.Point(
                v.version,
                float(x)
                if isinstance(x := v.entry.metrics.overall.get(name), int | float)
                else None,
                status=v.status,
            )
            for v in story.versions
        ]
        for name in secondary
    }
    series = {k: p for k, p in series.items() if any(x.value is not None for x in p)}
    if series:
        plots.secondary_plot(folder / "secondary.svg", series)
        described = "; ".join(
            f"{name}: " + ", ".join(f"v{p.label} {_fmt(p.value)}" for p in pts)
            for name, pts in series.items()
        )
        figs.secondary = _figure(
            folder, "secondary.svg", f"Secondary metrics per version: {described}."
        )
    compared = [(b.batch.rsplit("/", 1)[-1], b.share) for b in drift.batches if b.share is not None]
    if compared:
        plots.drift_plot(
            folder / "drift.svg", [(n, float(s)) for n, s in compared], drift.threshold
        )
        figs.drift = _figure(
            folder,
            "drift.svg",
            "Share of features drifted per received batch: "
            + ", ".join(f"{n} {s:.0%}" for n, s in compared)
            + (
                f"; the data_drift trigger fires above {drift.threshold:.0%}."
                if drift.threshold is not None
                else "."
            ),
        )
    scored = [r for r in live.rows if r.value is not None]
    if scored:
        points = [
            plots.Point(
                f"{r.version}\n({r.role})",
                r.value,
                r.lower,
                r.upper,
                _status_of(story, r.version),
            )
            for r in scored
        ]
        plots.live_plot(folder / "live.svg", live.metric, points)
        figs.live = _figure(
            folder,
            "live.svg",
            f"Live {live.metric} on labelled served rows: "
            + "; ".join(
                f"v{r.version} as {r.role} {_fmt(r.value)} on {r.labels} labelled rows"
                + (
                    f" (from {r.lower:.4f} to {r.upper:.4f})"
                    if r.lower is not None and r.upper is not None
                    else ""
                )
                for r in scored
            )
            + ".",
        )
    return figs


# --------------------------------------------------------------------------- filters
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.{digits}f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_num(v, digits)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_num(v, digits) for v in value)
    return str(value)


def _signed(value: Any, digits: int = 4) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:+.{digits}f}"
    return _num(value, digits)


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "–"


def _kind(value: Any) -> str:
    """How the generic ``show`` macro renders a value."""
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        if value and all(isinstance(x, Mapping) for x in value):
            return "records"
        return "list"
    return "scalar"


def _columns(records: list[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in records:
        cols.extend(k for k in r if k not in cols)
    return cols


def _levels(levels: Mapping[str, Any], group: str) -> list[dict[str, Any]]:
    """A subgroup's ``{level: {metric: value}}`` as table rows, the level first."""
    return [
        {group: level, **(vals if isinstance(vals, Mapping) else {"value": vals})}
        for level, vals in levels.items()
    ]


def _label(key: Any) -> str:
    return str(key).replace("_", " ")


@functools.cache
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        num=_num,
        signed=_signed,
        pct=_pct,
        kind=_kind,
        columns=_columns,
        label=_label,
        levels=_levels,
    )
    env.globals["NOT_RECORDED"] = NOT_RECORDED
    return env


def render(template: str, **ctx: Any) -> str:
    return str(environment().get_template(template).render(**ctx))
