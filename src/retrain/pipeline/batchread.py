"""Reading one batch file in bounded memory, once.

A Parquet batch is streamed in record batches (``ParquetFile.iter_batches``; not
``dataset.to_batches``, which accumulates memory: apache/arrow#39808).  Each record batch is
checked as it arrives (:func:`retrain.pipeline.dataset.check_frame`, row numbers counted
from the start of the file), profiled (:mod:`retrain.pipeline.profiles`) and hashed row by
row for the duplicate check, and, when the caller keeps rows, cut to the training window
and kept with the training columns only.  What the file's footer says (rows, columns, the
time range from the row groups' statistics) is read without reading any data.  A CSV batch
cannot be streamed with the same types (pandas infers a column's type from the whole file),
so it is read whole, one file at a time: use Parquet for large batches.

Duplicated rows keep their meaning (``DataFrame.duplicated`` over the checked columns):
each row's hash is kept (8 bytes a row), equal hashes are candidates, and candidates are
confirmed by comparing the rows themselves, read again for that purpose only, so a hash
collision can never refuse good data.

Inside :func:`read_once` (``retrain run`` opens one), what a pass learnt about a file, and the
rows it kept, are shared: the trigger check, the validate stage and the train stage read
each file once between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from retrain.core.config import DatasetConfig
from retrain.core.errors import DataError
from retrain.pipeline import batchcheck, dataset
from retrain.pipeline.profiles import Kind, Profile

PARQUET_SUFFIXES = (".parquet", ".pq")
#: rows per record batch; a checked chunk of the example's schema is ~20 MB
CHUNK_ROWS = 1 << 18
#: per-chunk profiles are merged once this many are pending (keeps repeated values compact)
_MERGE_EVERY = 16
_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_DAY_NS = 86_400 * 10**9

Window = tuple[int, int]  # lo <= time < hi, nanoseconds since the epoch (UTC)


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def as_ns(times: pd.Series) -> np.ndarray:
    """Checked timestamps (tz-aware, any unit) as int64 nanoseconds since the epoch (UTC)."""
    return np.asarray(times.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8, dtype=np.int64)


# --------------------------------------------------------------------------- the footer
@dataclass
class Footer:
    """What a Parquet file says about itself without any data being read."""

    rows: int
    names: list[str]
    time_range: tuple[int, int] | None  # exact min and max of the time column, if known


def _stat_ns(raw: Any, t: pa.DataType) -> int | None:
    if pa.types.is_timestamp(t):
        return int(raw) * _NS[t.unit]
    if pa.types.is_date32(t):
        return int(raw) * _DAY_NS
    if pa.types.is_date64(t):
        return int(raw) * _NS["ms"]
    return None


def footer(path: Path, display: str, time_column: str | None) -> Footer:
    """Rows, columns and, where the row groups' statistics give it exactly (a timestamp or
    date column, min/max and a null count of zero in every row group), the time range."""
    try:
        with pq.ParquetFile(path) as pf:
            meta, schema = pf.metadata, pf.schema_arrow
            index_cols = {
                c
                for c in ((schema.pandas_metadata or {}).get("index_columns") or [])
                if isinstance(c, str)
            }
            names = [f.name for f in schema if f.name not in index_cols]
            rng = None
            if time_column and time_column in schema.names and meta.num_rows:
                rng = _time_stats(meta, schema, time_column)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{display}: not a readable Parquet file ({_one_line(exc)})") from None
    if meta.num_rows == 0:
        raise DataError(f"{display}: has no rows")
    return Footer(int(meta.num_rows), names, rng)


def _time_stats(meta: Any, schema: pa.Schema, column: str) -> tuple[int, int] | None:
    t = schema.field(column).type
    col = meta.schema.names.index(column) if column in meta.schema.names else -1
    if col < 0:
        return None
    lo: int | None = None
    hi: int | None = None
    for i in range(meta.num_row_groups):
        st = meta.row_group(i).column(col).statistics
        if st is None or not st.has_min_max or not st.has_null_count or st.null_count:
            return None  # unknown, or a missing timestamp the checks must report
        a, b = _stat_ns(st.min_raw, t), _stat_ns(st.max_raw, t)
        if a is None or b is None:
            return None
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return None if lo is None or hi is None else (lo, hi)


def read_times(path: Path, display: str, column: str) -> tuple[int, int, int] | None:
    """``(min, max, rows)`` from the time column alone (read by itself); None when a value
    is missing or unparseable (the full check of the file will say which)."""
    try:
        if is_parquet(path):
            s = pq.read_table(path, columns=[column]).column(0).to_pandas()
        else:
            s = pd.read_csv(path, usecols=[column])[column]
    except (pa.ArrowException, OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    times = pd.to_datetime(s, errors="coerce", utc=True)
    if len(times) == 0 or times.isna().any():
        return None
    ns = as_ns(times)
    return int(ns.min()), int(ns.max()), len(ns)


# --------------------------------------------------------------------------- record batches
def raw_chunks(
    path: Path,
    display: str,
    columns: Sequence[str] | None = None,
    chunk_rows: int = 0,
    text: Sequence[str] = (),
) -> Iterator[tuple[int, pd.DataFrame, bool]]:
    """``(first row, frame, more than one chunk)`` per record batch of ``columns`` (all when
    None), unchecked.  A CSV file is one chunk.  ``text`` columns stored as strings are
    decoded as dictionaries (pandas categoricals: a label is decoded once per page, not once
    per row; the checks turn them into the same strings)."""
    if not is_parquet(path):
        frame = dataset.read_table(path, display)
        if columns is not None:
            frame = frame[[c for c in frame.columns if c in set(columns)]]
        yield 0, frame, False
        return
    size = chunk_rows or CHUNK_ROWS
    try:
        with pq.ParquetFile(path) as probe:
            schema = probe.schema_arrow
        strings = [
            c
            for c in text
            if c in schema.names
            and (
                pa.types.is_string(schema.field(c).type)
                or pa.types.is_large_string(schema.field(c).type)
            )
        ]
        with pq.ParquetFile(path, read_dictionary=strings) as pf:
            total = pf.metadata.num_rows
            if total == 0:
                raise DataError(f"{display}: has no rows")
            wanted = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
            first = 0
            for rb in pf.iter_batches(batch_size=size, columns=wanted, use_threads=False):
                frame = rb.to_pandas()
                yield first, frame, total > size
                first += len(frame)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{display}: not a readable Parquet file ({_one_line(exc)})") from None


def checked_chunks(
    cfg: DatasetConfig,
    path: Path,
    display: str,
    columns: Sequence[str] | None = None,
    chunk_rows: int = 0,
) -> Iterator[pd.DataFrame]:
    """The file's record batches, each checked (no duplicate check: see :func:`scan`).

    ``columns`` reads only those (they must include the features, the target and the time
    column; the file's other columns are checked by name, from its footer)."""
    parquet = is_parquet(path)
    if columns is not None and parquet:
        check_names(footer(path, display, None).names, cfg, display)
    cols = columns if parquet else None
    for first, raw, several in raw_chunks(path, display, cols, chunk_rows, text_columns(cfg)):
        frame = dataset.check_frame(
            raw, cfg, display, first_row=first, duplicates=False, partial=several
        )
        yield frame if columns is None else frame[[c for c in frame.columns if c in columns]]


def check_names(names: list[str], cfg: DatasetConfig, display: str) -> None:
    """The missing- and extra-column checks of :func:`~retrain.pipeline.dataset.check_frame`
    on a file's column names alone."""
    dataset.check_frame(
        pd.DataFrame(columns=names), cfg, display, duplicates=False, names_only=True
    )


# --------------------------------------------------------------------------- one pass
def profile_kinds(cfg: DatasetConfig) -> dict[str, Kind]:
    """The columns a batch profile holds: the features by their declared type, and the
    target (numeric for regression)."""
    kinds: dict[str, Kind] = {f.name: f.type for f in cfg.features}
    kinds[cfg.target] = "categorical" if cfg.task == "classification" else "numeric"
    return kinds


def text_columns(cfg: DatasetConfig) -> list[str]:
    """The columns the checks turn into strings: categorical features, a class label."""
    cols = [f.name for f in cfg.features if f.type == "categorical"]
    return cols + ([cfg.target] if cfg.task == "classification" else [])


def kept_columns(cfg: DatasetConfig) -> list[str]:
    """The columns training needs (features, target, time), plus the ignored columns a
    production model of an older schema may still need."""
    cols = [*cfg.feature_names, cfg.target]
    if cfg.time_column:
        cols.append(cfg.time_column)
    return cols + [c for c in cfg.ignore_columns if c not in cols]


class _Accumulator:
    """Profiles of chunks, merged every few chunks so repeated values stay compact."""

    def __init__(self, kinds: dict[str, Kind]) -> None:
        self.kinds = kinds
        self.done = Profile()
        self.pending: list[Profile] = []

    def add(self, frame: pd.DataFrame) -> None:
        if len(frame):
            self.pending.append(Profile.of_frame(frame, self.kinds))
        if len(self.pending) >= _MERGE_EVERY:
            self.done = Profile.merge([self.done, *self.pending])
            self.pending = []

    def result(self) -> Profile:
        out = Profile.merge([self.done, *self.pending])
        if not out.columns:  # no rows: every column, empty
            out = Profile.of_frame(pd.DataFrame({c: [] for c in self.kinds}), self.kinds)
        return out


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One uint64 per row, equal for rows ``DataFrame.duplicated`` calls equal (floats with
    -0.0 and NaN normalised, numbers as float64, timestamps in ns, text as objects).  Rows
    with equal hashes are only candidates: callers compare the rows themselves."""
    out = np.zeros(len(frame), dtype=np.uint64)
    for name in frame.columns:
        s = frame[name]
        dt = s.dtype
        values: Any
        if pd.api.types.is_datetime64_any_dtype(dt):
            values = (
                as_ns(s) if getattr(dt, "tz", None) is not None else s.dt.as_unit("ns").array.asi8
            )
        elif pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt):
            values = s.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # -0.0 becomes 0.0
            values[np.isnan(values)] = np.nan
        else:
            values = s.to_numpy(dtype=object)
        h = pd.util.hash_array(np.asarray(values), categorize=True)
        np.multiply(out, np.uint64(1_000_003), out=out)
        np.bitwise_xor(out, h, out=out)
    return out


class Rows:
    """Rows gathered record batch by record batch into arrays allocated once for the whole
    file (not a list of chunks concatenated at the end, which holds the rows twice)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.n = 0
        self.arrays: dict[str, np.ndarray] = {}
        self.utc: set[str] = set()  # tz-aware timestamp columns, kept as naive UTC
        self.other: dict[str, list[pd.Series]] = {}  # extension dtypes: concatenated

    def add(self, frame: pd.DataFrame) -> None:
        k = len(frame)
        if self.n + k > self.capacity:  # more rows than announced (a CSV): grow
            self.capacity = max(self.n + k, 2 * self.capacity)
            for name, arr in self.arrays.items():
                grown = np.empty(self.capacity, dtype=arr.dtype)
                grown[: self.n] = arr[: self.n]
                self.arrays[name] = grown
        for name in frame.columns:
            s = frame[name]
            dt = s.dtype
            if isinstance(dt, pd.DatetimeTZDtype):
                values = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
                self.utc.add(name)
            elif isinstance(dt, np.dtype) and dt.kind in "fiubOM":
                values = s.to_numpy()
            else:
                self.other.setdefault(name, []).append(s.reset_index(drop=True))
                continue
            if name not in self.arrays:
                self.arrays[name] = np.empty(self.capacity, dtype=values.dtype)
            self.arrays[name][self.n : self.n + k] = values
        self.n += k

    def frame(self, columns: list[str]) -> pd.DataFrame:
        out: dict[str, Any] = {}
        for name in columns:
            if name in self.arrays:
                arr = self.arrays.pop(name)[: self.n]
                if self.n < 0.9 * self.capacity:
                    arr = arr.copy()  # much of the file was outside the window
                col = pd.Series(arr, copy=False, dtype=arr.dtype)
                out[name] = col.dt.tz_localize("UTC") if name in self.utc else col
            elif name in self.other:
                out[name] = pd.concat(self.other.pop(name), ignore_index=True)
        return pd.DataFrame(out, copy=False)


def give_back_memory() -> None:
    """Return freed memory to the system after a large read: Arrow's pool keeps what it
    freed, and glibc's heap keeps the chunks' transient buffers (the read's high-water mark
    would otherwise stay resident through the fit)."""
    import ctypes
    import ctypes.util

    pa.default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(libc).malloc_trim(0)


@dataclass
class FileScan:
    """What one checked pass over a batch file learnt."""

    path: Path
    display: str
    rows: int
    tmin: int | None
    tmax: int | None
    profile: Profile
    slices: dict[Window, Profile] = field(default_factory=dict)
    cutoff: int | None = None
    window_rows: int = 0
    window_tmin: int | None = None
    window_tmax: int | None = None
    labels: set[str] = field(default_factory=set)
    hashes: np.ndarray | None = None  # sorted row hashes (None: duplicates not checked)
    kept: pd.DataFrame | None = None  # the window's rows, training columns
    checked_with: frozenset[Path] = frozenset()  # files it was checked against (duplicates)

    @property
    def all_kept(self) -> bool:
        return self.kept is not None and len(self.kept) == self.rows


def _minmax(lo: int | None, hi: int | None, ns: np.ndarray) -> tuple[int | None, int | None]:
    if ns.size == 0:
        return lo, hi
    a, b = int(ns.min()), int(ns.max())
    return (a if lo is None else min(lo, a)), (b if hi is None else max(hi, b))


def scan(
    cfg: DatasetConfig,
    path: Path,
    display: str,
    *,
    cutoff: int | None = None,
    keep: bool = False,
    slices: Sequence[Window] = (),
    chunk_rows: int = 0,
) -> FileScan:
    """One checked pass over every row and column of a batch file.

    Returns its rows, time range, column profile (and the profiles of ``slices``), the rows
    in the training window (time after ``cutoff``; every row when None), their labels, the
    sorted row hashes, and, with ``keep``, the window's rows with :func:`kept_columns`.
    Raises :class:`DataError` for the first problem found in file order, including rows
    duplicated within the file (unless ``allow_duplicate_rows``).
    """
    if is_parquet(path):
        check_names(footer(path, display, None).names, cfg, display)
    kinds = profile_kinds(cfg)
    whole = _Accumulator(kinds)
    parts = {w: _Accumulator(kinds) for w in slices}
    tcol, dupes = cfg.time_column, not cfg.allow_duplicate_rows
    out = FileScan(path, display, 0, None, None, Profile(), cutoff=cutoff)
    hashes: list[np.ndarray] = []
    kept = Rows(footer(path, display, None).rows if is_parquet(path) else 0)
    keep_cols = kept_columns(cfg)
    for first, raw, several in raw_chunks(path, display, None, chunk_rows, text_columns(cfg)):
        frame = dataset.check_frame(
            raw, cfg, display, first_row=first, duplicates=False, partial=several
        )
        del raw
        out.rows += len(frame)
        whole.add(frame)
        if dupes:
            hashes.append(row_hashes(frame))
        in_window = None
        if tcol:
            ns = as_ns(frame[tcol])
            out.tmin, out.tmax = _minmax(out.tmin, out.tmax, ns)
            for (lo, hi), acc in parts.items():
                acc.add(frame[(ns >= lo) & (ns < hi)])
            if cutoff is not None:
                in_window = ns > cutoff
                out.window_tmin, out.window_tmax = _minmax(
                    out.window_tmin, out.window_tmax, ns[in_window]
                )
            else:
                out.window_tmin, out.window_tmax = out.tmin, out.tmax
        window = frame if in_window is None else frame[in_window]
        out.window_rows += len(window)
        if cfg.task == "classification":
            out.labels.update(str(v) for v in window[cfg.target].unique())
        if keep:
            kept.add(window[[c for c in keep_cols if c in window.columns]])
        del frame, window
    out.profile = whole.result()
    out.slices = {w: acc.result() for w, acc in parts.items()}
    if keep:
        out.kept = kept.frame(keep_cols)
    if dupes:
        out.hashes = np.sort(np.concatenate(hashes)) if hashes else np.empty(0, np.uint64)
        del hashes
        _check_within(cfg, out)
    give_back_memory()
    return out


# --------------------------------------------------------------------------- duplicates
def _repeated(sorted_hashes: np.ndarray) -> np.ndarray:
    same = sorted_hashes[1:] == sorted_hashes[:-1]
    return np.unique(sorted_hashes[1:][same])


def _rows_with(cfg: DatasetConfig, path: Path, display: str, wanted: np.ndarray) -> pd.DataFrame:
    """The checked rows of a file whose hash is in ``wanted``, with their row numbers."""
    found = []
    for first, raw, several in raw_chunks(path, display, None, 0, text_columns(cfg)):
        frame = dataset.check_frame(
            raw, cfg, display, first_row=first, duplicates=False, partial=several
        )
        hit = np.isin(row_hashes(frame), wanted)
        if hit.any():
            rows = frame[hit].copy()
            rows.insert(0, "__row", np.flatnonzero(hit) + first)
            found.append(rows)
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


def _check_within(cfg: DatasetConfig, scan: FileScan) -> None:
    assert scan.hashes is not None
    wanted = _repeated(scan.hashes)
    if wanted.size == 0:
        return
    rows = _rows_with(cfg, scan.path, scan.display, wanted)
    dupes = rows.drop(columns="__row").duplicated()
    if dupes.any():
        row = int(rows["__row"][dupes].iloc[0])
        raise DataError(
            f"{scan.display}: {int(dupes.sum())} duplicated row(s) (first at row {row + 2}); "
            "set allow_duplicate_rows to accept them"
        )


def check_across(cfg: DatasetConfig, scans: Sequence[FileScan]) -> None:
    """Rows that appear in more than one of the scanned files are refused (one line).

    Once passed, each scan's row hashes are let go (8 bytes a row: 80 MB for ten million
    rows held through the fit otherwise) and the scan remembers the files it was checked
    against, so the same check on the same scans passes without them."""
    together = frozenset(s.path for s in scans)
    if cfg.allow_duplicate_rows or all(s.checked_with == together for s in scans):
        return
    if len(scans) > 1:
        scans = [s if s.hashes is not None else _rescan(cfg, s) for s in scans]
        each = [s.hashes for s in scans if s.hashes is not None]
        wanted = _repeated(np.sort(np.concatenate(each)))
        if wanted.size:
            involved = [
                s for s in scans if s.hashes is not None and np.isin(wanted, s.hashes).any()
            ]
            rows = pd.concat(
                [
                    _rows_with(cfg, s.path, s.display, wanted).drop(columns="__row")
                    for s in involved
                ],
                ignore_index=True,
            )
            dupes = rows.duplicated()
            if dupes.any():
                raise DataError(
                    f"{cfg.batches}: {int(dupes.sum())} row(s) appear in more than one batch; "
                    "each labelled row must arrive once"
                )
    for s in scans:
        s.hashes, s.checked_with = None, together


def _rescan(cfg: DatasetConfig, old: FileScan) -> FileScan:
    """A scan whose hashes were let go, checked against another set of files: again."""
    result = scan(cfg, old.path, old.display, cutoff=old.cutoff, keep=old.kept is not None,
                  slices=list(old.slices))  # fmt: skip
    remember(cfg, result)
    return result


# --------------------------------------------------------------------------- read once
read_once = batchcheck.read_once  # the session lives where importing it costs nothing
sharing = batchcheck.sharing


def _key(path: Path, cfg: DatasetConfig) -> Any:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, cfg.model_dump_json())


def remembered(cfg: DatasetConfig, path: Path) -> FileScan | None:
    """This session's scan of ``path`` (None outside a session, or if not scanned yet)."""
    session = batchcheck.session()
    return None if session is None else session.get(_key(path, cfg))


def remember(cfg: DatasetConfig, result: FileScan) -> None:
    session = batchcheck.session()
    if session is not None:
        session[_key(result.path, cfg)] = result


def scan_once(
    cfg: DatasetConfig,
    path: Path,
    display: str,
    *,
    cutoff: int | None,
    slices: Sequence[Window] = (),
) -> FileScan:
    """:func:`scan`, or this session's earlier scan of the same bytes when it holds what is
    asked (the same cutoff and the slices).  In a session the window's rows are kept."""
    seen = remembered(cfg, path)
    if seen is not None and seen.cutoff == cutoff and all(w in seen.slices for w in slices):
        return seen
    result = scan(cfg, path, display, cutoff=cutoff, keep=sharing(), slices=slices)
    remember(cfg, result)
    return result
