"""The ``trivial_baseline`` gate: the candidate must beat a model that ignores its inputs.

On a target where one class is 97% of the rows, a model that always says that class scores
0.97 accuracy; a candidate that does no better has learnt nothing, whatever production does.
So every judgement, the bootstrap's too, also scores the trivial model of
:mod:`retrain.pipeline.trivial` (most frequent class with the training shares as
probabilities; mean, or median for ``mae``) on the same holdout rows, by the primary metric
(or ``gates.yaml: trivial_baseline.metric``), with the improvement gate's paired bootstrap (same seed, same draws).  The gate passes when
the oriented gain over it is above 0 and so is its lower bound: it beats the constant, and
not by luck.  See ``docs/gates.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from retrain.core.config import GatesConfig
from retrain.core.errors import ConfigError
from retrain.decide.comparative import bootstrap_deltas
from retrain.decide.gate_types import (
    EPS,
    GateInputs,
    GateResult,
    ModelScores,
    fmt,
    orientation,
    rounded,
    safe_score,
)
from retrain.pipeline import metrics, trivial

NAME = "trivial_baseline"


def scores(rec: dict[str, Any], metric: str, rows: int) -> ModelScores:
    y_pred, proba, classes = trivial.predictions(rec, metric, rows)
    return ModelScores(
        y_pred=y_pred, proba=proba, classes=classes, latency={}, size_bytes=0, train_seconds=None
    )


def trivial_gate(inputs: GateInputs, cfg: GatesConfig) -> tuple[GateResult, dict[str, Any] | None]:
    """Does the candidate beat the trivial model on the holdout, by the primary metric?"""
    rec = inputs.trivial
    metric = cfg.trivial_baseline.metric or inputs.metric
    if metrics.needs_proba(metric) and inputs.candidate.proba is None:
        raise ConfigError(
            f"configs/gates.yaml: trivial_baseline.metric: {metric!r} needs predicted "
            "probabilities and the candidate model has no predict_proba"
        )
    if rec is None:
        return GateResult(
            NAME, "skip", None, 0.0, "no record of the training target (training.json predates it)"
        ), None
    y = inputs.y_true
    base = scores(rec, metric, len(y))
    what = trivial.describe(rec, metric)
    c_val = safe_score(metric, y, inputs.candidate)
    t_val = safe_score(metric, y, base)
    table: dict[str, Any] = {
        "model": what,
        "prediction": trivial.constant(rec, metric),
        "metric": metric,
        "value": rounded(t_val),
        "candidate": rounded(c_val),
        "summary": metrics.summary(inputs.task, y, base.y_pred, base.proba, base.classes),
    }
    if c_val is None or t_val is None:
        table.update(gain=None, lower=None, upper=None)
        return GateResult(
            NAME, "skip", None, 0.0, f"{metric} is undefined on the holdout for {what}"
        ), table
    imp = cfg.improvement
    gain = orientation(metric) * (c_val - t_val)
    deltas = bootstrap_deltas(
        metric, y, inputs.candidate, base, n_resamples=imp.n_resamples, seed=imp.seed
    )
    finite = deltas[np.isfinite(deltas)]
    lower = float(np.percentile(finite, 100 * (1 - imp.confidence))) if len(finite) else None
    upper = float(np.percentile(finite, 100 * imp.confidence)) if len(finite) else None
    table.update(
        gain=rounded(gain),
        lower=rounded(lower),
        upper=rounded(upper),
        confidence=imp.confidence,
        n_resamples=imp.n_resamples,
        seed=imp.seed,
    )
    head = f"{metric} {fmt(c_val)} vs {fmt(t_val)} for {what}: gain {fmt(gain, signed=True)}"
    ci = f"{imp.confidence:.0%} paired-bootstrap lower bound {fmt(lower, signed=True)}"
    if gain <= EPS:
        return GateResult(
            NAME,
            "fail",
            rounded(gain),
            0.0,
            f"{head}; the candidate does not beat a model that ignores its inputs; {ci}",
        ), table
    if lower is None or lower <= 0:
        return GateResult(
            NAME,
            "fail",
            rounded(gain),
            0.0,
            f"{head}; the gain over a model that ignores its inputs may be noise: {ci} is not > 0",
        ), table
    return GateResult(NAME, "pass", rounded(gain), 0.0, f"{head} > 0; {ci} > 0"), table
