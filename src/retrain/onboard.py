"""``retrain init``: turn a fork of the template into a project for your own data.

One labelled file (CSV or Parquet) and the name of its target column are enough:

- each other column's type (numeric or categorical) and a sane range are inferred, columns
  that look like identifiers are ignored, missing values are allowed where the file has
  them, and the task (classification or regression) is inferred from the target;
- ``configs/dataset.yaml`` is written, and ``model.yaml``, ``gates.yaml``, ``triggers.yaml``
  and ``release.yaml`` are adjusted where the data asks for it; ``registry.yaml`` becomes an
  empty registry for the model, and the artifact in ``dvc.yaml`` is renamed;
- the file is split into batches (in time order when there is a time column) and a frozen
  holdout (the newest share, or a seeded random share without time), and ``dvc add data``
  records them.

Everything is checked before anything is written: a missing or constant target, a file that
cannot be read, a bad flag, or a registry that already has versions (unless ``force``) is
one :class:`BadInput` line and nothing changes.
"""

from __future__ import annotations

import math
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from retrain.core import registry as reg
from retrain.core.config import BUILTIN_ESTIMATORS, DatasetConfig, RolloutConfig, read_yaml
from retrain.core.errors import BadInput, DataError, RegistryError
from retrain.core.metric_names import metric_names
from retrain.core.registry import write_atomic
from retrain.pipeline import dataset

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
MAX_CLASSES = 20  # an integer target with at most this many values is a class label
HOLDOUT_RANGE = (0.05, 0.5)
MIN_ROWS = 50
SEED = 0


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


def _num(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------- inference
def _times(col: pd.Series) -> pd.Series:
    """Timestamps (NaT where a value is not one), without pandas' format-guessing warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(col, errors="coerce", utc=True)


def infer_task(target: pd.Series) -> str:
    """Classification for text, booleans and integers with few values; else regression."""
    values = target.dropna()
    if values.dtype == bool or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    as_float = values.astype("float64")
    integral = bool(np.all(np.isclose(as_float, np.round(as_float))))
    return "classification" if integral and values.nunique() <= MAX_CLASSES else "regression"


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    """The observed range widened by half its span each side, rounded to a round step;
    a column that was never negative stays non-negative."""
    span = hi - lo
    pad = 0.5 * span if span > 0 else max(abs(hi), 1.0)
    step = 10.0 ** math.floor(math.log10(pad))
    low = math.floor((lo - pad) / step) * step
    high = math.ceil((hi + pad) / step) * step
    if lo >= 0:
        low = max(low, 0.0)
    return float(f"{low:.6g}"), float(f"{high:.6g}")


def _identifier_like(col: pd.Series) -> bool:
    values = col.dropna()
    if pd.api.types.is_numeric_dtype(values) or values.dtype == bool or len(values) < 50:
        return False
    return bool(values.nunique() > 0.5 * len(values))


def infer_features(
    frame: pd.DataFrame, target: str, time_column: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Feature specs (as ``dataset.yaml`` writes them) and the ignored columns."""
    features: list[dict[str, Any]] = []
    ignored: list[str] = []
    for name in frame.columns:
        if name in (target, time_column):
            continue
        col = frame[name]
        if col.isna().all() or _identifier_like(col):
            ignored.append(str(name))
            continue
        spec: dict[str, Any] = {"name": str(name)}
        if pd.api.types.is_numeric_dtype(col) and col.dtype != bool:
            lo, hi = _nice_range(float(col.min()), float(col.max()))
            spec.update({"type": "numeric", "min": lo, "max": hi})
        else:
            spec["type"] = "categorical"
        if col.isna().any():
            spec["allow_missing"] = True
        features.append(spec)
    return features, ignored


def _pick_subgroup(frame: pd.DataFrame, features: list[dict[str, Any]]) -> list[str]:
    """A categorical feature with 2–8 levels (the first such), judged per level by the gates."""
    for f in features:
        if f["type"] == "categorical" and 2 <= frame[f["name"]].nunique() <= 8:
            return [f["name"]]
    return []


# --------------------------------------------------------------------------- splitting
def split(
    frame: pd.DataFrame,
    time_column: str | None,
    holdout_share: float,
    n_batches: int | None,
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Batches (oldest first) and the holdout: the newest share by time, else seeded random."""
    n = len(frame)
    n_hold = max(1, round(n * holdout_share))
    if time_column:
        times = _times(frame[time_column])
        order = np.argsort(times.to_numpy(), kind="stable")
        ordered = frame.iloc[order]
        rest, holdout = ordered.iloc[: n - n_hold], ordered.iloc[n - n_hold :]
    else:
        rng = np.random.default_rng(SEED)
        picked = np.zeros(n, dtype=bool)
        picked[rng.choice(n, size=n_hold, replace=False)] = True
        rest, holdout = frame[~picked], frame[picked]
    k = n_batches or max(2, min(6, len(rest) // 150))
    k = max(1, min(k, len(rest)))
    bounds = np.linspace(0, len(rest), k + 1).round().astype(int)
    batches = [rest.iloc[bounds[i] : bounds[i + 1]] for i in range(k)]
    return batches, holdout


# --------------------------------------------------------------------------- files
def _dump(doc: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _set_line(text: str, key: str, value: str) -> str:
    """Replace a top-level ``key: ...`` line (keeping its comment), or append it."""
    pattern = re.compile(rf"(?m)^{re.escape(key)}:[^\n#]*(#.*)?$")
    if pattern.search(text):
        return pattern.sub(
            lambda m: f"{key}: {value}" + (f"  {m.group(1)}" if m.group(1) else ""), text, count=1
        )
    return text.rstrip("\n") + f"\n{key}: {value}\n"


def _release_text(text: str, name: str) -> str:
    text = _set_line(text, "model_name", name)
    text = _set_line(text, "mlflow_experiment", name)
    text = re.sub(r"(?m)^known_limitations:.*(\n[ \t]+-.*)*", "known_limitations: []", text)
    return text


def _dvc_yaml_text(text: str, name: str, task: str, target: str) -> str:
    m = re.search(r"(?m)^artifacts:\n  ([^\n]+):\n", text)
    if not m:
        raise BadInput("dvc.yaml: no artifacts section naming the model; expected the template's")
    text = text[: m.start(1)] + f"{name}" + text[m.end(1) :]
    block_start = m.start()
    head, block = text[:block_start], text[block_start:]
    desc = yaml.safe_dump(f"{task.capitalize()} of {target} (written by retrain init).", width=1000)
    desc = desc.strip().removesuffix("...").strip()
    block = re.sub(r"(?m)^(    desc:).*$", lambda _: f"    desc: {desc}", block, count=1)
    block = re.sub(r"(?m)^(    labels:).*$", f"    labels: [sklearn, {task}]", block, count=1)
    return head + block


def _model_text(root: Path, task: str, notes: list[str]) -> str | None:
    """model.yaml, changed only when its built-in estimator cannot do the task."""
    path = root / "configs" / "model.yaml"
    text = path.read_text(encoding="utf-8")
    doc = read_yaml(path, "configs/model.yaml") or {}
    est = doc.get("estimator") if isinstance(doc, dict) else None
    wrong = {
        "classification": {"ridge", "linear_regression"},
        "regression": {"logistic_regression"},
    }
    if est in BUILTIN_ESTIMATORS and est in wrong[task]:
        notes.append(f"model.yaml: estimator {est} cannot do {task}; set to random_forest")
        return _set_line(text, "estimator", "random_forest")
    return None


def _yaml_num(x: float) -> str:
    """``x`` as YAML reads back a float (PyYAML needs a dot in ``1.0e-05``)."""
    text = f"{x:g}"
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exp = text.split("e")
        text = f"{mantissa}.0e{exp}"
    return text


def _scale_key(text: str, section: str, key: str, scale: float) -> tuple[str, str] | None:
    """Multiply ``section: {key: value}`` (a number on its own line) by ``scale``.

    Returns the new text and ``"section.key old -> new"``, or None when the key is absent."""
    lines = text.split("\n")
    inside = False
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", line):
            inside = True
            continue
        if inside and line and not line[0].isspace():
            return None
        m = re.match(rf"^(\s+{re.escape(key)}:\s*)([0-9.eE+-]+)(.*)$", line) if inside else None
        if m:
            old = float(m.group(2))
            new = float(f"{old * scale:.2g}")
            lines[i] = f"{m.group(1)}{_yaml_num(new)}{m.group(3)}"
            return "\n".join(lines), f"{section}.{key} {_num(old)} -> {_num(new)}"
    return None


# Thresholds the template states in the units of a [0, 1] metric (accuracy); when init
# switches the primary metric to one in the target's own units, they are read as shares of
# the target's standard deviation (min_delta 0.01 -> 1% of a standard deviation).
UNIT_THRESHOLDS = {
    "configs/gates.yaml": [
        ("improvement", "min_delta"),
        ("subgroups", "max_regression"),
        ("patch", "max_regression"),
    ],
    "configs/triggers.yaml": [("performance", "max_drop")],
}


def _in_target_units(text: str, rel: str, scale: float, notes: list[str]) -> str:
    changed = []
    for section, key in UNIT_THRESHOLDS[rel]:
        res = _scale_key(text, section, key, scale)
        if res is not None:
            text, what = res
            changed.append(what)
    if changed:
        notes.append(
            f"{Path(rel).name}: thresholds in the target's units (x its standard deviation "
            f"{_num(float(f'{scale:.4g}'))}): {', '.join(changed)}"
        )
    return text


# The rollout's thresholds on the live primary metric (``configs/release.yaml``) are in the
# same units, but they are model defaults the template does not write: init writes them,
# scaled the same way, so a regression fork's canary, watch window and challenger judge in
# the target's units too.
LIVE_THRESHOLDS = [
    ("analysis", "min_metric_change"),
    ("health", "max_metric_drop"),
    ("challenger", "min_delta"),
]


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the last line of the block that begins after ``start`` and is
    indented deeper than ``indent`` (blank and comment lines at its end excluded)."""
    last = start
    for i in range(start + 1, len(lines)):
        stripped = lines[i].lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(lines[i]) - len(stripped) <= indent:
            break
        last = i
    return last + 1


def _set_nested(text: str, path: tuple[str, ...], value: str, comment: str) -> str | None:
    """Set the block-style YAML key ``path`` (e.g. rollout, analysis, min_metric_change) to
    ``value``, keeping comments and order; missing parents are added at the end of their
    block.  None when a parent is written inline (``analysis: {...}``): left to the user."""
    lines = text.split("\n")
    lo, hi, indent = 0, len(lines), -1
    for depth, name in enumerate(path):
        child: int | None = None
        found = None
        for i in range(lo, hi):
            stripped = lines[i].lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            ind = len(lines[i]) - len(stripped)
            child = ind if child is None else child
            if ind == child and re.match(rf"{re.escape(name)}:(\s|$)", stripped):
                found = i
                break
        if found is None:
            at = _block_end(lines, lo - 1, indent) if lo > 0 else len(lines)
            if lo == 0:
                while at > 0 and not lines[at - 1].strip():
                    at -= 1
            step = child if child is not None and child > indent else indent + 2
            new = []
            for k, part in enumerate(path[depth:]):
                pad = " " * (step + 2 * k)
                last = depth + k == len(path) - 1
                new.append(f"{pad}{part}: {value}  # {comment}" if last else f"{pad}{part}:")
            lines[at:at] = new
            return "\n".join(lines)
        stripped = lines[found].lstrip()
        ind = len(lines[found]) - len(stripped)
        rest = stripped[len(name) + 1 :]
        if depth == len(path) - 1:
            m = re.match(r"^(\s*)([^#]*?)(\s*#.*)?$", rest)
            tail = m.group(3) if m and m.group(3) else f"  # {comment}"
            lines[found] = f"{' ' * ind}{name}: {value}{tail}"
            return "\n".join(lines)
        if rest.split("#", 1)[0].strip():
            return None
        lo, hi, indent = found + 1, _block_end(lines, found, ind), ind
    return None


def _live_thresholds(text: str, scale: float, notes: list[str]) -> str:
    """release.yaml with the rollout's live-metric thresholds (as written, else the
    defaults) times ``scale``."""
    doc = yaml.safe_load(text)
    rollout = doc.get("rollout") if isinstance(doc, dict) else None
    defaults = RolloutConfig()
    changed, by_hand = [], []
    for section, key in LIVE_THRESHOLDS:
        given = rollout.get(section) if isinstance(rollout, dict) else None
        if isinstance(given, dict) and key in given:
            old = given[key]
        else:
            old = getattr(getattr(defaults, section), key)
        if old is None or isinstance(old, bool) or not isinstance(old, int | float):
            continue  # switched off (null), or a type the config check will name
        new = float(f"{old * scale:.2g}")
        what = f"rollout.{section}.{key}"
        res = _set_nested(
            text, ("rollout", section, key), _yaml_num(new), f"retrain init: {_num(old)} x the target's std"
        )
        if res is None:
            by_hand.append(what)
            continue
        text = res
        changed.append(f"{what} {_num(old)} -> {_num(new)}")
    if changed:
        notes.append(
            "release.yaml: live-metric thresholds in the target's units (x its standard "
            f"deviation {_num(float(f'{scale:.4g}'))}): {', '.join(changed)}"
        )
    if by_hand:
        notes.append(
            f"release.yaml: {', '.join(by_hand)} left as is (its section is written inline): "
            "set it in the target's units by hand"
        )
    return text


def _gates_text(root: Path, task: str, notes: list[str]) -> str | None:
    path = root / "configs" / "gates.yaml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    doc = read_yaml(path, "configs/gates.yaml") or {}
    metric = doc.get("primary_metric", "accuracy") if isinstance(doc, dict) else "accuracy"
    names = metric_names(task)
    changed = None
    if metric not in names:
        new = "accuracy" if task == "classification" else "rmse"
        notes.append(f"gates.yaml: primary_metric {metric} is not a {task} metric; set to {new}")
        changed = _set_line(text, "primary_metric", new)
    rails = doc.get("guardrails") if isinstance(doc, dict) else None
    if isinstance(rails, dict) and any(r not in names for r in rails):
        raise BadInput(
            f"configs/gates.yaml: guardrails: {sorted(r for r in rails if r not in names)} "
            f"are not {task} metrics; remove them before retrain init"
        )
    return changed


def _triggers_text(root: Path, smallest_batch: int, notes: list[str]) -> str | None:
    path = root / "configs" / "triggers.yaml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    m = re.search(r"(?m)^(\s+min_new_rows:\s*)(\d+)", text)
    if m and int(m.group(2)) > smallest_batch:
        notes.append(
            f"triggers.yaml: new_data.min_new_rows {m.group(2)} -> {smallest_batch} "
            "(one batch of this data)"
        )
        return text[: m.start(2)] + str(smallest_batch) + text[m.end(2) :]
    return None


# --------------------------------------------------------------------------- the verb
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
