"""Config of what is trained on and how: ``dataset.yaml``, ``model.yaml``, ``triggers.yaml``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from retrain.core.config.base import Strict


class FeatureSpec(Strict):
    name: str
    type: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    allow_missing: bool = False
    levels: list[str] | None = Field(
        default=None,
        description="a categorical column's levels; validate and serve refuse any other",
    )

    @model_validator(mode="after")
    def _range(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        if self.levels is not None:
            if self.type != "categorical":
                raise ValueError("levels: only a categorical feature has levels")
            if not self.levels:
                raise ValueError("levels: give at least one level, or leave levels out")
            dupes = sorted({v for v in self.levels if self.levels.count(v) > 1})
            if dupes:
                raise ValueError(f"levels: {dupes} listed twice")
        return self


class OutOfTime(Strict):
    """``dataset.yaml: out_of_time``: the newest rows of the training window, left out of a
    second fit of the candidate so both models are also judged on data newer than what that
    fit saw (``docs/gates.md``; the shipped model is fit on the whole window)."""

    share: float = Field(
        default=0.1, ge=0, le=0.5, description="newest share of the window's rows (0: off)"
    )
    min_rows: int = Field(default=30, ge=1, description="fewer rows in the slice: not judged")


class DatasetConfig(Strict):
    """Where the data is and what it looks like (``configs/dataset.yaml``)."""

    name: str = Field(min_length=1)
    batches: str = Field(
        default="data/batches", description="directory of labelled batches (CSV or Parquet)"
    )
    holdout: str = Field(default="data/holdout.csv", description="the frozen holdout file")
    target: str
    task: Literal["classification", "regression"] = "classification"
    time_column: str | None = None
    features: list[FeatureSpec] = Field(min_length=1)
    subgroups: list[str] = Field(default_factory=list)
    labels: list[str] | None = Field(
        default=None, description="allowed target labels (classification); others are refused"
    )
    train_window_days: int | None = Field(
        default=None, gt=0, description="train on the newest N days only (needs time_column)"
    )
    ignore_columns: list[str] = Field(
        default_factory=list,
        description="columns in the files the model must not see (ids, other labels)",
    )
    allow_duplicate_rows: bool = False
    min_rows: int = Field(default=50, ge=1)
    out_of_time: OutOfTime = OutOfTime()

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features: duplicate names {dupes}")
        if self.target in names:
            raise ValueError(f"target {self.target!r} is also listed as a feature")
        clash = sorted(set(self.ignore_columns) & set(names + [self.target]))
        if clash:
            raise ValueError(f"ignore_columns: {clash} are also features or the target")
        for sg in self.subgroups:
            if sg not in names:
                raise ValueError(f"subgroups: {sg!r} is not a declared feature")
        if self.train_window_days is not None and not self.time_column:
            raise ValueError("train_window_days needs time_column")
        if self.labels is not None and self.task == "regression":
            raise ValueError("labels only applies to classification")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


BUILTIN_ESTIMATORS: tuple[str, ...] = (
    "random_forest",
    "hist_gradient_boosting",
    "logistic_regression",
    "decision_tree",
    "ridge",
    "linear_regression",
    "lightgbm",  # the `boost` extra; data-parallel on a Dask cluster with engine: dask
    "xgboost",
)
# Built-in names that can continue from a fitted model (``warm_start`` or ``partial_fit``).
WARM_STARTABLE_BUILTINS = frozenset(
    {"random_forest", "hist_gradient_boosting", "logistic_regression"}
)
_DOTTED = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
_MODULE_FUNCTION = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class TrainingMode(Strict):
    """``model.yaml: training``: retrain from scratch, or continue from production."""

    mode: Literal["full", "warm_start"] = "full"
    full_every: int = Field(
        default=4, ge=1, description="every N-th version in a warm-start chain is a full retrain"
    )


ENGINES: tuple[str, ...] = ("local", "dask")
# Dask scheduler addresses: scheme://host:port (tcp, tls, ws, wss, ucx), as Client takes them.
_DASK_ADDRESS = r"^(tcp|tls|ws|wss|ucx)://(\[[0-9A-Fa-f:.]+\]|[^\s/@:\[\]]+):[0-9]{1,5}$"


def dask_address_problem(value: str) -> str | None:
    """Why ``value`` is not a Dask scheduler address (None when it is one)."""
    import re

    if re.match(_DASK_ADDRESS, value):
        return None
    return "expected a scheduler address such as tcp://dask-scheduler:8786"


class DaskSettings(Strict):
    """``model.yaml: dask``: where ``engine: dask`` trains (``retrain.pipeline.engine``)."""

    scheduler_address: str | None = Field(
        default=None,
        description="a running cluster's scheduler (DASK_SCHEDULER_ADDRESS overrides it); "
        "none: an in-process LocalCluster",
    )
    local_workers: int = Field(default=2, ge=1, le=64, description="LocalCluster worker processes")
    threads_per_worker: int = Field(default=1, ge=1, le=64, description="LocalCluster threads")
    connect_timeout_seconds: float = Field(
        default=10, gt=0, le=300, description="how long an unreachable scheduler is waited for"
    )

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        problem = None if value is None else dask_address_problem(value)
        if problem:
            raise PydanticCustomError("dask_address", problem)
        return value


class ModelConfig(Strict):
    """The estimator and its parameters (``configs/model.yaml``).

    Exactly one of ``estimator`` (a built-in name, or the import path of an estimator class)
    and ``pipeline`` (``module:function`` in the fork's own code, returning an unfitted
    estimator or Pipeline).  Whether an import path resolves is checked where the model is
    built (``retrain.pipeline.estimators``); here only the shapes.
    """

    estimator: str | None = None
    pipeline: str | None = Field(default=None, pattern=_MODULE_FUNCTION)
    params: dict[str, Any] = Field(default_factory=dict)
    random_state: int = 0
    trusted_types: list[str] = Field(
        default_factory=list,
        description="types the saved model may contain beyond the built-in skops allow-list",
    )
    training: TrainingMode = TrainingMode()
    engine: Literal["local", "dask"] = Field(
        default="local", description="where the model is fitted: this process, or a Dask cluster"
    )
    dask: DaskSettings = DaskSettings()

    @field_validator("estimator")
    @classmethod
    def _estimator_shape(cls, value: str | None) -> str | None:
        import re

        if value is None or value in BUILTIN_ESTIMATORS or re.match(_DOTTED, value):
            return value
        raise PydanticCustomError(
            "estimator_name",
            "expected a built-in name ({names}) or an import path such as "
            "sklearn.ensemble.ExtraTreesClassifier",
            {"names": ", ".join(BUILTIN_ESTIMATORS)},
        )

    @field_validator("trusted_types")
    @classmethod
    def _trusted_shape(cls, value: list[str]) -> list[str]:
        import re

        for name in value:
            if not isinstance(name, str) or not re.match(_DOTTED, name):
                raise PydanticCustomError(
                    "trusted_type",
                    "{name} is not a dotted type name such as pkg.module.Class",
                    {"name": repr(name)},
                )
        return value

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        if (self.estimator is None) == (self.pipeline is None):
            raise ValueError("set exactly one of estimator and pipeline")
        if self.pipeline is not None and self.params:
            raise ValueError(
                "params: not used with pipeline; the pipeline function sets its own parameters"
            )
        if (
            self.training.mode == "warm_start"
            and self.estimator in BUILTIN_ESTIMATORS
            and self.estimator not in WARM_STARTABLE_BUILTINS
        ):
            raise ValueError(
                f"training.mode: estimator {self.estimator!r} cannot warm-start (no warm_start "
                f"or partial_fit); use one of {sorted(WARM_STARTABLE_BUILTINS)} or mode: full"
            )
        return self

    @property
    def builtin(self) -> bool:
        return self.estimator in BUILTIN_ESTIMATORS

    @property
    def label(self) -> str:
        """How the model is named in messages and records."""
        return self.estimator or f"pipeline {self.pipeline}"


class TriggersConfig(Strict):
    """When to retrain (``configs/triggers.yaml``)."""

    class Calendar(Strict):
        enabled: bool = True
        max_age_days: float = Field(default=30, gt=0)

    class NewData(Strict):
        enabled: bool = True
        min_new_rows: int = Field(default=100, ge=1)

    class DataDrift(Strict):
        enabled: bool = True
        max_share_drifted: float = Field(default=0.3, ge=0, le=1)

    class PredictionDrift(Strict):
        enabled: bool = True
        psi_threshold: float = Field(default=0.2, gt=0)

    class Performance(Strict):
        enabled: bool = True
        min_metric: float | None = None
        max_drop: float | None = Field(default=0.05, ge=0)
        min_rows: int = Field(default=30, ge=1)

    class MinExpectedGain(Strict):
        # A scheduled run fired only by weak triggers is skipped (docs/gates.md).
        new_rows: int | None = Field(
            default=None, ge=1, description="new_data firing with fewer new rows is weak"
        )
        drift_share: float | None = Field(
            default=None, ge=0, le=1, description="data_drift firing below this share is weak"
        )

    class Stuck(Strict):
        # A person decides when candidates keep being held (release/stuck.py).
        after_gated_runs: int | None = Field(
            default=3,
            ge=1,
            description="this many gated judgements in a row of one production version, each "
            "fired by a staleness trigger, open (or update) one GitHub issue; null: never",
        )

    cooldown_days: float = Field(default=1, ge=0)
    min_expected_gain: MinExpectedGain | None = None
    stuck: Stuck = Stuck()
    calendar: Calendar = Calendar()
    new_data: NewData = NewData()
    data_drift: DataDrift = DataDrift()
    prediction_drift: PredictionDrift = PredictionDrift()
    performance: Performance = Performance()
