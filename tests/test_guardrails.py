"""Guardrails (``gates.yaml: guardrails``): secondary metrics that may not get worse beyond a
limit even when the primary metric improves, the seventh gate."""

from __future__ import annotations

import numpy as np

from retrain.core.config import GatesConfig
from retrain.decide.gates import evaluate_gates
from retrain.report import markdown
from tests.test_gates import CLASSES, inputs, labels, scores, wrong_on

RAILS = GatesConfig.model_validate(
    {"guardrails": {"roc_auc": {"max_drop": 0.02}, "log_loss": {"max_rise": 0.05}}}
)


def _overconfident(pred: np.ndarray, wrong: range) -> np.ndarray:
    """Probabilities of 0.8 on the predicted class, but 0.99 where the prediction is wrong."""
    proba = np.full((len(pred), len(CLASSES)), 0.1)
    proba[np.arange(len(pred)), [CLASSES.index(p) for p in pred]] = 0.8
    for i in wrong:
        proba[i] = 0.005
        proba[i, CLASSES.index(pred[i])] = 0.99
    return proba


def test_a_guardrail_blocks_a_promotion_the_primary_metric_would_allow():
    y = labels(2000)
    better = wrong_on(y, range(300))  # accuracy 0.85 vs production's 0.80
    candidate = scores(better, proba=_overconfident(better, range(300)))
    baseline = scores(wrong_on(y, range(400)))
    report = evaluate_gates(inputs(y, candidate, baseline), RAILS)
    assert report.result("improvement").verdict == "pass"
    rail = report.result("guardrails")
    assert rail.verdict == "fail" and not report.passed
    assert rail.threshold == {"log_loss": -0.05, "roc_auc": -0.02}
    assert rail.value["log_loss"] < -0.05
    assert "log_loss" in rail.detail and "beyond the limit" in rail.detail

    body = markdown.render_pr_body(
        {"model": "m", "version": "1.1.0", "outcome": "gated", "gates": report.to_dict()}
    )
    assert "1 of 8 gates failed: `guardrails`" in body  # named in the verdict
    row = next(line for line in body.splitlines() if line.startswith("| ❌ | `guardrails` |"))
    assert "log_loss ≥ -0.0500" in row and "roc_auc ≥ -0.0200" in row


def test_guardrails_within_their_limits_pass_and_are_skipped_at_bootstrap():
    y = labels(2000)
    candidate = scores(wrong_on(y, range(300)))
    baseline = scores(wrong_on(y, range(400)))
    report = evaluate_gates(inputs(y, candidate, baseline), RAILS)
    assert report.result("guardrails").verdict == "pass" and report.passed
    first = evaluate_gates(inputs(y, candidate, None), RAILS)
    assert first.result("guardrails").verdict == "skip"
