"""Metrics by name: one place that knows how every primary metric is computed.

Classification: ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``roc_auc``,
``log_loss`` and ``average_precision`` (the last three need predicted probabilities).  Regression: ``rmse``, ``mae``,
``r2``.  :func:`score` computes one metric with :mod:`sklearn.metrics`; :func:`resampled`
computes the same metric on many bootstrap resamples at once (a matrix of row counts), for
the paired bootstrap of the improvement gate.  The two agree to rounding error (tested).

Conventions
-----------
* ``classes`` is the model's class order (``model.classes_``), the column order of
  ``proba``.  A holdout may lack some of the model's classes, and may hold a label the
  model never saw: neither crashes.  ``roc_auc`` is the unweighted mean of one-vs-rest AUCs
  over the classes that occur in ``y_true`` (a class with no positive row has no AUC);
  binary models use the AUC of ``classes[1]``.  ``average_precision`` (the area under the
  precision-recall curve as scikit-learn computes it, a step sum without interpolation)
  follows the same one-vs-rest convention; it suits a rare positive class, where a model
  that ranks nothing scores the class's share instead of ROC AUC's 0.5.  ``log_loss`` gives a label the model never
  saw probability 0, clipped to machine epsilon like scikit-learn does.
* ``f1_macro`` averages over the labels present in ``y_true`` or ``y_pred``
  (scikit-learn's default) with ``zero_division=0``, so a class the model never predicts
  counts as 0 but a class absent from the holdout does not drag the mean down.
* A metric that is undefined on the rows given (one class only for ``roc_auc``, a constant
  target for ``r2``, no rows at all) raises :class:`ValueError`; callers that score
  subgroups treat that as "not available".  An unknown metric name is a configuration
  error (:class:`~retrain.core.errors.ConfigError`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

# The catalogue of names is core knowledge; re-exported so that metrics.<name> reads naturally.
from retrain.core.metric_names import (
    ALL_METRICS as ALL_METRICS,
)
from retrain.core.metric_names import (
    CLASSIFICATION_METRICS as CLASSIFICATION_METRICS,
)
from retrain.core.metric_names import (
    LOWER_IS_BETTER as LOWER_IS_BETTER,
)
from retrain.core.metric_names import (
    NEEDS_PROBA as NEEDS_PROBA,
)
from retrain.core.metric_names import (
    REGRESSION_METRICS as REGRESSION_METRICS,
)
from retrain.core.metric_names import (
    check_metric as check_metric,
)
from retrain.core.metric_names import (
    greater_is_better as greater_is_better,
)
from retrain.core.metric_names import (
    known_metric as known_metric,
)
from retrain.core.metric_names import (
    metric_names as metric_names,
)
from retrain.core.metric_names import (
    needs_proba as needs_proba,
)

_DIGITS = 6  # summaries are rounded so that JSON files and diffs are stable


# --------------------------------------------------------------------------- one score
def score(
    metric: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> float:
    """Compute ``metric`` on one set of rows.

    Parameters
    ----------
    metric : str
        A name from :data:`ALL_METRICS`.
    y_true, y_pred : array of shape (n,)
        Labels (classification) or values (regression).
    proba : array of shape (n, len(classes)), optional
        Predicted probabilities, columns in ``classes`` order; needed by ``roc_auc`` and
        ``log_loss``.
    classes : list, optional
        The model's classes, in ``proba`` column order.

    Raises
    ------
    ValueError
        The metric is undefined on these rows, or a needed input is missing.
    ConfigError
        ``metric`` is not a known metric name.
    """
    from sklearn import metrics as skm  # lazy: keeps `retrain --help` and config loading fast

    known_metric(metric)
    y_true, y_pred = _check_rows(y_true, y_pred)
    if metric in REGRESSION_METRICS:
        yt, yp = y_true.astype(float), y_pred.astype(float)
        if metric == "rmse":
            return float(skm.root_mean_squared_error(yt, yp))
        if metric == "mae":
            return float(skm.mean_absolute_error(yt, yp))
        if len(yt) < 2 or np.ptp(yt) == 0:
            raise ValueError("r2 is undefined: the target is constant on these rows")
        return float(skm.r2_score(yt, yp))
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" is expected on small subgroups.
        warnings.simplefilter("ignore", UserWarning)
        if metric == "accuracy":
            return float(skm.accuracy_score(y_true, y_pred))
        if metric == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(y_true, y_pred))
        if metric == "f1_macro":
            return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    proba, classes = _check_proba(metric, proba, classes, len(y_true))
    if metric == "log_loss":
        return float(np.mean(row_log_loss(y_true, proba, classes)))
    if metric == "average_precision":
        return _average_precision(y_true, proba, classes)
    return _roc_auc(y_true, proba, classes)


def _check_rows(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.ndim != 1 or yp.ndim != 1 or len(yt) != len(yp):
        raise ValueError(
            f"y_true and y_pred must be 1-d of equal length (got {yt.shape}, {yp.shape})"
        )
    if len(yt) == 0:
        raise ValueError("no rows to score")
    return yt, yp


def _check_proba(
    metric: str, proba: np.ndarray | None, classes: Sequence[Any] | None, n: int
) -> tuple[np.ndarray, list[Any]]:
    if proba is None or classes is None:
        raise ValueError(f"{metric} needs predicted probabilities and the model's classes")
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape != (n, len(classes)):
        raise ValueError(
            f"{metric}: proba must have shape ({n}, {len(classes)}) to match the rows and "
            f"classes (got {p.shape})"
        )
    return p, list(classes)


def row_log_loss(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """Per-row cross-entropy ``-log p(true class)``, clipped like scikit-learn's log_loss.

    A label outside ``classes`` (the model never saw it) gets probability 0, i.e. the
    clipped maximum loss ``-log(eps)``.
    """
    index = {c: i for i, c in enumerate(classes)}
    cols = np.array([index.get(y, -1) for y in np.asarray(y_true).tolist()], dtype=int)
    p = np.where(cols >= 0, proba[np.arange(len(cols)), np.maximum(cols, 0)], 0.0)
    eps = np.finfo(float).eps
    return np.asarray(-np.log(np.clip(p, eps, 1 - eps)), dtype=float)


def _auc_columns(y_true: np.ndarray, classes: Sequence[Any]) -> list[tuple[int, np.ndarray]]:
    """(proba column, positives mask) pairs that enter the one-vs-rest average."""
    y = np.asarray(y_true)
    if len(classes) == 2:
        return [(1, y == classes[1])]
    return [(k, y == c) for k, c in enumerate(classes)]


def _one_vs_rest(
    name: str, score: Any, y_true: np.ndarray, proba: np.ndarray, classes: list[Any]
) -> float:
    """``score`` of each class against the rest (the positive class alone for two), averaged
    over the classes these rows hold both ways."""
    values = [
        float(score(pos, proba[:, k]))
        for k, pos in _auc_columns(y_true, classes)
        if 0 < int(pos.sum()) < len(pos)
    ]
    if not values:
        raise ValueError(f"{name} is undefined: these rows hold a single class")
    return float(np.mean(values))


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: list[Any]) -> float:
    from sklearn import metrics as skm

    return _one_vs_rest("roc_auc", skm.roc_auc_score, y_true, proba, classes)


def _average_precision(y_true: np.ndarray, proba: np.ndarray, classes: list[Any]) -> float:
    from sklearn import metrics as skm

    return _one_vs_rest("average_precision", skm.average_precision_score, y_true, proba, classes)


# --------------------------------------------------------------------------- summaries
def summary(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> dict[str, float | None]:
    """Every metric of ``task``, rounded to 6 decimals, in :func:`metric_names` order.

    Probability metrics are left out when ``proba`` is not given; a metric undefined on
    these rows is ``None`` (JSON ``null``) rather than a crash or a NaN.
    """
    out: dict[str, float | None] = {}
    for name in metric_names(task):
        if name in NEEDS_PROBA and (proba is None or classes is None):
            continue
        try:
            out[name] = round(score(name, y_true, y_pred, proba, classes), _DIGITS)
        except ValueError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- resamples
def resampled(
    metric: str,
    counts: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> np.ndarray:
    """``metric`` on many bootstrap resamples at once.

    Parameters
    ----------
    counts : array of shape (B, n)
        ``counts[b, i]`` is how many times row ``i`` occurs in resample ``b`` (each row of
        ``counts`` sums to the resample size).  Scoring a resample is scoring the rows
        weighted by their counts, which every metric here can do with a few matrix
        products instead of a Python loop.

    Returns
    -------
    array of shape (B,)
        The metric per resample; NaN where it is undefined on that resample.
    """
    known_metric(metric)
    y_true, y_pred = _check_rows(y_true, y_pred)
    W = np.asarray(counts, dtype=float)
    if W.ndim != 2 or W.shape[1] != len(y_true):
        raise ValueError(f"counts must have shape (B, {len(y_true)}) (got {W.shape})")
    size = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in REGRESSION_METRICS:
            return _resampled_regression(
                metric, W, size, y_true.astype(float), y_pred.astype(float)
            )
        if metric == "accuracy":
            return np.asarray(W @ (y_true == y_pred).astype(float) / size)
        if metric == "balanced_accuracy":
            return _resampled_balanced_accuracy(W, y_true, y_pred)
        if metric == "f1_macro":
            return _resampled_f1_macro(W, y_true, y_pred)
        p, cls = _check_proba(metric, proba, classes, len(y_true))
        if metric == "log_loss":
            return np.asarray(W @ row_log_loss(y_true, p, cls) / size)
        if metric == "average_precision":
            return _resampled_average_precision(W, y_true, p, cls)
        return _resampled_roc_auc(W, y_true, p, cls)


def _resampled_regression(
    metric: str, W: np.ndarray, size: np.ndarray, yt: np.ndarray, yp: np.ndarray
) -> np.ndarray:
    err = yp - yt
    if metric == "rmse":
        return np.asarray(np.sqrt(W @ (err**2) / size))
    if metric == "mae":
        return np.asarray(W @ np.abs(err) / size)
    centred = yt - yt.mean()  # SS_tot is shift-invariant; centring avoids cancellation
    ss_tot = W @ (centred**2) - (W @ centred) ** 2 / size
    ss_res = W @ (err**2)
    tiny = 1e-12 * max(float(np.sum(centred**2)), 1e-300)
    return np.where(ss_tot > tiny, 1.0 - ss_res / ss_tot, np.nan)


def _onehot(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (values[:, None] == labels[None, :]).astype(float)


def _resampled_balanced_accuracy(W: np.ndarray, yt: np.ndarray, yp: np.ndarray) -> np.ndarray:
    # Mean recall over the labels present in the resample's y_true (as scikit-learn does).
    T = _onehot(yt, np.unique(yt))
    support = W @ T
    hits = W @ (T * (yt == yp)[:, None])
    recall = np.where(support > 0, hits / support, np.nan)
    return _nanmean_rows(recall)


def _resampled_f1_macro(W: np.ndarray, yt: np.ndarray, yp: np.ndarray) -> np.ndarray:
    labels = np.unique(np.concatenate([yt, yp]))
    T, P = _onehot(yt, labels), _onehot(yp, labels)
    tp = W @ (T * P)
    denom = W @ T + W @ P  # = 2 TP + FP + FN; > 0 exactly for the labels in the resample
    f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
    return _nanmean_rows(f1)


def _resampled_roc_auc(
    W: np.ndarray, yt: np.ndarray, proba: np.ndarray, classes: list[Any]
) -> np.ndarray:
    WT = np.ascontiguousarray(W.T)  # rows are holdout rows: gathers below stay contiguous
    per_class = [_weighted_auc(WT, proba[:, k], pos) for k, pos in _auc_columns(yt, classes)]
    return _nanmean_rows(np.column_stack(per_class))


def _weighted_auc(WT: np.ndarray, s: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC with row weights: P(score_pos > score_neg) + 0.5 P(tie).

    ``WT`` is (n, B): the weight of each row in each resample.  Rows are sorted by score;
    ``below[k]`` is the negative weight among the first ``k`` sorted rows.  A positive row
    in the tie group ``[start, end)`` beats ``below[start]`` and ties with
    ``below[end] - below[start]``, so it scores ``(below[start] + below[end]) / 2``.
    """
    order = np.argsort(s, kind="stable")
    s_sorted, pos_sorted = s[order], pos[order]
    new_group = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(s)]
    group = np.cumsum(new_group) - 1
    # below[k] = cum_neg[negatives among the first k sorted rows]
    neg_before = np.r_[0, np.cumsum(~pos_sorted)]
    cum_neg = np.zeros((int(neg_before[-1]) + 1, WT.shape[1]))
    np.cumsum(WT[order[~pos_sorted]], axis=0, out=cum_neg[1:])
    P = np.flatnonzero(pos_sorted)
    w_pos = WT[order[P]]
    lo, hi = neg_before[starts[group[P]]], neg_before[ends[group[P]]]
    wins = 0.5 * np.einsum("ij,ij->j", w_pos, cum_neg[lo] + cum_neg[hi])
    n_pos, n_neg = w_pos.sum(axis=0), cum_neg[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def _resampled_average_precision(
    W: np.ndarray, yt: np.ndarray, proba: np.ndarray, classes: list[Any]
) -> np.ndarray:
    per_class = [_weighted_ap(W, proba[:, k], pos) for k, pos in _auc_columns(yt, classes)]
    return _nanmean_rows(np.column_stack(per_class))


def _weighted_ap(W: np.ndarray, s: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Average precision with row weights, as scikit-learn sums it: over the distinct
    scores, highest first, ``(recall step) x (precision at that threshold)``.

    ``W`` is (B, n).  Rows are sorted by descending score; a tie group enters at once, so
    only the cumulative sums at the groups' last rows matter.  NaN where a resample has no
    positive or no negative row (the metric is undefined there, as for one row's class).
    """
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # the last row of each tie group
    Ws = W[:, order]
    tp = np.cumsum(Ws * pos[order], axis=1)[:, last]
    seen = np.cumsum(Ws, axis=1)[:, last]
    total_pos, total = tp[:, -1], seen[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / np.where(seen > 0, seen, 1), 0.0)
        step = np.diff(tp, axis=1, prepend=0.0)
        ap = (step * precision).sum(axis=1) / total_pos
        return np.where((total_pos > 0) & (total_pos < total), ap, np.nan)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    n = np.sum(~np.isnan(a), axis=1)
    total = np.nansum(a, axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)
