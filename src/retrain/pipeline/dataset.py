"""Reading and validating the data the pipeline trains and judges on.

Validation happens here, once, at the boundary (the ``validate`` stage and every command
that reads data); code behind it trusts the frames it gets.  Every problem is one
:class:`DataError` line naming the file, the column and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.config import DatasetConfig
from retrain.core.errors import DataError
from retrain.core.registry import RegistryEntry
from retrain.pipeline import batchcheck
from retrain.pipeline.batchcheck import batch_files


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


def check_frame(
    frame: pd.DataFrame, cfg: DatasetConfig, display: str, *, labelled: bool = True
) -> pd.DataFrame:
    """Check one file against the dataset's schema and return it with normalised dtypes.

    Raises :class:`DataError` naming the file and column for: missing or extra columns,
    wrong types, missing values, unseen labels, out-of-range values, duplicated rows,
    unparseable timestamps.
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
    kept = [c for c in cfg.ignore_columns if c in frame.columns]
    frame = frame[expected + kept].copy()

    for spec in cfg.features:
        col = frame[spec.name]
        n_missing = int(col.isna().sum())
        if n_missing and not spec.allow_missing:
            row = int(np.flatnonzero(col.isna().to_numpy())[0])
            raise DataError(
                f"{display}: column {spec.name!r} has {n_missing} missing value(s) "
                f"(first at row {row + 2}); set allow_missing to accept them"
            )
        if spec.type == "numeric":
            converted = pd.to_numeric(col, errors="coerce")
            bad = converted.isna() & col.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{display}: column {spec.name!r} expected numbers, "
                    f"got {col.iloc[row]!r} at row {row + 2}"
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
            frame[spec.name] = col.astype("string").astype(object).where(col.notna(), None)
            if spec.levels is not None:
                seen = frame[spec.name].dropna()
                unknown = seen[~seen.isin(spec.levels)]
                if len(unknown):
                    row = int(np.flatnonzero(frame[spec.name].isin(unknown.iloc[:1]))[0])
                    raise DataError(
                        f"{display}: column {spec.name!r} has level {unknown.iloc[0]!r} "
                        f"(first at row {row + 2}), not one of its levels {spec.levels}; "
                        "add it to levels in configs/dataset.yaml to accept it"
                    )

    if labelled:
        target = frame[cfg.target]
        if target.isna().any():
            row = int(np.flatnonzero(target.isna().to_numpy())[0])
            raise DataError(f"{display}: target {cfg.target!r} is missing at row {row + 2}")
        if cfg.task == "classification":
            frame[cfg.target] = target.astype("string").astype(object)
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
                    f"{target.iloc[row]!r} at row {row + 2}"
                )
            frame[cfg.target] = converted.astype("float64")

    if cfg.time_column:
        times = pd.to_datetime(frame[cfg.time_column], errors="coerce", utc=True)
        if times.isna().any():
            row = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise DataError(
                f"{display}: column {cfg.time_column!r} expected timestamps, got "
                f"{frame[cfg.time_column].iloc[row]!r} at row {row + 2}"
            )
        frame[cfg.time_column] = times

    if labelled and not cfg.allow_duplicate_rows:
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

    frame: pd.DataFrame  # the training window
    total_rows: int  # rows across every batch, before the window
    files: dict[str, int]  # batch file -> rows
    start: str | None
    end: str | None

    def features(self, cfg: DatasetConfig) -> pd.DataFrame:
        return self.frame[cfg.feature_names]


def load_batches(cfg: DatasetConfig, root: Path) -> TrainingData:
    """Read and check every batch, then apply the training window."""
    record_key = batchcheck.key(cfg, root)  # before reading: it vouches for these bytes
    frames = []
    files: dict[str, int] = {}
    for path in batch_files(cfg, root):
        display = _rel(root, path)
        frame = check_frame(read_table(path, display), cfg, display)
        files[display] = len(frame)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    total = len(data)
    if not cfg.allow_duplicate_rows:
        dupes = data.duplicated()
        if dupes.any():
            raise DataError(
                f"{cfg.batches}: {int(dupes.sum())} row(s) appear in more than one batch; "
                "each labelled row must arrive once"
            )
    start = end = None
    if cfg.time_column:
        data = data.sort_values(cfg.time_column, kind="stable").reset_index(drop=True)
        if cfg.train_window_days is not None:
            cutoff = data[cfg.time_column].max() - pd.Timedelta(days=cfg.train_window_days)
            data = data[data[cfg.time_column] > cutoff].reset_index(drop=True)
        start = data[cfg.time_column].min().strftime("%Y-%m-%d")
        end = data[cfg.time_column].max().strftime("%Y-%m-%d")
    if len(data) < cfg.min_rows:
        raise DataError(
            f"{cfg.batches}: {len(data)} training row(s) after the window; "
            f"dataset.yaml min_rows asks for at least {cfg.min_rows}"
        )
    batchcheck.remember(root, record_key, files)
    return TrainingData(frame=data, total_rows=total, files=files, start=start, end=end)


def load_holdout(cfg: DatasetConfig, root: Path) -> pd.DataFrame:
    """The frozen holdout, checked like a batch."""
    return check_frame(read_table(root / cfg.holdout, cfg.holdout), cfg, cfg.holdout)


def load_features_file(cfg: DatasetConfig, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rows to predict on: the feature columns, plus the names of the ignored columns."""
    frame = read_table(path, str(path))
    checked = check_frame(frame, cfg, str(path), labelled=False)
    ignored = [c for c in frame.columns if c not in cfg.feature_names]
    return checked[cfg.feature_names], ignored


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
