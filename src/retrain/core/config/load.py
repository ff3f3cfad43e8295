"""The whole configuration (:class:`Config`), loaded from ``configs/`` in one call."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import (
    ValidationError,
    model_validator,
)

from retrain.core import metric_names
from retrain.core.config.base import CONFIG_DIR, Strict, load_model
from retrain.core.config.data import DatasetConfig, ModelConfig, TriggersConfig
from retrain.core.config.decide import DriftConfig, GatesConfig
from retrain.core.config.release import ReleaseConfig
from retrain.core.errors import ConfigError


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
        trivial = self.gates.trivial_baseline.metric
        if trivial is not None and trivial not in names:
            raise ValueError(
                f"gates.yaml: trivial_baseline.metric: {trivial!r} is not a "
                f"{self.dataset.task} metric; expected one of {names}"
            )
        if self.gates.primary_metric not in names:
            raise ValueError(
                f"gates.yaml: primary_metric: {self.gates.primary_metric!r} is not a "
                f"{self.dataset.task} metric; expected one of {names}"
            )
        return self


def _check_pipeline_tracked(root: Path, spec: str) -> None:
    """A fork's own model code must be a dependency of the train stage (which fits the model
    it builds) and of the evaluate stage (which loads the model, and so runs that code), so
    editing it re-runs both (``dvc.yaml: stages.<stage>.deps``; a listed folder covers it)."""
    module = spec.split(":", 1)[0]
    rel = module.replace(".", "/") + ".py"
    if not (root / rel).is_file():
        raise ValueError(f"model.yaml: pipeline: {rel} not found (for {spec!r})")
    path = root / "dvc.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    stages = (doc or {}).get("stages") or {}
    for stage in ("train", "evaluate"):
        deps = [Path(str(d)) for d in (stages.get(stage) or {}).get("deps") or []]
        if not any(d == Path(rel) or d in Path(rel).parents for d in deps):
            raise ValueError(
                f"model.yaml: pipeline: {rel} is not a dependency of the {stage} stage; add "
                f"`- {rel}` under stages.{stage}.deps in dvc.yaml so a change to it re-runs it"
            )


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
