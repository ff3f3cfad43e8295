"""The model ``configs/model.yaml`` asks for, as one unfitted scikit-learn estimator.

Three ways to name it:

- a built-in name (``random_forest``, ``ridge``, ...), a shortcut for a scikit-learn class;
- the import path of any estimator class (``sklearn.linear_model.SGDClassifier``, or a class
  from an installed package), with ``params`` checked against its ``get_params()``;
- ``pipeline: model:build``, a function in the fork's own code (``model.py`` at the
  repository root) that receives the dataset config and returns an unfitted estimator or
  Pipeline, for the team's own feature engineering.

The first two are wrapped in the standard preprocessing (median imputation, scaling where it
matters, one-hot encoding of categoricals), except the gradient-boosting built-ins
(``lightgbm``, ``xgboost``: missing values passed through, ordinal categories; see
:mod:`retrain.pipeline.boosting`); a pipeline function brings its own.  The config
model only checks shapes; importing and checking the class happens here, and a failure is a
one-line :class:`ConfigError` naming ``configs/model.yaml`` (exit 2).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrain.core.config import Config, ModelConfig
from retrain.core.errors import ConfigError

MODEL_YAML = "configs/model.yaml"
_LINEAR = {"logistic_regression", "ridge", "linear_regression"}
# Built-ins with their own preprocessing and a data-parallel Dask fit (pipeline/boosting.py).
BOOSTED_BUILTINS = frozenset({"lightgbm", "xgboost"})


def _builtin_class(name: str, task: str) -> type:
    from retrain.pipeline import boosting

    if boosting.is_boosted(name):
        return boosting.builtin_class(name, task)
    from sklearn import ensemble, linear_model, tree

    table: dict[str, tuple[type | None, type | None]] = {
        "random_forest": (ensemble.RandomForestClassifier, ensemble.RandomForestRegressor),
        "hist_gradient_boosting": (
            ensemble.HistGradientBoostingClassifier,
            ensemble.HistGradientBoostingRegressor,
        ),
        "decision_tree": (tree.DecisionTreeClassifier, tree.DecisionTreeRegressor),
        "logistic_regression": (linear_model.LogisticRegression, None),
        "ridge": (None, linear_model.Ridge),
        "linear_regression": (None, linear_model.LinearRegression),
    }
    cls = table[name][0 if task == "classification" else 1]
    if cls is None:  # config validation already refuses this; kept for direct API use
        raise ConfigError(f"{MODEL_YAML}: estimator: {name!r} cannot do {task}")
    return cls


@contextlib.contextmanager
def code_on_path(root: Path) -> Iterator[None]:
    """The fork's root on ``sys.path`` for the duration (its ``model.py`` importable)."""
    entry = str(Path(root).resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _import_module(name: str, root: Path | None, key: str) -> Any:
    """Import ``name``; a module of the fork (under ``root``) is re-imported from there."""
    if root is not None:
        cached = sys.modules.get(name)
        origin = getattr(cached, "__file__", None) or ""
        if cached is not None and not Path(origin).resolve().is_relative_to(root.resolve()):
            top = Path(*name.split(".")).with_suffix(".py")
            if (root / top).is_file():  # a module of another fork, imported earlier
                for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                    del sys.modules[mod]
    try:
        if root is not None:
            with code_on_path(root):
                return importlib.import_module(name)
        return importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(
            f"{MODEL_YAML}: {key}: cannot import module {name!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def resolve_class(path: str, key: str = "estimator") -> type:
    """The estimator class an import path names (``pkg.module.Class``)."""
    module, _, name = path.rpartition(".")
    mod = _import_module(module, None, key)
    cls = getattr(mod, name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{MODEL_YAML}: {key}: {module!r} has no class {name!r}")
    if not (hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise ConfigError(
            f"{MODEL_YAML}: {key}: {path} is not a scikit-learn estimator (no fit/get_params)"
        )
    return cls


def estimator_class(model: ModelConfig, task: str) -> type | None:
    """The class of the configured estimator (None for a pipeline function)."""
    if model.estimator is None:
        return None
    if model.builtin:
        return _builtin_class(model.estimator, task)
    return resolve_class(model.estimator)


def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def can_warm_start(estimator: Any) -> bool:
    """True when a fitted ``estimator`` can continue learning (partial_fit or warm_start)."""
    final = _final_step(estimator)
    if hasattr(final, "partial_fit"):
        return True
    try:
        return "warm_start" in final.get_params()
    except Exception:
        return False


def _estimator(cfg: Config) -> Any:
    model, task = cfg.model, cfg.dataset.task
    cls = estimator_class(model, task)
    assert cls is not None
    try:
        valid = cls().get_params()
    except Exception as exc:
        raise ConfigError(
            f"{MODEL_YAML}: estimator: {model.estimator} cannot be made with default "
            f"arguments ({type(exc).__name__})"
        ) from None
    unknown = sorted(set(model.params) - set(valid))
    if unknown:
        raise ConfigError(f"{MODEL_YAML}: params.{unknown[0]}: not a parameter of {cls.__name__}")
    if not model.builtin:
        from sklearn.base import is_classifier, is_regressor

        probe = cls()
        wrong = is_regressor(probe) if task == "classification" else is_classifier(probe)
        if wrong:
            raise ConfigError(f"{MODEL_YAML}: estimator: {model.estimator} cannot do {task}")
    params = dict(model.params)
    if model.builtin:
        from retrain.pipeline import boosting

        if boosting.is_boosted(model.estimator):
            params = {**boosting.default_params(str(model.estimator)), **params}
    if "random_state" in valid:
        params.setdefault("random_state", model.random_state)
    try:
        return cls(**params)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{MODEL_YAML}: params: {first}") from None


def _preprocessed(cfg: Config, estimator: Any, scale: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    ds = cfg.dataset
    numeric = [f.name for f in ds.features if f.type == "numeric"]
    categorical = [f.name for f in ds.features if f.type == "categorical"]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        num_steps.append(("scale", StandardScaler()))
    cat_steps = [
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("onehot", OneHotEncoder(handle_unknown="ignore")),
    ]
    transformers = []
    if numeric:
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append(("cat", Pipeline(cat_steps), categorical))
    return Pipeline([("pre", ColumnTransformer(transformers)), ("model", estimator)])


def _from_function(cfg: Config) -> Any:
    spec = cfg.model.pipeline or ""
    module, _, func = spec.partition(":")
    mod = _import_module(module, cfg.root, "pipeline")
    build = getattr(mod, func, None)
    if not callable(build):
        raise ConfigError(f"{MODEL_YAML}: pipeline: {module!r} has no function {func!r}")
    try:
        model = build(cfg.dataset)
    except Exception as exc:
        raise ConfigError(
            f"{MODEL_YAML}: pipeline: {spec} raised {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not (hasattr(model, "fit") and hasattr(model, "predict")):
        raise ConfigError(
            f"{MODEL_YAML}: pipeline: {spec} returned {type(model).__name__}, not an unfitted "
            "estimator or Pipeline (needs fit and predict)"
        )
    return model


def build_model(cfg: Config) -> Any:
    """The unfitted model (preprocessing + estimator) ``configs/model.yaml`` describes.

    Raises :class:`ConfigError` (one line, exit 2) for an import path that does not resolve,
    a parameter the class does not have, a pipeline function that fails or returns no
    estimator, or ``training.mode: warm_start`` with an estimator that cannot continue.
    """
    if cfg.model.pipeline is not None:
        model = _from_function(cfg)
    elif cfg.model.estimator in BOOSTED_BUILTINS:
        from retrain.pipeline import boosting

        ds = cfg.dataset
        model = boosting.pipeline(
            [f.name for f in ds.features if f.type == "numeric"],
            [f.name for f in ds.features if f.type == "categorical"],
            _estimator(cfg),
            ds.task,
        )
    else:
        scale = not cfg.model.builtin or cfg.model.estimator in _LINEAR
        model = _preprocessed(cfg, _estimator(cfg), scale)
    if cfg.model.training.mode == "warm_start" and not can_warm_start(model):
        raise ConfigError(
            f"{MODEL_YAML}: training.mode: {cfg.model.label} cannot warm-start (its final "
            "estimator has neither partial_fit nor a warm_start parameter); use mode: full"
        )
    return model


def check(cfg: Config) -> None:
    """Resolve the configured model once, so a bad one fails before any work (exit 2)."""
    build_model(cfg)
