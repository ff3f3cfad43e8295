"""Pictures for the pull request: confusion matrices, reliability curve, residuals.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no global state and no
display needed) and saved as small PNGs (100 dpi) without the ``Software`` metadata, so the
same inputs and matplotlib version give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
_PNG_METADATA: dict[str, Any] = {"Software": None}
_MAX_ANNOTATED_CLASSES = 15
_SCATTER_POINTS = 2000


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(
        path, dpi=DPI, format="png", metadata=_PNG_METADATA, bbox_inches="tight", pad_inches=0.15
    )
    return path


def _labels(y_true: np.ndarray, classes: list[Any] | None, *preds: np.ndarray | None) -> list[Any]:
    """The model's classes first (its order), then any other label seen, sorted."""
    order = list(classes or [])
    seen = set(order)
    extra: set[Any] = set()
    for values in (y_true, *preds):
        if values is not None:
            extra.update(v for v in np.asarray(values).tolist() if v not in seen)
    return order + sorted(extra, key=str)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any]) -> np.ndarray:
    index = {c: i for i, c in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), strict=True):
        cm[index[t], index[p]] += 1
    return cm


def _draw_confusion(ax: Any, cm: np.ndarray, labels: list[Any], title: str) -> None:
    support = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(labels))
    names = [str(c) for c in labels]
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(cm) / max(int(cm.sum()), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.3f})", fontsize=10)
    if len(labels) <= _MAX_ANNOTATED_CLASSES:
        for i in range(len(labels)):
            for j in range(len(labels)):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=colour)


def confusion_matrix_plot(
    path: Path,
    y_true: np.ndarray,
    candidate_pred: np.ndarray,
    baseline_pred: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> Path:
    """Confusion matrix of the candidate (and production's beside it), counts annotated,
    shaded by the share of each true class (row-normalised recall)."""
    labels = _labels(y_true, classes, candidate_pred, baseline_pred)
    panels = [("candidate", candidate_pred)]
    if baseline_pred is not None:
        panels.insert(0, ("production", baseline_pred))
    side = 2.2 + 0.45 * len(labels)
    fig = Figure(figsize=(side * len(panels), side), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, pred) in zip(axes, panels, strict=True):
        _draw_confusion(ax, _confusion(y_true, pred, labels), labels, title)
    return _save(fig, path)


def calibration_plot(
    path: Path, y_true: np.ndarray, proba: np.ndarray, classes: list[Any], n_bins: int = 10
) -> Path:
    """Reliability curve: predicted confidence vs observed frequency, uniform bins.

    Binary models: probability of ``classes[1]`` vs the share of that class.  Multiclass:
    the top-label confidence vs the share of rows where the top label is right.
    """
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=float)
    if len(classes) == 2:
        conf, hit = p[:, 1], (y == classes[1]).astype(float)
        xlabel, ylabel = f"predicted P({classes[1]})", f"observed share of {classes[1]}"
    else:
        top = p.argmax(axis=1)
        conf = p[np.arange(len(p)), top]
        hit = (y == np.asarray(classes, dtype=object)[top]).astype(float)
        xlabel, ylabel = "top-label confidence", "observed accuracy"
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    used = count > 0
    mean_conf = np.bincount(bins, weights=conf, minlength=n_bins)[used] / count[used]
    observed = np.bincount(bins, weights=hit, minlength=n_bins)[used] / count[used]
    ece = float(np.sum(count[used] * np.abs(observed - mean_conf)) / max(len(conf), 1))
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    ax.plot(mean_conf, observed, marker="o", label="candidate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Reliability (ECE {ece:.3f})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def _thin(n: int) -> np.ndarray:
    """At most _SCATTER_POINTS evenly spaced row indices: small files, same picture."""
    if n <= _SCATTER_POINTS:
        return np.arange(n)
    return np.linspace(0, n - 1, num=_SCATTER_POINTS).round().astype(int)


def residuals_plot(
    path: Path, y_true: np.ndarray, candidate_pred: np.ndarray, baseline_pred: np.ndarray | None
) -> Path:
    """Residual (actual - predicted) against predicted value."""
    y = np.asarray(y_true, dtype=float)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    rows = _thin(len(y))
    for label, pred in (("production", baseline_pred), ("candidate", candidate_pred)):
        if pred is None:
            continue
        p = np.asarray(pred, dtype=float)
        ax.scatter(p[rows], (y - p)[rows], s=6, alpha=0.5, label=label)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title("Residuals on the frozen holdout", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def predicted_vs_actual_plot(
    path: Path, y_true: np.ndarray, candidate_pred: np.ndarray, baseline_pred: np.ndarray | None
) -> Path:
    """Predicted against actual value, with the identity line."""
    y = np.asarray(y_true, dtype=float)
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    rows = _thin(len(y))
    values = [y]
    for label, pred in (("production", baseline_pred), ("candidate", candidate_pred)):
        if pred is None:
            continue
        p = np.asarray(pred, dtype=float)
        values.append(p)
        ax.scatter(y[rows], p[rows], s=6, alpha=0.5, label=label)
    low = float(min(np.min(v) for v in values))
    high = float(max(np.max(v) for v in values))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def write_plots(
    out_dir: Path | str,
    task: str,
    y_true: np.ndarray,
    candidate_pred: np.ndarray,
    baseline_pred: np.ndarray | None = None,
    candidate_proba: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> list[Path]:
    """Write the plots for ``task`` into ``out_dir`` and return their paths, in order.

    Classification: ``confusion_matrix.png`` (production beside candidate when given) and,
    with probabilities, ``calibration.png``.  Regression: ``residuals.png`` and
    ``predicted_vs_actual.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if task == "classification":
        paths = [
            confusion_matrix_plot(
                out / "confusion_matrix.png", y_true, candidate_pred, baseline_pred, classes
            )
        ]
        if candidate_proba is not None and classes:
            paths.append(
                calibration_plot(out / "calibration.png", y_true, candidate_proba, classes)
            )
        return paths
    if task == "regression":
        return [
            residuals_plot(out / "residuals.png", y_true, candidate_pred, baseline_pred),
            predicted_vs_actual_plot(
                out / "predicted_vs_actual.png", y_true, candidate_pred, baseline_pred
            ),
        ]
    raise ValueError(f"task must be 'classification' or 'regression' (got {task!r})")
