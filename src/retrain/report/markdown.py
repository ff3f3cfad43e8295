"""What a human reads: the pull-request title and body, and the end-of-run summary.

Every function takes one plain ``ctx`` dict (JSON types only), built by the pipeline from
the trigger check, the gate report and the proposal.  Rendering is pure and deterministic:
the same ctx gives byte-identical Markdown.  Any optional key may be missing or ``None``.

The wording lives in Jinja2 templates beside this module (``templates/pr_body.md.j2``,
``templates/run_summary.md.j2`` and the pieces they share in ``_common.md.j2``,
``_gates_table.md.j2`` and ``_triggers_table.md.j2``).  This module computes what they show:
it reads the ctx once into a *view* (differences, directions, the worst subgroup, sorted
rows, chart series, the JSON blocks) and provides the filters that format numbers and make
free text safe on one Markdown line.

The ctx shape
-------------
::

    {
      "model": "seattle-weather",            # model name (release.yaml)
      "version": "1.2.0",                    # candidate version, or None when skipped
      "bump": "minor",                       # initial | major | minor | patch
      "base_version": "1.1.0",               # production version, None at bootstrap
      "outcome": "proposed",                 # proposed | gated | skipped
      "fired": [{"name": "data_drift", "value": 0.4, "threshold": 0.3}, ...],
      "triggers": {"retrain": bool, "fired": [...], "checks": {name: {"value",
                   "threshold", "fired", "unit"?, "note"?}}, "note"?: str},
      "gates": GateReport.to_dict(),         # {"passed", "bump", "metric", "gates", "metrics"}
      "drift_top": [(column, {"kind", "test", "statistic", "p_value", "psi",
                              "drifted"}), ...],   # pairs (or 2-lists), may be empty
      "links": {"mlflow_run": url | None, "mlflow_run_id": str | None,
                "model_card": "reports/v1.2.0/model_card.json"},
      "plots": ["reports/v1.2.0/confusion_matrix.png", ...],  # relative paths
      "schema_change": {"added": [...], "removed": [...], "retyped": [...],
                        "classes_added": [...], "classes_removed": [...]},
      "branch": "retrain/v1.2.0" | None,
      "cost": {"wall_seconds", "cpu_seconds", "fit_seconds", "fit_share"} | None,
                                # what the retrain cost (retrain.run measures it)
      "engine": {"name": "local" | "dask", "cluster"?, "workers", "threads", "fit"?} | None,
                                # where the fit ran (training.json; retrain.pipeline.engine)
      "pr_url": url | None,
      "base_url": url | None,   # optional: prefix for relative links (plots, model card);
                                # GitHub does not resolve relative links in a PR body
    }
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

VERDICT_ICON = {"pass": "✅", "fail": "❌", "skip": "⏭"}
TEMPLATES = Path(__file__).resolve().parent / "templates"
_LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
_BOUNDED = frozenset({"accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "average_precision"})
_REGRESSION = frozenset({"rmse", "mae", "r2"})
_MAX_CHART_LEVELS = 8
_MAX_JSON_CHARS = 40_000


# --------------------------------------------------------------------------- filters
def _text(value: Any) -> str:
    """Free text (trigger reasons, details) made safe for one Markdown line or cell."""
    s = re.sub(r"\s+", " ", str(value)).strip()
    # Only a "<" that could open an HTML tag is escaped, so "< 30 rows" stays readable
    # on a terminal while a reason like "<img ...>" cannot inject markup into the PR.
    s = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", s)
    return s.replace("|", "\\|")


def _num(value: Any, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_num(v, digits)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_num(v, digits) for v in value)
    return _text(value)


def _short(value: Any) -> str:
    """A trigger value or threshold: numbers with up to 4 significant decimals."""
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return _num(value)


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _pct1(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _link(path: str, base_url: str | None) -> str:
    if base_url and not re.match(r"^[a-z]+://", path):
        return f"{base_url.rstrip('/')}/{path.lstrip('/')}"
    return path


def _mermaid_label(s: str) -> str:
    return '"' + re.sub(r'["\[\],\n]', " ", s).strip() + '"'


def _mermaid_num(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@functools.cache
def _environment() -> Any:
    import jinja2  # lazy: only rendering needs it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,  # Markdown, not HTML: free text goes through the ``text`` filter
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(
        text=_text,
        num=_num,
        short=_short,
        pct=_pct,
        pct1=_pct1,
        link=_link,
        mermaid_label=_mermaid_label,
        mermaid_num=_mermaid_num,
    )
    env.globals["ICONS"] = VERDICT_ICON
    return env


def _render(template: str, ctx: Mapping[str, Any]) -> str:
    return str(_environment().get_template(template).render(v=_view(ctx)))


# --------------------------------------------------------------------------- the view
def _higher_better(metric: str, m: Mapping[str, Any]) -> bool:
    if m.get("primary") == metric and "greater_is_better" in m:
        return bool(m["greater_is_better"])
    return metric not in _LOWER_IS_BETTER


def _direction(delta: float, higher_is_better: bool) -> str:
    if abs(delta) < 5e-7:  # equal at the 6 decimals metrics are rounded to
        return "unchanged"
    return "better" if (delta > 0) == higher_is_better else "worse"


def _fired(ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in ctx.get("fired") or []:
        if isinstance(item, Mapping):
            out.append(
                {
                    "name": item.get("name", "?"),
                    "value": item.get("value"),
                    "threshold": item.get("threshold"),
                }
            )
        else:
            out.append({"name": str(item), "value": None, "threshold": None})
    return out


def _result(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("name", "verdict", "value", "threshold", "detail")}


def _subgroup_entries(m: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [
        (column, level, e)
        for column, levels in sorted((m.get("subgroups") or {}).items())
        for level, e in sorted(levels.items())
    ]


def _worst(m: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """The judged subgroup level with the lowest gain, and how many were too small to judge."""
    worst: tuple[float, str] | None = None
    small = 0
    for column, level, e in _subgroup_entries(m):
        if e.get("judged") and e.get("gain") is not None:
            if worst is None or e["gain"] < worst[0]:
                worst = (e["gain"], f"{column}={level}")
        elif e.get("note", "").startswith("too small"):
            small += 1
    return ({"gain": worst[0], "name": worst[1]} if worst else None), small


def _pairs(drift_top: Any) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for item in drift_top or []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], Mapping):
            out.append((str(item[0]), item[1]))
    return out


def _y_range(metric_names: Iterable[str], values: list[float]) -> tuple[float, float]:
    names = list(metric_names)
    if names and all(n in _BOUNDED for n in names):
        return 0.0, 1.0
    top = max([v for v in values if v is not None] + [0.0])
    low = min([v for v in values if v is not None] + [0.0])
    return low, (top * 1.15 if top > 0 else 1.0)


def _bars(
    items: list[tuple[str, Any, Any]],
) -> list[dict[str, Any]]:
    """Production and candidate bars side by side (one series, paired labels).

    xychart-beta draws several ``bar`` series on top of each other rather than grouped,
    so the comparison is one series whose categories alternate production / candidate.
    """
    paired = any(base is not None for _, base, _ in items)
    bars = []
    for name, base, cand in items:
        if base is not None:
            bars.append({"name": name, "side": "prod", "value": float(base)})
        bars.append({"name": name, "side": "new" if paired else "", "value": float(cand)})
    return bars


def _metric_chart(ctx: Mapping[str, Any], m: Mapping[str, Any]) -> dict[str, Any] | None:
    cand, base = m.get("candidate") or {}, m.get("baseline") or {}
    names = [n for n in cand if n in _BOUNDED] or [n for n in cand if n in ("rmse", "mae")]
    names = [n for n in names if cand.get(n) is not None]
    if not names:
        return None
    bars = _bars([(n, base.get(n), cand[n]) for n in names])
    low, top = _y_range(names, [b["value"] for b in bars])
    return {
        "kind": "metrics",
        "versus": bool(ctx.get("base_version") and base),
        "bars": bars,
        "axis": "score",
        "low": low,
        "top": top,
    }


def _subgroup_chart(metric: str | None, m: Mapping[str, Any]) -> dict[str, Any] | None:
    entries = [
        (f"{c}={lvl}", e) for c, lvl, e in _subgroup_entries(m) if e.get("candidate") is not None
    ]
    if not metric or not entries:
        return None
    shown = sorted(entries, key=lambda kv: (-int(kv[1].get("rows") or 0), kv[0]))
    shown = sorted(shown[:_MAX_CHART_LEVELS], key=lambda kv: kv[0])
    bars = _bars([(name, e.get("baseline"), e["candidate"]) for name, e in shown])
    low, top = _y_range([metric], [b["value"] for b in bars])
    return {
        "kind": "subgroups",
        "metric": metric,
        "shown": len(shown),
        "total": len(entries),
        "bars": bars,
        "axis": metric,
        "low": low,
        "top": top,
    }


def _transitions(churn: Mapping[str, Any]) -> dict[str, Any] | None:
    """The churn transition table as rows: production label -> counts per candidate label."""
    table = churn.get("transitions")
    if not table:
        return None
    labels = sorted({str(p) for p in table} | {str(c) for row in table.values() for c in row})
    rows = [
        {"label": p, "cells": [int(table.get(p, {}).get(c, 0)) for c in labels]}
        for p in labels
        if p in table
    ]
    return {"labels": labels, "rows": rows}


def _negative_flips(churn: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """Rows production got right and the candidate gets wrong, by label pair, most first."""
    table = churn.get("negative_transitions") or {}
    pairs = [(str(p), str(c), int(n)) for p, row in table.items() for c, n in row.items() if n]
    return sorted(pairs, key=lambda t: (-t[2], t[0], t[1]))


def _oot_rows(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The out-of-time table: every metric for production and the second fit."""
    oot = m.get("out_of_time") or {}
    cand, base = oot.get("candidate") or {}, oot.get("baseline") or {}
    rows = []
    for name in cand or base:
        c, b = cand.get(name), base.get(name)
        delta = c - b if c is not None and b is not None else None
        rows.append(
            {
                "name": name,
                "primary": name == oot.get("metric"),
                "higher": _higher_better(name, m),
                "baseline": b,
                "candidate": c,
                "delta": delta,
                "direction": None if delta is None else _direction(delta, _higher_better(name, m)),
            }
        )
    return rows


def _view(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the templates show, computed once from the ctx."""
    g = ctx.get("gates") or {}
    m = g.get("metrics") or {}
    results = [_result(r) for r in (g.get("gates") or {}).values()]
    metric = g.get("metric") or m.get("primary")
    cand, base = m.get("candidate") or {}, m.get("baseline") or {}
    primary = None
    if metric and cand.get(metric) is not None:
        primary = {"name": metric, "candidate": cand[metric], "baseline": base.get(metric)}
        if base.get(metric) is not None:
            primary["delta"] = cand[metric] - base[metric]
            primary["direction"] = _direction(primary["delta"], _higher_better(metric, m))
    trivial_summary = (m.get("trivial_baseline") or {}).get("summary") or {}
    metric_rows = []
    for name, value in cand.items():
        old = base.get(name)
        delta = value - old if value is not None and old is not None else None
        metric_rows.append(
            {
                "name": name,
                "primary": name == metric,
                "higher": _higher_better(name, m),
                "baseline": old,
                "candidate": value,
                "delta": delta,
                "direction": None if delta is None else _direction(delta, _higher_better(name, m)),
                "trivial": trivial_summary.get(name),
            }
        )
    worst, too_small = _worst(m)
    fired = _fired(ctx)
    triggers = ctx.get("triggers") or {}
    checks = [
        (name, c if isinstance(c, Mapping) else {})
        for name, c in (triggers.get("checks") or {}).items()
    ]
    links = ctx.get("links") or {}
    base_url = ctx.get("base_url")
    gates_json = json.dumps(g, indent=2, sort_keys=True, default=str)
    if len(gates_json) > _MAX_JSON_CHARS:  # GitHub refuses PR bodies over 65,536 characters
        card = links.get("model_card") or "the model card"
        gates_json = json.dumps({"truncated": f"{len(gates_json)} characters; see {card}"})
    plots = []
    for p in (str(p) for p in ctx.get("plots") or []):
        stem = p.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("_", " ")
        plots.append({"alt": stem, "url": _link(p, base_url)})
    charts = [c for c in (_metric_chart(ctx, m), _subgroup_chart(metric, m)) if c]
    return {
        "model": ctx.get("model", "model"),
        "model_raw": ctx.get("model", "model"),
        "version": ctx.get("version"),
        "version_raw": ctx.get("version", "?"),
        "bump": ctx.get("bump") or g.get("bump"),
        "title_bump": ctx.get("bump") or g.get("bump") or "?",
        "base_version": ctx.get("base_version"),
        "outcome": ctx.get("outcome") or "unknown",
        "fired": fired,
        "fired_names": [str(f["name"]) for f in fired],
        "triggers": triggers,
        "checks": checks,
        "results": results,
        "failed": [r for r in results if r["verdict"] == "fail"],
        "skipped": [r for r in results if r["verdict"] == "skip"],
        "boot": m.get("bootstrap") or {},
        "churn": m.get("churn") or {},
        "transitions": _transitions(m.get("churn") or {}),
        "negative_flips": _negative_flips(m.get("churn") or {}),
        "trivial": m.get("trivial_baseline") or {},
        "oot": m.get("out_of_time") or {},
        "oot_rows": _oot_rows(m),
        "frozen": m.get("frozen_holdout") or {},
        "key_examples": (m.get("key_examples") or {}).get("rows") or [],
        "cost": ctx.get("cost") or {},
        "engine": ctx.get("engine") or {},
        "primary": primary,
        "metric_rows": metric_rows,
        "has_subgroups": bool(m.get("subgroups")),
        "subgroup_metric": metric or "metric",
        "subgroup_rows": [
            {"column": c, "level": lvl, "entry": e} for c, lvl, e in _subgroup_entries(m)
        ],
        "worst": worst,
        "too_small": too_small,
        "drift_rows": _pairs(ctx.get("drift_top")),
        "schema_change": ctx.get("schema_change"),
        # a regression (judged by rmse, mae or r2) has no class set to speak of
        "has_classes": metric not in _REGRESSION,
        "links": links,
        "base_url": base_url,
        "branch": ctx.get("branch"),
        "pr_url": ctx.get("pr_url"),
        "charts": charts,
        "plots": plots,
        "triggers_json": json.dumps(triggers, indent=2, sort_keys=True, default=str),
        "gates_json": gates_json,
        "judged": ctx.get("judged"),  # the recorded judgement a skipped run repeats
        "stuck": ctx.get("stuck"),  # a streak of held candidates and its issue
    }


# --------------------------------------------------------------------------- public
def pr_title(ctx: dict[str, Any]) -> str:
    """``Promote <model> v<X.Y.Z> (<bump>: <triggers>)``, e.g. ``(minor: data_drift, new_data)``."""
    module = _environment().get_template("_common.md.j2").module
    return str(module.title(_view(ctx)))  # type: ignore[attr-defined]


def render_pr_body(ctx: dict[str, Any]) -> str:
    """The pull-request body: verdict first, then the evidence a reviewer needs."""
    return _render("pr_body.md.j2", ctx)


def render_run_summary(ctx: dict[str, Any]) -> str:
    """Short Markdown for the end of every run (terminal and ``$GITHUB_STEP_SUMMARY``)."""
    return _render("run_summary.md.j2", ctx)


def render_stuck_issue(ctx: dict[str, Any]) -> tuple[str, str]:
    """``(body, comment)`` of the GitHub issue a loop stuck on held candidates opens or
    updates: every run of the streak, and what the newest run adds."""
    env = _environment()
    body = env.get_template("stuck_issue.md.j2").render(s=ctx)
    comment = env.get_template("stuck_comment.md.j2").render(s=ctx)
    return str(body), str(comment)


def render_holdout_roll(ctx: dict[str, Any]) -> str:
    """The pull request of ``retrain holdout roll`` (what moves, production re-scored)."""
    return str(_environment().get_template("holdout_roll.md.j2").render(v=ctx))
