"""Reading and validating the data the pipeline trains and judges on.

Validation happens here, once, at the boundary (the ``validate`` stage and every command
that reads data); code behind it trusts the frames it gets.  Every problem is one
:class:`DataError` line naming the file, the column and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.config import DatasetConfig
from retrain.core.errors import DataError
from retrain.core.registry import RegistryEntry
from retrain.pipeline import batchcheck
from retrain.pipeline.batchcheck import batch_files  # noqa: F401 (re-exported)


def read_table(path: Path, display: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file; unreadable, empty or truncated files are :class:`DataError`."""
    display = display or str(path)
    if not path.is_file():
        raise DataError(f"{display}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            if path.stat().st_size == 0:
                raise DataError(f"{display}: file is empty (expected a CSV header and rows)")
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DataError(
                f"{display}: unsupported file type {suffix!r} (expected .csv or .parquet)"
            )
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{display}: file is empty (expected a CSV header and rows)") from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{display}: not a well-formed CSV ({first})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{display}: cannot be read ({type(exc).__name__}: {exc})") from None
    if frame.empty:
        raise DataError(f"{display}: has a header but no rows")
    return frame


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def as_text(col: pd.Series) -> pd.Series:
    """Values as Python strings (``astype("string")``'s text), missing values as None.

    Each distinct value is converted once and every row refers to that one ``str`` (8 bytes
    a row, instead of a string object per row: 63 bytes a row for a short label)."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    text = pd.Series(uniques).astype("string").astype(object).to_numpy()
    lookup = np.empty(len(text) + 1, dtype=object)  # code -1 (missing) takes the last slot
    lookup[:-1] = text
    return pd.Series(lookup[codes], index=col.index, dtype=object, name=col.name)


def check_frame(
    frame: pd.DataFrame,
    cfg: DatasetConfig,
    display: str,
    *,
    labelled: bool = True,
    first_row: int = 0,
    duplicates: bool = True,
    partial: bool = False,
    names_only: bool = False,
) -> pd.DataFrame:
    """Check one file against the dataset's schema and return it with normalised dtypes.

    Raises :class:`DataError` naming the file and column for: missing or extra columns,
    wrong types, missing values, unseen labels, out-of-range values, duplicated rows,
    unparseable timestamps.

    A large file is checked one record batch at a time (:mod:`retrain.pipeline.batchread`):
    ``first_row`` is the batch's first row in the file (row numbers in messages are the
    file's), ``partial`` says counts are the record batch's, and ``duplicates=False`` leaves
    duplicated rows to the caller (they may be in different record batches);
    ``names_only`` checks the column names and stops.
    """
    expected = cfg.feature_names + ([cfg.target] if labelled else [])
    if cfg.time_column:
        expected = expected + [cfg.time_column]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(f"{display}: missing column(s) {missing}; expected {expected}")
    extra = [c for c in frame.columns if c not in expected and c not in cfg.ignore_columns]
    if extra and labelled:
        raise DataError(f"{display}: unexpected column(s) {extra}; expected exactly {expected}")
    # Ignored columns ride along unchecked: a production model with an older schema may
    # still need them (e.g. while a MAJOR change that dropped a feature is reviewed).
    if names_only:
        return frame
    kept = [c for c in cfg.ignore_columns if c in frame.columns]
    frame = frame[expected + kept]  # copy-on-write: the caller's frame is never changed
    among = f" among rows {first_row + 2}-{first_row + len(frame) + 1}" if partial else ""

    for spec in cfg.features:
        col = frame[spec.name]
        n_missing = int(col.isna().sum())
        if n_missing and not spec.allow_missing:
            row = int(np.flatnonzero(col.isna().to_numpy())[0])
            raise DataError(
                f"{display}: column {spec.name!r} has {n_missing} missing value(s){among} "
                f"(first at row {first_row + row + 2}); set allow_missing to accept them"
            )
        if spec.type == "numeric":
            converted = pd.to_numeric(col, errors="coerce")
            bad = converted.isna() & col.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{display}: column {spec.name!r} expected numbers, "
                    f"got {col.iloc[row]!r} at row {first_row + row + 2}"
                )
            converted = converted.astype("float64")
            if spec.min is not None and (converted < spec.min).any():
                raise DataError(
                    f"{display}: column {spec.name!r} has value {converted.min()!r} "
                    f"below its minimum {spec.min}"
                )
            if spec.max is not None and (converted > spec.max).any():
                raise DataError(
                    f"{display}: column {spec.name!r} has value {converted.max()!r} "
                    f"above its maximum {spec.max}"
                )
            frame[spec.name] = converted
        else:
            text = as_text(col)
            frame[spec.name] = text
            if spec.levels is not None:
                seen = text.dropna()
                unknown = seen[~seen.isin(spec.levels)]
                if len(unknown):
                    row = int(np.flatnonzero(text.isin(unknown.iloc[:1]).to_numpy())[0])
                    raise DataError(
                        f"{display}: column {spec.name!r} has level {unknown.iloc[0]!r} "
                        f"(first at row {first_row + row + 2}), not one of its levels "
                        f"{spec.levels}; add it to levels in configs/dataset.yaml to accept it"
                    )

    if labelled:
        target = frame[cfg.target]
        if target.isna().any():
            row = int(np.flatnonzero(target.isna().to_numpy())[0])
            raise DataError(
                f"{display}: target {cfg.target!r} is missing at row {first_row + row + 2}"
            )
        if cfg.task == "classification":
            frame[cfg.target] = as_text(target)
            if cfg.labels is not None:
                unseen = sorted(set(frame[cfg.target]) - set(cfg.labels))
                if unseen:
                    raise DataError(
                        f"{display}: target {cfg.target!r} has unknown label(s) {unseen}; "
                        f"expected one of {cfg.labels}"
                    )
        else:
            converted = pd.to_numeric(target, errors="coerce")
            if converted.isna().any():
                row = int(np.flatnonzero(converted.isna().to_numpy())[0])
                raise DataError(
                    f"{display}: target {cfg.target!r} expected numbers, got "
                    f"{target.iloc[row]!r} at row {first_row + row + 2}"
                )
            frame[cfg.target] = converted.astype("float64")

    if cfg.time_column:
        times = pd.to_datetime(frame[cfg.time_column], errors="coerce", utc=True)
        if times.isna().any():
            row = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise DataError(
                f"{display}: column {cfg.time_column!r} expected timestamps, got "
                f"{frame[cfg.time_column].iloc[row]!r} at row {first_row + row + 2}"
            )
        frame[cfg.time_column] = times

    if labelled and duplicates and not cfg.allow_duplicate_rows:
        dupes = frame.duplicated()
        if dupes.any():
            row = int(np.flatnonzero(dupes.to_numpy())[0])
            raise DataError(
                f"{display}: {int(dupes.sum())} duplicated row(s) (first at row {row + 2}); "
                "set allow_duplicate_rows to accept them"
            )
    return frame


@dataclass
class TrainingData:
    """The validated data one training run uses."""

    frame: pd.DataFrame  # the training window: features, target (and time column)
    total_rows: int  # rows across every batch, before the window
    files: dict[str, int]  # batch file -> rows
    start: str | None
    end: str | None
    opened: list[str] = field(default_factory=list)  # the files read (the others: footer)

    def features(self, cfg: DatasetConfig) -> pd.DataFrame:
        return self.frame[cfg.feature_names]


@dataclass
class BatchesReport:
    """What the validate stage learnt from the batches (no rows kept)."""

    files: dict[str, int]  # batch file -> rows
    total_rows: int
    training_rows: int
    start: str | None
    end: str | None
    labels: set[str]  # the target's labels in the training window (classification)
    opened: list[str]  # files read and checked (they hold training rows)
    outside: list[str]  # files entirely before the window: not opened


def _day(ns: int | None) -> str | None:
    return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%d")


def _enough(cfg: DatasetConfig, rows: int) -> None:
    if rows < cfg.min_rows:
        raise DataError(
            f"{cfg.batches}: {rows} training row(s) after the window; "
            f"dataset.yaml min_rows asks for at least {cfg.min_rows}"
        )


def check_batches(cfg: DatasetConfig, root: Path) -> BatchesReport:
    """Check every batch that holds training rows, in one streamed pass each.

    The window is decided first from the files' footers (:mod:`retrain.pipeline.window`);
    files entirely before it are not opened.  Every opened file is checked record batch by
    record batch, rows duplicated within a file or across the opened files are refused, and
    each file's facts and profile are remembered for later runs (``.retrain/batches/``).
    Inside :func:`retrain.pipeline.batchread.read_once` the window's rows are kept for the
    train stage.
    """
    from retrain.pipeline import batchread, window
    from retrain.pipeline.batchstore import Store

    record_key = batchcheck.key(cfg, root)  # before reading: it vouches for these bytes
    store = Store(root, cfg)
    plan = window.plan(cfg, root, store)
    scans = [batchread.scan_once(cfg, f.path, f.rel, cutoff=plan.cutoff) for f in plan.inside]
    batchread.check_across(cfg, scans)
    for s in scans:
        window.store_facts(store, s.path, s)
    rows = {f.rel: f.rows for f in plan.files}
    rows.update({f.rel: s.rows for f, s in zip(plan.inside, scans, strict=True)})
    files = {k: int(v or 0) for k, v in rows.items()}
    training = sum(s.window_rows for s in scans)
    _enough(cfg, training)
    lows = [s.window_tmin for s in scans if s.window_tmin is not None]
    highs = [s.window_tmax for s in scans if s.window_tmax is not None]
    batchcheck.remember(root, record_key, files)
    return BatchesReport(
        files=files,
        total_rows=sum(files.values()),
        training_rows=training,
        start=_day(min(lows)) if lows else None,
        end=_day(max(highs)) if highs else None,
        labels=set().union(*(s.labels for s in scans)),
        opened=[f.rel for f in plan.inside],
        outside=[f.rel for f in plan.outside],
    )


def load_batches(cfg: DatasetConfig, root: Path) -> TrainingData:
    """The training window's rows (features, target, time column), checked as they are read.

    Reads only the files holding training rows, only those columns, record batch by record
    batch, and keeps only the rows after the cutoff; inside
    :func:`retrain.pipeline.batchread.read_once` the rows an earlier pass kept are taken
    instead.  Duplicated rows are the validate stage's check (:func:`check_batches`; DVC
    runs it first), since a duplicate's copy may lie in a column training does not read.
    """
    from retrain.pipeline import batchread, window

    plan = window.plan(cfg, root)
    # The ignored columns a file has ride along (as in check_frame): a production model of an
    # older schema may need them, e.g. to be scored on the out-of-time slice while a MAJOR
    # change that dropped a feature is reviewed.  Files may differ in which they have, so with
    # ignored columns each file is its own segment (pd.concat leaves the gaps missing).
    cols = batchread.kept_columns(cfg)
    own_segments = bool(cfg.ignore_columns)
    files: dict[str, int] = {f.rel: int(f.rows or 0) for f in plan.files}
    # In name order (ties in time keep it): runs of files still to read share one set of
    # arrays; files this run already read hand over the rows they kept.
    segments: list[list[window.BatchFacts] | pd.DataFrame] = []
    for f in plan.inside:
        seen = batchread.remembered(cfg, f.path)
        if seen is not None and seen.kept is not None and seen.cutoff == plan.cutoff:
            segments.append(seen.kept[[c for c in cols if c in seen.kept.columns]])
            seen.kept = None  # handed over: the session no longer holds these rows
            files[f.rel] = seen.rows
        elif segments and isinstance(segments[-1], list) and not own_segments:
            segments[-1].append(f)
        else:
            segments.append([f])
    frames: list[pd.DataFrame] = []
    for seg in segments:
        if isinstance(seg, pd.DataFrame):
            frames.append(seg)
            continue
        rows = batchread.Rows(sum(int(f.rows or 0) for f in seg))
        for f in seg:
            n = 0
            for chunk in batchread.checked_chunks(cfg, f.path, f.rel, columns=cols):
                n += len(chunk)
                if plan.cutoff is not None and cfg.time_column:
                    chunk = chunk[batchread.as_ns(chunk[cfg.time_column]) > plan.cutoff]
                rows.add(chunk)
            files[f.rel] = n
        frames.append(rows.frame(cols))
        del rows
    del segments
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    del frames
    data = data.reset_index(drop=True)
    batchread.give_back_memory()
    start = end = None
    if cfg.time_column:
        t = data[cfg.time_column]
        if not t.is_monotonic_increasing:
            data = data.sort_values(cfg.time_column, kind="stable").reset_index(drop=True)
        if len(data):
            start = data[cfg.time_column].iloc[0].strftime("%Y-%m-%d")
            end = data[cfg.time_column].iloc[-1].strftime("%Y-%m-%d")
    _enough(cfg, len(data))
    return TrainingData(
        frame=data,
        total_rows=sum(files.values()),
        files=files,
        start=start,
        end=end,
        opened=[f.rel for f in plan.inside],
    )


def load_holdout(cfg: DatasetConfig, root: Path) -> pd.DataFrame:
    """The frozen holdout, checked like a batch."""
    return check_frame(read_table(root / cfg.holdout, cfg.holdout), cfg, cfg.holdout)


def model_inputs(frame: pd.DataFrame, entry: RegistryEntry, display: str) -> pd.DataFrame:
    """The columns a registered model was trained on, from its registry entry's schema."""
    features = list(entry.schema_.features)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(
            f"{display}: column(s) {missing} that v{entry.version} needs are gone; keep them "
            "in the data (dataset.yaml ignore_columns) while the schema change is reviewed"
        )
    return frame[features]


def schema_of(cfg: DatasetConfig, classes: list[Any] | None) -> dict[str, Any]:
    """The model's input and output schema, and its fingerprint."""
    schema: dict[str, Any] = {
        "features": {f.name: f.type for f in cfg.features},
        "target": cfg.target,
        "task": cfg.task,
        "classes": [str(c) for c in classes] if classes is not None else None,
    }
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    schema["fingerprint"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return schema


def dvc_data_hash(root: Path) -> str | None:
    """The md5 DVC recorded for ``data/`` in ``data.dvc`` (None when there is no data.dvc)."""
    import yaml

    path = root / "data.dvc"
    if not path.is_file():
        return None
    doc = yaml.safe_load(path.read_text()) or {}
    outs = doc.get("outs") or [{}]
    md5 = outs[0].get("md5")
    return str(md5) if md5 else None
