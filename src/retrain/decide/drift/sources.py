"""Reading the columns to compare: from a DataFrame, a CSV file, a Parquet file, or profiles.

A Parquet file is read one column at a time (``ParquetFile.read(columns=[c])``), so a wide
file never has to fit in memory all at once.  A :class:`~retrain.pipeline.profiles.Profile`
(per-batch profiles merged, as the data-drift trigger builds them) is read as it is: every
column's statistics come from its exact value counts, so the report is the one the rows
would give.  Every problem (missing or unreadable file, a
column on one side only, a numeric column holding text) is one :class:`DataError` line naming
the file and the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retrain.core.config import DriftConfig
from retrain.core.errors import DataError
from retrain.pipeline.profiles import (
    CategoricalProfile,
    Kind,
    NumericProfile,
    Profile,
    count_levels,
)

_PARQUET_SUFFIXES = (".parquet", ".pq")


class Source:
    """One side of the comparison: its display name, columns, rows and column readers."""

    display: str
    columns: list[str]
    n_rows: int

    def looks_numeric(self, column: str) -> bool:
        raise NotImplementedError

    def numeric(self, column: str) -> np.ndarray:
        raise NotImplementedError

    def level_counts(self, column: str) -> dict[str | None, int]:
        raise NotImplementedError

    def numeric_profile(self, column: str) -> NumericProfile:
        """The column's exact value counts and missing count."""
        return NumericProfile.of(self.numeric(column))

    def _not_numeric(self, column: str, what: Any) -> DataError:
        return DataError(f"{self.display}: column {column!r} is declared numeric but holds {what}")


class FrameSource(Source):
    def __init__(self, frame: pd.DataFrame, display: str) -> None:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        if dupes:
            raise DataError(f"{display}: duplicate columns {dupes}")
        if len(frame) == 0:
            raise DataError(f"{display}: has no rows")
        self.frame = frame
        self.display = display
        self.columns = [str(c) for c in frame.columns]
        self._by_name = {str(c): c for c in frame.columns}
        self.n_rows = len(frame)

    def _series(self, column: str) -> pd.Series:
        return self.frame[self._by_name[column]]

    def looks_numeric(self, column: str) -> bool:
        dt = self._series(column).dtype
        return bool(
            (pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt))
            or pd.api.types.is_datetime64_any_dtype(dt)
        )

    def numeric(self, column: str) -> np.ndarray:
        s = self._series(column)
        dt = s.dtype
        if isinstance(dt, np.dtype) and dt.kind in "fiub":
            return np.asarray(s.to_numpy(), dtype=np.float64)
        if pd.api.types.is_datetime64_any_dtype(dt):
            missing = s.isna().to_numpy()
            ns = s.dt.tz_convert(None) if getattr(dt, "tz", None) else s
            out = ns.to_numpy(dtype="datetime64[ns]").view(np.int64).astype(np.float64)
            out[missing] = np.nan
            return out
        if pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt):
            return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan))
        converted = pd.to_numeric(s, errors="coerce")
        bad = converted.isna() & s.notna()
        if bad.any():
            raise self._not_numeric(column, f"{s[bad].iloc[0]!r} (row {int(bad.argmax()) + 1})")
        return np.asarray(converted.to_numpy(dtype=np.float64, na_value=np.nan))

    def level_counts(self, column: str) -> dict[str | None, int]:
        vc = self._series(column).value_counts(dropna=False, sort=False)
        return count_levels(vc.index.tolist(), vc.to_numpy())


class ParquetSource(Source):
    """A Parquet file read one column at a time (``ParquetFile.read(columns=[c])``)."""

    def __init__(self, path: Path, display: str) -> None:
        self.path = path
        self.display = display
        try:
            with pq.ParquetFile(path) as pf:
                schema = pf.schema_arrow
                self.n_rows = int(pf.metadata.num_rows)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{display}: not a readable Parquet file ({_one_line(exc)})") from None
        index_cols = {
            c
            for c in ((schema.pandas_metadata or {}).get("index_columns") or [])
            if isinstance(c, str)
        }
        self.types = {f.name: f.type for f in schema if f.name not in index_cols}
        self.columns = list(self.types)
        if self.n_rows == 0:
            raise DataError(f"{display}: has no rows")

    def _read(self, column: str) -> pa.ChunkedArray:
        try:
            with pq.ParquetFile(self.path) as pf:
                arr = pf.read(columns=[column], use_threads=False).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{self.display}: column {column!r} cannot be read ({_one_line(exc)})"
            ) from None
        if pa.types.is_dictionary(arr.type):
            arr = pc.cast(arr, arr.type.value_type)
        return arr

    def looks_numeric(self, column: str) -> bool:
        t = self.types[column]
        if pa.types.is_dictionary(t):
            t = t.value_type
        return bool(
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_timestamp(t)
            or pa.types.is_date(t)
        )

    def numeric(self, column: str) -> np.ndarray:
        arr = self._read(column)
        t = arr.type
        try:
            if pa.types.is_timestamp(t) or pa.types.is_date(t):
                arr = pc.cast(pc.cast(arr, pa.timestamp("ns")), pa.int64())
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                arr = pc.cast(arr, pa.float64())
            elif not (
                pa.types.is_integer(t)
                or pa.types.is_floating(t)
                or pa.types.is_decimal(t)
                or pa.types.is_boolean(t)
            ):
                raise self._not_numeric(column, f"{t} values")
            arr = pc.cast(arr, pa.float64(), safe=False)  # large integers round, as in numpy
        except pa.ArrowInvalid as exc:
            raise self._not_numeric(column, f"non-numbers ({_one_line(exc)})") from None
        return np.asarray(arr.to_numpy(), dtype=np.float64)  # nulls become NaN

    def level_counts(self, column: str) -> dict[str | None, int]:
        vc = pc.value_counts(self._read(column))
        return count_levels(vc.field("values").to_pylist(), vc.field("counts").to_numpy())


class ProfileSource(Source):
    """Merged profiles: one column's statistics at a time, from its value counts."""

    def __init__(self, profile: Profile, display: str) -> None:
        if profile.rows == 0:
            raise DataError(f"{display}: has no rows")
        self.profile = profile
        self.display = display
        self.columns = list(profile.columns)
        self.n_rows = profile.rows

    def looks_numeric(self, column: str) -> bool:
        return isinstance(self.profile.columns[column], NumericProfile)

    def numeric(self, column: str) -> np.ndarray:
        p = self.numeric_profile(column)
        return np.concatenate((p.counts.expand(), np.full(p.missing, np.nan)))

    def numeric_profile(self, column: str) -> NumericProfile:
        p = self.profile.columns[column]
        if not isinstance(p, NumericProfile):
            raise self._not_numeric(column, "categories (profiled as categorical)")
        return p

    def level_counts(self, column: str) -> dict[str | None, int]:
        p = self.profile.columns[column]
        return p.as_levels() if isinstance(p, NumericProfile | CategoricalProfile) else {}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_source(data: pd.DataFrame | str | Path | Profile, side: str) -> Source:
    if isinstance(data, pd.DataFrame):
        return FrameSource(data, side)
    if isinstance(data, Profile):
        return ProfileSource(data, side)
    if not isinstance(data, str | Path):
        raise TypeError(
            f"{side}: expected a pandas DataFrame, a path or a Profile, got {type(data).__name__}"
        )
    path = Path(data)
    display = str(data)
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{display}: file not found")
        return ParquetSource(path, display)
    from retrain.pipeline.dataset import read_table  # CSV: read whole, with the project's messages

    frame = read_table(path, display)
    return FrameSource(frame, display)


def select_columns(
    ref: Source, cur: Source, kinds: dict[str, Kind] | None, cfg: DriftConfig
) -> dict[str, Kind]:
    """The columns to compare and their kinds; columns on one side only are a DataError."""
    if kinds is not None:
        wanted = [c for c in kinds if not cfg.ignored(c)]
        for c in wanted:
            if kinds[c] not in ("numeric", "categorical"):
                raise ValueError(
                    f"kinds[{c!r}]: expected 'numeric' or 'categorical', got {kinds[c]!r}"
                )
        for side in (ref, cur):
            have = set(side.columns)
            missing = [c for c in wanted if c not in have]
            if missing:
                raise DataError(f"{side.display}: missing columns {missing}; expected {wanted}")
        return {c: kinds[c] for c in wanted}
    ref_cols = [c for c in ref.columns if not cfg.ignored(c)]
    cur_cols = [c for c in cur.columns if not cfg.ignored(c)]
    only_ref = [c for c in ref_cols if c not in set(cur_cols)]
    if only_ref:
        raise DataError(f"{cur.display}: missing columns {only_ref} present in the reference")
    only_cur = [c for c in cur_cols if c not in set(ref_cols)]
    if only_cur:
        raise DataError(f"{ref.display}: missing columns {only_cur} present in the current data")
    return {
        c: "numeric" if ref.looks_numeric(c) and cur.looks_numeric(c) else "categorical"
        for c in ref_cols
    }
