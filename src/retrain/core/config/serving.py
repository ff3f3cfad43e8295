"""What ``retrain serve`` reads of ``configs/``, and nothing more.

The server answers for one model: it needs the dataset's schema (``dataset.yaml``: features,
ranges, task, labels), the extra types a model may contain (``model.yaml: trusted_types``),
the registered model's name (``release.yaml: model_name``) and its own settings
(``serve.yaml``).  ``dataset.yaml`` and ``serve.yaml`` are read whole and strictly: they are
serving's own.  Of ``model.yaml`` and ``release.yaml`` only those two keys are read, with the
same checks as :class:`~retrain.core.config.ModelConfig` and
:class:`~retrain.core.config.ReleaseConfig`; the rest of those files, and ``gates.yaml``,
``drift.yaml`` and ``triggers.yaml`` altogether, belong to training and are not read, so a
typo there never stops (or fails a reload of) a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrain.core.config.base import CONFIG_DIR, _format_error, load_model, read_yaml
from retrain.core.config.data import DatasetConfig, ModelConfig
from retrain.core.config.release import ReleaseConfig, ServeConfig
from retrain.core.errors import ConfigError


class _Part(BaseModel):
    """Some keys of a file that belongs to another job: the others are not serving's."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _ModelPart(_Part):
    trusted_types: list[str] = Field(default_factory=list)

    @field_validator("trusted_types")
    @classmethod
    def _shape(cls, value: list[str]) -> list[str]:
        result: list[str] = ModelConfig._trusted_shape(value)  # the same check as training's
        return result


class _ReleasePart(_Part):
    model_name: str = ReleaseConfig.model_fields["model_name"]  # type: ignore[assignment]


class ServingConfig(BaseModel):
    """The configuration of one revision, as the server uses it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_name: str
    dataset: DatasetConfig
    trusted_types: tuple[str, ...]
    serve: ServeConfig


def _part(model: type[_Part], root: Path, name: str) -> Any:
    rel = f"{CONFIG_DIR}/{name}.yaml"
    data = read_yaml(root / rel, rel)
    if not isinstance(data, dict):
        raise ConfigError(f"{rel}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(rel, exc)) from None


def load_serving_config(root: Path | str = ".") -> ServingConfig:
    """The serving part of ``root/configs``; :class:`ConfigError` names the file and key."""
    root = Path(root)
    for required in ("dataset", "model", "release"):
        if not (root / CONFIG_DIR / f"{required}.yaml").is_file():
            raise ConfigError(f"{CONFIG_DIR}/{required}.yaml: file not found")
    dataset = load_model(DatasetConfig, root, "dataset")
    model = _part(_ModelPart, root, "model")
    release = _part(_ReleasePart, root, "release")
    serve = load_model(ServeConfig, root, "serve")
    return ServingConfig(
        model_name=release.model_name,
        dataset=dataset,
        trusted_types=tuple(model.trusted_types),
        serve=serve,
    )
