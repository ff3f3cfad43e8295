"""The vocabulary of the promotion gates: what they read, what they return, shared helpers.

:mod:`retrain.decide.gates` runs the gates (:func:`~retrain.decide.gates.evaluate_gates`);
the comparative ones live in :mod:`retrain.decide.comparative`, churn in
:mod:`retrain.decide.churn` and key examples in :mod:`retrain.decide.key_examples`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from retrain.decide.key_examples import KeyExampleReport
from retrain.pipeline import metrics

Verdict = Literal["pass", "fail", "skip"]
Bump = Literal["initial", "major", "minor", "patch"]

BOOTSTRAP_SKIP = "no production model to compare (bootstrap)"
DIGITS = 6
EPS = 1e-12  # comparisons of rounded metric differences are made with this slack


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
    # the training target's record for the trivial baseline (retrain.pipeline.trivial);
    # None: no trivial_baseline gate (a training.json written before it existed)
    trivial: dict[str, Any] | None = None
    # the out-of-time slice (retrain.decide.out_of_time.OutOfTimeInputs); reported, never
    # gating; None: no slice judged
    out_of_time: Any = None
    # the frozen holdout's and the training window's periods (out_of_time.holdout_age)
    holdout_age: dict[str, Any] | None = None


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


# --------------------------------------------------------------------------- helpers
def orientation(metric: str) -> float:
    return 1.0 if metrics.greater_is_better(metric) else -1.0


def rounded(x: float | None, digits: int = DIGITS) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    value = round(float(x), digits)
    return 0.0 if value == 0 else value  # no "-0.0" in reports


def fmt(x: float | None, digits: int = 4, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def safe_score(
    metric: str, y: np.ndarray, s: ModelScores, mask: np.ndarray | None = None
) -> float | None:
    try:
        if mask is None:
            return metrics.score(metric, y, s.y_pred, s.proba, s.classes)
        proba = s.proba[mask] if s.proba is not None else None
        return metrics.score(metric, y[mask], s.y_pred[mask], proba, s.classes)
    except ValueError:
        return None
