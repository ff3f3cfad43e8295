"""The comparative gates: candidate against production on the same frozen holdout rows.

``improvement`` (paired bootstrap of the primary metric's gain, or "no regression beyond
ε" for a PATCH), ``subgroups`` (no judged level regresses beyond ``max_regression``) and
``guardrails`` (secondary metrics get no worse than their limits).  The method and its
reasons are in ``docs/gates.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from retrain.core.config import GatesConfig
from retrain.decide.gate_types import (
    BOOTSTRAP_SKIP,
    EPS,
    Bump,
    GateInputs,
    GateResult,
    ModelScores,
    fmt,
    orientation,
    rounded,
    safe_score,
)
from retrain.pipeline import metrics

_CELLS_PER_CHUNK = 2_000_000  # bootstrap resamples are scored in chunks of ~16 MB


def bootstrap_deltas(
    metric: str,
    y_true: np.ndarray,
    candidate: ModelScores,
    baseline: ModelScores,
    *,
    n_resamples: int,
    seed: int,
) -> np.ndarray:
    """Paired bootstrap of the oriented gain ``sign * (metric(candidate) - metric(baseline))``.

    Resample ``b`` is ``rng.integers(0, n, size=n)`` from ``np.random.default_rng(seed)``,
    drawn in order ``b = 0, 1, ...``; both models are scored on the *same* resampled rows
    (that pairing removes the holdout's own sampling noise, which both models share).
    Resamples are scored in chunks as row-count matrices with :func:`metrics.resampled`.
    NaN marks a resample on which the metric is undefined for either model.
    """
    n = len(y_true)
    rng = np.random.default_rng(seed)
    sign = orientation(metric)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    out = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n)
        c = metrics.resampled(
            metric, counts, y_true, candidate.y_pred, candidate.proba, candidate.classes
        )
        base = metrics.resampled(
            metric, counts, y_true, baseline.y_pred, baseline.proba, baseline.classes
        )
        out.append(sign * (c - base))
    return np.concatenate(out) if out else np.empty(0)


def improvement_gate(
    inputs: GateInputs, cfg: GatesConfig, bump: Bump
) -> tuple[GateResult, dict[str, Any] | None]:
    metric = inputs.metric
    base = inputs.baseline
    if base is None:
        return GateResult(
            "improvement", "skip", None, cfg.improvement.min_delta, BOOTSTRAP_SKIP
        ), None
    imp = cfg.improvement
    c_val = safe_score(metric, inputs.y_true, inputs.candidate)
    b_val = safe_score(metric, inputs.y_true, base)
    if c_val is None or b_val is None:
        return GateResult(
            "improvement",
            "fail",
            None,
            cfg.improvement.min_delta,
            f"{metric} is undefined on the holdout (e.g. a single class present); "
            "choose another primary_metric",
        ), None
    gain = orientation(metric) * (c_val - b_val)
    deltas = bootstrap_deltas(
        metric, inputs.y_true, inputs.candidate, base, n_resamples=imp.n_resamples, seed=imp.seed
    )
    finite = deltas[np.isfinite(deltas)]
    lower = float(np.percentile(finite, 100 * (1 - imp.confidence))) if len(finite) else None
    upper = float(np.percentile(finite, 100 * imp.confidence)) if len(finite) else None
    boot = {
        "method": "paired bootstrap",
        "metric": metric,
        "delta": rounded(gain),
        "lower": rounded(lower),
        "upper": rounded(upper),
        "confidence": imp.confidence,
        "n_resamples": imp.n_resamples,
        "valid_resamples": len(finite),
        "seed": imp.seed,
    }
    direction = "higher" if metrics.greater_is_better(metric) else "lower"
    head = (
        f"{metric} {fmt(c_val)} vs production {fmt(b_val)} ({direction} is better): "
        f"gain {fmt(gain, signed=True)}"
    )
    ci = (
        f"{imp.confidence:.0%} paired-bootstrap lower bound {fmt(lower, signed=True)} "
        f"({imp.n_resamples} resamples, seed {imp.seed})"
    )
    if bump == "patch":
        limit = -cfg.patch.max_regression
        ok = gain >= limit - EPS
        verdict_text = (
            f"within the PATCH allowance {fmt(limit, signed=True)}"
            if ok
            else f"regresses beyond the PATCH allowance {fmt(limit, signed=True)} "
            f"by {fmt(limit - gain)}"
        )
        return GateResult(
            "improvement",
            "pass" if ok else "fail",
            rounded(gain),
            limit,
            f"PATCH: no regression beyond ε; {head}, {verdict_text}; {ci}",
        ), boot
    reason = ""
    if gain < imp.min_delta - EPS:
        reason = f"gain is below min_delta {fmt(imp.min_delta)} by {fmt(imp.min_delta - gain)}"
    elif lower is None or lower <= 0:
        reason = "the gain may be noise: the lower bound is not > 0"
    if reason:
        return GateResult(
            "improvement", "fail", rounded(gain), imp.min_delta, f"{head}; {reason}; {ci}"
        ), boot
    return GateResult(
        "improvement",
        "pass",
        rounded(gain),
        imp.min_delta,
        f"{head} >= {fmt(imp.min_delta)}; {ci} > 0",
    ), boot


def subgroup_gate(inputs: GateInputs, cfg: GatesConfig) -> tuple[GateResult, dict[str, Any]]:
    metric, sg = inputs.metric, cfg.subgroups
    sign = orientation(metric)
    limit = -sg.max_regression
    table: dict[str, Any] = {}
    regressed, small, undefined = [], [], []
    worst: float | None = None
    judged_count = 0
    for column in sorted(inputs.subgroups):
        values = np.asarray(inputs.subgroups[column]).astype(str)
        levels: dict[str, Any] = {}
        for level in sorted(set(values.tolist())):
            mask = values == level
            rows = int(mask.sum())
            cand = safe_score(metric, inputs.y_true, inputs.candidate, mask)
            base = (
                safe_score(metric, inputs.y_true, inputs.baseline, mask)
                if inputs.baseline is not None
                else None
            )
            delta = cand - base if cand is not None and base is not None else None
            entry: dict[str, Any] = {
                "rows": rows,
                "candidate": rounded(cand),
                "baseline": rounded(base),
                "delta": rounded(delta),
                "gain": rounded(sign * delta) if delta is not None else None,
                "judged": False,
            }
            name = f"{column}={level}"
            if inputs.baseline is None:
                entry["note"] = "bootstrap"
            elif rows < sg.min_rows:
                entry["note"] = f"too small to judge ({rows} < {sg.min_rows} rows)"
                small.append(f"{name} ({rows} rows)")
            elif delta is None:
                entry["note"] = f"{metric} undefined on these rows"
                undefined.append(name)
            else:
                entry["judged"] = True
                judged_count += 1
                oriented = sign * delta
                worst = oriented if worst is None else min(worst, oriented)
                if oriented < limit - EPS:
                    entry["note"] = "regression beyond max_regression"
                    regressed.append(
                        f"{name} {fmt(oriented, signed=True)} "
                        f"(beyond {fmt(limit, signed=True)} by {fmt(limit - oriented)})"
                    )
            levels[level] = entry
        table[column] = levels
    if inputs.baseline is None:
        return GateResult("subgroups", "skip", None, limit, BOOTSTRAP_SKIP), table
    extra = []
    if small:
        extra.append(f"too small to judge (< {sg.min_rows} rows): {', '.join(small)}")
    if undefined:
        extra.append(f"{metric} undefined: {', '.join(undefined)}")
    tail = ("; " + "; ".join(extra)) if extra else ""
    if not inputs.subgroups:
        return GateResult("subgroups", "skip", None, limit, "no subgroups declared"), table
    if regressed:
        return GateResult(
            "subgroups",
            "fail",
            rounded(worst),
            limit,
            f"{metric} regressed in {', '.join(regressed)}{tail}",
        ), table
    if judged_count == 0:
        return GateResult(
            "subgroups", "skip", None, limit, f"no subgroup level has enough rows to judge{tail}"
        ), table
    return GateResult(
        "subgroups",
        "pass",
        rounded(worst),
        limit,
        f"{judged_count} level(s) judged; worst gain {fmt(worst, signed=True)} "
        f"(limit {fmt(limit, signed=True)}){tail}",
    ), table


def guardrail_gate(inputs: GateInputs, cfg: GatesConfig) -> GateResult:
    """Secondary metrics (``gates.yaml: guardrails``) may not get worse beyond their limit,
    even when the primary metric improves."""
    rails = cfg.guardrails
    limits = {
        name: -(rail.max_drop if rail.max_drop is not None else rail.max_rise or 0.0)
        for name, rail in sorted(rails.items())
    }
    if not rails:
        return GateResult("guardrails", "skip", None, None, "no guardrails declared")
    if inputs.baseline is None:
        return GateResult("guardrails", "skip", None, limits, BOOTSTRAP_SKIP)
    changes: dict[str, float | None] = {}
    broken, undefined, parts = [], [], []
    for name, limit in limits.items():
        cand = safe_score(name, inputs.y_true, inputs.candidate)
        base = safe_score(name, inputs.y_true, inputs.baseline)
        if metrics.needs_proba(name) and (
            inputs.candidate.proba is None or inputs.baseline.proba is None
        ):
            cand = base = None
        if cand is None or base is None:
            changes[name] = None
            undefined.append(name)
            continue
        gain = orientation(name) * (cand - base)
        changes[name] = rounded(gain)
        word = "drop" if metrics.greater_is_better(name) else "rise"
        text = f"{name} {fmt(cand)} vs production {fmt(base)} ({word} allowed {fmt(-limit)})"
        if gain < limit - EPS:
            broken.append(f"{text}: worse by {fmt(-gain)}, beyond the limit by {fmt(limit - gain)}")
        else:
            parts.append(text)
    if undefined:
        broken.append(f"undefined for candidate or production: {', '.join(undefined)}")
    if broken:
        return GateResult("guardrails", "fail", changes, limits, "; ".join(broken))
    return GateResult("guardrails", "pass", changes, limits, "; ".join(parts))
