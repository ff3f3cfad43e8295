"""Bad input for the new keys of ``configs/model.yaml`` and ``configs/gates.yaml``.

Each case is driven through the CLI (``retrain train``) in a copy of the project's
configuration: exit 2, one line naming the file and key, and nothing written.  A model
import path that does not resolve is refused when the train stage builds the model, before
any data is read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.core.config import load_config
from retrain.pipeline import estimators
from tests.conftest import PROJECT

MODEL = "configs/model.yaml"
GATES = "configs/gates.yaml"
BUILD = "def build(dataset):\n    from sklearn.dummy import DummyClassifier\n    return DummyClassifier()\n"

BAD = {
    "estimator not a name": (MODEL, "estimator: random forest!\n", ["estimator", "built-in name"]),
    "estimator class missing": (
        MODEL,
        "estimator: sklearn.ensemble.NoSuchForest\n",
        ["estimator", "has no class 'NoSuchForest'"],
    ),
    "estimator module missing": (
        MODEL,
        "estimator: nosuchpackage.Model\n",
        ["estimator", "cannot import module 'nosuchpackage'"],
    ),
    "estimator not an estimator": (
        MODEL,
        "estimator: collections.OrderedDict\n",
        ["estimator", "not a scikit-learn estimator"],
    ),
    "estimator wrong task": (
        MODEL,
        "estimator: sklearn.linear_model.Ridge\n",
        ["estimator", "cannot do classification"],
    ),
    "params unknown to the class": (
        MODEL,
        "estimator: sklearn.ensemble.ExtraTreesClassifier\nparams: {n_trees: 3}\n",
        ["params.n_trees", "not a parameter of ExtraTreesClassifier"],
    ),
    "estimator and pipeline": (
        MODEL,
        "estimator: random_forest\npipeline: model:build\n",
        ["exactly one of estimator and pipeline"],
    ),
    "neither estimator nor pipeline": (MODEL, "params: {}\n", ["exactly one"]),
    "pipeline bad shape": (MODEL, "pipeline: model.build\n", ["pipeline", "pattern"]),
    "pipeline with params": (
        MODEL,
        "pipeline: model:build\nparams: {C: 1}\n",
        ["params: not used with pipeline"],
    ),
    "pipeline file missing": (MODEL, "pipeline: model:build\n", ["pipeline", "model.py not found"]),
    "pipeline function missing": (
        MODEL,
        "pipeline: model:make\n",
        ["pipeline", "has no function 'make'"],
    ),
    "pipeline not tracked by dvc": (
        MODEL,
        "pipeline: model:build\n",
        ["model.py is not a dependency of the train stage", "stages.train.deps"],
    ),
    "trusted_types not dotted": (
        MODEL,
        "estimator: random_forest\ntrusted_types: [not a type]\n",
        ["trusted_types", "'not a type' is not a dotted type name"],
    ),
    "training mode unknown": (
        MODEL,
        "estimator: random_forest\ntraining: {mode: sometimes}\n",
        ["training.mode"],
    ),
    "training full_every zero": (
        MODEL,
        "estimator: random_forest\ntraining: {mode: warm_start, full_every: 0}\n",
        ["training.full_every"],
    ),
    "warm start built-in that cannot": (
        MODEL,
        "estimator: decision_tree\ntraining: {mode: warm_start}\n",
        ["'decision_tree' cannot warm-start"],
    ),
    "warm start class that cannot": (
        MODEL,
        "estimator: sklearn.neighbors.KNeighborsClassifier\ntraining: {mode: warm_start}\n",
        ["training.mode", "sklearn.neighbors.KNeighborsClassifier cannot warm-start"],
    ),
    "guardrail unknown metric": (
        GATES,
        "guardrails: {precision: {max_drop: 0.1}}\n",
        ["guardrails", "'precision' is not a known metric"],
    ),
    "guardrail wrong direction": (
        GATES,
        "guardrails: {log_loss: {max_drop: 0.1}}\n",
        ["guardrails", "lower is better, so give max_rise"],
    ),
    "guardrail other task": (
        GATES,
        "guardrails: {rmse: {max_rise: 0.1}}\n",
        ["guardrails.rmse", "not a classification metric"],
    ),
    "guardrail negative limit": (
        GATES,
        "guardrails: {roc_auc: {max_drop: -0.1}}\n",
        ["guardrails.roc_auc.max_drop", "greater than or equal to 0"],
    ),
    "guardrail unknown key": (
        GATES,
        "guardrails: {roc_auc: {max_fall: 0.1}}\n",
        ["guardrails.roc_auc.max_fall", "unknown key"],
    ),
}


def _project_copy(root: Path) -> Path:
    for rel in ("configs", "dvc.yaml"):
        src = PROJECT / rel
        if src.is_dir():
            shutil.copytree(src, root / rel)
        else:
            shutil.copy2(src, root / rel)
    return root


@pytest.mark.parametrize("case", sorted(BAD), ids=lambda c: c.replace(" ", "-"))
def test_bad_model_or_gates_config_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    rel, text, needles = BAD[case]
    root = _project_copy(tmp_path)
    path = root / rel
    if rel == MODEL:
        path.write_text(text)
    else:
        path.write_text(path.read_text() + text)
    if "pipeline" in case and "missing" not in case or case == "pipeline function missing":
        (root / "model.py").write_text(BUILD)
    if case == "pipeline function missing":
        dvc = root / "dvc.yaml"
        dvc.write_text(
            dvc.read_text()
            .replace(
                "      - artifacts/validation.json\n",
                "      - artifacts/validation.json\n      - model.py\n",
                1,
            )
            .replace(
                "      - artifacts/train/training.json\n",
                "      - artifacts/train/training.json\n      - model.py\n",
                1,
            )
        )
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "train"],
        cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {rel}"), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_estimator_by_import_path_gets_params_and_the_standard_preprocessing(tmp_path):
    root = _project_copy(tmp_path)
    (root / MODEL).write_text(
        "estimator: sklearn.linear_model.SGDClassifier\nparams: {loss: log_loss, alpha: 0.001}\n"
    )
    cfg = load_config(root)
    model = estimators.build_model(cfg)
    final = model.steps[-1][1]
    assert type(final).__name__ == "SGDClassifier"
    assert final.alpha == 0.001 and final.random_state == cfg.model.random_state
    assert estimators.can_warm_start(model)
    # numeric columns are scaled for a class named by import path (harmless for trees)
    assert "scale" in dict(model.steps[0][1].transformers[0][1].steps)
