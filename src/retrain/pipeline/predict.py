"""Predictions from any registered version, on a fresh clone that can reach the DVC remote."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.pipeline import artifacts, dataset
from retrain.pipeline.stages import predict_frame


def predict_file(cfg: Config, version: str, input_path: Path) -> str:
    """CSV text of predictions (deterministic for a version and an input)."""
    registry = reg.load(cfg.root, expected_model=cfg.release.model_name)
    entry = registry.get(version)
    X, ignored = dataset.load_features_file(cfg.dataset, input_path)
    if ignored:
        print(f"[retrain] predict: ignoring column(s) {ignored}", file=sys.stderr)
    path = artifacts.fetch(cfg.root, entry.artifact, version)
    model = artifacts.load_verified(path, entry.artifact.sha256)
    y_pred, proba, classes = predict_frame(model, X, cfg.dataset.task)
    out = pd.DataFrame({"prediction": y_pred})
    if proba is not None and classes is not None:
        for i, c in enumerate(classes):
            out[f"proba_{c}"] = np.round(proba[:, i], 6)
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\n", float_format="%.6f")
    return buf.getvalue()
