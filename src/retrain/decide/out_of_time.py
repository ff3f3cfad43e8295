"""The out-of-time judgement: both models on the newest rows of the training window.

The train stage fitted the candidate a second time without those rows
(:mod:`retrain.pipeline.out_of_time`); here that fit and production are scored on them by
every metric, and the primary metric's gain gets the improvement gate's paired bootstrap
(same seed, same draws).  It is reported beside the frozen holdout, in ``gate.json``
(``metrics.out_of_time``) and the PR, and does not gate: the slice is small, and the model
judged there is not the one shipped (``docs/gates.md``, "Out of time").

It also says when the frozen holdout is older than the data it judges: when its newest row
is older than the training window's newest row, the candidate learnt from a period the
holdout never saw, and the frozen verdict may describe the past (``retrain holdout roll``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from retrain.core.config import GatesConfig
from retrain.decide.comparative import bootstrap_deltas
from retrain.decide.gate_types import ModelScores, orientation, rounded, safe_score
from retrain.pipeline import metrics


@dataclass
class OutOfTimeInputs:
    """The slice's labels and both models' predictions on it, and the periods involved."""

    y_true: np.ndarray
    candidate: ModelScores | None  # None: the re-check cannot refit (see release.recheck)
    baseline: ModelScores | None  # None at bootstrap
    slice: dict[str, Any]  # rows, fit_rows, by, start, end (training.json)
    production_end: str | None = None  # the last day production trained on
    production_overlap: int | None = None  # slice rows on or before that day


def holdout_age(holdout: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    """``{"holdout": {...}, "window": {...}, "holdout_older": bool | None}``: the frozen
    holdout is older when its newest day is before the training window's newest day."""
    h_end, w_end = holdout.get("end"), window.get("end")
    older = None if not (h_end and w_end) else bool(h_end < w_end)
    return {"holdout": holdout, "window": window, "holdout_older": older}


def report(task: str, metric: str, oot: OutOfTimeInputs, cfg: GatesConfig) -> dict[str, Any]:
    """``metrics.out_of_time`` of ``gate.json``."""
    y = oot.y_true

    def _summary(s: ModelScores | None) -> dict[str, float | None] | None:
        if s is None:
            return None
        return metrics.summary(task, y, s.y_pred, s.proba, s.classes)

    out: dict[str, Any] = {
        **oot.slice,
        "metric": metric,
        "candidate": _summary(oot.candidate),
        "baseline": _summary(oot.baseline),
        "production_end": oot.production_end,
        "production_overlap": oot.production_overlap,
        "gain": None,
        "lower": None,
        "upper": None,
    }
    if oot.candidate is None or oot.baseline is None or not len(y):
        return out
    c_val = safe_score(metric, y, oot.candidate)
    b_val = safe_score(metric, y, oot.baseline)
    if c_val is None or b_val is None:
        return out
    imp = cfg.improvement
    deltas = bootstrap_deltas(
        metric, y, oot.candidate, oot.baseline, n_resamples=imp.n_resamples, seed=imp.seed
    )
    finite = deltas[np.isfinite(deltas)]
    if len(finite):
        out["lower"] = rounded(float(np.percentile(finite, 100 * (1 - imp.confidence))))
        out["upper"] = rounded(float(np.percentile(finite, 100 * imp.confidence)))
    out["gain"] = rounded(orientation(metric) * (c_val - b_val))
    out["confidence"] = imp.confidence
    return out
