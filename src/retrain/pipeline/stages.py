"""The three DVC stages: validate → train → evaluate (``dvc.yaml`` calls them).

Each stage reads the configuration, does one job, and writes its outputs atomically; a
failure leaves no output DVC or the next stage would trust.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core import faults
from retrain.core.config import Config
from retrain.core.errors import ConfigError, DataError
from retrain.core.progress import progress
from retrain.core.registry import write_atomic
from retrain.pipeline import artifacts, dataset, metrics
from retrain.pipeline.latency import measure_latency

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
    data = dataset.load_batches(cfg.dataset, root)
    holdout = dataset.load_holdout(cfg.dataset, root)
    if cfg.dataset.task == "classification":
        unseen = sorted(set(holdout[cfg.dataset.target]) - set(data.frame[cfg.dataset.target]))
    else:
        unseen = []
    report = {
        "passed": True,
        "files": data.files,
        "total_rows": data.total_rows,
        "training_rows": len(data.frame),
        "window": {"start": data.start, "end": data.end},
        "holdout_rows": len(holdout),
        "holdout_labels_unseen_in_training": unseen,
    }
    write_json(out, report)
    progress(
        f"validate: {len(data.files)} batch file(s), {data.total_rows} rows, "
        f"{len(data.frame)} in the training window, holdout {len(holdout)} rows: OK"
    )
    return report


# --------------------------------------------------------------------------- train
def _estimator_class(name: str, task: str) -> type:
    from sklearn import ensemble, linear_model, tree

    table: dict[str, tuple[type | None, type | None]] = {
        "random_forest": (ensemble.RandomForestClassifier, ensemble.RandomForestRegressor),
        "hist_gradient_boosting": (
            ensemble.HistGradientBoostingClassifier,
            ensemble.HistGradientBoostingRegressor,
        ),
        "decision_tree": (tree.DecisionTreeClassifier, tree.DecisionTreeRegressor),
        "logistic_regression": (linear_model.LogisticRegression, None),
        "ridge": (None, linear_model.Ridge),
        "linear_regression": (None, linear_model.LinearRegression),
    }
    cls = table[name][0 if task == "classification" else 1]
    if cls is None:  # config validation already refuses this; kept for direct API use
        raise ConfigError(f"configs/model.yaml: estimator: {name!r} cannot do {task}")
    return cls


def build_pipeline(cfg: Config) -> Any:
    """Preprocessing + estimator as one scikit-learn pipeline (saved and loaded as a whole)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    ds = cfg.dataset
    cls = _estimator_class(cfg.model.estimator, ds.task)
    valid = cls().get_params()
    unknown = sorted(set(cfg.model.params) - set(valid))
    if unknown:
        raise ConfigError(
            f"configs/model.yaml: params.{unknown[0]}: not a parameter of {cls.__name__}"
        )
    params = dict(cfg.model.params)
    if "random_state" in valid:
        params.setdefault("random_state", cfg.model.random_state)
    estimator = cls(**params)

    numeric = [f.name for f in ds.features if f.type == "numeric"]
    categorical = [f.name for f in ds.features if f.type == "categorical"]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if cfg.model.estimator in {"logistic_regression", "ridge", "linear_regression"}:
        num_steps.append(("scale", StandardScaler()))
    cat_steps = [
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("onehot", OneHotEncoder(handle_unknown="ignore")),
    ]
    transformers = []
    if numeric:
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append(("cat", Pipeline(cat_steps), categorical))
    pre = ColumnTransformer(transformers)
    return Pipeline([("pre", pre), ("model", estimator)])


def git_commit(root: Path) -> str:
    res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def train(cfg: Config) -> dict[str, Any]:
    """Fit the model on the training window; write the model (skops) and training.json;
    log an MLflow run and register a model version."""
    from retrain.pipeline import tracking

    root = cfg.root
    ds = cfg.dataset
    for rel in (MODEL_FILE, TRAINING_FILE):
        (root / rel).unlink(missing_ok=True)
    faults.point("stage:train")
    data = dataset.load_batches(ds, root)
    X, y = data.features(ds), data.frame[ds.target]
    pipe = build_pipeline(cfg)
    progress(f"train: fitting {cfg.model.estimator} on {len(X)} rows ({data.start} … {data.end})")
    started = time.perf_counter()
    try:
        pipe.fit(X, y)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"configs/model.yaml: params: {first}") from None
    seconds = time.perf_counter() - started
    classes = [str(c) for c in pipe.classes_] if ds.task == "classification" else None
    schema = dataset.schema_of(ds, classes)
    ref = artifacts.save_model(pipe, root / MODEL_FILE)
    commit = git_commit(root)
    data_hash = dataset.dvc_data_hash(root)
    params = {
        "estimator": cfg.model.estimator,
        "random_state": cfg.model.random_state,
        **cfg.model.params,
    }
    info: dict[str, Any] = {
        "code_commit": commit,
        "data": {
            "dvc_hash": data_hash,
            "rows": len(X),
            "total_rows": data.total_rows,
            "start": data.start,
            "end": data.end,
            "files": data.files,
        },
        "params": params,
        "schema": schema,
        "artifact": {"path": MODEL_FILE, **ref},
        "train_seconds": round(seconds, 3),
    }
    card_tmp = root / "artifacts" / "train" / ".card-for-mlflow.json"
    write_json(card_tmp, {k: info[k] for k in ("data", "params", "schema", "code_commit")})
    progress("train: logging the run to MLflow and registering a model version")
    info["mlflow"] = tracking.log_training(
        cfg,
        model=pipe,
        params=params,
        metrics={"train_seconds": seconds, "train_rows": len(X)},
        tags={
            "git_commit": commit,
            "dvc_data_hash": str(data_hash),
            "schema_fingerprint": schema["fingerprint"],
        },
        card_path=card_tmp,
        example=X.head(3),
        trusted_types=list(artifacts.TRUSTED_TYPES),
    )
    card_tmp.unlink(missing_ok=True)
    write_json(root / TRAINING_FILE, info)
    progress(
        f"train: done in {seconds:.2f}s, model {ref['size_bytes'] / 1024:.0f} KiB, "
        f"MLflow run {info['mlflow']['run_id'][:8]}"
    )
    return info


# --------------------------------------------------------------------------- evaluate
def predict_frame(
    model: Any, X: pd.DataFrame, task: str
) -> tuple[np.ndarray, np.ndarray | None, list[Any] | None]:
    y_pred = model.predict(X)
    if task == "classification":
        proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
        return np.asarray(y_pred).astype(str), proba, [str(c) for c in model.classes_]
    return np.asarray(y_pred, dtype=float), None, None


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
    model = artifacts.load_verified(
        root / MODEL_FILE, info["artifact"]["sha256"], display=MODEL_FILE
    )
    holdout = dataset.load_holdout(ds, root)
    X = holdout[ds.feature_names]
    y = holdout[ds.target].to_numpy()
    progress(f"evaluate: scoring the candidate on {len(X)} frozen holdout rows")
    y_pred, proba, classes = predict_frame(model, X, ds.task)
    overall = metrics.summary(ds.task, y, y_pred, proba, classes)
    progress("evaluate: measuring prediction latency (single row and batch)")
    latency = measure_latency(model, X, cfg.gates.latency)
    result = {
        "primary_metric": cfg.gates.primary_metric,
        "overall": overall,
        "subgroups": subgroup_metrics(cfg, holdout, y_pred, proba, classes),
        "latency": latency,
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
    progress(f"evaluate: {shown}; p95 latency {latency.get('p95_ms_single', 0):.2f} ms/row")
    return result


def load_json(root: Path, rel: str) -> dict[str, Any]:
    path = root / rel
    if not path.is_file():
        raise DataError(f"{rel}: not found; run `dvc repro` first")
    return json.loads(path.read_text())
