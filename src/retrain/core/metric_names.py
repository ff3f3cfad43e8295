"""The metric catalogue: which metrics exist, for which task, and which way is better.

Core knowledge (the configuration checks names against it); the arithmetic lives in
:mod:`retrain.pipeline.metrics`.
"""

from __future__ import annotations

from retrain.core.errors import ConfigError

CLASSIFICATION_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "roc_auc",
    "log_loss",
    "average_precision",
)
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae"})
NEEDS_PROBA: frozenset[str] = frozenset({"roc_auc", "log_loss", "average_precision"})
ALL_METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS

_TASKS = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}


def metric_names(task: str) -> list[str]:
    """The metrics available for ``task`` (``"classification"`` or ``"regression"``)."""
    try:
        return list(_TASKS[task])
    except KeyError:
        raise ConfigError(
            f"configs/dataset.yaml: task: {task!r} is not a task; "
            f"expected one of [{', '.join(_TASKS)}]"
        ) from None


def check_metric(task: str, metric: str, where: str = "configs/gates.yaml: primary_metric") -> str:
    """Return ``metric`` if ``task`` has it, else raise a one-line :class:`ConfigError`."""
    names = metric_names(task)
    if metric not in names:
        raise ConfigError(
            f"{where}: {metric!r} is not a {task} metric; expected one of [{', '.join(names)}]"
        )
    return metric


def known_metric(metric: str) -> str:
    if metric not in ALL_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of [{', '.join(ALL_METRICS)}]")
    return metric


def greater_is_better(metric: str) -> bool:
    """True when a larger value of ``metric`` is better (false for losses and errors)."""
    return known_metric(metric) not in LOWER_IS_BETTER


def needs_proba(metric: str) -> bool:
    """True when ``metric`` is computed from predicted probabilities."""
    return known_metric(metric) in NEEDS_PROBA
