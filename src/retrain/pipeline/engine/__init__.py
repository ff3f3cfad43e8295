"""Where the train stage fits the model: ``configs/model.yaml: engine``.

- ``local`` (default): in this process, as always.
- ``dask``: on a Dask cluster (:mod:`.cluster`: a scheduler address, or an in-process
  LocalCluster).  ``lightgbm`` and ``xgboost`` train data-parallel with their own Dask
  estimators; a scikit-learn estimator with ``n_jobs`` runs its parallel work on the cluster
  through joblib's Dask backend; any other is fitted here, on the runner, and says so
  (:mod:`.parallel`).

Either way the result is the same plain scikit-learn ``Pipeline``, saved, gated and served
as before; the engine only changes where the fit ran, which :meth:`Engine.record` states for
training.json, the registry entry and the model card::

    with engine.session(cfg) as eng:     # connects first: an unreachable scheduler is exit 2
        pipe = eng.fit(pipe, frame, X, y)
        info["engine"] = eng.record()
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from retrain.core.config import Config, DatasetConfig

if TYPE_CHECKING:
    from retrain.pipeline.dataset import TrainingData
from retrain.core.progress import progress

__all__ = ["Engine", "session"]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Engine:
    """Fits in this process (``engine: local``)."""

    name = "local"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.fit_kind = "runner"

    def fit(self, pipe: Any, frame: pd.DataFrame, X: pd.DataFrame, y: pd.Series) -> Any:
        """Fit ``pipe`` on the training window (``frame``; ``X``, ``y`` its columns)."""
        pipe.fit(X, y)
        return pipe

    def fit_window(self, pipe: Any, data: TrainingData, ds: DatasetConfig) -> Any:
        """The train stage's fit on ``data``: here, the rows are let go once the transformers
        have turned them into the estimator's input (:func:`retrain.pipeline.stages.fit_lean`;
        ``data.frame`` is empty afterwards)."""
        from retrain.pipeline.stages import fit_lean

        fit_lean(pipe, data, ds)
        return pipe

    def record(self) -> dict[str, Any]:
        """Where the fit ran: engine, workers and threads (and the cluster, for Dask)."""
        return {"name": self.name, "workers": 1, "threads": _cpus()}


class DaskEngine(Engine):
    """Fits on a Dask cluster (``engine: dask``)."""

    name = "dask"

    def __init__(self, cfg: Config, cluster: Any) -> None:
        super().__init__(cfg)
        self.cluster = cluster
        self.workers, self.threads = cluster.size()

    def fit(self, pipe: Any, frame: pd.DataFrame, X: pd.DataFrame, y: pd.Series) -> Any:
        from retrain.pipeline.boosting import is_boosted
        from retrain.pipeline.engine import parallel

        est = self.cfg.model.estimator
        self.workers, self.threads = self.cluster.size()
        where = f"{self.cluster.where}, {self.workers} worker(s), {self.threads} thread(s)"
        if self.cfg.model.builtin and is_boosted(est):
            self.fit_kind = "data-parallel"
            progress(f"train: {est} data-parallel on the Dask cluster ({where})")
            return parallel.fit_data_parallel(
                self.cluster.client, self.workers, pipe, frame, self.cfg.dataset, str(est)
            )
        if parallel.uses_n_jobs(pipe):
            self.fit_kind = "joblib"
            progress(f"train: {self.cfg.model.label}'s n_jobs work on the Dask cluster ({where})")
            return parallel.fit_joblib(pipe, X, y)
        self.fit_kind = "runner"
        progress(
            f"train: {self.cfg.model.label} has no data-parallel or n_jobs fit: fitted on this "
            "runner (estimator: lightgbm or xgboost trains on the cluster)"
        )
        return super().fit(pipe, frame, X, y)

    def fit_window(self, pipe: Any, data: TrainingData, ds: DatasetConfig) -> Any:
        return self.fit(pipe, data.frame, data.features(ds), data.frame[ds.target])

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cluster": self.cluster.where,
            "workers": self.workers,
            "threads": self.threads,
            "fit": self.fit_kind,
        }


def _model_modules(cfg: Config) -> tuple[str, ...]:
    from retrain.pipeline.boosting import BOOSTED, is_boosted

    est = cfg.model.estimator
    return (BOOSTED[str(est)][0],) if cfg.model.builtin and is_boosted(est) else ()


@contextlib.contextmanager
def session(cfg: Config) -> Iterator[Engine]:
    """The configured engine, connected (Dask) for the duration of the block."""
    if cfg.model.engine == "local":
        yield Engine(cfg)
        return
    from retrain.pipeline.engine.cluster import connect

    with connect(cfg, _model_modules(cfg)) as cluster:
        yield DaskEngine(cfg, cluster)
