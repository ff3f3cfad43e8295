"""Predictions from any registered version, on a fresh clone that can reach the DVC remote.

``load_version`` is the one way a registered version becomes a model in memory: fetched by
hash through DVC (cache, then remote), sha256 checked, then deserialised with skops.  Both
``retrain predict`` and ``retrain serve`` use it, and both compute predictions with
``predict_rows``, so the server answers exactly what ``retrain predict --version`` writes.
The evaluate stage, the gates, churn and the key examples predict with ``predict_rows`` too,
so the holdout figures a reviewer reads describe the answers the server gives.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core import environment
from retrain.core import registry as reg
from retrain.core.config import Config, DatasetConfig
from retrain.core.errors import DataError
from retrain.pipeline import artifacts, dataset
from retrain.pipeline.threads import limited as limited_threads


def load_version(
    root: Path,
    entry: reg.RegistryEntry | dict[str, Any],
    *,
    trusted: Sequence[str] = (),
    code_root: Path | None = None,
) -> Any:
    """The model of a registry entry: fetched by md5 (DVC cache, then remote), sha256 verified,
    deserialised with the skops allow-list plus ``trusted``; the fork's code is imported from
    ``code_root`` (default ``root``)."""
    entry = reg.RegistryEntry.coerce(entry)
    return artifacts.load_registered(
        Path(root), entry.artifact, entry.version, trusted=trusted, code_root=code_root
    )


def environment_differences(entry: reg.RegistryEntry | dict[str, Any]) -> list[str]:
    """How the running Python and libraries differ from those the entry was trained with
    (none for an entry that recorded no environment)."""
    env = reg.RegistryEntry.coerce(entry).environment
    return environment.differences(env.to_dict() if env is not None else None)


def predict_rows(
    model: Any, X: pd.DataFrame, task: str, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """``(predictions, class probabilities or None, class names or None)`` for ``X``.

    A classifier with ``predict_proba`` is asked once: the prediction is the class of highest
    probability, which is what scikit-learn's forests, trees, gradient boosting and logistic
    regression return from ``predict`` too.  One call instead of two halves serving latency.

    ``threads`` limits the native thread pools (OpenMP, BLAS) of the calling thread during
    the call (:mod:`retrain.pipeline.threads`); the server passes ``serve.yaml: threads``.
    None leaves them as they are.
    """
    if threads is not None:
        with limited_threads(threads):
            return predict_rows(model, X, task)
    if task == "classification":
        classes = [str(c) for c in model.classes_]
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(X), dtype=float)
            y = np.asarray(model.classes_)[np.argmax(proba, axis=1)].astype(str)
            return y, proba, classes
        return np.asarray(model.predict(X)).astype(str), None, classes
    return np.asarray(model.predict(X), dtype=float), None, None


def not_features(cfg: DatasetConfig) -> frozenset[str]:
    """The columns the dataset declares as not features: the target, the time column and
    ``ignore_columns`` (identifiers).  An input to predict (``retrain predict``, the server)
    may carry them; they are ignored."""
    return frozenset(c for c in (cfg.target, cfg.time_column, *cfg.ignore_columns) if c)


def column_problem(
    columns: Iterable[str], features: Sequence[str], ignorable: Collection[str]
) -> tuple[str, str] | None:
    """The one column rule of ``retrain predict`` and the server: every feature present, and
    any other column one the dataset declares as not a feature (:func:`not_features`),
    ignored.  ``(column, why)`` for the first problem, None when the columns are fine."""
    present = set(columns)
    missing = [c for c in features if c not in present]
    if missing:
        return missing[0], f"missing column(s) {missing}; expected {list(features)}"
    unknown = sorted(c for c in present if c not in features and c not in ignorable)
    if unknown:
        return unknown[0], (
            f"unexpected column(s) {unknown}; expected {list(features)}"
            + (f", and may carry {sorted(ignorable)} (ignored)" if ignorable else "")
        )
    return None


def read_inputs(cfg: DatasetConfig, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rows to predict on from a CSV or Parquet file: the feature columns, checked like a
    batch's, and the names of the columns ignored (:func:`column_problem`)."""
    frame = dataset.read_table(path, str(path))
    problem = column_problem(frame.columns, cfg.feature_names, not_features(cfg))
    if problem is not None:
        raise DataError(f"{path}: {problem[1]}")
    ignored = [c for c in frame.columns if c not in cfg.feature_names]
    features_only = cfg.model_copy(update={"time_column": None})  # not needed to predict
    checked = dataset.check_frame(
        frame[cfg.feature_names], features_only, str(path), labelled=False
    )
    return checked, ignored


def predict_file(cfg: Config, version: str, input_path: Path) -> str:
    """CSV text of predictions (deterministic for a version and an input)."""
    registry = reg.load(cfg.root, expected_model=cfg.release.model_name)
    entry = registry.get(version)
    X, ignored = read_inputs(cfg.dataset, input_path)
    if ignored:
        print(f"[retrain] predict: ignoring column(s) {ignored}", file=sys.stderr)
    model = load_version(cfg.root, entry, trusted=cfg.model.trusted_types)
    diffs = environment_differences(entry)
    if diffs:
        print(f"[retrain] predict: warning: {environment.warning(version, diffs)}", file=sys.stderr)
    y_pred, proba, classes = predict_rows(model, X, cfg.dataset.task)
    out = pd.DataFrame({"prediction": y_pred})
    if proba is not None and classes is not None:
        for i, c in enumerate(classes):
            out[f"proba_{c}"] = np.round(proba[:, i], 6)
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\n", float_format="%.6f")
    return buf.getvalue()
