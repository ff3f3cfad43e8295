"""``retrain init`` on a rare-positive target (about 3% of the rows), as issue 23 found it.

Before: init kept ``primary_metric: accuracy`` (a model that always says "no" scores 0.97),
no guardrails, a live floor below the constant's score, and the weather example's comments
in the fork's configs.  Now it says the target is imbalanced, judges by average precision,
adds guardrails, caps harmful churn at half the rare class's share and sets the live floor
above the trivial model.  The sandbox story runs the bootstrap for real (git, DVC, MLflow;
GitHub is not involved): a model that learnt something is proposed, and one that always
answers the common class is held by the trivial_baseline gate although nothing is in
production yet.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain import example
from retrain.core.config import load_config
from tests.conftest import PROJECT, Cli
from tests.test_onboard import _retrain, template  # noqa: F401  (the fixture)

TARGET = "fraud"


def rare_positive_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """About 3% positives, driven by two of three features, one row a day."""
    rng = np.random.default_rng(seed)
    amount, hour = rng.normal(0, 1, n), rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-(-5.8 + 2.2 * amount + 1.6 * hour)))
    return pd.DataFrame(
        {
            "day": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "amount": amount.round(3),
            "hour": hour.round(3),
            "noise": rng.normal(0, 1, n).round(3),
            "channel": rng.choice(["web", "shop", "phone"], n),
            TARGET: np.where(np.random.default_rng(1).random(n) < p, "yes", "no"),
        }
    )


EXAMPLE_WORDS = re.compile(r"(?i)weather|seattle|\brain\b|\bfog\b|drizzle|\bsnow\b|\bsun\b")


def test_init_says_the_target_is_imbalanced_and_writes_a_judgement_that_fits_it(
    template,  # noqa: F811
    tmp_path,
):
    root = tmp_path / "fork"
    shutil.copytree(template, root)
    raw = tmp_path / "payments.csv"
    frame = rare_positive_frame()
    frame.to_csv(raw, index=False)
    share = float((frame[TARGET] == "yes").mean())
    assert 0.025 < share < 0.04
    res = _retrain(root, "init", "--data", str(raw), "--target", TARGET, "--time-column", "day")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"imbalanced target: 'yes' is {share:.1%} of the rows (under 10%)" in out
    assert "always answering 'no' scores 0.9" in out
    assert "gates.yaml: primary_metric accuracy -> average_precision" in out

    cfg = load_config(root)
    gates = cfg.gates
    assert gates.primary_metric == "average_precision"
    assert gates.trivial_baseline.metric == "average_precision"
    assert {n: (r.max_drop, r.max_rise) for n, r in gates.guardrails.items()} == {
        "roc_auc": (0.02, None),
        "log_loss": (None, 0.05),
    }
    assert gates.churn.max_negative_flip_rate == float(f"{share / 2:.2g}")
    # the live floor sits above the trivial model's average precision on the holdout (its
    # positive share there), a tenth of the way to 1
    holdout = pd.read_csv(root / "data" / "holdout.csv")
    base = float((holdout[TARGET] == "yes").mean())
    floor = cfg.release.rollout.health.min_metric
    assert floor == round(base + 0.1 * (1 - base), 3) and floor > base
    assert "rollout.health.min_metric" in out
    # nothing of the bundled weather example is left in the fork's configs
    for path in sorted((root / "configs").glob("*.yaml")):
        text = path.read_text()
        assert not EXAMPLE_WORDS.search(text), (path.name, EXAMPLE_WORDS.search(text))


def test_a_balanced_target_keeps_the_templates_judgement(template, tmp_path):  # noqa: F811
    root = tmp_path / "fork"
    shutil.copytree(template, root)
    raw = tmp_path / "balanced.csv"
    rng = np.random.default_rng(4)
    pd.DataFrame({"x": rng.normal(0, 1, 400), "y": rng.choice(["a", "b"], 400)}).to_csv(
        raw, index=False
    )
    res = _retrain(root, "init", "--data", str(raw), "--target", "y")
    assert res.returncode == 0, res.stderr
    assert "imbalanced" not in res.stdout
    cfg = load_config(root)
    assert cfg.gates.primary_metric == "accuracy" and not cfg.gates.guardrails
    assert cfg.release.rollout.health.min_metric is None


def _commit_fork(sb: example.Sandbox, message: str) -> None:
    dvc = str(Path(sys.executable).with_name("dvc"))
    sb.run(dvc, "add", "-q", "data")
    sb.git("add", "-A")
    sb.git("commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("rare")
    sb = example.make_sandbox(base / "sb", PROJECT)
    raw = base / "payments.csv"
    rare_positive_frame().to_csv(raw, index=False)
    cli = Cli(sb)
    cli("init", "--data", str(raw), "--target", TARGET, "--time-column", "day", "--name", "fraud")
    _commit_fork(sb, "Onboard fraud with retrain init")
    return sb, cli


def test_a_model_that_always_says_no_is_held_at_bootstrap(fork):
    sb, cli = fork
    model = sb.root / "configs" / "model.yaml"
    original = model.read_text()
    model.write_text("estimator: sklearn.dummy.DummyClassifier\nparams: {strategy: prior}\n")
    sb.git("commit", "-qam", "model: a constant")
    try:
        out = cli.json("run")
        assert out["outcome"] == "gated" and out["version"] is None, out
        r = out["gates"]["gates"]["trivial_baseline"]
        assert r["verdict"] == "fail" and r["value"] == 0.0
        assert "average_precision" in r["detail"] and "for always 'no'" in r["detail"]
        summary = (sb.root / "reports" / "latest" / "summary.md").read_text()
        assert "❌ `trivial_baseline`" in summary
        assert yaml.safe_load((sb.root / "registry.yaml").read_text())["versions"] == []
    finally:
        model.write_text(original)
        sb.git("commit", "-qam", "model: back to the forest")


def test_a_model_that_finds_positives_is_proposed_and_beats_the_constant(fork):
    sb, cli = fork
    out = cli.json("run", "--force", "--reason", "bootstrap after the constant was held")
    assert out["outcome"] == "proposed" and out["version"] == "1.0.0", out
    gates = out["gates"]
    assert gates["metric"] == "average_precision"
    t = gates["metrics"]["trivial_baseline"]
    assert gates["gates"]["trivial_baseline"]["verdict"] == "pass"
    assert t["candidate"] > t["value"] and t["lower"] > 0
    pr = sb.git("show", "retrain/v1.0.0:reports/v1.0.0/PR.md")
    assert "It beats the trivial baseline, always 'no'" in pr


@pytest.mark.parametrize(
    ("current", "n_classes", "proba", "majority", "expected"),
    [
        ("accuracy", 2, True, 0.967, "average_precision"),  # issue 23's 3.3% positives
        ("accuracy", 2, False, 0.967, "balanced_accuracy"),  # no probabilities to rank by
        ("accuracy", 5, True, 0.93, "f1_macro"),  # one class dominates
        ("accuracy", 5, True, 0.47, "accuracy"),  # a rare class, none dominant: kept
        ("roc_auc", 2, True, 0.97, "roc_auc"),  # already fits: kept
        ("roc_auc", 2, False, 0.97, "balanced_accuracy"),  # needs probabilities it lacks
    ],
)
def test_the_metric_init_chooses(current, n_classes, proba, majority, expected):
    from retrain.onboard import imbalance

    assert imbalance.choose_metric(current, n_classes, proba, majority) == expected
