"""The base of every config model and the one YAML reader (errors name file and key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from retrain.core.errors import ConfigError

CONFIG_DIR = "configs"


class Strict(BaseModel):
    """Base for config models: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
