"""The out-of-time slice: the newest rows of the training window, judged by a fit without them.

The frozen holdout is cut once, when the fork is onboarded, and ages: months later every
candidate is still judged only on those rows.  So the train stage also fits the candidate a
second time, on the window *without* its newest ``out_of_time.share`` of rows, and predicts
those rows; the gates score production on them too and report both beside the frozen
holdout.  The shipped model is the fit on the whole window: the second fit exists only for
this judgement (``docs/gates.md``, "Out of time").

:func:`split` takes the training frame already read (``TrainingData.frame``), so it does not
care how the data was read; the train stage and the PR-time re-check call it alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.config import Config, DatasetConfig
from retrain.core.progress import progress

SLICE_FILE = "artifacts/train/out_of_time.parquet"
PRED = "__candidate_prediction__"
PROBA = "__candidate_proba__"  # + the class name


@dataclass
class Slice:
    """The training window cut in two: the rows the second fit sees, and the newest rows."""

    fit: pd.DataFrame
    judged: pd.DataFrame
    by: str  # "time" | "batch order"
    start: str | None
    end: str | None

    def record(self) -> dict[str, Any]:
        return {
            "rows": len(self.judged),
            "fit_rows": len(self.fit),
            "by": self.by,
            "start": self.start,
            "end": self.end,
        }


def split(frame: pd.DataFrame, cfg: DatasetConfig) -> tuple[Slice | None, str]:
    """The out-of-time slice of the training window ``frame``, or None and why not.

    With a time column the slice is every row at or after the time of the row that starts
    the newest ``share`` (so one timestamp is never cut in two); without one it is the last
    rows in batch order (files by name, as they arrived).
    """
    oot = cfg.out_of_time
    n = len(frame)
    if oot.share == 0:
        return None, "off (dataset.yaml out_of_time.share is 0)"
    k = math.ceil(oot.share * n)
    if k < oot.min_rows:
        return None, (f"{k} newest row(s) of {n} is fewer than out_of_time.min_rows {oot.min_rows}")
    # The newest rows are a suffix of the frame in time order: cut with positions, so under
    # copy-on-write neither part copies the window (load_batches returns it sorted already).
    if cfg.time_column:
        ordered = frame
        if not frame[cfg.time_column].is_monotonic_increasing:
            ordered = frame.sort_values(cfg.time_column, kind="stable")
        ordered = ordered.reset_index(drop=True)
        times = ordered[cfg.time_column]
        first = int(times.searchsorted(times.iloc[n - k], side="left"))  # the whole timestamp
        by = "time"
    else:
        ordered = frame.reset_index(drop=True)
        first = n - k
        by = "batch order"
    judged, fit = ordered.iloc[first:], ordered.iloc[:first]
    if len(fit) < oot.min_rows:
        return None, f"only {len(fit)} row(s) would be left to fit on"
    start = end = None
    if cfg.time_column:
        start = judged[cfg.time_column].min().strftime("%Y-%m-%d")
        end = judged[cfg.time_column].max().strftime("%Y-%m-%d")
    return Slice(fit.reset_index(drop=True), judged.reset_index(drop=True), by, start, end), ""


def write(
    path: Path,
    judged: pd.DataFrame,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: list[Any] | None,
) -> None:
    """The slice's rows with the second fit's predictions, for the gates to read back."""
    out = judged.copy()
    out[PRED] = y_pred
    if proba is not None and classes is not None:
        for i, c in enumerate(classes):
            out[f"{PROBA}{c}"] = proba[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(path)


def read(
    path: Path, classes: list[Any] | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """``(rows, candidate predictions, candidate probabilities)`` from :func:`write`'s file;
    probability columns in ``classes`` order (None when the fit gave none)."""
    frame = pd.read_parquet(path)
    y_pred = frame[PRED].to_numpy()
    cols = [f"{PROBA}{c}" for c in classes or []]
    proba = frame[cols].to_numpy(dtype=float) if cols and all(c in frame for c in cols) else None
    rows = frame.drop(columns=[c for c in frame.columns if c == PRED or c.startswith(PROBA)])
    return rows, y_pred, proba


def _empty(path: Path, frame: pd.DataFrame) -> None:
    """No judgement: a file with no rows (DVC expects the stage's output)."""
    write(path, frame.iloc[:0], np.empty(0, dtype=object), None, None)


def fit_and_write(cfg: Config, frame: pd.DataFrame, eng: Any = None) -> dict[str, Any]:
    """The train stage's second fit: the configured model, unfitted, fit on the window without
    its newest rows, its predictions on them written to :data:`SLICE_FILE`.  Returns the
    record for ``training.json`` (``rows`` 0 and a ``note`` when there is no judgement).

    ``eng`` (a :class:`retrain.pipeline.engine.Engine`) fits it where the shipped model was
    fitted, on the Dask cluster for ``engine: dask``; None fits in this process."""
    import time

    from retrain.pipeline import estimators
    from retrain.pipeline.predict import predict_rows

    path = cfg.root / SLICE_FILE
    path.unlink(missing_ok=True)
    ds = cfg.dataset
    cut, why = split(frame, ds)
    if cut is None:
        progress(f"train: no out-of-time judgement: {why}")
        _empty(path, frame)
        return {"rows": 0, "note": why}
    span = f" ({cut.start} … {cut.end})" if cut.start else ""
    progress(
        f"train: second fit without the newest {len(cut.judged)} rows{span}, "
        "for the out-of-time judgement"
    )
    started = time.perf_counter()
    model = estimators.build_model(cfg)
    try:
        X, y = cut.fit[ds.feature_names], cut.fit[ds.target]
        model = model.fit(X, y) if eng is None else eng.fit(model, cut.fit, X, y)
    except ValueError as exc:  # e.g. a class the older rows lack: no judgement, no failure
        note = f"the fit without the slice failed ({str(exc).strip().splitlines()[0]})"
        progress(f"train: no out-of-time judgement: {note}")
        _empty(path, frame)
        return {"rows": 0, "note": note}
    y_pred, proba, classes = predict_rows(model, cut.judged[ds.feature_names], ds.task)
    write(path, cut.judged, y_pred, proba, classes)
    return {
        **cut.record(),
        "classes": [str(c) for c in classes] if classes is not None else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
