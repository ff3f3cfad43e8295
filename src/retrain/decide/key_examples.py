"""Key examples: rows the team cares about, shown to the reviewer and held as must-pass.

``data/key_examples.csv`` (tracked with the data by ``data.dvc``) has the model's feature
columns, and optionally:

- ``expected``: the label the model must give (classification), or the value it must hit
  within ``tolerance`` (regression; ``tolerance`` is then required on that row);
- ``note``: free text for the reviewer ("the 2014 ice storm", "a typical dry day").

The pull request shows, for each row, production's and the candidate's prediction and
probability (the probability of the predicted class), and marks the rows whose prediction
changed.  The ``key_examples`` gate fails when a row with ``expected`` is predicted wrong by
the candidate, naming the row: a must-pass test in the sense of CheckList's minimum
functionality tests.  A missing file means no key examples; a malformed one (unknown or
missing feature columns, bad values, an expected label that is not a known class) is bad
input, refused before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from retrain.core.config import DatasetConfig
from retrain.core.errors import DataError
from retrain.core.registry import RegistryEntry
from retrain.pipeline import dataset

KEY_EXAMPLES_FILE = "data/key_examples.csv"
OPTIONAL_COLUMNS = ("expected", "tolerance", "note")
_DIGITS = 6


def _r(x: Any) -> Any:
    if x is None:
        return None
    value = round(float(x), _DIGITS)
    return 0.0 if value == 0 else value


def load(root: Path, ds: DatasetConfig, classes: list[str] | None = None) -> pd.DataFrame | None:
    """The validated key examples, or None when ``data/key_examples.csv`` does not exist.

    ``classes``: the labels an ``expected`` value may take (``dataset.yaml: labels`` when
    it is set, else the model's classes).  Rows are numbered as lines of the file (the
    header is line 1).

    Raises
    ------
    DataError
        One line naming the file, the row and the column, and what was expected.
    """
    path = root / KEY_EXAMPLES_FILE
    if not path.exists():
        return None
    where = KEY_EXAMPLES_FILE
    frame = dataset.read_table(path, where)
    features = ds.feature_names
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing feature column(s) {missing}; expected {features}")
    # ignore_columns ride along: a production model with an older schema may still need them
    allowed = set(features) | set(OPTIONAL_COLUMNS) | set(ds.ignore_columns)
    unknown = [c for c in frame.columns if c not in allowed]
    if unknown:
        raise DataError(
            f"{where}: unknown column(s) {unknown}; expected the features {features} "
            f"and optionally {list(OPTIONAL_COLUMNS)}"
        )
    out = frame.copy()
    for spec in ds.features:
        col = frame[spec.name]
        if col.isna().any() and not spec.allow_missing:
            row = int(np.flatnonzero(col.isna().to_numpy())[0]) + 2
            raise DataError(f"{where}: row {row}, column {spec.name!r}: value is missing")
        if spec.type == "numeric":
            num = pd.to_numeric(col, errors="coerce")
            for i, (raw, value) in enumerate(zip(col, num, strict=True)):
                bad = (pd.isna(value) and pd.notna(raw)) or (
                    pd.notna(value)
                    and (
                        (spec.min is not None and value < spec.min)
                        or (spec.max is not None and value > spec.max)
                    )
                )
                if bad:
                    raise DataError(
                        f"{where}: row {i + 2}, column {spec.name!r}: expected a number in "
                        f"[{spec.min}, {spec.max}], got {raw!r}"
                    )
            out[spec.name] = num.astype("float64")
        else:
            out[spec.name] = col.astype("string").astype(object).where(col.notna(), None)
    if "expected" in frame.columns:
        expected = frame["expected"]
        if ds.task == "classification":
            known = [str(c) for c in (ds.labels or classes or [])]
            for i, value in enumerate(expected):
                if pd.notna(value) and known and str(value) not in known:
                    raise DataError(
                        f"{where}: row {i + 2}, column 'expected': {value!r} is not a known "
                        f"class; expected one of {known} or empty"
                    )
            out["expected"] = expected.astype("string").astype(object).where(expected.notna(), None)
        else:
            num = pd.to_numeric(expected, errors="coerce")
            tol = (
                pd.to_numeric(frame["tolerance"], errors="coerce")
                if "tolerance" in frame.columns
                else pd.Series([np.nan] * len(frame))
            )
            for i, (raw, value) in enumerate(zip(expected, num, strict=True)):
                if pd.notna(raw) and pd.isna(value):
                    raise DataError(
                        f"{where}: row {i + 2}, column 'expected': expected a number, got {raw!r}"
                    )
                if pd.notna(value) and not (pd.notna(tol.iloc[i]) and tol.iloc[i] >= 0):
                    raise DataError(
                        f"{where}: row {i + 2}, column 'tolerance': a regression row with "
                        "'expected' needs a tolerance >= 0"
                    )
            out["expected"] = num.astype("float64")
            out["tolerance"] = tol.astype("float64")
    return out


@dataclass
class KeyExampleRow:
    row: int  # line in the file (header = 1)
    note: str | None
    expected: Any
    candidate: Any
    candidate_proba: float | None
    production: Any = None
    production_proba: float | None = None
    changed: bool = False
    ok: bool | None = None  # None: no expected value
    production_ok: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "note": self.note,
            "expected": self.expected,
            "production": self.production,
            "production_proba": self.production_proba,
            "candidate": self.candidate,
            "candidate_proba": self.candidate_proba,
            "changed": self.changed,
            "ok": self.ok,
        }


@dataclass
class KeyExampleReport:
    task: Literal["classification", "regression"]
    rows: list[KeyExampleRow] = field(default_factory=list)
    has_production: bool = False

    @property
    def with_expected(self) -> int:
        return sum(r.ok is not None for r in self.rows)

    @property
    def broken(self) -> list[KeyExampleRow]:
        return [r for r in self.rows if r.ok is False]

    @property
    def changed(self) -> list[KeyExampleRow]:
        return [r for r in self.rows if r.changed]

    def verdict(self) -> tuple[Literal["pass", "fail", "skip"], Any, str]:
        """``(verdict, value, detail)``: value is the number of expected rows predicted right."""
        n = self.with_expected
        moved = f"{len(self.changed)} of {len(self.rows)} key example(s) changed prediction"
        if n == 0:
            return "skip", None, f"no key example has an expected value; {moved}"
        broken = self.broken
        right = n - len(broken)
        if broken:
            names = "; ".join(
                f"row {r.row}"
                + (f" ({r.note})" if r.note else "")
                + f": expected {_show(r.expected)}, candidate {_show(r.candidate)}"
                + (
                    f" (production {_show(r.production)})"
                    if self.has_production and r.production is not None
                    else ""
                )
                for r in broken
            )
            return "fail", right, f"{len(broken)} of {n} expected key example(s) wrong: {names}"
        return "pass", right, f"all {n} expected key example(s) right; {moved}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "rows": [r.to_dict() for r in self.rows],
            "with_expected": self.with_expected,
            "broken": [r.row for r in self.broken],
            "changed": [r.row for r in self.changed],
        }


def _show(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _predict(model: Any, X: pd.DataFrame, task: str) -> tuple[list[Any], list[float | None]]:
    from retrain.pipeline.predict import predict_rows

    y_pred, proba, _ = predict_rows(model, X, task)
    if task == "classification":
        p = [_r(row.max()) for row in proba] if proba is not None else [None] * len(y_pred)
        return [str(v) for v in y_pred], p
    return [_r(v) for v in y_pred], [None] * len(y_pred)


def evaluate(
    frame: pd.DataFrame,
    task: Literal["classification", "regression"],
    candidate_model: Any,
    candidate_X: pd.DataFrame,
    baseline_model: Any | None = None,
    baseline_X: pd.DataFrame | None = None,
) -> KeyExampleReport:
    """Both models' predictions on the key examples (``frame`` from :func:`load`).

    ``candidate_X`` / ``baseline_X``: the rows as each model's inputs (a production model
    with an older schema takes its own columns).
    """
    cand, cand_p = _predict(candidate_model, candidate_X, task)
    has_base = baseline_model is not None and baseline_X is not None
    if has_base:
        base, base_p = _predict(baseline_model, baseline_X, task)
    else:
        base, base_p = [None] * len(cand), [None] * len(cand)
    notes = frame["note"] if "note" in frame.columns else pd.Series([None] * len(frame))
    expected = frame["expected"] if "expected" in frame.columns else pd.Series([None] * len(frame))
    tol = frame["tolerance"] if "tolerance" in frame.columns else pd.Series([None] * len(frame))
    rows = []
    for i in range(len(frame)):
        exp = expected.iloc[i]
        exp = None if exp is None or pd.isna(exp) else exp
        note = notes.iloc[i]
        row = KeyExampleRow(
            row=i + 2,
            note=None if note is None or pd.isna(note) else str(note),
            expected=_r(exp) if exp is not None and task == "regression" else exp,
            candidate=cand[i],
            candidate_proba=cand_p[i],
            production=base[i],
            production_proba=base_p[i],
            changed=has_base and base[i] != cand[i],
        )
        if exp is not None:
            if task == "classification":
                row.ok = cand[i] == exp
                row.production_ok = base[i] == exp if has_base else None
            else:
                t = float(tol.iloc[i])
                row.ok = abs(float(cand[i]) - float(exp)) <= t
                row.production_ok = abs(float(base[i]) - float(exp)) <= t if has_base else None
        rows.append(row)
    return KeyExampleReport(task=task, rows=rows, has_production=has_base)


def for_models(
    root: Path,
    ds: DatasetConfig,
    classes: list[str] | None,
    candidate_model: Any,
    baseline_model: Any | None = None,
    baseline_entry: RegistryEntry | None = None,
) -> KeyExampleReport | None:
    """Load ``data/key_examples.csv`` and predict it with both models; None without the file.

    ``baseline_entry`` is production's registry entry: its schema says which columns the
    production model takes.
    """
    keys = load(root, ds, classes)
    if keys is None:
        return None
    base_X = (
        dataset.model_inputs(keys, baseline_entry, KEY_EXAMPLES_FILE)
        if baseline_model is not None and baseline_entry is not None
        else None
    )
    return evaluate(keys, ds.task, candidate_model, keys[ds.feature_names], baseline_model, base_X)
