"""Mergeable, exact summaries of columns: what drift needs, without keeping the rows.

A numeric column is summarised by its **value counts**: the sorted distinct non-missing
values, how often each occurs, and the number of missing values.  That is exact (the sorted
column can be rebuilt from it), it merges by adding counts, and everything the drift check
computes from a sorted column (the KS statistic and p-value, the Wasserstein distance, the
reference's quantile edges and the PSI bin counts on them, min, max) comes out of it with the
same integer arithmetic, so a profile merged from per-batch profiles gives bit for bit the
report of the concatenated rows.  It is small where the values repeat (temperatures to a
tenth of a degree: a few hundred entries for millions of rows) and no larger than the column
where they do not.  A categorical column is summarised by its level counts, missing values
being the level ``None`` (:func:`level_key` names levels the same way on every side).

Profiles are computed while a batch is read (:mod:`retrain.pipeline.batchread`), kept per
batch file in the local store (:mod:`retrain.pipeline.batchstore`) and merged by the drift
check (:mod:`retrain.decide.drift`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["numeric", "categorical"]


# --------------------------------------------------------------------------- levels
def level_key(value: Any) -> str | None:
    """A level's name; missing values (None, NaN, NA, NaT) are ``None``.

    Integral floats are named like integers so that ``1`` and ``1.0`` (an integer column that
    gained a missing value in one file) are the same level.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


def count_levels(values: Iterable[Any], counts: Iterable[Any]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for v, c in zip(values, counts, strict=True):
        if c:
            k = level_key(v)
            out[k] = out.get(k, 0) + int(c)
    return out


def add_levels(into: dict[str | None, int], more: dict[str | None, int]) -> None:
    for k, c in more.items():
        into[k] = into.get(k, 0) + c


# --------------------------------------------------------------------------- value counts
@dataclass(frozen=True)
class ValueCounts:
    """Sorted distinct non-missing values (float64, increasing) and their counts (int64)."""

    values: np.ndarray
    counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def distinct(self) -> int:
        return int(self.values.size)

    @classmethod
    def empty(cls) -> ValueCounts:
        return cls(np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64))

    @classmethod
    def from_sorted(cls, sorted_values: np.ndarray) -> ValueCounts:
        """From a sorted, NaN-free array; each distinct value is represented by its last
        occurrence (the drift merge always did so)."""
        n = sorted_values.size
        if n == 0:
            return cls.empty()
        last = np.empty(n, dtype=bool)
        np.not_equal(sorted_values[:-1], sorted_values[1:], out=last[:-1])
        last[-1] = True
        at = np.flatnonzero(last)
        counts = np.diff(at, prepend=-1).astype(np.int64)
        return cls(np.ascontiguousarray(sorted_values[at], dtype=np.float64), counts)

    @classmethod
    def from_array(cls, values: np.ndarray) -> tuple[ValueCounts, int]:
        """``(value counts, missing)`` of a float array in any order (NaN is missing)."""
        arr = np.asarray(values, dtype=np.float64)
        missing = int(np.count_nonzero(np.isnan(arr)))
        ordered = np.sort(arr)[: arr.size - missing]  # NaN sorts last
        return cls.from_sorted(ordered), missing

    @classmethod
    def merge(cls, parts: Sequence[ValueCounts]) -> ValueCounts:
        parts = [p for p in parts if p.values.size]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        values = np.concatenate([p.values for p in parts])
        counts = np.concatenate([p.counts for p in parts])
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
        last = np.empty(values.size, dtype=bool)
        np.not_equal(values[:-1], values[1:], out=last[:-1])
        last[-1] = True
        at = np.flatnonzero(last)
        first = np.concatenate(([0], at[:-1] + 1))
        return cls(values[at], np.add.reduceat(counts, first).astype(np.int64))

    def cumulative(self) -> np.ndarray:
        """``c[i]`` = how many values are at or below ``values[i-1]`` (``c[0] == 0``)."""
        return np.concatenate(([0], np.cumsum(self.counts, dtype=np.int64)))

    def at_rank(self, ranks: np.ndarray) -> np.ndarray:
        """The values at 0-based positions ``ranks`` of the sorted column."""
        cum = np.cumsum(self.counts, dtype=np.int64)
        return self.values[np.searchsorted(cum, ranks, side="right")]

    def count_at_or_below(self, x: np.ndarray) -> np.ndarray:
        """How many values are ``<= x`` (what ``searchsorted(sorted, x, 'right')`` gives)."""
        return self.cumulative()[np.searchsorted(self.values, x, side="right")]

    def expand(self) -> np.ndarray:
        """The sorted column itself."""
        return np.repeat(self.values, self.counts)


# --------------------------------------------------------------------------- column profiles
@dataclass
class NumericProfile:
    counts: ValueCounts
    missing: int

    kind: Kind = field(default="numeric", init=False)

    @property
    def rows(self) -> int:
        return self.counts.n + self.missing

    @classmethod
    def of(cls, values: np.ndarray) -> NumericProfile:
        vc, missing = ValueCounts.from_array(values)
        return cls(vc, missing)

    @classmethod
    def merge(cls, parts: Sequence[NumericProfile]) -> NumericProfile:
        return cls(ValueCounts.merge([p.counts for p in parts]), sum(p.missing for p in parts))

    def as_levels(self) -> dict[str | None, int]:
        out = count_levels(self.counts.values.tolist(), self.counts.counts.tolist())
        if self.missing:
            out[None] = out.get(None, 0) + self.missing
        return out


@dataclass
class CategoricalProfile:
    levels: dict[str | None, int]

    kind: Kind = field(default="categorical", init=False)

    @property
    def rows(self) -> int:
        return sum(self.levels.values())

    @classmethod
    def of(cls, values: pd.Series | np.ndarray) -> CategoricalProfile:
        vc = pd.Series(values, copy=False).value_counts(dropna=False, sort=False)
        return cls(count_levels(vc.index.tolist(), vc.to_numpy()))

    @classmethod
    def merge(cls, parts: Sequence[CategoricalProfile]) -> CategoricalProfile:
        levels: dict[str | None, int] = {}
        for p in parts:
            add_levels(levels, p.levels)
        return cls(levels)

    def as_levels(self) -> dict[str | None, int]:
        return dict(self.levels)


ColumnProfile = NumericProfile | CategoricalProfile


def merge_columns(parts: Sequence[ColumnProfile]) -> ColumnProfile:
    if all(isinstance(p, NumericProfile) for p in parts):
        return NumericProfile.merge([p for p in parts if isinstance(p, NumericProfile)])
    return CategoricalProfile.merge([CategoricalProfile(p.as_levels()) for p in parts])


def of_outputs(values: Any) -> ColumnProfile:
    """The profile of a 1-D array of model outputs: numbers are numeric, anything else
    (labels, booleans, objects) categorical; see :func:`retrain.decide.drift.prediction_psi`."""
    arr = np.asarray(values).ravel()
    if arr.dtype.kind in "iuf":
        return NumericProfile.of(arr.astype(np.float64))
    return CategoricalProfile.of(pd.Series(arr, dtype=object))


# --------------------------------------------------------------------------- table profiles
@dataclass
class Profile:
    """Per-column profiles of the same rows (one batch, a slice of it, or several merged)."""

    rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, kinds: dict[str, Kind]) -> Profile:
        """The profile of ``kinds``' columns of a checked frame (numeric columns float64)."""
        cols: dict[str, ColumnProfile] = {}
        for name, kind in kinds.items():
            s = frame[name]
            if kind == "numeric":
                cols[name] = NumericProfile.of(s.to_numpy(dtype=np.float64, na_value=np.nan))
            else:
                cols[name] = CategoricalProfile.of(s)
        return cls(len(frame), cols)

    @classmethod
    def merge(cls, parts: Sequence[Profile]) -> Profile:
        parts = list(parts)
        if not parts:
            return cls()
        names = list(dict.fromkeys(c for p in parts for c in p.columns))
        return cls(
            sum(p.rows for p in parts),
            {c: merge_columns([p.columns[c] for p in parts if c in p.columns]) for c in names},
        )

    def select(self, names: Iterable[str]) -> Profile:
        return Profile(self.rows, {c: self.columns[c] for c in names if c in self.columns})

    # ----------------------------------------------------------------- storage (Arrow table)
    def to_arrow(self) -> Any:
        """One long table: ``column, kind, value, level, missing, count``."""
        import pyarrow as pa

        col: list[str] = []
        kind: list[str] = []
        value: list[np.ndarray] = []
        level: list[str | None] = []
        missing: list[bool] = []
        count: list[np.ndarray] = []
        for name, p in self.columns.items():
            if isinstance(p, NumericProfile):
                k = p.counts.values.size
                col += [name] * (k + 1)
                kind += ["numeric"] * (k + 1)
                value += [p.counts.values, np.array([np.nan])]
                level += [None] * (k + 1)
                missing += [False] * k + [True]
                count += [p.counts.counts, np.array([p.missing], dtype=np.int64)]
            else:
                keys = list(p.levels) or [None]  # an empty column keeps one row of 0
                col += [name] * len(keys)
                kind += ["categorical"] * len(keys)
                value.append(np.full(len(keys), np.nan))
                level += keys
                missing += [k is None for k in keys]
                count.append(np.array([p.levels.get(k, 0) for k in keys], dtype=np.int64))
        table = pa.table(
            {
                "column": pa.array(col, pa.string()),
                "kind": pa.array(kind, pa.string()),
                "value": pa.array(np.concatenate(value) if value else [], pa.float64()),
                "level": pa.array(level, pa.string()),
                "missing": pa.array(missing, pa.bool_()),
                "count": pa.array(np.concatenate(count) if count else [], pa.int64()),
            }
        )
        return table.replace_schema_metadata({"rows": str(self.rows)})

    @classmethod
    def from_arrow(cls, table: Any) -> Profile:
        rows = int((table.schema.metadata or {})[b"rows"])
        col = table.column("column").to_pylist()
        kind = table.column("kind").to_pylist()
        value = table.column("value").to_numpy()
        level = table.column("level").to_pylist()
        missing = table.column("missing").to_pylist()
        count = table.column("count").to_numpy()
        columns: dict[str, ColumnProfile] = {}
        i, n = 0, len(col)
        while i < n:
            j = i
            while j < n and col[j] == col[i]:
                j += 1
            if kind[i] == "numeric":
                present = [k for k in range(i, j) if not missing[k]]
                gone = [k for k in range(i, j) if missing[k]]
                columns[col[i]] = NumericProfile(
                    ValueCounts(
                        np.ascontiguousarray(value[present], dtype=np.float64),
                        np.ascontiguousarray(count[present], dtype=np.int64),
                    ),
                    int(count[gone].sum()),
                )
            else:
                columns[col[i]] = CategoricalProfile(
                    {level[k]: int(count[k]) for k in range(i, j) if count[k]}
                )
            i = j
        return cls(rows, columns)
