"""The gradient-boosting built-ins, ``estimator: lightgbm`` and ``estimator: xgboost``.

One model whichever engine fits it: the same preprocessing and the same estimator, fitted in
this process (``engine: local``) or data-parallel on a Dask cluster (``engine: dask``, see
:mod:`retrain.pipeline.engine`), and saved as the same plain scikit-learn ``Pipeline``.

- **Preprocessing** that a cluster can fit without gathering the data: numeric columns pass
  through (both libraries treat NaN as missing, natively), categorical ones are imputed with
  a constant and ordinal-encoded with their categories sorted (a category unseen in training
  becomes NaN, i.e. missing).  The only statistic is the set of categories, which Dask
  computes exactly, partition by partition.
- **Labels**: both libraries' Dask estimators, and XGBoost everywhere, want classes as
  integers ``0..k-1``; :class:`LabelEncoded` trains on those and answers with the labels, so
  predictions, ``classes_`` and the saved model look like any scikit-learn classifier's.

The libraries come with the ``boost`` extra (``make install`` has it); without it, naming
one of them is a one-line configuration error.  Imported only where such a model is built or
loaded (it imports scikit-learn).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from retrain.core.errors import ConfigError

MODEL_YAML = "configs/model.yaml"
MISSING = "__missing__"
# name -> (module, classifier, regressor, default parameters)
BOOSTED: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    # verbose=-1: no "[LightGBM] [Info]" lines in the run's log; n_jobs stays the library's.
    "lightgbm": ("lightgbm", "LGBMClassifier", "LGBMRegressor", {"verbose": -1}),
    "xgboost": ("xgboost", "XGBClassifier", "XGBRegressor", {}),
}


def is_boosted(name: str | None) -> bool:
    return name in BOOSTED


def library(name: str) -> Any:
    """The library of built-in ``name``, or a :class:`ConfigError` saying how to install it."""
    module = BOOSTED[name][0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{MODEL_YAML}: estimator: {name} needs the {module} package, which is not "
            "installed; install the `boost` extra (`.ci/install --extra boost`, or "
            "`pip install 'retrain[boost]'`; `make install` has it)"
        ) from None


def builtin_class(name: str, task: str) -> type:
    _, classifier, regressor, _ = BOOSTED[name]
    cls: type = getattr(library(name), classifier if task == "classification" else regressor)
    return cls


def default_params(name: str) -> dict[str, Any]:
    return dict(BOOSTED[name][3])


def preprocessing(numeric: list[str], categorical: list[str]) -> Any:
    """Unfitted: numeric columns as they are, categorical ones ordinal-encoded (sorted)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", "passthrough", numeric))
    if categorical:
        encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
        cat = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING)),
                ("encode", encode),
            ]
        )
        transformers.append(("cat", cat, categorical))
    return ColumnTransformer(transformers)


def set_categories(pre: Any, categories: dict[str, list[str]]) -> None:
    """Fix the ordinal encoder's categories (each sorted) to those computed elsewhere."""
    for name, _, columns in pre.transformers:
        if name == "cat":
            pre.set_params(cat__encode__categories=[categories[c] for c in columns])


def pipeline(numeric: list[str], categorical: list[str], estimator: Any, task: str) -> Any:
    """Preprocessing + the estimator (wrapped in :class:`LabelEncoded` for classification)."""
    from sklearn.pipeline import Pipeline

    final = LabelEncoded(estimator) if task == "classification" else estimator
    return Pipeline([("pre", preprocessing(numeric, categorical)), ("model", final)])


class LabelEncoded(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier trained on class indices ``0..k-1`` that answers with the labels.

    ``classes_`` are the sorted labels (as :func:`numpy.unique` sorts them); ``estimator_``
    is the fitted inner model, which saw ``searchsorted(classes_, y)``.  :meth:`fitted`
    wraps an inner model fitted elsewhere (on a Dask cluster) on the same codes.
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelEncoded:
        classes, codes = np.unique(np.asarray(y), return_inverse=True)
        self.classes_ = classes
        self.estimator_ = clone(self.estimator).fit(X, codes, **fit_params)
        return self

    @classmethod
    def fitted(cls, estimator: Any, inner: Any, classes: np.ndarray) -> LabelEncoded:
        """``estimator`` (unfitted, as configured) with ``inner`` fitted on the codes."""
        out = cls(estimator)
        out.classes_ = np.asarray(classes)
        out.estimator_ = inner
        return out

    def predict(self, X: Any) -> np.ndarray:
        codes = np.asarray(self.estimator_.predict(X)).astype(np.int64)
        return np.asarray(self.classes_[codes])

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator_.predict_proba(X))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "estimator_")

    @property
    def n_features_in_(self) -> int:
        return int(self.estimator_.n_features_in_)
