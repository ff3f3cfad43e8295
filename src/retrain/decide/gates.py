"""Promotion gates (DESIGN.md section 5): may this candidate replace production?

:func:`evaluate_gates` judges a candidate against the production model (the *baseline*) on
the same frozen holdout rows and returns a :class:`GateReport` whose results are, in order:

``data_valid``   the validate stage passed;
``schema_bump``  the version bump matches what changed: a changed input schema or class set
                 forces MAJOR whatever was requested (section 3);
``improvement``  the primary metric beats production by at least ``min_delta`` and the gain
                 is not noise (paired bootstrap lower bound > 0); for a PATCH, no regression
                 beyond ``patch.max_regression`` instead;
``subgroups``    no declared subgroup level with enough rows regresses beyond
                 ``max_regression``; smaller levels are reported "too small to judge";
``latency``      measured p95 of single-row and batch prediction within budget;
``cost``         model size and training time within budget;
``guardrails``   secondary metrics (``guardrails``) get no worse than their limits, even
                 when the primary metric improves;
``churn``        the share of holdout predictions that change (regression: the median
                 relative change) stays within ``churn.max_share`` / ``max_change``
                 (:mod:`retrain.decide.churn`; reported, not gating, when no limit is set);
``key_examples`` every key example with an ``expected`` label is still predicted right
                 (:mod:`retrain.decide.key_examples`; only when the file exists).

At bootstrap (no production model) the comparative gates are ``skip`` and the bump is
``initial``.  The method and its reasons are written down in ``docs/gates.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from retrain.core.config import GatesConfig
from retrain.core.errors import ConfigError
from retrain.decide import churn as churn_mod
from retrain.decide.key_examples import KeyExampleReport
from retrain.pipeline import metrics

Verdict = Literal["pass", "fail", "skip"]
Bump = Literal["initial", "major", "minor", "patch"]

BOOTSTRAP_SKIP = "no production model to compare (bootstrap)"
_DIGITS = 6
_EPS = 1e-12  # comparisons of rounded metric differences are made with this slack
_CELLS_PER_CHUNK = 2_000_000  # bootstrap resamples are scored in chunks of ~16 MB


@dataclass
class SchemaChange:
    """What differs between the production model's schema and the candidate's."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)
    classes_added: list[str] = field(default_factory=list)
    classes_removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.added or self.removed or self.retyped or self.classes_added or self.classes_removed
        )

    def describe(self) -> str:
        """One line naming every changed column and class, e.g. ``columns added [x]``."""
        parts = [
            f"{label} [{', '.join(map(str, names))}]"
            for label, names in (
                ("columns added", self.added),
                ("columns removed", self.removed),
                ("columns retyped", self.retyped),
                ("classes added", self.classes_added),
                ("classes removed", self.classes_removed),
            )
            if names
        ]
        return "; ".join(parts) if parts else "schema unchanged"


@dataclass
class ModelScores:
    """One model's predictions on the frozen holdout plus its measured costs."""

    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: list[Any] | None
    latency: dict[str, float]  # {"p95_ms_single": .., "p95_ms_batch": ..}
    size_bytes: int
    train_seconds: float | None


@dataclass
class GateInputs:
    task: Literal["classification", "regression"]
    metric: str
    y_true: np.ndarray
    subgroups: dict[str, np.ndarray]  # column -> value per holdout row
    candidate: ModelScores
    baseline: ModelScores | None  # None at bootstrap
    bump_requested: Literal["minor", "patch", "major"] | None
    schema_change: SchemaChange
    data_valid: bool
    data_detail: str = ""
    key_examples: KeyExampleReport | None = None  # None: no data/key_examples.csv


@dataclass
class GateResult:
    name: str
    verdict: Verdict
    value: Any
    threshold: Any
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass
class GateReport:
    passed: bool
    bump: Bump
    metric: str
    results: list[GateResult]
    metrics: dict[str, Any]  # {"candidate": {...}, "baseline": {...}|None, "subgroups": {...}}

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "bump": self.bump,
            "metric": self.metric,
            "gates": {r.name: r.to_dict() for r in self.results},
            "metrics": self.metrics,
        }

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if r.verdict == "fail"]

    def result(self, name: str) -> GateResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)


# --------------------------------------------------------------------------- bootstrap
def _sign(metric: str) -> float:
    return 1.0 if metrics.greater_is_better(metric) else -1.0


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
    sign = _sign(metric)
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


# --------------------------------------------------------------------------- gates
def _r(x: float | None, digits: int = _DIGITS) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    value = round(float(x), digits)
    return 0.0 if value == 0 else value  # no "-0.0" in reports


def _f(x: float | None, digits: int = 4, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _safe_score(
    metric: str, y: np.ndarray, s: ModelScores, mask: np.ndarray | None = None
) -> float | None:
    try:
        if mask is None:
            return metrics.score(metric, y, s.y_pred, s.proba, s.classes)
        proba = s.proba[mask] if s.proba is not None else None
        return metrics.score(metric, y[mask], s.y_pred[mask], proba, s.classes)
    except ValueError:
        return None


def _data_gate(inputs: GateInputs) -> GateResult:
    detail = inputs.data_detail or ("validate stage passed" if inputs.data_valid else "")
    if not inputs.data_valid and not inputs.data_detail:
        detail = "validate stage failed"
    return GateResult(
        "data_valid", "pass" if inputs.data_valid else "fail", bool(inputs.data_valid), True, detail
    )


def _bump_gate(inputs: GateInputs) -> tuple[Bump, GateResult]:
    change = inputs.schema_change
    requested = inputs.bump_requested
    asked = f" (requested {requested})" if requested else ""
    if inputs.baseline is None:
        return "initial", GateResult(
            "schema_bump", "pass", "initial", "initial", "first version: 1.0.0 (bootstrap)"
        )
    if change.changed:
        detail = f"input/output schema changed: {change.describe()}; MAJOR is forced{asked}"
        return "major", GateResult("schema_bump", "pass", "major", "major", detail)
    if requested == "major":
        return "major", GateResult(
            "schema_bump", "pass", "major", "patch", "schema unchanged; MAJOR requested by hand"
        )
    if requested == "patch":
        return "patch", GateResult(
            "schema_bump", "pass", "patch", "patch", "schema unchanged; PATCH requested by hand"
        )
    return "minor", GateResult(
        "schema_bump",
        "pass",
        "minor",
        "patch",
        "schema unchanged; retrain that must beat production: MINOR",
    )


def _improvement_gate(
    inputs: GateInputs, cfg: GatesConfig, bump: Bump
) -> tuple[GateResult, dict[str, Any] | None]:
    metric = inputs.metric
    base = inputs.baseline
    if base is None:
        return GateResult(
            "improvement", "skip", None, cfg.improvement.min_delta, BOOTSTRAP_SKIP
        ), None
    imp = cfg.improvement
    c_val = _safe_score(metric, inputs.y_true, inputs.candidate)
    b_val = _safe_score(metric, inputs.y_true, base)
    if c_val is None or b_val is None:
        return GateResult(
            "improvement",
            "fail",
            None,
            cfg.improvement.min_delta,
            f"{metric} is undefined on the holdout (e.g. a single class present); "
            "choose another primary_metric",
        ), None
    gain = _sign(metric) * (c_val - b_val)
    deltas = bootstrap_deltas(
        metric, inputs.y_true, inputs.candidate, base, n_resamples=imp.n_resamples, seed=imp.seed
    )
    finite = deltas[np.isfinite(deltas)]
    lower = float(np.percentile(finite, 100 * (1 - imp.confidence))) if len(finite) else None
    upper = float(np.percentile(finite, 100 * imp.confidence)) if len(finite) else None
    boot = {
        "method": "paired bootstrap",
        "metric": metric,
        "delta": _r(gain),
        "lower": _r(lower),
        "upper": _r(upper),
        "confidence": imp.confidence,
        "n_resamples": imp.n_resamples,
        "valid_resamples": len(finite),
        "seed": imp.seed,
    }
    direction = "higher" if metrics.greater_is_better(metric) else "lower"
    head = (
        f"{metric} {_f(c_val)} vs production {_f(b_val)} ({direction} is better): "
        f"gain {_f(gain, signed=True)}"
    )
    ci = (
        f"{imp.confidence:.0%} paired-bootstrap lower bound {_f(lower, signed=True)} "
        f"({imp.n_resamples} resamples, seed {imp.seed})"
    )
    if bump == "patch":
        limit = -cfg.patch.max_regression
        ok = gain >= limit - _EPS
        verdict_text = (
            f"within the PATCH allowance {_f(limit, signed=True)}"
            if ok
            else f"regresses beyond the PATCH allowance {_f(limit, signed=True)} "
            f"by {_f(limit - gain)}"
        )
        return GateResult(
            "improvement",
            "pass" if ok else "fail",
            _r(gain),
            limit,
            f"PATCH: no regression beyond ε; {head}, {verdict_text}; {ci}",
        ), boot
    reason = ""
    if gain < imp.min_delta - _EPS:
        reason = f"gain is below min_delta {_f(imp.min_delta)} by {_f(imp.min_delta - gain)}"
    elif lower is None or lower <= 0:
        reason = "the gain may be noise: the lower bound is not > 0"
    if reason:
        return GateResult(
            "improvement", "fail", _r(gain), imp.min_delta, f"{head}; {reason}; {ci}"
        ), boot
    return GateResult(
        "improvement", "pass", _r(gain), imp.min_delta, f"{head} >= {_f(imp.min_delta)}; {ci} > 0"
    ), boot


def _subgroup_gate(inputs: GateInputs, cfg: GatesConfig) -> tuple[GateResult, dict[str, Any]]:
    metric, sg = inputs.metric, cfg.subgroups
    sign = _sign(metric)
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
            cand = _safe_score(metric, inputs.y_true, inputs.candidate, mask)
            base = (
                _safe_score(metric, inputs.y_true, inputs.baseline, mask)
                if inputs.baseline is not None
                else None
            )
            delta = cand - base if cand is not None and base is not None else None
            entry: dict[str, Any] = {
                "rows": rows,
                "candidate": _r(cand),
                "baseline": _r(base),
                "delta": _r(delta),
                "gain": _r(sign * delta) if delta is not None else None,
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
                if oriented < limit - _EPS:
                    entry["note"] = "regression beyond max_regression"
                    regressed.append(
                        f"{name} {_f(oriented, signed=True)} "
                        f"(beyond {_f(limit, signed=True)} by {_f(limit - oriented)})"
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
            _r(worst),
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
        _r(worst),
        limit,
        f"{judged_count} level(s) judged; worst gain {_f(worst, signed=True)} "
        f"(limit {_f(limit, signed=True)}){tail}",
    ), table


def _budget_gate(
    name: str,
    value: dict[str, float | None],
    threshold: dict[str, float],
    units: dict[str, str],
    ok_detail: str,
) -> GateResult:
    """Pass when every measured value is within its budget; unmeasured is a failure."""
    missing = [k for k, v in value.items() if v is None]
    if missing:
        return GateResult(name, "fail", value, threshold, f"not measured: {', '.join(missing)}")
    over = []
    for key, limit in threshold.items():
        measured = value[key]
        if measured is not None and measured > limit:
            unit = units[key]
            over.append(
                f"{key} {measured:g} {unit} > budget {limit:g} {unit} "
                f"(over by {measured - limit:.4g} {unit})"
            )
    if over:
        return GateResult(name, "fail", value, threshold, "; ".join(over))
    return GateResult(name, "pass", value, threshold, ok_detail)


def _latency_gate(inputs: GateInputs, cfg: GatesConfig) -> GateResult:
    lat, budget = inputs.candidate.latency or {}, cfg.latency
    threshold = {"p95_ms_single": budget.max_p95_ms_single, "p95_ms_batch": budget.max_p95_ms_batch}
    value = {k: _r(lat.get(k), 4) for k in threshold}
    ok = (
        f"p95 {lat['p95_ms_single']:.2f} ms per row, {lat['p95_ms_batch']:.2f} ms per batch "
        f"of {budget.batch_size} rows"
        if None not in value.values()
        else ""
    )
    base = inputs.baseline.latency if inputs.baseline is not None else None
    if ok and base and base.get("p95_ms_single") is not None:
        ok += f" (production {base['p95_ms_single']:.2f} ms per row, measured interleaved)"
    return _budget_gate("latency", value, threshold, dict.fromkeys(threshold, "ms"), ok)


def _cost_gate(inputs: GateInputs, cfg: GatesConfig) -> GateResult:
    cand, budget = inputs.candidate, cfg.cost
    threshold = {"model_mb": budget.max_model_mb, "train_seconds": budget.max_train_seconds}
    value = {
        "model_mb": _r(cand.size_bytes / 1_000_000, 3),
        "train_seconds": _r(cand.train_seconds, 3) if cand.train_seconds is not None else None,
    }
    ok = f"{value['model_mb']} MB, trained in {value['train_seconds']} s"
    return _budget_gate("cost", value, threshold, {"model_mb": "MB", "train_seconds": "s"}, ok)


def _guardrail_gate(inputs: GateInputs, cfg: GatesConfig) -> GateResult:
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
        cand = _safe_score(name, inputs.y_true, inputs.candidate)
        base = _safe_score(name, inputs.y_true, inputs.baseline)
        if metrics.needs_proba(name) and (
            inputs.candidate.proba is None or inputs.baseline.proba is None
        ):
            cand = base = None
        if cand is None or base is None:
            changes[name] = None
            undefined.append(name)
            continue
        gain = _sign(name) * (cand - base)
        changes[name] = _r(gain)
        word = "drop" if metrics.greater_is_better(name) else "rise"
        text = f"{name} {_f(cand)} vs production {_f(base)} ({word} allowed {_f(-limit)})"
        if gain < limit - _EPS:
            broken.append(f"{text}: worse by {_f(-gain)}, beyond the limit by {_f(limit - gain)}")
        else:
            parts.append(text)
    if undefined:
        broken.append(f"undefined for candidate or production: {', '.join(undefined)}")
    if broken:
        return GateResult("guardrails", "fail", changes, limits, "; ".join(broken))
    return GateResult("guardrails", "pass", changes, limits, "; ".join(parts))


def _churn_gate(inputs: GateInputs, cfg: GatesConfig) -> tuple[GateResult, dict[str, Any] | None]:
    """Eighth gate: how many answers change for the consumers (:mod:`retrain.decide.churn`)."""
    classification = inputs.task == "classification"
    key = "max_share" if classification else "max_change"
    limit = cfg.churn.max_share if classification else cfg.churn.max_change
    if inputs.baseline is None:
        return GateResult("churn", "skip", None, limit, BOOTSTRAP_SKIP), None
    imp = cfg.improvement
    c = churn_mod.measure(
        inputs.task,
        inputs.y_true,
        inputs.baseline.y_pred,
        inputs.candidate.y_pred,
        confidence=imp.confidence,
        n_resamples=imp.n_resamples,
        seed=imp.seed,
    )
    table = c.to_dict()
    text = churn_mod.describe(c)
    value = table["value"]
    if value is None:
        return GateResult("churn", "skip", None, limit, f"churn undefined: {text}"), table
    if limit is None:
        return GateResult(
            "churn", "skip", value, None, f"{text}; reported only (set churn.{key} to gate it)"
        ), table
    if value > limit + _EPS:
        return GateResult(
            "churn",
            "fail",
            value,
            limit,
            f"{text}; above churn.{key} {_f(limit)} by {_f(value - limit)}",
        ), table
    return GateResult("churn", "pass", value, limit, f"{text}; within {_f(limit)}"), table


def _key_examples_gate(inputs: GateInputs) -> GateResult:
    rep = inputs.key_examples
    if rep is None:
        return GateResult("key_examples", "skip", None, None, "no data/key_examples.csv")
    verdict, value, detail = rep.verdict()
    return GateResult("key_examples", verdict, value, rep.with_expected, detail)


def evaluate_gates(inputs: GateInputs, cfg: GatesConfig) -> GateReport:
    """Run every promotion gate and decide the version bump.

    The bump is ``initial`` at bootstrap, else ``major`` if the schema or class set changed
    (or MAJOR was requested), else ``patch`` if PATCH was requested, else ``minor``.
    ``passed`` is true when no gate failed (``skip`` is not a failure).  ``metrics`` holds
    plain JSON types, rounded to 6 decimals, identical for identical inputs and seed.

    Raises
    ------
    ConfigError
        The primary metric does not suit the task, or needs probabilities the model
        does not give.
    """
    metric = metrics.check_metric(inputs.task, inputs.metric)
    if metrics.needs_proba(metric) and inputs.candidate.proba is None:
        raise ConfigError(
            f"configs/gates.yaml: primary_metric: {metric!r} needs predicted "
            "probabilities and the candidate model has no predict_proba"
        )
    bump, schema_result = _bump_gate(inputs)
    improvement, boot = _improvement_gate(inputs, cfg, bump)
    subgroups, sub_table = _subgroup_gate(inputs, cfg)
    results = [
        _data_gate(inputs),
        schema_result,
        improvement,
        subgroups,
        _latency_gate(inputs, cfg),
        _cost_gate(inputs, cfg),
        _guardrail_gate(inputs, cfg),
    ]
    churn_result, churn_table = _churn_gate(inputs, cfg)
    results.append(churn_result)
    if inputs.key_examples is not None:
        results.append(_key_examples_gate(inputs))

    def _summary(s: ModelScores) -> dict[str, float | None]:
        return metrics.summary(inputs.task, inputs.y_true, s.y_pred, s.proba, s.classes)

    cand_summary = _summary(inputs.candidate)
    base_summary = _summary(inputs.baseline) if inputs.baseline is not None else None
    delta: dict[str, float | None] = {}
    if base_summary is not None:
        for name, value in cand_summary.items():
            other = base_summary.get(name)
            delta[name] = _r(value - other) if value is not None and other is not None else None
    report_metrics = {
        "primary": metric,
        "greater_is_better": metrics.greater_is_better(metric),
        "candidate": cand_summary,
        "baseline": base_summary,
        "delta": delta,
        "subgroups": sub_table,
        "bootstrap": boot,
        "churn": churn_table,
    }
    if inputs.key_examples is not None:
        report_metrics["key_examples"] = inputs.key_examples.to_dict()
    passed = all(r.verdict != "fail" for r in results)
    return GateReport(
        passed=passed, bump=bump, metric=metric, results=results, metrics=report_metrics
    )
