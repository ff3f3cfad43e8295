"""The ``retrain init`` verb: check everything, then write (see the package docstring)."""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from retrain.core import registry as reg
from retrain.core.config import DatasetConfig
from retrain.core.errors import BadInput, DataError, RegistryError
from retrain.core.registry import write_atomic
from retrain.onboard import imbalance
from retrain.onboard.configs import (
    UNIT_THRESHOLDS,
    _dump,
    _dvc_yaml_text,
    _gates_text,
    _in_target_units,
    _live_thresholds,
    _model_text,
    _num,
    _release_text,
    _triggers_text,
)
from retrain.onboard.infer import _pick_subgroup, _times, infer_features, infer_task, split
from retrain.pipeline import dataset

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
HOLDOUT_RANGE = (0.05, 0.5)
MIN_ROWS = 50


@dataclass
class InitResult:
    """What ``init`` inferred and wrote."""

    name: str
    task: str
    target: str
    time_column: str | None
    features: list[dict[str, Any]]
    ignored: list[str]
    labels: list[str] | None
    subgroups: list[str]
    batches: dict[str, int]
    holdout_rows: int
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"retrain init: model {self.name!r}, {self.task} of {self.target!r}"]
        if self.labels is not None:
            lines.append(f"  classes: {', '.join(self.labels)}")
        for f in self.features:
            kind = f["type"]
            if kind == "numeric" and "min" in f:
                kind += f" in [{_num(f['min'])}, {_num(f['max'])}]"
            if f.get("allow_missing"):
                kind += ", missing values allowed"
            lines.append(f"  feature {f['name']!r}: {kind}")
        if self.ignored:
            lines.append(f"  ignored (identifier-like or empty): {self.ignored}")
        if self.time_column:
            lines.append(f"  time column: {self.time_column!r} (batches and holdout by time)")
        if self.subgroups:
            lines.append(f"  subgroup judged by the gates: {self.subgroups}")
        rows = ", ".join(f"{k} ({v})" for k, v in self.batches.items())
        lines.append(f"  batches: {rows}; frozen holdout: {self.holdout_rows} rows")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  wrote: {', '.join(self.written)}; ran `dvc add data`")
        lines += ["", "Next:", *[f"  {c}" for c in next_commands(self.name)]]
        return "\n".join(lines)


def next_commands(name: str) -> list[str]:
    return [
        f'git add -A && git commit -m "Onboard {name} with retrain init"',
        "dvc push",
        "retrain run   # bootstrap: trains v1.0.0 and proposes it on retrain/v1.0.0",
    ]


def _check_args(name: str | None, data: Path, holdout_share: float, n_batches: int | None) -> str:
    lo, hi = HOLDOUT_RANGE
    if not (lo <= holdout_share <= hi) or math.isnan(holdout_share):
        raise BadInput(
            f"--holdout-share: expected a share between {lo} and {hi}, got {holdout_share}"
        )
    if n_batches is not None and not 1 <= n_batches <= 100:
        raise BadInput(f"--batches: expected 1 to 100, got {n_batches}")
    if name is None:
        name = re.sub(r"[^a-z0-9]+", "-", data.stem.lower()).strip("-") or "model"
        if len(name) < 2:
            name = f"{name}-model"
    if not NAME_PATTERN.match(name):
        raise BadInput(
            f"--name: {name!r} is not a model name; expected lowercase letters, digits and "
            "dashes (e.g. churn-model)"
        )
    return name


def _check_repository(root: Path, name: str, force: bool) -> None:
    for rel in ("configs/model.yaml", "configs/release.yaml", "dvc.yaml"):
        if not (root / rel).is_file():
            raise BadInput(
                f"{rel}: not found; run retrain init at the root of a fork of the template"
            )
    if not (root / ".dvc").is_dir():
        raise BadInput(".dvc: not a DVC repository; run `dvc init` first")
    path = root / reg.REGISTRY_FILE
    if path.is_file() and not force:
        try:
            current = reg.parse_text(path.read_text(encoding="utf-8"))
        except RegistryError:
            raise RegistryError(
                f"{reg.REGISTRY_FILE}: cannot be read; pass --force to replace it with an "
                f"empty registry for {name!r}"
            ) from None
        if current.versions:
            raise RegistryError(
                f"{reg.REGISTRY_FILE}: already has {len(current.versions)} version(s) of "
                f"{current.model!r}; retrain init would reset it (pass --force to start over)"
            )


def _read(data: Path, target: str, time_column: str | None) -> pd.DataFrame:
    frame = dataset.read_table(data, str(data))
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise DataError(f"{data}: --target: no column {target!r}; columns are {columns}")
    if time_column is not None:
        if time_column not in columns:
            raise DataError(
                f"{data}: --time-column: no column {time_column!r}; columns are {columns}"
            )
        if time_column == target:
            raise BadInput("--time-column: the time column cannot be the target")
        times = _times(frame[time_column])
        if times.isna().any():
            row = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise DataError(
                f"{data}: column {time_column!r} expected timestamps, got "
                f"{frame[time_column].iloc[row]!r} at row {row + 2}"
            )
    return frame


def init(
    root: Path,
    data: Path,
    target: str,
    *,
    time_column: str | None = None,
    name: str | None = None,
    holdout_share: float = 0.2,
    n_batches: int | None = None,
    force: bool = False,
) -> InitResult:
    """Infer, check, then write the project for ``data`` (see the module docstring)."""
    from retrain.release import dvcops

    root = Path(root).resolve()
    data = Path(data)
    name = _check_args(name, data, holdout_share, n_batches)
    _check_repository(root, name, force)
    frame = _read(data, target, time_column)
    notes: list[str] = []

    missing_target = frame[target].isna()
    if missing_target.any():
        notes.append(f"{int(missing_target.sum())} row(s) without a target value left out")
        frame = frame[~missing_target].reset_index(drop=True)
    distinct = frame[target].nunique()
    if distinct < 2:
        value = frame[target].iloc[0] if len(frame) else None
        raise DataError(
            f"{data}: target {target!r} is constant ({value!r} in every labelled row); "
            "there is nothing to learn"
        )
    task = infer_task(frame[target])
    features, ignored = infer_features(frame, target, time_column)
    if not features:
        raise DataError(f"{data}: no usable feature column besides the target {target!r}")
    labels = sorted({str(v) for v in frame[target]}) if task == "classification" else None
    duplicates = bool(frame.duplicated().any())
    if duplicates:
        notes.append("the file has duplicated rows; allow_duplicate_rows set to true")

    batches, holdout = split(frame, time_column, holdout_share, n_batches)
    smallest = min(len(b) for b in batches)
    min_rows = min(MIN_ROWS, len(batches[0]))
    if min_rows < 10:
        raise DataError(
            f"{data}: {len(frame)} labelled rows are too few to split into batches and a "
            "holdout (the first batch would have fewer than 10 rows)"
        )
    doc: dict[str, Any] = {
        "name": name,
        "batches": "data/batches",
        "holdout": "data/holdout.csv",
        "target": target,
        "task": task,
        "time_column": time_column,
        "labels": labels,
        "features": features,
        "subgroups": _pick_subgroup(frame, features),
        "ignore_columns": ignored,
        "allow_duplicate_rows": duplicates,
        "min_rows": min_rows,
    }
    if task == "regression":
        del doc["labels"]
    cfg = DatasetConfig.model_validate(doc)
    width = max(2, len(str(len(batches))))
    named = {f"batch-{i + 1:0{width}d}": b for i, b in enumerate(batches)}
    for stem, part in {**named, "holdout": holdout}.items():  # the validate stage will pass
        dataset.check_frame(part.reset_index(drop=True), cfg, f"data/batches/{stem}.csv")

    header = (
        "# The dataset, written by `retrain init` from "
        f"{data.name}: review the inferred types and ranges, then commit.\n"
        "# Every CSV/Parquet file in `batches` is a labelled batch; `holdout` is frozen.\n"
    )
    texts: dict[str, str] = {"configs/dataset.yaml": _dump(doc, header)}
    texts["configs/release.yaml"] = _release_text(
        (root / "configs/release.yaml").read_text(encoding="utf-8"), name
    )
    texts["dvc.yaml"] = _dvc_yaml_text(
        (root / "dvc.yaml").read_text(encoding="utf-8"), name, task, target
    )
    for rel, text in (
        ("configs/model.yaml", _model_text(root, task, notes)),
        ("configs/gates.yaml", _gates_text(root, task, notes)),
        ("configs/triggers.yaml", _triggers_text(root, smallest, notes)),
    ):
        if text is not None:
            texts[rel] = text
    if task == "classification" and (root / "configs/gates.yaml").is_file():
        _, share = imbalance.rarest(frame[target])
        if share < imbalance.IMBALANCED:
            model_doc = yaml.safe_load(
                texts.get("configs/model.yaml")
                or (root / "configs/model.yaml").read_text(encoding="utf-8")
            )
            est = model_doc.get("estimator") if isinstance(model_doc, dict) else None
            texts["configs/gates.yaml"], texts["configs/release.yaml"] = imbalance.adjust(
                texts.get("configs/gates.yaml")
                or (root / "configs/gates.yaml").read_text(encoding="utf-8"),
                texts["configs/release.yaml"],
                target=frame[target],
                training=pd.concat(batches)[target],
                holdout=holdout[target],
                estimator=est if isinstance(est, str) else None,
                notes=notes,
            )
    spread = float(frame[target].std()) if task == "regression" else 0.0
    if "configs/gates.yaml" in texts and spread > 0 and math.isfinite(spread):
        # the primary metric was switched to rmse, measured in the target's units
        for rel in UNIT_THRESHOLDS:
            current = texts.get(rel)
            if current is None and (root / rel).is_file():
                current = (root / rel).read_text(encoding="utf-8")
            if current is not None:
                texts[rel] = _in_target_units(current, rel, spread, notes)
        texts["configs/release.yaml"] = _live_thresholds(
            texts["configs/release.yaml"], spread, notes
        )
    texts[reg.REGISTRY_FILE] = reg.dumps(reg.Registry(model=name))

    # ---- everything checked: write
    out = root / "data"
    key_examples = out / "key_examples.csv"
    if key_examples.exists():
        # The template's key examples are rows of the bundled dataset: they would be refused
        # as malformed against this data's columns (docs/gates.md, "Key examples").
        notes.append(
            "data/key_examples.csv (the bundled example's rows) removed; "
            "write your own rows there to get the key_examples gate"
        )
    if (out / "batches").exists():
        shutil.rmtree(out / "batches")
    (out / "batches").mkdir(parents=True)
    for stem, part in named.items():
        part.to_csv(out / "batches" / f"{stem}.csv", index=False, lineterminator="\n")
    holdout.to_csv(out / "holdout.csv", index=False, lineterminator="\n")
    for rel, text in texts.items():
        write_atomic(root / rel, text)
    key_examples.unlink(missing_ok=True)
    dvcops.dvc(root, "add", "-q", "data")
    return InitResult(
        name=name,
        task=task,
        target=target,
        time_column=time_column,
        features=features,
        ignored=ignored,
        labels=labels,
        subgroups=doc["subgroups"],
        batches={f"{k}.csv": len(v) for k, v in named.items()},
        holdout_rows=len(holdout),
        notes=notes,
        written=[*sorted(texts), "data/batches/", "data/holdout.csv", "data.dvc"],
    )
