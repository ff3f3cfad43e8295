"""Configuration: declared once as typed models, validated on load.

The files under ``configs/`` are read here and nowhere else.  Each file maps to one model;
an unknown key, a wrong type or an impossible threshold raises :class:`ConfigError` with one
line naming the file and the key, e.g.::

    configs/gates.yaml: improvement.min_delta: must be >= 0 (got -0.1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from retrain.core import metric_names
from retrain.core.errors import ConfigError
from retrain.core.metric_names import ALL_METRICS

CONFIG_DIR = "configs"


class Strict(BaseModel):
    """Base for config models: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- dataset
class FeatureSpec(Strict):
    name: str
    type: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    allow_missing: bool = False

    @model_validator(mode="after")
    def _range(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


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


# --------------------------------------------------------------------------- model
BUILTIN_ESTIMATORS: tuple[str, ...] = (
    "random_forest",
    "hist_gradient_boosting",
    "logistic_regression",
    "decision_tree",
    "ridge",
    "linear_regression",
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


# --------------------------------------------------------------------------- triggers
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

    cooldown_days: float = Field(default=1, ge=0)
    min_expected_gain: MinExpectedGain | None = None
    calendar: Calendar = Calendar()
    new_data: NewData = NewData()
    data_drift: DataDrift = DataDrift()
    prediction_drift: PredictionDrift = PredictionDrift()
    performance: Performance = Performance()


# --------------------------------------------------------------------------- gates
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

    class Cost(Strict):
        max_model_mb: float = Field(default=100.0, gt=0, allow_inf_nan=False)
        max_train_seconds: float = Field(default=1800.0, gt=0, allow_inf_nan=False)

    class Patch(Strict):
        max_regression: float = Field(default=0.005, ge=0, allow_inf_nan=False)

    class Churn(Strict):
        # None: churn is measured and reported but does not gate (docs/decisions.md)
        max_share: float | None = Field(
            default=None, ge=0, le=1, description="classification: share of labels that flip"
        )
        max_change: float | None = Field(
            default=None,
            ge=0,
            allow_inf_nan=False,
            description="regression: median |change| / holdout target IQR",
        )

    class Guardrail(Strict):
        max_drop: float | None = Field(default=None, ge=0, allow_inf_nan=False)
        max_rise: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    primary_metric: str = "accuracy"
    guardrails: dict[str, Guardrail] = Field(
        default_factory=dict,
        description="secondary metrics that may not get worse beyond a limit (seventh gate)",
    )
    improvement: Improvement = Improvement()
    subgroups: Subgroups = Subgroups()
    latency: Latency = Latency()
    cost: Cost = Cost()
    patch: Patch = Patch()
    churn: Churn = Churn()

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


# --------------------------------------------------------------------------- drift
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


# --------------------------------------------------------------------------- rollout
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RolloutConfig(Strict):
    """``rollout:`` in ``configs/release.yaml``: how a passing candidate reaches traffic.

    ``direct`` merges make it production at once (with a watch window of health checks);
    ``shadow`` proposes it as a shadow (answers logged, never returned); ``canary`` proposes
    it at the first of ``steps`` (percent of requests) and ``retrain monitor`` advances,
    holds or rolls back from the prediction log.  See README "Safe rollouts".
    """

    class Analysis(Strict):
        """Canary vs production, per step, on the rows logged since the step began."""

        min_requests: int = Field(default=200, ge=1, description="canary requests per step")
        min_labels: int = Field(default=50, ge=0, description="labelled canary rows per step")
        max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
        max_p95_latency_ratio: float = Field(default=1.5, ge=1, allow_inf_nan=False)
        min_metric_change: float = Field(
            default=-0.02,
            allow_inf_nan=False,
            description="canary minus production on the live primary metric (oriented: "
            "higher is better); the interval must clear it to advance, and lie wholly below "
            "it to roll back",
        )
        confidence: float = Field(default=0.95, gt=0.5, lt=1)
        n_resamples: int = Field(default=1000, ge=100, le=100_000)
        seed: int = Field(default=0, ge=0)

    class Health(Strict):
        """Absolute health of a directly promoted version inside its watch window."""

        min_requests: int = Field(default=50, ge=1)
        max_error_rate: float = Field(default=0.05, ge=0, le=1)
        max_p95_latency_ms: float = Field(default=250.0, gt=0, allow_inf_nan=False)
        min_metric: float | None = Field(
            default=None, description="live primary metric floor (needs min_labels labels)"
        )
        max_metric_drop: float | None = Field(
            default=0.1,
            ge=0,
            description="without min_metric: the floor is the version's holdout value minus this",
        )
        min_labels: int = Field(default=30, ge=1)

    class Challenger(Strict):
        """A shadow beating production on the same live requests (paired bootstrap)."""

        min_delta: float = Field(default=0.01, ge=0, allow_inf_nan=False)
        min_labels: int = Field(default=200, ge=1)
        window: str = Field(default="24h", description="shadow runs at least this long")

        @field_validator("window")
        @classmethod
        def _window(cls, value: str) -> str:
            duration_seconds(value)
            return value

    strategy: Literal["direct", "shadow", "canary"] = "direct"
    steps: list[int] = Field(default_factory=lambda: [5, 25, 50])
    analysis: Analysis = Analysis()
    health: Health = Health()
    challenger: Challenger = Challenger()
    watch_window: str = Field(default="24h", description="after a direct promotion, e.g. 30m")
    auto_rollback: Literal["pr", "push"] = "pr"

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("expected at least one weight, e.g. [5, 25, 50]")
        for w in value:
            if not 1 <= w <= 99:
                raise ValueError(f"each step is a percent from 1 to 99 (got {w})")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"steps must increase (got {value})")
        return value

    @field_validator("watch_window")
    @classmethod
    def _watch(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @property
    def watch_window_seconds(self) -> float:
        return duration_seconds(self.watch_window)


def duration_seconds(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"24h"``, ``"7d"`` -> seconds; anything else is a ValueError."""
    t = str(text).strip()
    unit = t[-1:].lower()
    try:
        value = float(t[:-1]) if unit in _DURATION else float("nan")
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a duration like 90s, 30m, 24h or 7d (got {text!r})")
    return value * _DURATION[unit]


# --------------------------------------------------------------------------- release
class ReleaseConfig(Strict):
    """Registry, tracking and deployment settings (``configs/release.yaml``)."""

    model_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
    retention: int = Field(default=20, ge=1, description="keep the last N registry entries")
    mlflow_experiment: str = "retrain"
    mlflow_tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        description="used when MLFLOW_TRACKING_URI is not set; relative paths are repo-relative",
    )
    deploy_command: list[str] | None = Field(
        default=None,
        description="argv run after promote/rollback with RETRAIN_* variables in its env",
    )
    known_limitations: list[str] = Field(default_factory=list)
    base_branch: str = "main"
    rollout: RolloutConfig = RolloutConfig()


# --------------------------------------------------------------------------- serve
class ServeConfig(Strict):
    """``configs/serve.yaml`` (optional): ``retrain serve`` and its prediction log."""

    log_url: str = Field(
        default="sqlite:///.retrain/predictions.db",
        description="prediction log: sqlite:///path (repo-relative) or postgresql://...",
    )
    log_inputs: bool = Field(default=False, description="store each row's inputs, not only a hash")
    log_enabled: bool = Field(default=True, description="false: log nothing (benchmarks only)")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger bodies get 413")
    max_rows: int = Field(default=10_000, ge=1, description="rows per request; more get 413")
    batch_max_rows: int = Field(default=512, ge=1, description="rows per model call")
    batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="how long a batch waits for the concurrent requests it expects",
    )
    follow_interval: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="seconds between reconciles"
    )


def load_serve_config(root: Path | str = ".") -> ServeConfig:
    """``configs/serve.yaml``, or the defaults when the file is absent."""
    result: ServeConfig = load_model(ServeConfig, Path(root).resolve(), "serve")
    return result


# --------------------------------------------------------------------------- all
class Config(Strict):
    """All of ``configs/``, validated together."""

    root: Path
    dataset: DatasetConfig
    model: ModelConfig
    triggers: TriggersConfig
    gates: GatesConfig
    drift: DriftConfig
    release: ReleaseConfig

    @model_validator(mode="after")
    def _cross(self) -> Config:
        est = self.model.estimator
        regressors = {"ridge", "linear_regression"}
        if self.model.pipeline is not None:
            _check_pipeline_tracked(self.root, self.model.pipeline)
        if self.dataset.task == "regression" and est in {"logistic_regression"}:
            raise ValueError(f"model.yaml: estimator {est!r} cannot do regression")
        if self.dataset.task == "classification" and est in regressors:
            raise ValueError(f"model.yaml: estimator {est!r} cannot do classification")
        names = metric_names.metric_names(self.dataset.task)
        for rail in self.gates.guardrails:
            if rail not in names:
                raise ValueError(
                    f"gates.yaml: guardrails.{rail}: not a {self.dataset.task} metric; "
                    f"expected one of {names}"
                )
        if self.gates.primary_metric not in names:
            raise ValueError(
                f"gates.yaml: primary_metric: {self.gates.primary_metric!r} is not a "
                f"{self.dataset.task} metric; expected one of {names}"
            )
        return self


def _check_pipeline_tracked(root: Path, spec: str) -> None:
    """A fork's own model code must be a dependency of the train stage, so editing it
    retrains (``dvc.yaml: stages.train.deps``)."""
    module = spec.split(":", 1)[0]
    rel = module.replace(".", "/") + ".py"
    if not (root / rel).is_file():
        raise ValueError(f"model.yaml: pipeline: {rel} not found (for {spec!r})")
    path = root / "dvc.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    deps = (((doc or {}).get("stages") or {}).get("train") or {}).get("deps") or []
    if rel not in deps:
        raise ValueError(
            f"model.yaml: pipeline: {rel} is not a dependency of the train stage; add "
            f"`- {rel}` under stages.train.deps in dvc.yaml so a change to it retrains"
        )


def _format_error(path: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    if "input" in first and first["type"] not in ("missing", "extra_forbidden"):
        got = first["input"]
        if not isinstance(got, dict | list):
            msg = f"{msg} (got {got!r})"
    return f"{path}: {loc}: {msg}" if loc else f"{path}: {msg}"


def read_yaml(path: Path, display: str | None = None) -> Any:
    """Read a YAML file, turning a missing file or a syntax error into :class:`ConfigError`."""
    display = display or str(path)
    if not path.is_file():
        raise ConfigError(f"{display}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{display}: not valid YAML{where}") from None


def load_model(model: type[BaseModel], root: Path, name: str) -> Any:
    """Load ``configs/<name>.yaml`` into ``model``; an absent optional file gives defaults."""
    rel = f"{CONFIG_DIR}/{name}.yaml"
    path = root / rel
    data = read_yaml(path, rel) if path.exists() else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{rel}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(rel, exc)) from None


def load_config(root: Path | str = ".") -> Config:
    """Load and validate every file under ``configs/``."""
    root = Path(root).resolve()
    for required in ("dataset", "model", "release"):
        if not (root / CONFIG_DIR / f"{required}.yaml").is_file():
            raise ConfigError(f"{CONFIG_DIR}/{required}.yaml: file not found")
    parts = {
        "dataset": load_model(DatasetConfig, root, "dataset"),
        "model": load_model(ModelConfig, root, "model"),
        "triggers": load_model(TriggersConfig, root, "triggers"),
        "gates": load_model(GatesConfig, root, "gates"),
        "drift": load_model(DriftConfig, root, "drift"),
        "release": load_model(ReleaseConfig, root, "release"),
    }
    try:
        return Config(root=root, **parts)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{CONFIG_DIR}/{first['msg'].removeprefix('Value error, ')}") from None
