"""Promotion gates on synthetic holdouts whose answers are known in advance.

Predictions are built row by row ("the baseline is wrong on rows 0..399, the candidate on
rows 0..299"), so every accuracy, delta and subgroup change below is exact.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain.core.config import GatesConfig, load_model
from retrain.core.errors import ConfigError
from retrain.decide import comparative, gates
from retrain.decide.gates import (
    BOOTSTRAP_SKIP,
    GateInputs,
    ModelScores,
    SchemaChange,
    evaluate_gates,
)
from retrain.pipeline import metrics
from retrain.pipeline.latency import measure_latency

CLASSES = ["fog", "rain", "sun"]
FAST = {"p95_ms_single": 2.0, "p95_ms_batch": 20.0}
GATE_ORDER = [
    "data_valid",
    "schema_bump",
    "improvement",
    "subgroups",
    "latency",
    "cost",
    "guardrails",
    "churn",
]


def labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(CLASSES, n)


def wrong_on(y: np.ndarray, rows) -> np.ndarray:
    """Predictions equal to ``y`` except on ``rows``, where they name the next class."""
    pred = y.copy()
    for i in rows:
        pred[i] = CLASSES[(CLASSES.index(y[i]) + 1) % len(CLASSES)]
    return pred


def scores(pred, *, proba=None, latency=None, size=2_000_000, train_seconds=5.0, classes=None):
    if proba is None and pred.dtype.kind in "UO":
        proba = np.full((len(pred), len(CLASSES)), 0.1)
        proba[np.arange(len(pred)), [CLASSES.index(p) for p in pred]] = 0.8
    return ModelScores(
        y_pred=pred,
        proba=proba,
        classes=classes if classes is not None else (CLASSES if pred.dtype.kind in "UO" else None),
        latency=dict(FAST if latency is None else latency),
        size_bytes=size,
        train_seconds=train_seconds,
    )


def inputs(
    y,
    candidate,
    baseline,
    *,
    subgroups=None,
    task="classification",
    metric="accuracy",
    bump=None,
    change=None,
    data_valid=True,
) -> GateInputs:
    return GateInputs(
        task=task,
        metric=metric,
        y_true=y,
        subgroups=subgroups if subgroups is not None else {},
        candidate=candidate,
        baseline=baseline,
        bump_requested=bump,
        schema_change=change or SchemaChange(),
        data_valid=data_valid,
        data_detail="3 batch files checked" if data_valid else "data/batches/b3.csv: NaN in wind",
    )


def verdicts(report) -> dict[str, str]:
    return {r.name: r.verdict for r in report.results}


CFG = GatesConfig()


# --------------------------------------------------------------------------- improvement
def test_a_clear_improvement_passes_every_gate_as_a_minor_bump():
    y = labels(2000)
    report = evaluate_gates(
        inputs(y, scores(wrong_on(y, range(300))), scores(wrong_on(y, range(400)))), CFG
    )
    assert [r.name for r in report.results] == GATE_ORDER
    assert report.passed and report.failed == []
    assert report.bump == "minor"
    imp = report.result("improvement")
    assert imp.verdict == "pass"
    assert imp.value == pytest.approx(0.05)
    assert imp.threshold == 0.01
    boot = report.metrics["bootstrap"]
    assert boot["delta"] == pytest.approx(0.05)
    assert 0 < boot["lower"] < 0.05 < boot["upper"]
    assert (boot["n_resamples"], boot["seed"], boot["confidence"]) == (1000, 0, 0.95)
    assert report.metrics["candidate"]["accuracy"] == 0.85
    assert report.metrics["baseline"]["accuracy"] == 0.8
    assert report.metrics["delta"]["accuracy"] == pytest.approx(0.05)


def test_an_improvement_smaller_than_min_delta_fails_and_says_by_how_much():
    y = labels(2000)
    report = evaluate_gates(
        inputs(y, scores(wrong_on(y, range(390))), scores(wrong_on(y, range(400)))), CFG
    )
    imp = report.result("improvement")
    assert not report.passed
    assert report.failed == [imp]
    assert imp.value == pytest.approx(0.005)
    assert "gain is below min_delta 0.0100 by 0.0050" in imp.detail
    # the gain is real (the candidate is right wherever the baseline is), just too small
    assert report.metrics["bootstrap"]["lower"] > 0


def test_a_gain_above_min_delta_that_may_be_noise_fails():
    y = labels(200)
    base = wrong_on(y, range(0, 40))  # 40 wrong
    cand = wrong_on(y, range(20, 56))  # 36 wrong: +0.02, but 36 discordant rows of 200
    report = evaluate_gates(inputs(y, scores(cand), scores(base)), CFG)
    imp = report.result("improvement")
    assert imp.value == pytest.approx(0.02)
    assert imp.verdict == "fail"
    assert "may be noise" in imp.detail
    assert "below min_delta" not in imp.detail
    assert report.metrics["bootstrap"]["lower"] <= 0


def test_a_gain_of_exactly_min_delta_passes_despite_float_rounding():
    y = labels(1000)
    cand, base = wrong_on(y, range(430)), wrong_on(y, range(440))  # 0.57 - 0.56 < 0.01 in floats
    assert 0.57 - 0.56 < 0.01
    report = evaluate_gates(inputs(y, scores(cand), scores(base)), CFG)
    assert report.result("improvement").verdict == "pass"


def test_for_a_loss_metric_a_lower_value_is_a_positive_gain():
    y = labels(2000)
    report = evaluate_gates(
        inputs(
            y, scores(wrong_on(y, range(300))), scores(wrong_on(y, range(400))), metric="log_loss"
        ),
        GatesConfig(primary_metric="log_loss"),
    )
    assert report.metrics["candidate"]["log_loss"] < report.metrics["baseline"]["log_loss"]
    assert report.result("improvement").value > 0.01
    assert report.metrics["delta"]["log_loss"] < 0  # the raw diff keeps its sign
    assert report.passed


# --------------------------------------------------------------------------- bootstrap
def _naive_lower(metric, y, cand, base, n_resamples, seed, confidence):
    rng = np.random.default_rng(seed)
    sign = 1 if metrics.greater_is_better(metric) else -1
    deltas = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(y), size=len(y))
        c = metrics.score(
            metric,
            y[i],
            cand.y_pred[i],
            None if cand.proba is None else cand.proba[i],
            cand.classes,
        )
        b = metrics.score(
            metric,
            y[i],
            base.y_pred[i],
            None if base.proba is None else base.proba[i],
            base.classes,
        )
        deltas.append(sign * (c - b))
    return float(np.percentile(deltas, 100 * (1 - confidence)))


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "roc_auc", "rmse"])
def test_bootstrap_lower_bound_agrees_with_a_naive_loop(metric):
    n = 300
    if metric == "rmse":
        rng = np.random.default_rng(1)
        y = rng.normal(20, 5, n)
        cand, base = scores(y + rng.normal(0, 1, n)), scores(y + rng.normal(0, 1.3, n))
        task = "regression"
    else:
        y = labels(n, seed=1)
        rng = np.random.default_rng(2)
        cand = scores(wrong_on(y, range(60)), proba=rng.dirichlet(np.ones(3), n))
        base = scores(wrong_on(y, range(30, 100)), proba=rng.dirichlet(np.ones(3), n))
        task = "classification"
    cfg = GatesConfig(
        primary_metric=metric, improvement={"n_resamples": 100, "seed": 7, "confidence": 0.9}
    )
    report = evaluate_gates(inputs(y, cand, base, task=task, metric=metric), cfg)
    expected = _naive_lower(metric, y, cand, base, 100, 7, 0.9)
    assert report.metrics["bootstrap"]["lower"] == pytest.approx(expected, abs=1e-6)


def test_bootstrap_result_does_not_depend_on_chunking(monkeypatch):
    y = labels(500)
    cand, base = scores(wrong_on(y, range(100))), scores(wrong_on(y, range(50, 160)))
    whole = gates.bootstrap_deltas("accuracy", y, cand, base, n_resamples=300, seed=3)
    monkeypatch.setattr(comparative, "_CELLS_PER_CHUNK", 500 * 7)  # 7 resamples per chunk
    chunked = gates.bootstrap_deltas("accuracy", y, cand, base, n_resamples=300, seed=3)
    np.testing.assert_array_equal(whole, chunked)


def test_the_report_is_deterministic_for_a_seed_and_plain_json():
    y = labels(1000)
    season = np.where(np.arange(1000) < 600, "summer", "winter")

    def run(seed):
        cfg = GatesConfig(improvement={"seed": seed})
        report = evaluate_gates(
            inputs(
                y,
                scores(wrong_on(y, range(150))),
                scores(wrong_on(y, range(100, 300))),
                subgroups={"season": season},
            ),
            cfg,
        )
        return report.to_dict()

    first, again, other = run(0), run(0), run(1)
    text = json.dumps(first, sort_keys=True, allow_nan=False)  # no numpy types, no NaN
    assert text == json.dumps(again, sort_keys=True, allow_nan=False)
    assert json.loads(text) == first
    assert other["metrics"]["bootstrap"]["lower"] != first["metrics"]["bootstrap"]["lower"]


# --------------------------------------------------------------------------- subgroups
def test_an_overall_gain_that_hurts_one_subgroup_beyond_epsilon_fails():
    y = labels(2000)
    season = np.where(np.arange(2000) < 1600, "summer", "winter")
    base = wrong_on(y, range(400))  # all in summer: summer 0.75, winter 1.0
    cand = wrong_on(y, [*range(200), *range(1600, 1640)])  # summer 0.875, winter 0.9
    report = evaluate_gates(
        inputs(y, scores(cand), scores(base), subgroups={"season": season}), CFG
    )
    assert verdicts(report)["improvement"] == "pass"
    sub = report.result("subgroups")
    assert sub.verdict == "fail" and not report.passed
    assert sub.value == pytest.approx(-0.1)
    assert sub.threshold == -0.05
    assert "season=winter -0.1000 (beyond -0.0500 by 0.0500)" in sub.detail
    assert "summer" not in sub.detail
    table = report.metrics["subgroups"]["season"]
    assert table["winter"] == {
        "rows": 400,
        "candidate": 0.9,
        "baseline": 1.0,
        "delta": -0.1,
        "gain": -0.1,
        "judged": True,
        "note": "regression beyond max_regression",
    }
    assert table["summer"]["judged"] and table["summer"]["delta"] == pytest.approx(0.125)


def test_a_subgroup_below_min_rows_is_reported_too_small_not_silently_passed():
    y = labels(2000)
    region = np.where(np.arange(2000) < 1990, "north", "islands")  # islands: 10 rows
    base = wrong_on(y, range(400))
    cand = wrong_on(y, [*range(300), *range(1990, 2000)])  # islands 1.0 -> 0.0
    report = evaluate_gates(
        inputs(y, scores(cand), scores(base), subgroups={"region": region}), CFG
    )
    sub = report.result("subgroups")
    assert sub.verdict == "pass"
    assert "too small to judge (< 30 rows): region=islands (10 rows)" in sub.detail
    islands = report.metrics["subgroups"]["region"]["islands"]
    assert islands == {
        "rows": 10,
        "candidate": 0.0,
        "baseline": 1.0,
        "delta": -1.0,
        "gain": -1.0,
        "judged": False,
        "note": "too small to judge (10 < 30 rows)",
    }


def test_when_no_level_is_large_enough_the_subgroup_gate_is_skipped_not_passed():
    y = labels(100)
    group = np.array([f"g{i % 5}" for i in range(100)])  # five levels of 20 rows
    report = evaluate_gates(
        inputs(
            y,
            scores(wrong_on(y, range(5))),
            scores(wrong_on(y, range(40))),
            subgroups={"group": group},
        ),
        CFG,
    )
    sub = report.result("subgroups")
    assert sub.verdict == "skip"
    assert sub.detail.startswith("no subgroup level has enough rows to judge")
    assert all(not e["judged"] for e in report.metrics["subgroups"]["group"].values())


# --------------------------------------------------------------------------- latency, cost
class SleepyModel:
    """Stands in for an estimator: records what it was asked and sleeps per call."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls: list[list[int]] = []

    def predict(self, X):
        self.calls.append(list(X.index))
        time.sleep(self.seconds)
        return np.zeros(len(X))


def test_latency_is_measured_on_deterministic_rows_one_at_a_time_and_in_batches():
    X = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0)})
    model = SleepyModel(0.002)
    cfg = GatesConfig.Latency(repeats=5, batch_size=8, batch_repeats=5, rounds=2, one_round_below=0)
    out = measure_latency(model, X, cfg)
    assert set(out) == {"p95_ms_single", "p95_ms_batch"}
    # a sleep is latency (I/O inside a model counts); only waiting for a CPU is taken out
    assert out["p95_ms_single"] >= 2.0 and out["p95_ms_batch"] >= 2.0
    singles = model.calls[:11]  # one warm-up call, then the 5 timed rows in each of 2 rounds
    assert singles == [[0]] + [[0], [25], [50], [74], [99]] * 2
    assert model.calls[11:] == [list(range(8))] * 11
    short = SleepyModel(0.0)
    measure_latency(short, X.iloc[:3], cfg)
    assert short.calls[-1] == [0, 1, 2, 0, 1, 2, 0, 1]  # a short holdout is cycled


def test_a_first_round_far_inside_the_budget_is_enough_and_one_near_it_runs_every_round():
    X = pd.DataFrame({"a": np.arange(100.0)})
    far = SleepyModel(0.002)  # 2 ms against budgets of 50 and 500 ms
    cfg = GatesConfig.Latency(repeats=5, batch_size=4, batch_repeats=5, rounds=3)
    measure_latency(far, X, cfg)
    assert len(far.calls) == 2 * (1 + 5)  # per kind: the warm-up, then one round of 5
    near = SleepyModel(0.002)  # 2 ms is more than half a 3 ms single-row budget
    tight = cfg.model_copy(update={"max_p95_ms_single": 3.0})
    measure_latency(near, X, tight)
    assert len(near.calls) == (1 + 3 * 5) + (1 + 5)  # single rows: 3 rounds; batches: 1


def test_a_candidate_slower_than_the_budget_fails_the_latency_gate():
    X = pd.DataFrame({"a": np.arange(50.0)})
    latency = measure_latency(SleepyModel(0.003), X, GatesConfig.Latency(repeats=5))
    y = labels(2000)
    cfg = GatesConfig(latency={"max_p95_ms_single": 1, "max_p95_ms_batch": 500})
    report = evaluate_gates(
        inputs(
            y, scores(wrong_on(y, range(300)), latency=latency), scores(wrong_on(y, range(400)))
        ),
        cfg,
    )
    lat = report.result("latency")
    assert lat.verdict == "fail" and report.failed == [lat]
    assert lat.threshold == {"p95_ms_single": 1.0, "p95_ms_batch": 500.0}
    assert lat.value["p95_ms_single"] >= 3.0
    assert lat.detail.startswith(f"p95_ms_single {lat.value['p95_ms_single']:g} ms > budget 1 ms")
    assert "over by" in lat.detail and "p95_ms_batch" not in lat.detail


def test_unmeasured_latency_fails_rather_than_being_assumed():
    y = labels(500)
    report = evaluate_gates(
        inputs(y, scores(wrong_on(y, range(10)), latency={}), scores(wrong_on(y, range(100)))),
        CFG,
    )
    assert report.result("latency").verdict == "fail"
    assert report.result("latency").detail == "not measured: p95_ms_single, p95_ms_batch"


def test_model_size_and_training_time_are_held_to_the_cost_budget():
    y = labels(500)
    cfg = GatesConfig(cost={"max_model_mb": 50, "max_train_seconds": 600})
    big = evaluate_gates(
        inputs(
            y,
            scores(wrong_on(y, range(10)), size=62_500_000, train_seconds=700.0),
            scores(wrong_on(y, range(100))),
        ),
        cfg,
    ).result("cost")
    assert big.verdict == "fail"
    assert big.value == {"model_mb": 62.5, "train_seconds": 700.0}
    assert big.detail == (
        "model_mb 62.5 MB > budget 50 MB (over by 12.5 MB); "
        "train_seconds 700 s > budget 600 s (over by 100 s)"
    )
    unknown = evaluate_gates(
        inputs(
            y, scores(wrong_on(y, range(10)), train_seconds=None), scores(wrong_on(y, range(100)))
        ),
        cfg,
    ).result("cost")
    assert unknown.verdict == "fail" and unknown.detail == "not measured: train_seconds"


def test_invalid_data_fails_the_data_gate():
    y = labels(500)
    report = evaluate_gates(
        inputs(
            y, scores(wrong_on(y, range(10))), scores(wrong_on(y, range(100))), data_valid=False
        ),
        CFG,
    )
    data = report.result("data_valid")
    assert (data.verdict, data.value, data.detail) == (
        "fail",
        False,
        "data/batches/b3.csv: NaN in wind",
    )
    assert not report.passed


# --------------------------------------------------------------------------- bumps
@pytest.mark.parametrize("requested", [None, "minor", "patch"])
def test_a_changed_schema_forces_major_whatever_was_requested(requested):
    y = labels(2000)
    change = SchemaChange(added=["humidity"], removed=["wind"], classes_added=["hail"])
    report = evaluate_gates(
        inputs(
            y,
            scores(wrong_on(y, range(300))),
            scores(wrong_on(y, range(400))),
            bump=requested,
            change=change,
        ),
        CFG,
    )
    assert report.passed
    assert report.bump == "major"
    gate = report.result("schema_bump")
    assert (gate.verdict, gate.value, gate.threshold) == ("pass", "major", "major")
    assert "columns added [humidity]" in gate.detail
    assert "columns removed [wind]" in gate.detail
    assert "classes added [hail]" in gate.detail
    assert ("(requested" in gate.detail) == (requested is not None)
    # a MAJOR is judged as a retrain that must improve, not by the PATCH allowance
    assert report.result("improvement").threshold == 0.01


def test_a_patch_is_gated_on_no_regression_beyond_epsilon():
    y = labels(2000)
    base = scores(wrong_on(y, range(400)))
    slight = evaluate_gates(inputs(y, scores(wrong_on(y, range(406))), base, bump="patch"), CFG)
    assert slight.passed and slight.bump == "patch"
    imp = slight.result("improvement")
    assert (imp.verdict, imp.threshold) == ("pass", -0.005)
    assert imp.value == pytest.approx(-0.003)
    assert imp.detail.startswith("PATCH: no regression beyond ε")

    worse = evaluate_gates(inputs(y, scores(wrong_on(y, range(420))), base, bump="patch"), CFG)
    imp = worse.result("improvement")
    assert imp.verdict == "fail" and not worse.passed
    assert "regresses beyond the PATCH allowance -0.0050 by 0.0050" in imp.detail
    # without the PATCH request the same tiny change is not an improvement
    as_minor = evaluate_gates(inputs(y, scores(wrong_on(y, range(406))), base), CFG)
    assert as_minor.result("improvement").verdict == "fail"


def test_a_major_bump_may_be_requested_by_hand():
    y = labels(2000)
    report = evaluate_gates(
        inputs(y, scores(wrong_on(y, range(300))), scores(wrong_on(y, range(400))), bump="major"),
        CFG,
    )
    assert report.bump == "major"
    assert report.result("schema_bump").detail == "schema unchanged; MAJOR requested by hand"


def test_bootstrap_without_production_skips_the_comparative_gates():
    y = labels(1000)
    season = np.where(np.arange(1000) < 500, "summer", "winter")
    report = evaluate_gates(
        inputs(
            y,
            scores(wrong_on(y, range(300))),
            None,
            subgroups={"season": season},
            change=SchemaChange(),
        ),
        CFG,
    )
    assert report.bump == "initial"
    assert report.passed
    assert verdicts(report) == {
        "data_valid": "pass",
        "schema_bump": "pass",
        "improvement": "skip",
        "subgroups": "skip",
        "latency": "pass",
        "cost": "pass",
        "guardrails": "skip",
        "churn": "skip",
    }
    for name in ("improvement", "subgroups", "churn"):
        assert report.result(name).detail == BOOTSTRAP_SKIP
    assert report.metrics["baseline"] is None
    assert report.metrics["bootstrap"] is None
    assert report.metrics["delta"] == {}
    winter = report.metrics["subgroups"]["season"]["winter"]
    assert winter["candidate"] == 1.0 and winter["baseline"] is None and not winter["judged"]


# --------------------------------------------------------------------------- regression
@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_regression_candidates_are_judged_end_to_end(metric):
    rng = np.random.default_rng(5)
    n = 1500
    y = rng.normal(15, 6, n)
    site = np.where(np.arange(n) < 1000, "coast", "inland")
    better = scores(y + rng.normal(0, 1.0, n))
    worse = scores(y + rng.normal(0, 2.0, n))
    cfg = GatesConfig(primary_metric=metric)
    good = evaluate_gates(
        inputs(y, better, worse, task="regression", metric=metric, subgroups={"site": site}), cfg
    )
    assert good.passed, [r.detail for r in good.failed]
    assert list(good.metrics["candidate"]) == ["rmse", "mae", "r2"]
    assert good.result("improvement").value > 0.01
    sign = 1 if metric == "r2" else -1
    raw = good.metrics["candidate"][metric] - good.metrics["baseline"][metric]
    assert sign * raw > 0
    assert good.result("subgroups").verdict == "pass"
    bad = evaluate_gates(
        inputs(y, worse, better, task="regression", metric=metric, subgroups={"site": site}), cfg
    )
    assert bad.result("improvement").verdict == "fail"
    assert bad.result("improvement").value < 0
    assert bad.result("subgroups").verdict == "fail"


def test_a_primary_metric_that_does_not_suit_the_task_is_a_config_error():
    y = np.arange(50.0)
    with pytest.raises(ConfigError, match="'accuracy' is not a regression metric"):
        evaluate_gates(inputs(y, scores(y), scores(y), task="regression"), CFG)


# --------------------------------------------------------------------------- config
def _write_gates(tmp_path: Path, text: str) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "gates.yaml").write_text(text)
    return tmp_path


def test_the_bundled_style_of_gates_config_loads(tmp_path):
    root = _write_gates(tmp_path, "primary_metric: f1_macro\nimprovement:\n  min_delta: 0.02\n")
    cfg = load_model(GatesConfig, root, "gates")
    assert cfg.primary_metric == "f1_macro" and cfg.improvement.min_delta == 0.02
    assert cfg.improvement.n_resamples == 1000 and cfg.subgroups.min_rows == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "improvement:\n  min_dleta: 0.01\n",
            "configs/gates.yaml: improvement.min_dleta: unknown key",
        ),
        ("improvement:\n  min_delta: -0.1\n", "configs/gates.yaml: improvement.min_delta: "),
        ("improvement:\n  confidence: 1.0\n", "configs/gates.yaml: improvement.confidence: "),
        ("improvement:\n  n_resamples: 10\n", "configs/gates.yaml: improvement.n_resamples: "),
        ("latency:\n  max_p95_ms_single: 0\n", "configs/gates.yaml: latency.max_p95_ms_single: "),
        ("latency:\n  one_round_below: 1.5\n", "configs/gates.yaml: latency.one_round_below: "),
        ("subgroups:\n  min_rows: 0\n", "configs/gates.yaml: subgroups.min_rows: "),
        ("patch:\n  max_regression: .nan\n", "configs/gates.yaml: patch.max_regression: "),
        (
            "primary_metric: auc\n",
            "configs/gates.yaml: primary_metric: not a known metric; expected one of [accuracy, ",
        ),
    ],
)
def test_a_bad_gates_config_is_a_one_line_config_error(tmp_path, text, message):
    root = _write_gates(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_model(GatesConfig, root, "gates")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_a_negative_min_delta_names_the_value(tmp_path):
    root = _write_gates(tmp_path, "improvement:\n  min_delta: -0.1\n")
    with pytest.raises(ConfigError, match=r"improvement\.min_delta: .*0.*\(got -0\.1\)"):
        load_model(GatesConfig, root, "gates")
