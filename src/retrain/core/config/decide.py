"""Config of the judgements: ``gates.yaml`` and ``drift.yaml``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from retrain.core import metric_names
from retrain.core.config.base import Strict
from retrain.core.metric_names import ALL_METRICS

_REPLACED_CHURN_KEYS = {
    "max_share": "max_negative_flip_rate",
    "max_change": "max_worse_share (with tolerance)",
}


class GatesConfig(Strict):
    """``configs/gates.yaml``."""

    class Improvement(Strict):
        min_delta: float = Field(default=0.01, ge=0, allow_inf_nan=False)
        confidence: float = Field(default=0.95, gt=0.5, lt=1)
        n_resamples: int = Field(default=1000, ge=100, le=100_000)
        seed: int = Field(default=0, ge=0)

    class Subgroups(Strict):
        max_regression: float = Field(default=0.05, ge=0, allow_inf_nan=False)
        min_rows: int = Field(default=30, ge=1)

    class Latency(Strict):
        max_p95_ms_single: float = Field(default=50.0, gt=0, allow_inf_nan=False)
        max_p95_ms_batch: float = Field(default=500.0, gt=0, allow_inf_nan=False)
        batch_size: int = Field(default=256, ge=1)
        repeats: int = Field(default=50, ge=5, le=10_000)
        batch_repeats: int = Field(default=20, ge=5, le=10_000)
        rounds: int = Field(
            default=3, ge=1, le=100, description="median over rounds of each round's p95"
        )
        one_round_below: float = Field(
            default=0.5,
            ge=0,
            le=1,
            description="stop after the first round when every p95 is below this share of "
            "its budget (0: always run every round)",
        )

    class Cost(Strict):
        max_model_mb: float = Field(default=100.0, gt=0, allow_inf_nan=False)
        max_train_seconds: float = Field(default=1800.0, gt=0, allow_inf_nan=False)

    class Patch(Strict):
        max_regression: float = Field(default=0.005, ge=0, allow_inf_nan=False)

    class Churn(Strict):
        """Harmful churn (docs/gates.md): rows production got right that the candidate
        gets wrong.  ``None``: measured and reported, not gating (docs/decisions.md)."""

        max_negative_flip_rate: float | None = Field(
            default=None,
            ge=0,
            le=1,
            description="classification: share of holdout rows production gets right and "
            "the candidate gets wrong",
        )
        max_worse_share: float | None = Field(
            default=None,
            ge=0,
            le=1,
            description="regression: share of holdout rows whose absolute error grows by "
            "more than tolerance",
        )
        tolerance: float = Field(
            default=0.0,
            ge=0,
            allow_inf_nan=False,
            description="regression: growth of a row's absolute error, in the target's units, "
            "that still counts as unchanged",
        )

        @model_validator(mode="before")
        @classmethod
        def _replaced_keys(cls, data: Any) -> Any:
            # The gate judged total churn until issue 23; the old keys meant something else
            # (a 0.35 limit on all flips is not a limit on harmful ones), so they are
            # refused by name rather than carried over (docs/decisions.md).
            if isinstance(data, dict):
                for old, new in _REPLACED_CHURN_KEYS.items():
                    if old in data:
                        raise PydanticCustomError(
                            "replaced_key",
                            "{old}: replaced by churn.{new} (the gate now counts the rows "
                            "production got right and the candidate gets wrong; total churn "
                            "is reported, not judged; see docs/gates.md)",
                            {"old": old, "new": new},
                        )
            return data

    class TrivialBaseline(Strict):
        """The ``trivial_baseline`` gate: beat the model that ignores its inputs."""

        metric: str | None = Field(
            default=None,
            description="the metric it is judged by (default: primary_metric); on imbalanced "
            "labels one the constant cannot game (f1_macro, balanced_accuracy, roc_auc, "
            "average_precision)",
        )

        @field_validator("metric")
        @classmethod
        def _known(cls, value: str | None) -> str | None:
            if value is not None and value not in ALL_METRICS:
                raise PydanticCustomError(
                    "unknown_metric",
                    "not a known metric; expected one of [{names}]",
                    {"names": ", ".join(ALL_METRICS)},
                )
            return value

    class Guardrail(Strict):
        max_drop: float | None = Field(default=None, ge=0, allow_inf_nan=False)
        max_rise: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    primary_metric: str = "accuracy"
    guardrails: dict[str, Guardrail] = Field(
        default_factory=dict,
        description="secondary metrics that may not get worse beyond a limit (the guardrails gate)",
    )
    improvement: Improvement = Improvement()
    subgroups: Subgroups = Subgroups()
    latency: Latency = Latency()
    cost: Cost = Cost()
    patch: Patch = Patch()
    churn: Churn = Churn()
    trivial_baseline: TrivialBaseline = TrivialBaseline()

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        # Whether the metric suits the task is checked against dataset.yaml by
        # metric_names.check_metric; here only that it exists at all.
        if value not in ALL_METRICS:
            raise PydanticCustomError(
                "unknown_metric",
                "not a known metric; expected one of [{names}]",
                {"names": ", ".join(ALL_METRICS)},
            )
        return value

    @field_validator("guardrails")
    @classmethod
    def _guardrail_metrics(cls, value: dict[str, Guardrail]) -> dict[str, Guardrail]:
        for name, rail in value.items():
            if name not in ALL_METRICS:
                raise PydanticCustomError(
                    "unknown_metric",
                    "{name} is not a known metric; expected one of [{names}]",
                    {"name": repr(name), "names": ", ".join(ALL_METRICS)},
                )
            lower = name in metric_names.LOWER_IS_BETTER
            key, other = ("max_rise", "max_drop") if lower else ("max_drop", "max_rise")
            if getattr(rail, other) is not None or getattr(rail, key) is None:
                way = "lower" if lower else "higher"
                raise PydanticCustomError(
                    "guardrail_direction",
                    "{name}: {way} is better, so give {key} (how much it may get worse)",
                    {"name": name, "way": way, "key": key},
                )
        return value


class ColumnThresholds(Strict):
    """Per-column overrides in ``configs/drift.yaml`` under ``columns: {<name>: {...}}``."""

    psi_threshold: float | None = Field(default=None, gt=0)
    p_value: float | None = Field(default=None, gt=0, lt=1)
    min_effect: float | None = Field(default=None, gt=0, le=1)
    ignore: bool = Field(default=False, description="leave the column out of the drift check")


class DriftConfig(Strict):
    """``configs/drift.yaml``: thresholds for the per-column drift verdicts.

    Every field has a default, so an empty or absent file is valid.  See ``docs/drift.md``.
    """

    psi_threshold: float = Field(default=0.2, gt=0, description="PSI at or above this is large")
    p_value: float = Field(
        default=0.05, gt=0, lt=1, description="significance level, after the correction"
    )
    correction: Literal["holm", "bonferroni", "bh", "none"] = Field(
        default="holm", description="multiple-testing correction across the columns' tests"
    )
    min_effect: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="effect-size floor: KS statistic (numeric) or Cramér's V (categorical, "
        "and the missing-rate test)",
    )
    psi_bins: int = Field(default=10, ge=2, le=1000, description="quantile bins (numeric PSI)")
    psi_epsilon: float = Field(
        default=1e-4, gt=0, lt=0.01, description="floor of a bin's proportion in the PSI"
    )
    max_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="dataset drifted when the share of drifted columns exceeds this",
    )
    workers: int | None = Field(
        default=None, ge=1, description="threads over columns (default: the usable CPUs)"
    )
    columns: dict[str, ColumnThresholds] = Field(default_factory=dict)

    @field_validator("psi_epsilon")
    @classmethod
    def _epsilon_below_a_bin(cls, value: float, info: ValidationInfo) -> float:
        bins = info.data.get("psi_bins")
        if bins and value * bins >= 1:
            raise PydanticCustomError(
                "psi_epsilon_too_large",
                "must be smaller than one bin's share 1/psi_bins ({limit})",
                {"limit": f"{1 / bins:g}"},
            )
        return value

    def thresholds(self, column: str) -> tuple[float, float, float]:
        """``(psi_threshold, p_value, min_effect)`` for ``column``, overrides applied."""
        o = self.columns.get(column) or ColumnThresholds()
        return (
            self.psi_threshold if o.psi_threshold is None else o.psi_threshold,
            self.p_value if o.p_value is None else o.p_value,
            self.min_effect if o.min_effect is None else o.min_effect,
        )

    def ignored(self, column: str) -> bool:
        o = self.columns.get(column)
        return bool(o and o.ignore)
