"""Harmful churn, the eighth gate: rows production got right that the candidate gets wrong.

Predictions are built row by row, so every share, flip count and verdict below is known in
advance.  The two stories of issue 23: a retrain that fixes many of production's mistakes
churns a lot and must pass; a retrain that scores higher while breaking many rows production
had right must be held, and say how many.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from retrain.core import registry as reg
from retrain.core.config import GatesConfig
from retrain.decide import churn
from retrain.decide.gates import GateInputs, ModelScores, SchemaChange, evaluate_gates
from retrain.report import markdown

CLASSES = ["fog", "rain", "sun"]
FAST = {"p95_ms_single": 2.0, "p95_ms_batch": 20.0}
GATED = GatesConfig.model_validate({"churn": {"max_negative_flip_rate": 0.05}})


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


def _wrong(y: np.ndarray, rows) -> np.ndarray:
    """``y`` with the given rows replaced by the next class: wrong there, right elsewhere."""
    out = y.copy()
    for i in rows:
        out[i] = CLASSES[(CLASSES.index(y[i]) + 1) % 3]
    return out


def _truth(n: int = 1000) -> np.ndarray:
    return np.random.default_rng(3).choice(CLASSES, n)


def test_negative_and_positive_flips_by_hand_on_six_rows():
    truth = np.array(["rain", "rain", "sun", "sun", "fog", "sun"])
    production = np.array(["rain", "sun", "sun", "rain", "fog", "fog"])
    candidate = np.array(["rain", "rain", "rain", "fog", "fog", "fog"])
    c = churn.measure(
        "classification", truth, production, candidate, confidence=0.95, n_resamples=200, seed=0
    )
    # row 1: wrong → right (positive); row 2: right → wrong (negative); row 3: wrong → wrong
    # (changed, neither); rows 0, 4, 5 unchanged
    assert (c.negative, c.positive, c.changed, c.rows) == (1, 1, 3, 6)
    assert c.value == pytest.approx(1 / 6) and c.changed_share == pytest.approx(0.5)
    assert c.broken == {"sun": {"rain": 1}}
    assert c.transitions == {
        "fog": {"fog": 2},
        "rain": {"fog": 1, "rain": 1},
        "sun": {"rain": 2},
    }
    assert c.negative_pairs == [("sun", "rain", 1)]


def test_regression_counts_rows_whose_error_grows_beyond_the_tolerance():
    y = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    production = np.array([10.0, 11.0, 12.0, 9.0, 10.0])  # errors 0, 1, 2, 1, 0
    candidate = np.array([10.4, 11.0, 10.0, 6.0, 10.6])  # errors 0.4, 1, 0, 4, 0.6
    c = churn.measure(
        "regression",
        y,
        production,
        candidate,
        confidence=0.95,
        n_resamples=200,
        seed=0,
        tolerance=0.5,
    )
    # error growth: +0.4 (within), 0, -2 (better), +3 (worse), +0.6 (worse)
    assert (c.negative, c.positive, c.changed) == (2, 1, 4)
    assert c.value == pytest.approx(2 / 5) and c.tolerance == 0.5
    strict = churn.measure(
        "regression", y, production, candidate, confidence=0.95, n_resamples=200, seed=0
    )
    assert strict.negative == 3  # at tolerance 0 the +0.4 counts too


def test_a_retrain_that_fixes_many_errors_passes_however_much_it_churns():
    """Issue 23's drifting record: production is stale and wrong on 40% of the rows; the
    candidate fixes 300 of them and breaks 20 rows production had right."""
    y = _truth()
    production = _wrong(y, range(400))
    candidate = _wrong(y, [*range(300, 400), *range(900, 920)])
    report = evaluate_gates(_inputs(y, candidate, production), GATED)
    r = report.result("churn")
    c = report.metrics["churn"]
    assert c["changed"] == 320 and c["changed_share"] == pytest.approx(0.32)  # total churn
    assert (c["negative"], c["positive"]) == (20, 300)
    assert r.verdict == "pass" and r.value == pytest.approx(0.02) and report.passed
    assert "20 of 1000 holdout rows production got right are wrong now" in r.detail
    assert "300 wrong → right" in r.detail
    # the old gate (total churn ≤ 0.10, or the example's 0.35 for a drifting labelling)
    # held exactly this candidate: 32% of the labels change
    assert c["changed_share"] > 0.10


def test_a_more_accurate_candidate_that_breaks_rows_production_had_right_is_held():
    y = _truth()
    production = _wrong(y, range(200))  # accuracy 0.80
    candidate = _wrong(y, range(200, 320))  # accuracy 0.88, but 120 rows newly wrong
    report = evaluate_gates(_inputs(y, candidate, production), GATED)
    assert report.result("improvement").verdict == "pass"  # it is more accurate…
    r = report.result("churn")
    assert r.verdict == "fail" and not report.passed  # …and breaks what worked
    assert r.value == pytest.approx(0.12)
    assert "120 of 1000 holdout rows production got right are wrong now" in r.detail
    assert "above churn.max_negative_flip_rate 0.0500 by 0.0700" in r.detail
    summary = markdown.render_run_summary(
        {"model": "m", "outcome": "gated", "version": "1.1.0", "gates": report.to_dict()}
    )
    assert "❌ `churn`" in summary and "120 of 1000" in summary


def test_a_regression_candidate_that_makes_many_rows_worse_is_held():
    y = np.linspace(0.0, 100.0, 200)
    production = y + 1.0  # every error 1
    candidate = y.copy()
    candidate[:60] += 5.0  # 60 rows: error 5 (worse by 4); the rest: error 0 (better by 1)
    cfg = GatesConfig.model_validate(
        {
            "primary_metric": "rmse",
            "improvement": {"min_delta": 0.0},
            "churn": {"max_worse_share": 0.2, "tolerance": 0.5},
        }
    )
    report = evaluate_gates(
        _inputs(y, candidate, production, task="regression", metric="rmse"), cfg
    )
    r = report.result("churn")
    assert r.verdict == "fail" and r.value == pytest.approx(0.3)
    assert "60 of 200 holdout rows have an absolute error larger by more than 0.5" in r.detail
    assert report.metrics["churn"]["positive"] == 140


def test_without_a_limit_churn_is_reported_and_does_not_gate():
    y = _truth()
    report = evaluate_gates(
        _inputs(y, _wrong(y, range(200, 320)), _wrong(y, range(200))), GatesConfig()
    )
    r = report.result("churn")
    assert r.verdict == "skip" and r.value == pytest.approx(0.12) and report.passed
    assert "reported only (set churn.max_negative_flip_rate to gate it)" in r.detail


def test_the_interval_is_the_improvement_gates_paired_bootstrap():
    y = _truth()
    report = evaluate_gates(_inputs(y, _wrong(y, range(200, 320)), _wrong(y, range(200))), GATED)
    c = report.metrics["churn"]
    assert c["lower"] < c["value"] < c["upper"]
    assert c["n_resamples"] == 1000 and c["seed"] == 0
    # same draws as bootstrap_deltas: resample b is rng.integers(0, n, size=n), in order
    rng = np.random.default_rng(0)
    neg = np.zeros(1000)
    neg[200:320] = 1.0
    first = neg[rng.integers(0, 1000, size=1000)].mean()
    assert churn._resampled_mean(neg, 1, 0)[0] == pytest.approx(first)
    # the transition table adds up to the rows, and its off-diagonal cells to the changes
    cells = [(p, q, n) for p, row in c["transitions"].items() for q, n in row.items()]
    assert sum(n for _, _, n in cells) == 1000
    assert sum(n for p, q, n in cells if p != q) == c["changed"] == 320


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(CLASSES), st.sampled_from(CLASSES), st.sampled_from(CLASSES)),
        min_size=1,
        max_size=60,
    )
)
def test_flips_add_up(rows):
    y, p, c = (np.array(col) for col in zip(*rows, strict=True))
    m = churn.measure("classification", y, p, c, confidence=0.9, n_resamples=100, seed=1)
    assert m.negative == int(((p == y) & (c != y)).sum())
    assert m.positive == int(((p != y) & (c == y)).sum())
    # accuracy moves by exactly the positive minus the negative flips
    assert (c == y).sum() - (p == y).sum() == m.positive - m.negative
    assert m.negative + m.positive <= m.changed <= m.rows
    assert sum(n for _, _, n in m.negative_pairs) == m.negative


def test_at_bootstrap_churn_is_skipped():
    y = _truth()
    report = evaluate_gates(_inputs(y, y.copy(), None), GatesConfig())
    assert report.result("churn").verdict == "skip" and report.metrics["churn"] is None


def test_the_pr_body_shows_the_negative_flips_and_the_transition_table():
    y = _truth()
    production = _wrong(y, range(400))
    candidate = _wrong(y, [*range(300, 400), *range(900, 920)])
    report = evaluate_gates(_inputs(y, candidate, production), GATED)
    body = markdown.render_pr_body(
        {"model": "m", "version": "1.1.0", "base_version": "1.0.0", "gates": report.to_dict()}
    )
    assert "### Prediction churn" in body
    assert "**20 of 1000** holdout rows that production v1.0.0 gets right are wrong" in body
    assert "negative flip rate of 2.0%" in body and "300 rows go the other way" in body
    assert "In all 320 rows (32.0%) change label" in body
    assert "| production ↓ · candidate → | fog | rain | sun |" in body
    assert "| `churn` | 0.0200 (95% interval" in body and "≤ 0.0500" in body


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"max_negative_flip_rate": 1.5}, "max_negative_flip_rate"),
        ({"max_share": 0.35}, "max_share: replaced by churn.max_negative_flip_rate"),
        ({"max_change": 0.1}, "max_change: replaced by churn.max_worse_share"),
        ({"tolerance": -1}, "tolerance"),
    ],
)
def test_churn_config_refuses_impossible_and_replaced_keys(doc, needle):
    with pytest.raises(ValueError, match=needle):
        GatesConfig.model_validate({"churn": doc})


def test_registry_entries_old_and_new_churn_read_back_byte_identical():
    base = {
        "version": "1.0.0",
        "created": "2026-01-01T00:00:00Z",
        "bump": "initial",
        "schema": {"features": {"x": "numeric"}},
        "artifact": {"path": "artifacts/model.skops", "md5": "0" * 32, "sha256": "0" * 64},
    }
    old = reg.RegistryEntry.model_validate(base)  # written before churn existed
    assert old.churn is None and "churn" not in old.to_dict()
    total = {  # written by the total-churn gate before issue 23
        "kind": "share",
        "value": 0.284932,
        "lower": 0.246575,
        "upper": 0.323288,
        "confidence": 0.95,
        "rows": 365,
        "changed": 104,
        "max": 0.35,
        "transitions": {"rain": {"fog": 60, "rain": 51}},
    }
    harm = {
        "kind": "negative_flips",
        "value": 0.019178,
        "lower": 0.00822,
        "upper": 0.032877,
        "confidence": 0.95,
        "rows": 365,
        "changed": 104,
        "negative": 7,
        "positive": 63,
        "max": 0.05,
        "transitions": {"rain": {"fog": 60, "rain": 51}},
    }
    for i, record in enumerate((total, harm)):
        doc = dict(base, version=f"1.{i + 1}.0", bump="minor", churn=record)
        text = yaml.safe_dump(doc, sort_keys=False)
        entry = reg.RegistryEntry.model_validate(yaml.safe_load(text))
        assert yaml.safe_dump(entry.to_dict(), sort_keys=False) == text
        assert list(entry.to_dict())[-1] == "churn"
