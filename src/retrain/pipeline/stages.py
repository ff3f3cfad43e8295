"""The three DVC stages: validate → train → evaluate (``dvc.yaml`` calls them).

Each stage reads the configuration, does one job, and writes its outputs atomically; a
failure leaves no output DVC or the next stage would trust.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core import environment, faults
from retrain.core.config import Config, load_serve_config
from retrain.core.errors import ConfigError, DataError
from retrain.core.progress import progress
from retrain.core.registry import write_atomic
from retrain.pipeline import (
    artifacts,
    dataset,
    engine,
    estimators,
    latency,
    metrics,
    out_of_time,
    trivial,
)
from retrain.pipeline.predict import predict_rows

VALIDATION_FILE = "artifacts/validation.json"
MODEL_FILE = "artifacts/train/model.skops"
TRAINING_FILE = "artifacts/train/training.json"
METRICS_FILE = "artifacts/eval/metrics.json"
PREDICTIONS_FILE = "artifacts/eval/predictions.csv"


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- validate
def validate(cfg: Config) -> dict[str, Any]:
    """Check every batch and the holdout; write ``artifacts/validation.json``."""
    root = cfg.root
    out = root / VALIDATION_FILE
    out.unlink(missing_ok=True)  # never leave a stale "passed" behind a failure
    faults.point("stage:validate")
    data = dataset.check_batches(cfg.dataset, root)
    holdout = dataset.load_holdout(cfg.dataset, root)
    if cfg.dataset.task == "classification":
        unseen = sorted(set(holdout[cfg.dataset.target]) - data.labels)
    else:
        unseen = []
    report = {
        "passed": True,
        "files": data.files,
        "total_rows": data.total_rows,
        "training_rows": data.training_rows,
        "window": {"start": data.start, "end": data.end},
        "holdout_rows": len(holdout),
        "holdout_labels_unseen_in_training": unseen,
    }
    if data.outside:
        report["outside_window"] = data.outside
    write_json(out, report)
    skipped = f" ({len(data.outside)} before the window, not opened)" if data.outside else ""
    progress(
        f"validate: {len(data.files)} batch file(s){skipped}, {data.total_rows} rows, "
        f"{data.training_rows} in the training window, holdout {len(holdout)} rows: OK"
    )
    return report


# --------------------------------------------------------------------------- train
def build_pipeline(cfg: Config) -> Any:
    """Preprocessing + estimator as one unfitted model (saved and loaded as a whole).

    See :func:`retrain.pipeline.estimators.build_model`.
    """
    return estimators.build_model(cfg)


def git_commit(root: Path) -> str:
    res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


@dataclass
class WarmPlan:
    """How this training run starts: from scratch, or from the production model."""

    mode: str  # "full" | "warm_start"
    parent: Any = None  # the production RegistryEntry continued from
    note: str = ""
    new_files: list[Path] = field(default_factory=list)

    def record(self, rows: int) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "parent": self.parent.version if self.parent is not None else None,
            "note": self.note,
            "rows": rows,
        }


def _training_record(entry: Any) -> dict[str, Any]:
    return dict((entry.model_extra or {}).get("training") or {})


def _warm_chain(registry: Any, entry: Any) -> int:
    """How many warm starts in a row led to ``entry`` (0 for a full retrain)."""
    n, seen = 0, set()
    while _training_record(entry).get("mode") == "warm_start":
        n += 1
        parent = _training_record(entry).get("parent")
        if not parent or parent in seen or not registry.has(parent):
            break
        seen.add(parent)
        entry = registry.get(parent)
    return n


def plan_training(cfg: Config, data: dataset.TrainingData) -> WarmPlan:
    """Full retrain or warm start (``model.yaml: training``), and why."""
    from retrain.core import registry as reg

    every = cfg.model.training.full_every
    registry = reg.load(cfg.root, expected_model=cfg.release.model_name)
    prod = registry.production_entry
    if prod is None:
        return WarmPlan("full", note="no production model to continue from (bootstrap)")
    chain = _warm_chain(registry, prod)
    if chain + 1 >= every:
        return WarmPlan(
            "full",
            note=f"full_every {every}: v{prod.version} ends a chain of {chain} warm "
            f"start(s), so this version is a full retrain",
        )
    schema = dataset.schema_of(cfg.dataset, None)
    if prod.to_dict().get("schema", {}).get("features") != schema["features"]:
        return WarmPlan("full", note="the input schema changed since production: full retrain")
    seen = prod.to_dict().get("data", {}).get("files") or {}
    new = [rel for rel, rows in data.files.items() if seen.get(rel) != rows]
    if not new:
        return WarmPlan("full", note="no batch is new since production: full retrain")
    return WarmPlan(
        "warm_start",
        parent=prod,
        note=f"continues v{prod.version} on {len(new)} new batch file(s)",
        new_files=[cfg.root / rel for rel in new],
    )


def _continue(cfg: Config, plan: WarmPlan, fresh: Any) -> tuple[Any, pd.DataFrame, Any] | None:
    """The production model, trained further on the new batches only (None: cannot)."""
    assert plan.parent is not None
    ds = cfg.dataset
    from retrain.pipeline import batchread

    cols = [*ds.feature_names, ds.target] + ([ds.time_column] if ds.time_column else [])
    frames = [
        chunk
        for p in plan.new_files
        for chunk in batchread.checked_chunks(ds, p, str(p.relative_to(cfg.root)), columns=cols)
    ]
    new = pd.concat(frames, ignore_index=True)
    del frames
    X, y = new[ds.feature_names], new[ds.target]
    ref = plan.parent.artifact
    path = artifacts.fetch(cfg.root, ref, plan.parent.version)
    model = artifacts.load_for_config(cfg, path, ref.sha256)
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps else model
    if ds.task == "classification":
        # partial_fit keeps the parent's classes and accepts a subset of them; refitting with
        # warm_start (new trees) needs exactly the same class set.
        parent_classes = {str(c) for c in getattr(final, "classes_", [])}
        new_classes = set(y.astype(str))
        fits = (
            new_classes <= parent_classes
            if hasattr(final, "partial_fit")
            else new_classes == parent_classes
        )
        if not fits:
            plan.note = (
                f"the new batches' classes {sorted(new_classes)} do not fit the parent's "
                f"{sorted(parent_classes)}: full retrain"
            )
            return None
    Xt = model[:-1].transform(X) if steps else X
    if hasattr(final, "partial_fit"):
        final.partial_fit(Xt, y)
    else:
        fresh_final = fresh.steps[-1][1] if getattr(fresh, "steps", None) else fresh
        grow = {}
        for key in ("n_estimators", "max_iter"):
            if key in final.get_params() and isinstance(final.get_params()[key], int):
                grow[key] = final.get_params()[key] + int(fresh_final.get_params()[key])
        final.set_params(warm_start=True, **grow)
        final.fit(Xt, y)
        final.set_params(warm_start=False)
    return model, X, y


def fit_lean(model: Any, data: dataset.TrainingData, ds: Any) -> None:
    """``model.fit`` on the training window, holding the rows once.

    For a scikit-learn Pipeline without caching this is exactly what ``Pipeline.fit`` does
    (each transformer's ``fit_transform`` in turn, then the final estimator's ``fit``), except
    that the raw rows are let go once the transformers have turned them into the estimator's
    input: on ten million rows that is half a gigabyte less at the fit's peak.
    ``data.frame`` is empty afterwards (take what else is needed from it first).
    """
    from sklearn.pipeline import Pipeline

    X, y = data.features(ds), data.frame[ds.target]
    data.frame = data.frame.iloc[0:0].copy()  # the rows now live in X and y only (a view
    # of no rows would still hold them)
    steps = getattr(model, "steps", None)
    if type(model) is not Pipeline or not steps or len(steps) < 2 or model.memory is not None:
        model.fit(X, y)
        return
    final = steps[-1][1]
    if final is None or final == "passthrough":
        model.fit(X, y)
        return
    Xt = model[:-1].fit_transform(X, y)
    del X
    final.fit(Xt, y)


def train(cfg: Config) -> dict[str, Any]:
    """Fit the model on the training window (or continue production's on the new batches);
    write the model (skops) and training.json; log an MLflow run and register a version.

    ``model.yaml: engine`` says where the fit runs (:mod:`retrain.pipeline.engine`); the
    engine connects before the data is read, so an unreachable Dask scheduler fails first."""
    root = cfg.root
    for rel in (MODEL_FILE, TRAINING_FILE, out_of_time.SLICE_FILE):
        (root / rel).unlink(missing_ok=True)
    faults.point("stage:train")
    pipe = build_pipeline(cfg)  # a bad model config fails before the data is read
    with engine.session(cfg) as eng:  # and an unreachable cluster before it too
        fitted = _fit(cfg, pipe, eng)
        where = eng.record()
    return _record(cfg, fitted, where)


@dataclass
class _Fitted:
    pipe: Any
    rows: int  # the rows fitted on
    example: pd.DataFrame  # three of them, for MLflow's input example
    data: dataset.TrainingData  # its frame empty after a full fit (fit_lean)
    plan: WarmPlan
    seconds: float
    trivial_record: dict[str, Any]
    slice_record: dict[str, Any]


def _fit(cfg: Config, pipe: Any, eng: engine.Engine) -> _Fitted:
    """Read the window and fit (or continue production's model) on the engine."""
    ds = cfg.dataset
    data = dataset.load_batches(ds, cfg.root)
    rows, example = len(data.frame), data.features(ds).head(3).copy()
    # Taken from the whole window before the fit lets its rows go (fit_lean): the trivial
    # baseline's constant (warm start or not; the trivial_baseline gate) and the out-of-time
    # second fit, on the same engine as the shipped model's (not in train_seconds).
    trivial_record = trivial.record(ds.task, data.frame[ds.target])
    slice_record = out_of_time.fit_and_write(cfg, data.frame, eng)
    warm = cfg.model.training.mode == "warm_start"
    plan = plan_training(cfg, data) if warm else WarmPlan("full")
    started = time.perf_counter()
    continued = None
    if plan.mode == "warm_start":
        progress(f"train: warm start, {plan.note}")
        try:
            continued = _continue(cfg, plan, pipe)
        except ValueError as exc:
            plan.note = f"warm start failed ({str(exc).strip().splitlines()[0]}): full retrain"
        if continued is None:
            plan.mode, plan.parent = "full", None
    if continued is not None:
        pipe, X, _ = continued
        rows, example = len(X), X.head(3)
        del X
    else:
        if warm:
            progress(f"train: full retrain ({plan.note})")
        progress(f"train: fitting {cfg.model.label} on {rows} rows ({data.start} … {data.end})")
        try:
            pipe = eng.fit_window(pipe, data, ds)
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"configs/model.yaml: params: {first}") from None
    seconds = time.perf_counter() - started
    return _Fitted(pipe, rows, example, data, plan, seconds, trivial_record, slice_record)


def _record(cfg: Config, fitted: _Fitted, where: dict[str, Any]) -> dict[str, Any]:
    """Save the fitted model, log it to MLflow, write training.json."""
    from retrain.pipeline import tracking

    pipe, data, plan, seconds = fitted.pipe, fitted.data, fitted.plan, fitted.seconds
    rows = fitted.rows
    root = cfg.root
    ds = cfg.dataset
    warm = cfg.model.training.mode == "warm_start"
    classes = [str(c) for c in pipe.classes_] if ds.task == "classification" else None
    schema = dataset.schema_of(ds, classes)
    trusted = artifacts.trusted_types(cfg.model.trusted_types)
    ref = artifacts.save_model(pipe, root / MODEL_FILE, trusted)
    commit = git_commit(root)
    data_hash = dataset.dvc_data_hash(root)
    params = {
        "estimator": cfg.model.label,
        "random_state": cfg.model.random_state,
        **cfg.model.params,
    }
    info: dict[str, Any] = {
        "code_commit": commit,
        "data": {
            "dvc_hash": data_hash,
            "rows": rows,
            "total_rows": data.total_rows,
            "start": data.start,
            "end": data.end,
            "files": data.files,
        },
        "params": params,
        "schema": schema,
        "artifact": {"path": MODEL_FILE, **ref},
        "train_seconds": round(seconds, 3),
        "environment": environment.capture(root, pipe),
        "engine": where,
        "trivial_baseline": fitted.trivial_record,
        "out_of_time": fitted.slice_record,
    }
    if warm:
        info["training"] = plan.record(rows)
    card_tmp = root / "artifacts" / "train" / ".card-for-mlflow.json"
    write_json(card_tmp, {k: info[k] for k in ("data", "params", "schema", "code_commit")})
    progress("train: logging the run to MLflow and registering a model version")
    tags = {
        "git_commit": commit,
        "dvc_data_hash": str(data_hash),
        "schema_fingerprint": schema["fingerprint"],
    }
    tags.update({("engine" if k == "name" else f"engine_{k}"): str(v) for k, v in where.items()})
    if warm:
        tags["training_mode"] = plan.mode
        tags["parent_version"] = plan.parent.version if plan.parent is not None else ""
    info["mlflow"] = tracking.log_training(
        cfg,
        model=pipe,
        params=params,
        metrics={"train_seconds": seconds, "train_rows": rows},
        tags=tags,
        card_path=card_tmp,
        example=fitted.example,
        trusted_types=trusted,
    )
    card_tmp.unlink(missing_ok=True)
    write_json(root / TRAINING_FILE, info)
    progress(
        f"train: done in {seconds:.2f}s, model {ref['size_bytes'] / 1024:.0f} KiB, "
        f"MLflow run {info['mlflow']['run_id'][:8]}"
    )
    return info


# --------------------------------------------------------------------------- evaluate
def subgroup_metrics(
    cfg: Config,
    holdout: pd.DataFrame,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: list[Any] | None,
) -> dict[str, Any]:
    ds = cfg.dataset
    metric = cfg.gates.primary_metric
    y = holdout[ds.target].to_numpy()
    out: dict[str, Any] = {}
    for column in ds.subgroups:
        levels: dict[str, Any] = {}
        values = holdout[column].astype(str).to_numpy()
        for level in sorted(set(values)):
            mask = values == level
            try:
                value = metrics.score(
                    metric,
                    y[mask],
                    y_pred[mask],
                    proba[mask] if proba is not None else None,
                    classes,
                )
            except ValueError:
                value = None
            levels[level] = {
                "rows": int(mask.sum()),
                metric: round(float(value), 6) if value is not None else None,
            }
        out[column] = levels
    return out


def evaluate(cfg: Config) -> dict[str, Any]:
    """Score the candidate on the frozen holdout: metrics, subgroups, latency, size."""
    from retrain.pipeline import tracking

    root = cfg.root
    ds = cfg.dataset
    for rel in (METRICS_FILE, PREDICTIONS_FILE):
        (root / rel).unlink(missing_ok=True)
    faults.point("stage:evaluate")
    info = json.loads((root / TRAINING_FILE).read_text())
    model = artifacts.load_for_config(
        cfg, root / MODEL_FILE, info["artifact"]["sha256"], display=MODEL_FILE
    )
    holdout = dataset.load_holdout(ds, root)
    X = holdout[ds.feature_names]
    y = holdout[ds.target].to_numpy()
    progress(f"evaluate: scoring the candidate on {len(X)} frozen holdout rows")
    y_pred, proba, classes = predict_rows(model, X, ds.task)
    overall = metrics.summary(ds.task, y, y_pred, proba, classes)
    prod = latency.alongside_version()
    beside = f", interleaved with production v{prod}" if prod else ""
    progress(f"evaluate: measuring prediction latency (single row and batch{beside})")
    lat = latency.measure_candidate(
        model,
        holdout,
        ds.feature_names,
        cfg.gates.latency,
        info["artifact"]["sha256"],
        threads=load_serve_config(root).threads,  # as the server predicts
    )
    result = {
        "primary_metric": cfg.gates.primary_metric,
        "overall": overall,
        "subgroups": subgroup_metrics(cfg, holdout, y_pred, proba, classes),
        "latency": lat,
        "size_bytes": info["artifact"]["size_bytes"],
        "train_seconds": info["train_seconds"],
        "holdout_rows": len(X),
    }
    preds = pd.DataFrame({"y_true": y, "y_pred": y_pred})
    if proba is not None and classes is not None:
        for i, c in enumerate(classes):
            preds[f"proba_{c}"] = np.round(proba[:, i], 6)
    (root / PREDICTIONS_FILE).parent.mkdir(parents=True, exist_ok=True)
    preds.to_csv(root / PREDICTIONS_FILE, index=False, lineterminator="\n")
    write_json(root / METRICS_FILE, result)
    try:
        mlflow = tracking._mlflow(cfg)
        client = mlflow.MlflowClient()
        for name, value in overall.items():
            if value is not None:
                client.log_metric(info["mlflow"]["run_id"], f"holdout_{name}", float(value))
    except Exception as exc:  # the metrics file is the record; MLflow is a mirror
        progress(f"evaluate: could not log metrics to MLflow ({type(exc).__name__})")
    shown = ", ".join(f"{k}={v:.4f}" for k, v in overall.items() if v is not None)
    progress(f"evaluate: {shown}; p95 latency {lat.get('p95_ms_single', 0):.2f} ms/row")
    return result


def load_json(root: Path, rel: str) -> dict[str, Any]:
    path = root / rel
    if not path.is_file():
        raise DataError(f"{rel}: not found; run `dvc repro` first")
    return json.loads(path.read_text())
