"""Which batch files the training window needs, decided before any of them is read.

Every batch file's rows and time range come from what is cheapest: a Parquet file's footer
(row count, and the time column's min/max from the row groups' statistics when the column is
a timestamp or a date), else the local store (:mod:`retrain.pipeline.batchstore`, for a file
read on an earlier run), else the time column read by itself.  The window's cutoff is the
newest time minus ``train_window_days``; a file whose newest row is not after the cutoff holds
no training row and is never opened.  Without a time column or a window, every file is in.

:func:`training_window` is the public answer, for anything that reads the training data its
own way (the Dask engine reads the Parquet files directly): the files, the columns, and the
row filter in the ``[(column, op, value)]`` form pyarrow and Dask take.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core.config import DatasetConfig
from retrain.pipeline import batchread
from retrain.pipeline.batchcheck import batch_files
from retrain.pipeline.batchstore import Store, StoredFacts, file_sha

_DAY_NS = 86_400 * 10**9


@dataclass
class BatchFacts:
    """One batch file, as far as it is known without reading its rows."""

    path: Path
    rel: str  # relative to the project root, as registry entries record it
    rows: int | None  # None: a CSV file never read (its rows are counted when it is)
    tmin: int | None  # ns since the epoch, UTC; None when there is no time column or unknown
    tmax: int | None
    source: str  # "footer" | "store" | "time column" | "none"

    @property
    def parquet(self) -> bool:
        return batchread.is_parquet(self.path)

    def sha(self) -> str:
        return file_sha(self.path)


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def facts_of(cfg: DatasetConfig, root: Path, path: Path, store: Store) -> BatchFacts:
    rel = _rel(root, path)
    tcol = cfg.time_column
    if batchread.is_parquet(path):
        foot = batchread.footer(path, rel, tcol)
        if not tcol:
            return BatchFacts(path, rel, foot.rows, None, None, "footer")
        if foot.time_range is not None:
            return BatchFacts(path, rel, foot.rows, *foot.time_range, "footer")
    stored = store.facts(file_sha(path))
    if stored is not None:
        return BatchFacts(path, rel, stored.rows, stored.tmin, stored.tmax, "store")
    rows = foot.rows if batchread.is_parquet(path) else None
    if not tcol:
        return BatchFacts(path, rel, rows, None, None, "none")
    times = batchread.read_times(path, rel, tcol)
    if times is None:  # unreadable or a bad timestamp: the file is opened and checked
        return BatchFacts(path, rel, rows, None, None, "none")
    return BatchFacts(path, rel, times[2], times[0], times[1], "time column")


@dataclass
class WindowPlan:
    """The training window over the batch files."""

    files: list[BatchFacts]  # every batch file, in name order
    inside: list[BatchFacts]  # the files holding training rows (opened)
    outside: list[BatchFacts]  # files entirely before the cutoff (never opened)
    cutoff: int | None  # training rows have time > cutoff (ns, UTC); None: every row
    time_column: str | None
    columns: list[str]  # what training reads: features, target, time column

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.inside]

    @property
    def filters(self) -> list[tuple[str, str, Any]] | None:
        """The row filter, for ``pyarrow.parquet.read_table(filters=...)`` or
        ``dask.dataframe.read_parquet(filters=...)``; None when every row is in."""
        if self.cutoff is None or self.time_column is None:
            return None
        import pandas as pd

        return [(self.time_column, ">", pd.Timestamp(self.cutoff, unit="ns", tz="UTC"))]


def plan(cfg: DatasetConfig, root: Path, store: Store | None = None) -> WindowPlan:
    """Decide the window from the files' facts (see the module docstring)."""
    store = store or Store(root, cfg)
    files = [facts_of(cfg, root, p, store) for p in batch_files(cfg, root)]
    columns = [*cfg.feature_names, cfg.target] + ([cfg.time_column] if cfg.time_column else [])
    cutoff = None
    if cfg.time_column and cfg.train_window_days is not None:
        known = [f.tmax for f in files if f.tmax is not None]
        if len(known) == len(files) and known:
            cutoff = max(known) - cfg.train_window_days * _DAY_NS
    # A file of unknown time range is opened (its check says what is wrong with it).
    inside = [f for f in files if cutoff is None or f.tmax is None or f.tmax > cutoff]
    outside = [f for f in files if f not in inside]
    return WindowPlan(files, inside, outside, cutoff, cfg.time_column, columns)


def training_window(cfg: DatasetConfig, root: Path) -> WindowPlan:
    """The batch files holding training rows, the columns training reads, and the row filter.

    ``plan.paths`` are the files to read (the others hold no training row), ``plan.columns``
    the columns, ``plan.filters`` the cut on the time column (``None``: every row).  The rows
    these give are the rows ``retrain train`` fits on (in file order; train also sorts them
    by time, stably).  The files are not checked here: ``retrain validate`` does that.
    """
    return plan(cfg, root)


def store_facts(store: Store, path: Path, scan: batchread.FileScan) -> None:
    """Remember a passed file's facts and profile for later runs."""
    sha = file_sha(path)
    store.put_facts(sha, StoredFacts(scan.rows, scan.tmin, scan.tmax))
    store.put_profile(sha, scan.profile)
    for w, prof in scan.slices.items():
        store.put_profile(sha, prof, w)
