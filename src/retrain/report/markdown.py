"""What a human reads: the pull-request title and body, and the end-of-run summary.

Every function takes one plain ``ctx`` dict (JSON types only), built by the pipeline from
the trigger check, the gate report and the proposal.  Rendering is pure and deterministic:
the same ctx gives byte-identical Markdown.  Any optional key may be missing or ``None``.

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
      "pr_url": url | None,
      "base_url": url | None,   # optional: prefix for relative links (plots, model card);
                                # GitHub does not resolve relative links in a PR body
    }
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

VERDICT_ICON = {"pass": "✅", "fail": "❌", "skip": "⏭"}
_LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
_BOUNDED = frozenset({"accuracy", "balanced_accuracy", "f1_macro", "roc_auc"})
_MAX_CHART_LEVELS = 8
_MAX_JSON_CHARS = 40_000


# --------------------------------------------------------------------------- formatting
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


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _link(path: str, base_url: str | None) -> str:
    if base_url and not re.match(r"^[a-z]+://", path):
        return f"{base_url.rstrip('/')}/{path.lstrip('/')}"
    return path


def _gates(ctx: Mapping[str, Any]) -> dict[str, Any]:
    return ctx.get("gates") or {}


def _results(ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((_gates(ctx).get("gates") or {}).values())


def _gate_metrics(ctx: Mapping[str, Any]) -> dict[str, Any]:
    return _gates(ctx).get("metrics") or {}


def _higher_better(metric: str, m: Mapping[str, Any]) -> bool:
    if m.get("primary") == metric and "greater_is_better" in m:
        return bool(m["greater_is_better"])
    return metric not in _LOWER_IS_BETTER


def _version(ctx: Mapping[str, Any]) -> str:
    return f"v{ctx['version']}" if ctx.get("version") else "the candidate"


def _triggers_text(ctx: Mapping[str, Any]) -> str:
    parts = []
    for item in ctx.get("fired") or []:
        name = item.get("name", "?") if isinstance(item, Mapping) else str(item)
        value = item.get("value") if isinstance(item, Mapping) else None
        threshold = item.get("threshold") if isinstance(item, Mapping) else None
        if value is None:
            parts.append(_text(name))
        elif threshold is None:
            parts.append(f"{_text(name)} ({_short(value)})")
        else:
            parts.append(f"{_text(name)} ({_short(value)} vs threshold {_short(threshold)})")
    return ", ".join(parts)


def _fired_names(ctx: Mapping[str, Any]) -> list[str]:
    names = []
    for item in ctx.get("fired") or []:
        names.append(str(item.get("name", "?")) if isinstance(item, Mapping) else str(item))
    return names


def _schema_text(change: Mapping[str, Any] | None) -> str:
    parts = [
        f"{label} {', '.join(f'`{_text(n)}`' for n in change.get(key) or [])}"
        for key, label in (
            ("added", "columns added"),
            ("removed", "columns removed"),
            ("retyped", "columns retyped"),
            ("classes_added", "classes added"),
            ("classes_removed", "classes removed"),
        )
        if change and change.get(key)
    ]
    return "; ".join(parts)


# --------------------------------------------------------------------------- gate cells
def _gate_cells(result: Mapping[str, Any], m: Mapping[str, Any]) -> tuple[str, str]:
    """(value, threshold) cells of the gates table for one gate result."""
    name, value, threshold = result.get("name"), result.get("value"), result.get("threshold")
    if name == "improvement":
        boot = m.get("bootstrap") or {}
        cell = _num(value, signed=True)
        if value is not None and boot.get("lower") is not None:
            conf = boot.get("confidence")
            level = f"{conf:.0%} " if isinstance(conf, float) else ""
            cell += f" ({level}lower bound {_num(boot['lower'], signed=True)})"
        bound = "≥ " + _num(threshold, signed=True) if threshold is not None else "–"
        if isinstance(threshold, int | float) and threshold >= 0:
            bound += ", lower bound > 0"
        return cell, bound
    if name == "subgroups":
        cell = f"worst {_num(value, signed=True)}" if value is not None else "–"
        return cell, ("≥ " + _num(threshold, signed=True)) if threshold is not None else "–"
    if name in ("latency", "cost") and isinstance(value, Mapping):
        units = {
            "p95_ms_single": "ms/row",
            "p95_ms_batch": "ms/batch",
            "model_mb": "MB",
            "train_seconds": "s",
        }
        thr = threshold if isinstance(threshold, Mapping) else {}
        cell = " · ".join(f"{_short(v)} {units.get(k, k)}" for k, v in value.items())
        bound = " · ".join(f"≤ {_short(v)} {units.get(k, k)}" for k, v in thr.items())
        return cell, bound or "–"
    if name == "guardrails" and isinstance(threshold, Mapping):
        cells = value if isinstance(value, Mapping) else {}
        cell = " · ".join(f"{k} {_num(cells.get(k), signed=True)}" for k in threshold) or "–"
        return cell, " · ".join(f"{k} ≥ {_num(v, signed=True)}" for k, v in threshold.items())
    if name == "schema_bump":
        return _num(value), _num(threshold) if value == threshold else f"≥ {_num(threshold)}"
    return _num(value), _num(threshold)


def _gates_table(ctx: Mapping[str, Any]) -> list[str]:
    m = _gate_metrics(ctx)
    rows = []
    for r in _results(ctx):
        value, threshold = _gate_cells(r, m)
        icon = VERDICT_ICON.get(str(r.get("verdict")), "❔")
        rows.append([icon, f"`{r.get('name')}`", value, threshold, _text(r.get("detail") or "")])
    if not rows:
        return ["_No gate results._"]
    return _table(["", "gate", "value", "threshold", "detail"], rows)


# --------------------------------------------------------------------------- sections
def _verdict(ctx: Mapping[str, Any]) -> str:
    g, m = _gates(ctx), _gate_metrics(ctx)
    results = _results(ctx)
    failed = [r for r in results if r.get("verdict") == "fail"]
    skipped = [r for r in results if r.get("verdict") == "skip"]
    model, bump, base = (
        _text(ctx.get("model", "model")),
        ctx.get("bump") or g.get("bump"),
        ctx.get("base_version"),
    )
    if not results:
        head = "**No gates were evaluated.**"
    elif failed:
        names = ", ".join(f"`{r.get('name')}`" for r in failed)
        head = f"**❌ {len(failed)} of {len(results)} gates failed: {names}.**"
    else:
        note = f" ({len(skipped)} skipped)" if skipped else ""
        head = f"**✅ All {len(results) - len(skipped)} applicable gates passed{note}.**"
    what = f"{model} {_version(ctx)}"
    if bump:
        what += f" ({str(bump).upper()}"
        what += f", replacing production v{base})" if base else ", first version)"
    sentences = [
        head,
        f"Proposes {what}." if ctx.get("outcome") != "gated" else f"Candidate {what}.",
    ]
    why = _triggers_text(ctx)
    if why:
        sentences.append(f"Retrained because: {why}.")
    metric = g.get("metric") or m.get("primary")
    cand, base_m = (m.get("candidate") or {}), (m.get("baseline") or {})
    if metric and cand.get(metric) is not None:
        if base_m.get(metric) is not None:
            delta = cand[metric] - base_m[metric]
            direction = _direction(delta, _higher_better(metric, m))
            text = (
                f"On the frozen holdout, {metric} is {_num(cand[metric])} vs "
                f"{_num(base_m[metric])} in production ({_num(delta, signed=True)}, {direction}"
            )
            boot = m.get("bootstrap") or {}
            if boot.get("lower") is not None:
                text += (
                    f"; {boot.get('confidence', 0.95):.0%} paired-bootstrap lower bound of the "
                    f"gain {_num(boot['lower'], signed=True)}"
                )
            sentences.append(text + ").")
        else:
            sentences.append(
                f"On the frozen holdout, {metric} is {_num(cand[metric])} "
                "(no production model to compare)."
            )
    change = _schema_text(ctx.get("schema_change"))
    sentences.append(
        f"Schema changed: {change}." if change else "Input schema and classes unchanged."
    )
    worst = _worst_subgroup(m)
    if worst:
        sentences.append(worst)
    for r in failed:
        sentences.append(f"`{r.get('name')}`: {_text(r.get('detail') or 'failed')}.")
    return " ".join(sentences)


def _direction(delta: float, higher_is_better: bool) -> str:
    if abs(delta) < 5e-7:  # equal at the 6 decimals metrics are rounded to
        return "unchanged"
    return "better" if (delta > 0) == higher_is_better else "worse"


def _worst_subgroup(m: Mapping[str, Any]) -> str:
    worst: tuple[float, str] | None = None
    small = 0
    for column, levels in sorted((m.get("subgroups") or {}).items()):
        for level, e in sorted(levels.items()):
            if e.get("judged") and e.get("gain") is not None:
                if worst is None or e["gain"] < worst[0]:
                    worst = (e["gain"], f"{column}={level}")
            elif e.get("note", "").startswith("too small"):
                small += 1
    parts = []
    if worst is not None:
        parts.append(f"Worst subgroup: {_text(worst[1])} ({_num(worst[0], signed=True)} gain)")
    if small:
        parts.append(f"{small} subgroup level(s) too small to judge")
    return "; ".join(parts) + "." if parts else ""


def _metric_diff(ctx: Mapping[str, Any]) -> list[str]:
    m = _gate_metrics(ctx)
    cand, base = m.get("candidate") or {}, m.get("baseline")
    if not cand:
        return ["_No metrics._"]
    primary = _gates(ctx).get("metric") or m.get("primary")
    base_label = f"production v{ctx['base_version']}" if ctx.get("base_version") else "production"
    rows = []
    for name, value in cand.items():
        old = (base or {}).get(name)
        label = f"**{name}** (primary)" if name == primary else name
        label += " ↑" if _higher_better(name, m) else " ↓"
        if value is not None and old is not None:
            delta = value - old
            change = f"{_num(delta, signed=True)} ({_direction(delta, _higher_better(name, m))})"
        else:
            change = "–"
        rows.append([label, _num(old), _num(value), change])
    lines = _table(["metric", base_label, f"candidate {_version(ctx)}", "change"], rows)
    return lines + ["", "_↑ higher is better, ↓ lower is better; holdout rows are frozen._"]


def _subgroup_table(ctx: Mapping[str, Any]) -> list[str]:
    m = _gate_metrics(ctx)
    table = m.get("subgroups") or {}
    if not table:
        return []
    metric = _gates(ctx).get("metric") or m.get("primary") or "metric"
    rows = []
    for column, levels in sorted(table.items()):
        for level, e in sorted(levels.items()):
            if e.get("judged"):
                note = e.get("note", "")
                verdict = f"❌ {note}" if note else "✅ within limit"
            else:
                verdict = f"⚠️ {e.get('note')}" if e.get("note") else "–"
                if e.get("note") == "bootstrap":
                    verdict = "⏭ no production model"
            rows.append(
                [
                    f"{_text(column)} = {_text(level)}",
                    _num(e.get("rows")),
                    _num(e.get("baseline")),
                    _num(e.get("candidate")),
                    _num(e.get("delta"), signed=True),
                    _text(verdict),
                ]
            )
    return _table(
        ["subgroup", "rows", "production", "candidate", f"change ({metric})", "verdict"], rows
    )


def _pairs(drift_top: Any) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for item in drift_top or []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], Mapping):
            out.append((str(item[0]), item[1]))
    return out


def _drift_table(ctx: Mapping[str, Any]) -> list[str]:
    pairs = _pairs(ctx.get("drift_top"))
    if not pairs:
        return []
    rows = [
        [
            f"`{_text(col)}`",
            _text(f.get("kind", "–")),
            _text(f.get("test", "–")),
            _short(f.get("statistic")),
            _short(f.get("p_value")),
            _short(f.get("psi")),
            "⚠️ yes" if f.get("drifted") else "no",
        ]
        for col, f in pairs
    ]
    return _table(["feature", "kind", "test", "statistic", "p-value", "PSI", "drifted"], rows)


# --------------------------------------------------------------------------- mermaid
def _mermaid_label(s: str) -> str:
    return '"' + re.sub(r'["\[\],\n]', " ", s).strip() + '"'


def _y_axis(title: str, metric_names: Iterable[str], values: list[float]) -> str:
    names = list(metric_names)
    if names and all(n in _BOUNDED for n in names):
        return f'    y-axis "{title}" 0 --> 1'
    top = max([v for v in values if v is not None] + [0.0])
    low = min([v for v in values if v is not None] + [0.0])
    top = top * 1.15 if top > 0 else 1.0
    return f'    y-axis "{title}" {_mermaid_num(low)} --> {_mermaid_num(top)}'


def _mermaid_num(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _xychart(title: str, labels: list[str], values: list[float], y_axis: str) -> list[str]:
    return [
        "```mermaid",
        "xychart-beta",
        f"    title {_mermaid_label(title)}",
        f"    x-axis [{', '.join(_mermaid_label(lab) for lab in labels)}]",
        y_axis,
        f"    bar [{', '.join(_mermaid_num(v) for v in values)}]",
        "```",
    ]


def _metric_chart(ctx: Mapping[str, Any]) -> list[str]:
    """Production and candidate bars side by side per metric (one series, paired labels).

    xychart-beta draws several ``bar`` series on top of each other rather than grouped,
    so the comparison is one series whose categories alternate production / candidate.
    """
    m = _gate_metrics(ctx)
    cand, base = m.get("candidate") or {}, m.get("baseline") or {}
    names = [n for n in cand if n in _BOUNDED] or [n for n in cand if n in ("rmse", "mae")]
    names = [n for n in names if cand.get(n) is not None]
    if not names:
        return []
    paired = any(base.get(n) is not None for n in names)
    labels, values = [], []
    for n in names:
        if base.get(n) is not None:
            labels.append(f"{n} prod")
            values.append(float(base[n]))
        labels.append(f"{n} new" if paired else n)
        values.append(float(cand[n]))
    who = f"production v{ctx['base_version']} vs " if ctx.get("base_version") and base else ""
    title = f"Holdout metrics: {who}candidate {_version(ctx)}"
    return _xychart(title, labels, values, _y_axis("score", names, values))


def _subgroup_chart(ctx: Mapping[str, Any]) -> list[str]:
    m = _gate_metrics(ctx)
    metric = _gates(ctx).get("metric") or m.get("primary")
    entries = [
        (f"{c}={lvl}", e)
        for c, levels in sorted((m.get("subgroups") or {}).items())
        for lvl, e in sorted(levels.items())
        if e.get("candidate") is not None
    ]
    if not metric or not entries:
        return []
    shown = sorted(entries, key=lambda kv: (-int(kv[1].get("rows") or 0), kv[0]))
    shown = sorted(shown[:_MAX_CHART_LEVELS], key=lambda kv: kv[0])
    paired = any(e.get("baseline") is not None for _, e in shown)
    labels, values = [], []
    for name, e in shown:
        if e.get("baseline") is not None:
            labels.append(f"{name} prod")
            values.append(float(e["baseline"]))
        labels.append(f"{name} new" if paired else name)
        values.append(float(e["candidate"]))
    title = f"{metric} per subgroup"
    if len(entries) > len(shown):
        title += f" (largest {len(shown)} of {len(entries)} levels)"
    return _xychart(title, labels, values, _y_axis(metric, [metric], values))


# --------------------------------------------------------------------------- public
def pr_title(ctx: dict[str, Any]) -> str:
    """``Promote <model> v<X.Y.Z> (<bump>: <triggers>)``, e.g. ``(minor: data_drift, new_data)``."""
    names = _fired_names(ctx)
    bump = ctx.get("bump") or _gates(ctx).get("bump") or "?"
    detail = f"{bump}: {', '.join(names)}" if names else str(bump)
    return f"Promote {ctx.get('model', 'model')} v{ctx.get('version', '?')} ({detail})"


def render_pr_body(ctx: dict[str, Any]) -> str:
    """The pull-request body: verdict first, then the evidence a reviewer needs."""
    links = ctx.get("links") or {}
    base_url = ctx.get("base_url")
    out = [f"## {pr_title(ctx)}", "", _verdict(ctx), "", "### Gates", "", *_gates_table(ctx)]
    out += ["", "### Metrics vs production", "", *_metric_diff(ctx)]
    sub = _subgroup_table(ctx)
    if sub:
        out += ["", "### Subgroups", "", *sub]
    drift = _drift_table(ctx)
    if drift:
        out += ["", "### Top drifted features", "", *drift]
    change = _schema_text(ctx.get("schema_change"))
    if change:
        out += ["", "### Schema change", "", f"{change}: the bump is MAJOR."]
    out += ["", "### Links", ""]
    if links.get("mlflow_run"):
        label = links.get("mlflow_run_id") or "run"
        out.append(f"- MLflow run: [{_text(label)}]({links['mlflow_run']})")
    elif links.get("mlflow_run_id"):
        out.append(f"- MLflow run: `{_text(links['mlflow_run_id'])}` (local tracking store)")
    else:
        out.append("- MLflow run: –")
    if links.get("model_card"):
        card = str(links["model_card"])
        out.append(f"- Model card: [{_text(card)}]({_link(card, base_url)})")
    if ctx.get("branch"):
        out.append(f"- Branch: `{_text(ctx['branch'])}`")
    charts = [chart for chart in (_metric_chart(ctx), _subgroup_chart(ctx)) if chart]
    if charts:
        out += ["", "### Charts"]
        for chart in charts:
            out += ["", *chart]
    plots = [str(p) for p in ctx.get("plots") or []]
    if plots:
        out += ["", "### Plots", ""]
        for p in plots:
            stem = p.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("_", " ")
            out.append(f"![{_text(stem)}]({_link(p, base_url)})")
    out += ["", "<details><summary>Triggers and the full gate report (JSON)</summary>", ""]
    trig = _triggers_table(ctx)
    if trig:
        out += ["#### Triggers", "", *trig, ""]
    out += [
        "```json",
        json.dumps(ctx.get("triggers") or {}, indent=2, sort_keys=True, default=str),
        "```",
        "",
    ]
    gate_json = json.dumps(_gates(ctx), indent=2, sort_keys=True, default=str)
    if len(gate_json) > _MAX_JSON_CHARS:  # GitHub refuses PR bodies over 65,536 characters
        card = (ctx.get("links") or {}).get("model_card") or "the model card"
        gate_json = json.dumps({"truncated": f"{len(gate_json)} characters; see {card}"})
    out += ["#### Gates", "", "```json", gate_json, "```", "", "</details>", ""]
    return "\n".join(out)


def _triggers_table(ctx: Mapping[str, Any]) -> list[str]:
    checks = (ctx.get("triggers") or {}).get("checks") or {}
    if not checks:
        return []
    rows = []
    for name, c in checks.items():
        c = c if isinstance(c, Mapping) else {}
        unit = f" {c['unit']}" if c.get("unit") and c.get("value") is not None else ""
        note = f" ({_text(c['note'])})" if c.get("note") else ""
        rows.append(
            [
                f"`{_text(name)}`",
                _short(c.get("value")) + unit + note,
                _short(c.get("threshold")),
                "🔥 yes" if c.get("fired") else "no",
            ]
        )
    return _table(["trigger", "value", "threshold", "fired"], rows)


def render_run_summary(ctx: dict[str, Any]) -> str:
    """Short Markdown for the end of every run (terminal and ``$GITHUB_STEP_SUMMARY``)."""
    outcome = ctx.get("outcome") or "unknown"
    model = _text(ctx.get("model", "model"))
    triggers = ctx.get("triggers") or {}
    out: list[str] = []
    if outcome == "skipped":
        out.append(f"### ⏭ {model}: no retraining")
        out.append("")
        if triggers.get("note"):
            out.append(f"Skipped: {_text(triggers['note'])}.")
        elif _fired_names(ctx) or triggers.get("fired"):
            out.append(f"Skipped although triggers fired: {_triggers_text(ctx)}.")
        else:
            out.append("Skipped: no retraining trigger fired; nothing was trained.")
        table = _triggers_table(ctx)
        if table:
            out += ["", *table]
        return "\n".join(out) + "\n"
    why = _triggers_text(ctx) or "–"
    g, m = _gates(ctx), _gate_metrics(ctx)
    metric = g.get("metric") or m.get("primary")
    cand, base = m.get("candidate") or {}, m.get("baseline") or {}
    change = ""
    if metric and cand.get(metric) is not None:
        if base.get(metric) is not None:
            change = (
                f"{metric} {_num(base[metric])} → {_num(cand[metric])} "
                f"({_num(cand[metric] - base[metric], signed=True)})"
            )
        else:
            change = f"{metric} {_num(cand[metric])} (bootstrap: no production model)"
    if outcome == "gated":
        failed = [r for r in _results(ctx) if r.get("verdict") == "fail"]
        out.append(f"### ❌ {model}: candidate {_version(ctx)} gated, no pull request")
        out.append("")
        out.append(f"- Triggers: {why}")
        if change:
            out.append(f"- Holdout: {change}")
        for r in failed:
            value, threshold = _gate_cells(r, m)
            out.append(
                f"- ❌ `{r.get('name')}`: {value} (threshold {threshold}): "
                f"{_text(r.get('detail') or '')}"
            )
    elif outcome == "proposed":
        bump = ctx.get("bump") or g.get("bump") or "?"
        base_v = f" replacing v{ctx['base_version']}" if ctx.get("base_version") else ""
        out.append(f"### ✅ {model}: {_version(ctx)} proposed ({bump}{base_v})")
        out.append("")
        out.append(f"- Triggers: {why}")
        if change:
            out.append(f"- Holdout: {change}")
        out.append(f"- Branch: `{_text(ctx['branch'])}`" if ctx.get("branch") else "- Branch: –")
        pr = ctx.get("pr_url")
        out.append(
            f"- Pull request: {pr}"
            if pr
            else "- Pull request: not opened (the branch and the PR body are ready)"
        )
    else:
        out.append(f"### {model}: outcome {_text(outcome)}")
        out.append("")
        out.append(f"- Triggers: {why}")
    if _results(ctx):
        out += ["", *_gates_table(ctx)]
    return "\n".join(out) + "\n"
