"""Promotion gates (DESIGN.md section 5): may this candidate replace production?

:func:`evaluate_gates` judges a candidate against the production model (the *baseline*) on
the same frozen holdout rows and returns a :class:`GateReport` whose results are, in order:

``data_valid``   the validate stage passed;
``schema_bump``  the version bump matches what changed: a changed input schema or class set
                 forces MAJOR whatever was requested (section 3);
``improvement``  the primary metric beats production by at least ``min_delta`` and the gain
                 is not noise (paired bootstrap lower bound > 0); for a PATCH, no regression
                 beyond ``patch.max_regression`` instead;
``trivial_baseline`` the primary metric beats the model that ignores its inputs (most
                 frequent class; mean or median) on the holdout, lower bound > 0 too; applies
                 at bootstrap as well (:mod:`retrain.decide.trivial_gate`);
``subgroups``    no declared subgroup level with enough rows regresses beyond
                 ``max_regression``; smaller levels are reported "too small to judge";
``latency``      measured p95 of single-row and batch prediction within budget;
``cost``         model size and training time within budget;
``guardrails``   secondary metrics (``guardrails``) get no worse than their limits, even
                 when the primary metric improves;
``churn``        the negative flip rate (rows production got right and the candidate gets
                 wrong; regression: rows whose error grows by more than ``tolerance``) stays
                 within ``churn.max_negative_flip_rate`` / ``max_worse_share``
                 (:mod:`retrain.decide.churn`; reported, not gating, when no limit is set);
``key_examples`` every key example with an ``expected`` label is still predicted right
                 (:mod:`retrain.decide.key_examples`; only when the file exists).

At bootstrap (no production model) the comparative gates are ``skip`` and the bump is
``initial``.  The method and its reasons are written down in ``docs/gates.md``.

This module is the orchestrator: the types and shared helpers are in
:mod:`retrain.decide.gate_types`, the comparative gates (improvement, subgroups,
guardrails) in :mod:`retrain.decide.comparative`; the names other wings import from here
(``GateInputs``, ``ModelScores``, ``bootstrap_deltas``, …) are re-exported.
"""

from __future__ import annotations

from typing import Any

from retrain.core.config import GatesConfig
from retrain.core.errors import ConfigError
from retrain.decide import churn as churn_mod
from retrain.decide import out_of_time
from retrain.decide.comparative import (
    bootstrap_deltas,
    guardrail_gate,
    improvement_gate,
    subgroup_gate,
)
from retrain.decide.gate_types import (
    BOOTSTRAP_SKIP,
    EPS,
    Bump,
    GateInputs,
    GateReport,
    GateResult,
    ModelScores,
    SchemaChange,
    Verdict,
    fmt,
    rounded,
)
from retrain.decide.trivial_gate import trivial_gate
from retrain.pipeline import metrics

__all__ = [
    "BOOTSTRAP_SKIP",
    "Bump",
    "GateInputs",
    "GateReport",
    "GateResult",
    "ModelScores",
    "SchemaChange",
    "Verdict",
    "bootstrap_deltas",
    "evaluate_gates",
]


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
    value = {k: rounded(lat.get(k), 4) for k in threshold}
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
        "model_mb": rounded(cand.size_bytes / 1_000_000, 3),
        "train_seconds": rounded(cand.train_seconds, 3) if cand.train_seconds is not None else None,
    }
    ok = f"{value['model_mb']} MB, trained in {value['train_seconds']} s"
    return _budget_gate("cost", value, threshold, {"model_mb": "MB", "train_seconds": "s"}, ok)


def _churn_gate(inputs: GateInputs, cfg: GatesConfig) -> tuple[GateResult, dict[str, Any] | None]:
    """The churn gate: how many answers get worse for the consumers (:mod:`retrain.decide.churn`)."""
    classification = inputs.task == "classification"
    key = "max_negative_flip_rate" if classification else "max_worse_share"
    limit = cfg.churn.max_negative_flip_rate if classification else cfg.churn.max_worse_share
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
        tolerance=cfg.churn.tolerance,
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
    if value > limit + EPS:
        return GateResult(
            "churn",
            "fail",
            value,
            limit,
            f"{text}; above churn.{key} {fmt(limit)} by {fmt(value - limit)}",
        ), table
    return GateResult("churn", "pass", value, limit, f"{text}; within {fmt(limit)}"), table


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
    improvement, boot = improvement_gate(inputs, cfg, bump)
    subgroups, sub_table = subgroup_gate(inputs, cfg)
    results = [_data_gate(inputs), schema_result, improvement]
    trivial_table = None
    if inputs.trivial is not None:
        trivial_result, trivial_table = trivial_gate(inputs, cfg)
        results.append(trivial_result)
    results += [
        subgroups,
        _latency_gate(inputs, cfg),
        _cost_gate(inputs, cfg),
        guardrail_gate(inputs, cfg),
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
            delta[name] = (
                rounded(value - other) if value is not None and other is not None else None
            )
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
    if inputs.trivial is not None:
        report_metrics["trivial_baseline"] = trivial_table
    if inputs.holdout_age is not None:
        report_metrics["frozen_holdout"] = inputs.holdout_age
    if inputs.out_of_time is not None:
        report_metrics["out_of_time"] = out_of_time.report(
            inputs.task, metric, inputs.out_of_time, cfg
        )
    if inputs.key_examples is not None:
        report_metrics["key_examples"] = inputs.key_examples.to_dict()
    passed = all(r.verdict != "fail" for r in results)
    return GateReport(
        passed=passed, bump=bump, metric=metric, results=results, metrics=report_metrics
    )
