"""Prediction churn, the eighth gate: how many answers change for whoever consumes them.

Predictions are built row by row, so every share, transition count and verdict below is
known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from retrain.core import registry as reg
from retrain.core.config import GatesConfig
from retrain.decide import churn
from retrain.decide.gates import GateInputs, ModelScores, SchemaChange, evaluate_gates
from retrain.report import markdown

CLASSES = ["fog", "rain", "sun"]
FAST = {"p95_ms_single": 2.0, "p95_ms_batch": 20.0}


def _scores(pred: np.ndarray) -> ModelScores:
    return ModelScores(
        y_pred=pred,
        proba=None,
        classes=CLASSES if pred.dtype.kind in "UO" else None,
        latency=dict(FAST),
        size_bytes=1_000,
        train_seconds=1.0,
    )


def _inputs(y, candidate, baseline, task="classification", metric="accuracy") -> GateInputs:
    return GateInputs(
        task=task,
        metric=metric,
        y_true=y,
        subgroups={},
        candidate=_scores(candidate),
        baseline=_scores(baseline) if baseline is not None else None,
        bump_requested=None,
        schema_change=SchemaChange(),
        data_valid=True,
    )


def test_churn_by_hand_on_six_rows():
    production = np.array(["rain", "rain", "sun", "sun", "fog", "sun"])
    candidate = np.array(["rain", "sun", "sun", "rain", "fog", "fog"])
    c = churn.measure(
        "classification",
        production,
        production,
        candidate,
        confidence=0.95,
        n_resamples=200,
        seed=0,
    )
    # rows 1 (rain→sun), 3 (sun→rain) and 5 (sun→fog) flip: 3 of 6
    assert c.value == pytest.approx(0.5) and c.changed == 3 and c.rows == 6
    assert c.transitions == {
        "fog": {"fog": 1},
        "rain": {"rain": 1, "sun": 1},
        "sun": {"fog": 1, "rain": 1, "sun": 1},
    }
    assert c.flips == [("rain", "sun", 1), ("sun", "fog", 1), ("sun", "rain", 1)]


def test_regression_churn_is_the_median_change_over_the_targets_iqr():
    y = np.array([0.0, 10.0, 20.0, 30.0, 40.0])  # IQR = 30 - 10 = 20
    production = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    candidate = production + np.array([0.0, 2.0, 4.0, 6.0, 40.0])  # median |Δ| = 4
    c = churn.measure(
        "regression", y, production, candidate, confidence=0.95, n_resamples=200, seed=0
    )
    assert c.scale == {"name": "iqr", "value": 20.0}
    assert c.value == pytest.approx(4 / 20)
    assert c.changed == 4


def _thirty_percent_churn() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1000 rows: production is wrong on rows 0..199, the candidate on rows 900..999 instead.
    Accuracy 0.80 → 0.90, and 300 of 1000 labels change."""
    rng = np.random.default_rng(3)
    y = rng.choice(CLASSES, 1000)
    nxt = np.array([CLASSES[(CLASSES.index(v) + 1) % 3] for v in y])
    production = y.copy()
    production[:200] = nxt[:200]
    candidate = y.copy()
    candidate[900:] = nxt[900:]
    return y, candidate, production


def test_a_better_candidate_that_churns_30_percent_is_held_at_10_and_passes_at_50():
    y, candidate, production = _thirty_percent_churn()
    inputs = _inputs(y, candidate, production)
    held = evaluate_gates(inputs, GatesConfig.model_validate({"churn": {"max_share": 0.10}}))
    assert held.result("improvement").verdict == "pass"  # it is more accurate…
    assert held.result("churn").verdict == "fail" and not held.passed  # …but churns too much
    assert held.result("churn").value == pytest.approx(0.30)
    assert "300 of 1000 holdout rows change label" in held.result("churn").detail
    assert "above churn.max_share 0.1000 by 0.2000" in held.result("churn").detail
    proposed = evaluate_gates(inputs, GatesConfig.model_validate({"churn": {"max_share": 0.5}}))
    assert proposed.passed and proposed.result("churn").verdict == "pass"


def test_without_a_limit_churn_is_reported_and_does_not_gate():
    y, candidate, production = _thirty_percent_churn()
    report = evaluate_gates(_inputs(y, candidate, production), GatesConfig())
    r = report.result("churn")
    assert r.verdict == "skip" and r.value == pytest.approx(0.30) and report.passed
    assert "reported only (set churn.max_share to gate it)" in r.detail


def test_churns_interval_contains_the_observed_value():
    y, candidate, production = _thirty_percent_churn()
    report = evaluate_gates(_inputs(y, candidate, production), GatesConfig())
    c = report.metrics["churn"]
    assert c["lower"] < c["value"] < c["upper"]
    assert c["n_resamples"] == 1000 and c["seed"] == 0
    # the transition table adds up to the rows, and its off-diagonal cells to the flips
    cells = [(p, q, n) for p, row in c["transitions"].items() for q, n in row.items()]
    assert sum(n for _, _, n in cells) == 1000
    assert sum(n for p, q, n in cells if p != q) == c["changed"] == 300


def test_at_bootstrap_churn_is_skipped():
    y, candidate, _ = _thirty_percent_churn()
    report = evaluate_gates(_inputs(y, candidate, None), GatesConfig())
    assert report.result("churn").verdict == "skip" and report.metrics["churn"] is None


def test_the_pr_body_shows_churn_and_the_transition_table():
    y, candidate, production = _thirty_percent_churn()
    report = evaluate_gates(
        _inputs(y, candidate, production), GatesConfig.model_validate({"churn": {"max_share": 0.5}})
    )
    body = markdown.render_pr_body(
        {"model": "m", "version": "1.1.0", "base_version": "1.0.0", "gates": report.to_dict()}
    )
    assert "### Prediction churn" in body
    assert "**300 of 1000** holdout rows (30.0%)" in body
    assert "| production ↓ · candidate → | fog | rain | sun |" in body


def test_churn_config_refuses_a_share_above_one():
    with pytest.raises(ValueError, match="max_share"):
        GatesConfig.model_validate({"churn": {"max_share": 1.5}})


def test_registry_entries_with_and_without_churn_read_back_unchanged():
    base = {
        "version": "1.0.0",
        "created": "2026-01-01T00:00:00Z",
        "bump": "initial",
        "schema": {"features": {"x": "numeric"}},
        "artifact": {"path": "artifacts/model.skops", "md5": "0" * 32, "sha256": "0" * 64},
    }
    old = reg.RegistryEntry.model_validate(base)  # written before churn existed
    assert old.churn is None and "churn" not in old.to_dict()
    with_churn = dict(
        base,
        version="1.1.0",
        bump="minor",
        churn={
            "kind": "share",
            "value": 0.05,
            "rows": 100,
            "changed": 5,
            "transitions": {"rain": {"rain": 40, "sun": 5}},
        },
    )
    entry = reg.RegistryEntry.model_validate(with_churn)
    assert entry.churn is not None and entry.churn.changed == 5
    text = yaml.safe_dump(entry.to_dict(), sort_keys=False)
    assert yaml.safe_load(text)["churn"] == with_churn["churn"]
    assert list(entry.to_dict())[-1] == "churn"
