"""A fork's own model code and a warm-started model, end to end on real git, DVC and MLflow.

- ``pipeline: model:build`` with its own feature step (a ``FunctionTransformer`` over a
  function in the fork's ``model.py``): refused before saving while the function's type is
  not in ``trusted_types``, then trained, proposed, merged, promoted, and predicted
  identically from a fresh clone that fetches the artifact from the DVC remote.
- ``training: {mode: warm_start, full_every: 2}`` with an estimator named by import path
  (``SGDClassifier``): the child is its parent trained further on the new batch only
  (``partial_fit`` by hand reproduces its coefficients), the registry entry and model card
  name the parent, and the next training is a full retrain.

GitHub is not involved: proposals are merged with git as a PR merge would.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import yaml

from retrain import example
from retrain.core.config import load_config
from retrain.core.registry import ArtifactRef
from retrain.pipeline import artifacts, dataset
from tests.conftest import Cli, bootstrap

MODEL_PY = '''"""The team's own model: a derived feature, then a forest."""
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder


def temp_range(frame):
    out = frame.copy()
    out["temp_range"] = out["temp_max"] - out["temp_min"]
    return out


def build(dataset):
    numeric = [f.name for f in dataset.features if f.type == "numeric"] + ["temp_range"]
    categorical = [f.name for f in dataset.features if f.type == "categorical"]
    pre = ColumnTransformer(
        [("num", "passthrough", numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)]
    )
    return Pipeline(
        [
            ("features", FunctionTransformer(temp_range)),
            ("pre", pre),
            ("model", RandomForestClassifier(n_estimators=40, min_samples_leaf=3, random_state=0)),
        ]
    )
'''


def _commit(sb: example.Sandbox, message: str) -> None:
    sb.git("add", "-A")
    sb.git("commit", "-q", "-m", message)
    sb.git("push", "-q", "origin", "main")


def _registry(sb: example.Sandbox, rev: str = "HEAD") -> dict:
    return yaml.safe_load(sb.git("show", f"{rev}:registry.yaml"))


def test_pipeline_function_is_refused_until_trusted_then_promoted_and_predicted_anywhere(
    tmp_path,
):
    sb = example.make_sandbox(tmp_path / "sb")
    cli = Cli(sb)
    (sb.root / "model.py").write_text(MODEL_PY)
    (sb.root / "configs" / "model.yaml").write_text("pipeline: model:build\n")
    dvc_yaml = sb.root / "dvc.yaml"
    dvc_yaml.write_text(
        dvc_yaml.read_text()
        .replace(
            "      - artifacts/validation.json\n",
            "      - artifacts/validation.json\n      - model.py\n",
            1,
        )
        # evaluate loads the model, which calls into model.py: a dependency there too
        .replace(
            "      - artifacts/train/training.json\n",
            "      - artifacts/train/training.json\n      - model.py\n",
            1,
        )
    )
    _commit(sb, "Our own model code")

    # The function is code skops would import on load: refused before anything is saved.
    cli("validate")
    res = cli("train", check=False)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    assert "configs/model.yaml: trusted_types" in lines[0]
    assert "'model.temp_range'" in lines[0] and "`  - model.temp_range`" in lines[0]
    assert not (sb.root / "artifacts" / "train" / "model.skops").exists()

    # A reviewed line in model.yaml trusts it; the run trains, pushes and proposes v1.0.0.
    (sb.root / "configs" / "model.yaml").write_text(
        "pipeline: model:build\ntrusted_types:\n  - model.temp_range\n"
    )
    sb.run("git", "checkout", "--", "artifacts")
    _commit(sb, "Trust our feature function")
    bootstrap(sb, cli)
    entry = _registry(sb)["versions"][0]
    assert entry["params"]["estimator"] == "pipeline model:build"

    holdout = sb.root / "data" / "holdout.csv"
    here = cli("predict", "--version", "1.0.0", "--input", str(holdout)).stdout
    assert here.splitlines()[0].startswith("prediction,proba_")

    # A fresh clone (another machine) fetches the artifact from the DVC remote by hash and
    # loads it with the fork's own code: the same predictions, byte for byte.
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(sb.origin), str(fresh)], check=True, env=cli.env)
    there = cli("predict", "--version", "1.0.0", "--input", str(holdout), cwd=fresh).stdout
    assert there == here


def test_warm_start_continues_from_its_parent_and_full_every_forces_a_full_retrain(tmp_path):
    sb = example.make_sandbox(tmp_path / "sb")
    cli = Cli(sb)
    (sb.root / "configs" / "model.yaml").write_text(
        "estimator: sklearn.linear_model.SGDClassifier\n"
        "params: {loss: log_loss, alpha: 0.001}\n"
        "training: {mode: warm_start, full_every: 2}\n"
    )
    gates = sb.root / "configs" / "gates.yaml"
    # PATCH bumps judged with a wide allowance: this test is about lineage, not quality.
    gates.write_text(
        gates.read_text()
        .replace("max_regression: 0.005", "max_regression: 1.0")
        .replace("max_regression: 0.05", "max_regression: 1.0")
        .replace("max_negative_flip_rate: 0.05", "max_negative_flip_rate: 1.0")  # SGD flips
    )
    _commit(sb, "Warm starts of an estimator named by import path")
    bootstrap(sb, cli)
    first = _registry(sb)["versions"][0]
    assert first["params"]["estimator"] == "sklearn.linear_model.SGDClassifier"
    assert first["training"]["mode"] == "full" and first["training"]["parent"] is None

    batch = example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run", "--bump", "patch")
    assert out["outcome"] == "proposed" and out["version"] == "1.0.1", out
    child = _registry(sb, out["branch"])["versions"][-1]
    assert child["training"]["mode"] == "warm_start", child["training"]
    assert child["training"]["parent"] == "1.0.0"
    assert child["data"]["rows"] == 184  # the new half-year only
    card = json.loads(sb.git("show", f"{out['branch']}:reports/v1.0.1/model_card.json"))
    assert card["parent_version"] == "1.0.0"

    # The child is the parent trained further on the new batch: doing that by hand gives
    # exactly the child's coefficients (and they moved away from the parent's).
    cfg = load_config(sb.root)
    models = {}
    for e in (first, child):
        ref = ArtifactRef.model_validate(e["artifact"])
        path = artifacts.fetch(sb.root, ref, e["version"])
        models[e["version"]] = artifacts.load_for_config(cfg, path, ref.sha256)
    parent, grown = models["1.0.0"], models["1.0.1"]
    before = parent.steps[-1][1].coef_.copy()
    new = dataset.check_frame(
        pd.read_csv(sb.root / "data" / "batches" / f"{batch}.csv"), cfg.dataset, batch
    )
    parent.steps[-1][1].partial_fit(
        parent[:-1].transform(new[cfg.dataset.feature_names]), new[cfg.dataset.target]
    )
    assert np.allclose(parent.steps[-1][1].coef_, grown.steps[-1][1].coef_)
    assert not np.allclose(before, grown.steps[-1][1].coef_)

    example.merge_proposal(sb, out["branch"])
    cli("promote")
    # v1.0.1 ends a chain of one warm start: with full_every 2 the next training is full.
    # (The train stage alone: whether that candidate passes the gates is another matter.)
    example.ingest_next_batch(sb.root, sb.env)
    cli("validate")
    cli("train")
    third = json.loads((sb.root / "artifacts" / "train" / "training.json").read_text())
    assert third["training"]["mode"] == "full" and third["training"]["parent"] is None
    assert "full_every 2" in third["training"]["note"]
    assert third["data"]["rows"] > 184  # the whole training window again
