"""Fitting on a Dask cluster: data-parallel boosting, and scikit-learn's ``n_jobs`` there.

**Data-parallel** (``estimator: lightgbm | xgboost``): the training window is a Dask
DataFrame (:func:`training_frame`); the exact statistics the preprocessing needs (each
categorical column's categories, the classes) are computed partition by partition and merged
on the runner; the preprocessing is fitted on that small summary, so it is the very encoder a
local fit would have; each partition is transformed where it lives; ``lightgbm.dask`` or
``xgboost.dask`` fits on the workers; the result comes back as the plain estimator
(``to_local()``, or XGBoost's own model format), inside the same ``Pipeline`` as a local fit.

**Joblib** (any scikit-learn estimator with ``n_jobs``, e.g. ``random_forest``): joblib's Dask
backend runs the estimator's parallel work (one tree per task) on the workers; the data is
the runner's frame.  ``n_jobs`` is set to -1 for the fit only (every thread of the cluster)
and restored, so the saved model predicts as a local one would.

Functions sent to the workers are closures defined here, which cloudpickle ships by value:
the workers need the locked libraries (checked on connect), not this package.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.config import DatasetConfig
from retrain.core.errors import RetrainError

# Rows per partition when the runner's frame is split for the cluster.
PARTITION_ROWS = 1_000_000


def training_frame(ds: DatasetConfig, frame: pd.DataFrame, workers: int) -> Any:
    """The training window as a Dask DataFrame: the features and the target.

    Today the source is the runner's validated frame (``dataset.load_batches``), split into
    at least one partition per worker.  For classification the split is stratified (each
    class dealt round-robin over the partitions, as many partitions as the rarest class has
    rows at most), so every partition, and so every worker, holds every class: distributed
    LightGBM derives the class count from each worker's own rows and fails when one lacks a
    class (LightGBM#2419).

    This is the one place to change for a bounded-memory reader:
    ``dd.read_parquet(in_window_files, columns=..., filters=[(time, ">", cutoff)])`` over the
    batch files of the window gives the same frame without gathering it here (for
    classification, followed by a shuffle that deals every class to every partition;
    :func:`fit_data_parallel` refuses partitions that miss a class).
    """
    import dask.dataframe as dd

    columns = [*ds.feature_names, ds.target]
    frame = frame[columns]
    n = max(workers, math.ceil(len(frame) / PARTITION_ROWS), 1)
    if ds.task != "classification":
        return dd.from_pandas(frame, npartitions=min(n, max(len(frame), 1)), sort=False)
    n = max(1, min(n, int(frame[ds.target].value_counts().min())))
    part = (frame.groupby(ds.target, sort=False).cumcount() % n).to_numpy()
    return dd.concat(
        [dd.from_pandas(frame[part == i], npartitions=1, sort=False) for i in range(n)]
    )


# --------------------------------------------------------------------------- data-parallel
def _summary(pre: Any, ddf: Any, ds: DatasetConfig, classify: bool) -> tuple[Any, Any]:
    """What the preprocessing and the labels need from the whole window, computed per
    partition on the workers and merged here: a small frame holding every category of every
    categorical column (fitting the preprocessing on it gives the encoder a fit on all rows
    would), and the sorted classes (None for regression)."""
    import dask
    from sklearn.base import clone

    cat = next((t for name, t, _ in pre.transformers if name == "cat"), None)
    cat_columns: list[str] = next((c for name, _, c in pre.transformers if name == "cat"), [])
    target = ds.target

    def per_partition(part: pd.DataFrame) -> tuple[list[Any], Any]:
        cats: list[Any] = []
        if cat is not None:
            cats = list(clone(cat).fit(part[cat_columns]).named_steps["encode"].categories_)
        labels = np.unique(part[target].to_numpy()) if classify else None
        return cats, labels

    parts = dask.compute(*[dask.delayed(per_partition)(p) for p in ddf.to_delayed()])
    seen = {c: [v for cats, _ in parts for v in cats[i]] for i, c in enumerate(cat_columns)}
    rows = max((len(v) for v in seen.values()), default=1)
    summary: dict[str, list[Any]] = {c: v + [v[0]] * (rows - len(v)) for c, v in seen.items()}
    for f in ds.features:
        if f.type == "numeric":
            summary[f.name] = [0.0] * rows
    classes = None
    if classify:
        classes = np.unique(np.concatenate([lab for _, lab in parts]))
        short = [i for i, (_, lab) in enumerate(parts) if len(lab) != len(classes)]
        if short:
            raise RetrainError(
                f"partition {short[0]} of the training frame lacks a class: distributed "
                "training needs every class in every partition (LightGBM#2419)"
            )
    return pd.DataFrame(summary)[ds.feature_names], classes


def _transformed(
    pre: Any, ddf: Any, ds: DatasetConfig, summary: pd.DataFrame, classes: Any
) -> tuple[Any, Any]:
    """(X, y) as Dask arrays: each partition preprocessed where it lives; y as class codes."""
    features, target = ds.feature_names, ds.target
    names = [f"x{i}" for i in range(int(pre.transform(summary).shape[1]))]

    def transform(part: pd.DataFrame) -> pd.DataFrame:
        out = np.asarray(pre.transform(part[features]), dtype="float64")
        return pd.DataFrame(out, index=part.index, columns=names)

    def codes(part: pd.Series) -> pd.Series:
        return pd.Series(np.searchsorted(classes, part.to_numpy()), index=part.index)

    meta_x = pd.DataFrame({n: pd.Series([], dtype="float64") for n in names})
    X = ddf.map_partitions(transform, meta=meta_x).to_dask_array(lengths=True)
    if classes is not None:
        y = ddf[target].map_partitions(codes, meta=(target, "int64"))
    else:
        y = ddf[target].astype("float64")
    return X, y.to_dask_array(lengths=True)


def _dask_estimator(library: str, inner: Any, client: Any) -> Any:
    """The Dask counterpart of ``inner`` (same parameters) on ``client``."""
    name = type(inner).__name__  # LGBMClassifier, XGBRegressor, ...
    params = inner.get_params()
    if library == "lightgbm":
        import lightgbm

        return getattr(lightgbm, "Dask" + name)(client=client, **params)
    from xgboost import dask as xgb_dask

    est = getattr(xgb_dask, "Dask" + name)(**params)
    est.client = client
    return est


def _to_local(library: str, fitted: Any, inner: Any) -> Any:
    """The fitted Dask estimator as the plain estimator ``inner`` is (same parameters)."""
    if library == "lightgbm":
        return fitted.to_local()
    from sklearn.base import clone

    # XGBoost's Dask estimators have no to_local(): its own model format carries the booster
    # and the scikit-learn attributes (classes, objective) into an estimator of the local kind.
    local = clone(inner)
    with tempfile.TemporaryDirectory(prefix="retrain-xgb-") as tmp:
        path = Path(tmp) / "model.ubj"
        fitted.save_model(path)
        local.load_model(path)
    return local


def fit_data_parallel(
    client: Any, workers: int, pipe: Any, frame: pd.DataFrame, ds: DatasetConfig, library: str
) -> Any:
    """Fit the boosting built-in's ``pipe`` (``pre`` + model) on the cluster, in place."""
    from retrain.pipeline.boosting import LabelEncoded

    pre, final = pipe.steps[0][1], pipe.steps[-1][1]
    wrapped = isinstance(final, LabelEncoded)
    inner = final.estimator if wrapped else final
    ddf = training_frame(ds, frame, workers).persist()
    summary, classes = _summary(pre, ddf, ds, wrapped)
    pre.fit(summary)
    X, y = _transformed(pre, ddf, ds, summary, classes)
    # lightgbm.dask reports its port search with print(): on stderr, with the progress
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        # lightgbm.dask sets each worker's threads itself and says so about n_jobs
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        fitted = _dask_estimator(library, inner, client).fit(X, y)
    local = _to_local(library, fitted, inner)
    model = LabelEncoded.fitted(inner, local, classes) if wrapped else local
    pipe.steps[-1] = (pipe.steps[-1][0], model)
    return pipe


# --------------------------------------------------------------------------- joblib
def final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def uses_n_jobs(model: Any) -> bool:
    """True when the model's final estimator has an ``n_jobs`` parameter (joblib work)."""
    try:
        return "n_jobs" in final_step(model).get_params()
    except Exception:
        return False


@contextlib.contextmanager
def all_threads(model: Any) -> Any:
    """``n_jobs=-1`` on the final estimator while fitting (unless set), restored after."""
    final = final_step(model)
    before = final.get_params().get("n_jobs")
    if before in (None, 1):
        final.set_params(n_jobs=-1)
    try:
        yield
    finally:
        final.set_params(n_jobs=before)


def fit_joblib(pipe: Any, X: Any, y: Any) -> Any:
    """``pipe.fit(X, y)`` with joblib's parallel work on the Dask cluster (default client)."""
    from joblib import parallel_config

    with all_threads(pipe), parallel_config(backend="dask"):
        pipe.fit(X, y)
    return pipe
