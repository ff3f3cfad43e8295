"""Metrics by name: agreement with scikit-learn, odd holdouts, and the vectorised resamples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from retrain.core.errors import ConfigError
from retrain.pipeline import metrics

CLASSES = ["drizzle", "fog", "rain", "snow", "sun"]


def _classification(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.choice(CLASSES, n))
    proba = rng.dirichlet(np.ones(len(CLASSES)), n)
    proba[np.arange(n), [CLASSES.index(v) for v in y]] += 1.0
    proba = np.round(proba / proba.sum(axis=1, keepdims=True), 2)  # rounding makes ties
    proba /= proba.sum(axis=1, keepdims=True)
    return y, pred, proba


def test_metric_names_per_task():
    assert metrics.metric_names("classification") == [
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "roc_auc",
        "log_loss",
        "average_precision",
    ]
    assert metrics.metric_names("regression") == ["rmse", "mae", "r2"]


def test_average_precision_is_scikit_learns_one_vs_rest():
    from sklearn import metrics as skm

    y, pred, proba = _classification(400)
    expected = np.mean(
        [skm.average_precision_score(y == c, proba[:, k]) for k, c in enumerate(CLASSES)]
    )
    assert metrics.score("average_precision", y, pred, proba, CLASSES) == pytest.approx(expected)
    rare = np.where(np.arange(400) % 33 == 0, "yes", "no")
    p_yes = np.round(np.random.default_rng(5).random(400), 1)  # many ties
    binary = np.column_stack([1 - p_yes, p_yes])
    assert metrics.score("average_precision", rare, rare, binary, ["no", "yes"]) == pytest.approx(
        skm.average_precision_score(rare == "yes", p_yes)
    )


def test_a_metric_of_the_wrong_task_is_a_config_error_naming_file_key_and_choices():
    with pytest.raises(ConfigError) as err:
        metrics.check_metric("regression", "accuracy")
    assert str(err.value) == (
        "configs/gates.yaml: primary_metric: 'accuracy' is not a regression metric; "
        "expected one of [rmse, mae, r2]"
    )
    assert metrics.check_metric("classification", "roc_auc") == "roc_auc"


def test_direction_of_each_metric():
    assert [m for m in metrics.ALL_METRICS if not metrics.greater_is_better(m)] == [
        "log_loss",
        "rmse",
        "mae",
    ]
    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        metrics.greater_is_better("auc")


def test_classification_scores_agree_with_sklearn():
    y, pred, proba = _classification()
    assert metrics.score("accuracy", y, pred) == skm.accuracy_score(y, pred)
    assert metrics.score("balanced_accuracy", y, pred) == skm.balanced_accuracy_score(y, pred)
    assert metrics.score("f1_macro", y, pred) == skm.f1_score(y, pred, average="macro")
    assert metrics.score("roc_auc", y, pred, proba, CLASSES) == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", labels=CLASSES), abs=1e-12
    )
    assert metrics.score("log_loss", y, pred, proba, CLASSES) == pytest.approx(
        skm.log_loss(y, proba, labels=CLASSES), abs=1e-12
    )


def test_binary_roc_auc_is_the_auc_of_the_second_class():
    y = np.array(["no", "no", "yes", "yes", "no", "yes"])
    p_yes = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    proba = np.column_stack([1 - p_yes, p_yes])
    expected = skm.roc_auc_score(y == "yes", p_yes)
    assert metrics.score("roc_auc", y, y, proba, ["no", "yes"]) == pytest.approx(expected)


def test_a_holdout_lacking_some_model_classes_is_scored_without_crashing():
    y, pred, proba = _classification()
    keep = ~np.isin(y, ["snow", "fog"])  # the holdout never saw snow or fog
    y, pred, proba = y[keep], pred[keep], proba[keep]
    out = metrics.summary("classification", y, pred, proba, CLASSES)
    assert list(out) == metrics.metric_names("classification")
    assert all(isinstance(v, float) for v in out.values())
    present = ["drizzle", "rain", "sun"]
    expected = np.mean([skm.roc_auc_score(y == c, proba[:, CLASSES.index(c)]) for c in present])
    assert out["roc_auc"] == round(float(expected), 6)
    assert out["log_loss"] == round(skm.log_loss(y, proba, labels=CLASSES), 6)


def test_a_label_the_model_never_saw_costs_the_clipped_maximum_log_loss():
    classes = ["rain", "sun"]
    y = np.array(["rain", "sun", "snow"])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    per_row = metrics.row_log_loss(y, proba, classes)
    assert per_row[:2] == pytest.approx([-math.log(0.8), -math.log(0.7)])
    assert per_row[2] == pytest.approx(-math.log(np.finfo(float).eps))
    assert metrics.score("log_loss", y, y, proba, classes) == pytest.approx(per_row.mean())


def test_an_undefined_metric_raises_valueerror_and_summarises_as_none():
    y = np.array(["rain"] * 5)
    proba = np.tile([0.6, 0.4], (5, 1))
    with pytest.raises(ValueError, match="single class"):
        metrics.score("roc_auc", y, y, proba, ["rain", "sun"])
    out = metrics.summary("classification", y, y, proba, ["rain", "sun"])
    assert out["roc_auc"] is None
    assert out["accuracy"] == 1.0
    with pytest.raises(ValueError, match="constant"):
        metrics.score("r2", np.ones(4), np.arange(4.0))
    with pytest.raises(ValueError, match="needs predicted probabilities"):
        metrics.score("log_loss", y, y)
    with pytest.raises(ValueError, match="no rows"):
        metrics.score("accuracy", np.array([]), np.array([]))


def test_summary_leaves_out_probability_metrics_without_proba():
    y, pred, _ = _classification(50)
    assert list(metrics.summary("classification", y, pred)) == [
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
    ]


def test_regression_scores_and_rounding():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.0, 4.0])
    out = metrics.summary("regression", y, pred)
    assert out == {
        "rmse": round(math.sqrt((0.25 + 0 + 1 + 0) / 4), 6),
        "mae": round(1.5 / 4, 6),
        "r2": round(1 - 1.25 / 5.0, 6),
    }


@pytest.mark.parametrize("metric", metrics.ALL_METRICS)
def test_resampled_scores_equal_scoring_each_resample(metric):
    n, resamples = 300, 40
    if metric in metrics.REGRESSION_METRICS:
        rng = np.random.default_rng(3)
        y = rng.normal(10, 3, n)
        pred, proba, classes = y + rng.normal(0, 1, n), None, None
    else:
        y, pred, proba = _classification(n, seed=3)
        y = np.where(y == "snow", "hail", y)  # a label the model never saw
        classes = CLASSES
    idx = np.random.default_rng(0).integers(0, n, size=(resamples, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in idx])
    fast = metrics.resampled(metric, counts, y, pred, proba, classes)
    slow = [
        metrics.score(metric, y[i], pred[i], proba[i] if proba is not None else None, classes)
        for i in idx
    ]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-10)


def test_resampled_marks_undefined_resamples_as_nan():
    y = np.array(["rain", "sun", "sun", "sun"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    counts = np.array([[1, 1, 1, 1], [0, 2, 1, 1]])  # the second resample has no "rain"
    out = metrics.resampled("roc_auc", counts, y, y, proba, ["rain", "sun"])
    assert out[0] == 1.0
    assert math.isnan(out[1])
