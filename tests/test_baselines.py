"""The trivial_baseline gate: every candidate, the first one too, must beat a model that
ignores its inputs (most frequent class with the training shares as probabilities; mean or
median), judged on the holdout by the primary metric with the improvement gate's paired
bootstrap.  Predictions are built row by row, so every verdict is known in advance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.core.config import GatesConfig
from retrain.decide.gates import GateInputs, ModelScores, SchemaChange, evaluate_gates
from retrain.pipeline import trivial
from retrain.report import markdown

FAST = {"p95_ms_single": 2.0, "p95_ms_batch": 20.0}


def _scores(pred, proba=None, classes=None) -> ModelScores:
    return ModelScores(
        y_pred=np.asarray(pred),
        proba=proba,
        classes=classes,
        latency=dict(FAST),
        size_bytes=1_000,
        train_seconds=1.0,
    )


def _inputs(y, candidate, *, rec, baseline=None, task="classification", metric="accuracy"):
    return GateInputs(
        task=task,
        metric=metric,
        y_true=np.asarray(y),
        subgroups={},
        candidate=candidate,
        baseline=baseline,
        bump_requested=None,
        schema_change=SchemaChange(),
        data_valid=True,
        trivial=rec,
    )


def _rare(n: int = 1000, share: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < share, "yes", "no").astype(object)


def test_the_record_is_the_training_windows_target():
    rec = trivial.record("classification", pd.Series(["b", "a", "b", "a", "c"]))
    assert rec == {"strategy": "most_frequent", "counts": {"a": 2, "b": 2, "c": 1}, "rows": 5}
    assert trivial.constant(rec, "accuracy") == "a"  # a tie goes to the first label sorted
    y_pred, proba, classes = trivial.predictions(rec, "log_loss", 3)
    assert list(y_pred) == ["a"] * 3 and classes == ["a", "b", "c"]
    assert proba.tolist() == [[0.4, 0.4, 0.2]] * 3
    reg = trivial.record("regression", pd.Series([1.0, 2.0, 3.0, 10.0]))
    assert trivial.constant(reg, "rmse") == 4.0 and trivial.constant(reg, "mae") == 2.5


def test_at_bootstrap_a_model_that_always_says_the_common_class_is_held():
    """Issue 23: on a 3%-positive target, 'always no' scores 0.97 accuracy.  A first model
    that learnt nothing more is held, though there is no production to compare with."""
    y = _rare()
    rec = trivial.record("classification", pd.Series(_rare(5000, seed=1)))
    degenerate = _scores(np.full(len(y), "no", dtype=object))
    report = evaluate_gates(_inputs(y, degenerate, rec=rec), GatesConfig())
    r = report.result("trivial_baseline")
    assert report.bump == "initial" and r.verdict == "fail" and not report.passed
    assert r.value == 0.0
    assert "accuracy 0.9" in r.detail and "for always 'no'" in r.detail
    assert "does not beat a model that ignores its inputs" in r.detail
    body = markdown.render_pr_body(
        {"model": "m", "version": "1.0.0", "outcome": "gated", "gates": report.to_dict()}
    )
    assert "**It does not beat** the trivial baseline, always 'no'" in body
    assert "| trivial baseline |" in body  # the metrics table has its column


def test_a_model_that_finds_most_positives_beats_the_constant():
    y = _rare()
    rec = trivial.record("classification", pd.Series(_rare(5000, seed=1)))
    pred = y.copy()
    pred[np.flatnonzero(y == "yes")[:5]] = "no"  # misses 5 positives, finds the rest
    report = evaluate_gates(_inputs(y, _scores(pred), rec=rec), GatesConfig())
    r = report.result("trivial_baseline")
    assert r.verdict == "pass" and r.value > 0 and report.passed
    t = report.metrics["trivial_baseline"]
    assert t["prediction"] == "no" and t["lower"] > 0 and t["n_resamples"] == 1000
    assert t["summary"]["accuracy"] == pytest.approx(float(np.mean(y == "no")), abs=1e-6)


def test_a_gain_that_may_be_noise_is_held():
    y = _rare()
    rec = trivial.record("classification", pd.Series(_rare(5000, seed=1)))
    pred = np.full(len(y), "no", dtype=object)
    pred[np.flatnonzero(y == "yes")[:1]] = "yes"  # one positive found: +0.001
    r = evaluate_gates(_inputs(y, _scores(pred), rec=rec), GatesConfig()).result("trivial_baseline")
    assert r.verdict == "fail" and r.value == pytest.approx(0.001)
    assert "may be noise" in r.detail


def test_judged_by_a_metric_the_constant_cannot_game_when_configured():
    """A model that flags rare positives with some false alarms scores *lower* accuracy than
    'always no' and is still useful: judged by balanced accuracy it beats the constant."""
    y = _rare()
    rec = trivial.record("classification", pd.Series(_rare(5000, seed=1)))
    pred = y.copy()
    pred[np.flatnonzero(y == "no")[:40]] = "yes"  # 40 false alarms, every positive found
    candidate = _scores(pred)
    by_accuracy = evaluate_gates(_inputs(y, candidate, rec=rec), GatesConfig())
    assert by_accuracy.result("trivial_baseline").verdict == "fail"
    cfg = GatesConfig.model_validate({"trivial_baseline": {"metric": "balanced_accuracy"}})
    by_balance = evaluate_gates(_inputs(y, candidate, rec=rec), cfg)
    r = by_balance.result("trivial_baseline")
    assert r.verdict == "pass" and "balanced_accuracy" in r.detail


def test_probability_metrics_score_the_constant_by_its_training_shares():
    y = _rare()
    rec = trivial.record("classification", pd.Series(_rare(5000, seed=1)))
    score = np.where(y == "yes", 0.9, 0.1)
    proba = np.column_stack([1 - score, score])
    cand = _scores(np.where(score > 0.5, "yes", "no").astype(object), proba, ["no", "yes"])
    report = evaluate_gates(_inputs(y, cand, rec=rec, metric="average_precision"), GatesConfig())
    t = report.metrics["trivial_baseline"]
    assert t["value"] == pytest.approx(float(np.mean(y == "yes")), abs=1e-6)  # AP = prevalence
    assert t["summary"]["roc_auc"] == 0.5
    assert report.result("trivial_baseline").verdict == "pass"


@pytest.mark.parametrize(("metric", "constant"), [("rmse", "mean"), ("mae", "median")])
def test_regression_is_judged_against_the_mean_or_median(metric, constant):
    rng = np.random.default_rng(2)
    train = pd.Series(rng.exponential(10.0, 2000))
    rec = trivial.record("regression", train)
    y = rng.exponential(10.0, 300)
    flat = _scores(np.full(len(y), float(getattr(np, constant)(train))))
    report = evaluate_gates(
        _inputs(y, flat, rec=rec, task="regression", metric=metric),
        GatesConfig(primary_metric=metric),
    )
    r = report.result("trivial_baseline")
    assert r.verdict == "fail" and r.value == 0.0
    assert f"the training window's {constant}" in r.detail
    good = evaluate_gates(
        _inputs(
            y, _scores(y + rng.normal(0, 1, len(y))), rec=rec, task="regression", metric=metric
        ),
        GatesConfig(primary_metric=metric),
    )
    assert good.result("trivial_baseline").verdict == "pass"


def test_without_a_training_record_there_is_no_trivial_gate():
    y = _rare()
    report = evaluate_gates(_inputs(y, _scores(y.copy()), rec=None), GatesConfig())
    assert "trivial_baseline" not in [r.name for r in report.results]
    assert "trivial_baseline" not in report.metrics


def test_a_trivial_metric_of_the_wrong_task_is_a_config_error(tmp_path):
    from retrain.core.config import load_config
    from retrain.core.errors import ConfigError
    from tests.conftest import PROJECT

    (tmp_path / "configs").mkdir()
    for name in ("dataset", "model", "release", "triggers"):
        (tmp_path / "configs" / f"{name}.yaml").write_text(
            (PROJECT / "configs" / f"{name}.yaml").read_text()
        )
    (tmp_path / "configs" / "gates.yaml").write_text("trivial_baseline: {metric: rmse}\n")
    with pytest.raises(ConfigError, match="trivial_baseline.metric: 'rmse' is not a"):
        load_config(tmp_path)
