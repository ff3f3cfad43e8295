"""Live analysis on synthetic prediction-log frames (issue 9, item 4).

Frames are built like the prediction log (one row per served row, with its feedback label)
from a seeded generator; each test names the verdict it expects and the reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.core.config import RolloutConfig
from retrain.rollout import analysis, judges
from tests.rollout_frames import CLASSES, served

CFG = RolloutConfig.model_validate(
    {
        "strategy": "canary",
        "steps": [10, 50],
        "analysis": {"min_requests": 100, "min_labels": 80, "n_resamples": 400},
        "challenger": {"min_labels": 150, "window": "1h", "min_delta": 0.02},
    }
)


def canary(frame: pd.DataFrame, weight: int = 10):
    return judges.judge_canary(
        analysis.check_frame(frame),
        production="1.0.0",
        canary="1.1.0",
        weight=weight,
        cfg=CFG,
        metric="accuracy",
        task="classification",
    )


def test_too_little_traffic_holds_and_says_how_much_is_missing():
    frame = pd.concat(
        [
            served("1.0.0", "production", 500, accuracy=0.8),
            served("1.1.0", "canary", 40, accuracy=0.8),
        ]
    )
    verdict, _ = canary(frame)
    assert verdict.action == "hold"
    assert verdict.missing == {"requests": 60, "labels": 40}
    assert "60 more requests" in verdict.summary


def test_healthy_canary_advances_to_the_next_step_then_promotes():
    frame = pd.concat(
        [
            served("1.0.0", "production", 1500, accuracy=0.8, seed=1),
            served("1.1.0", "canary", 600, accuracy=0.82, seed=2),
        ]
    )
    verdict, stats = canary(frame, weight=10)
    assert verdict.action == "advance", verdict.summary
    assert verdict.next_weight == 50
    assert {c.name: c.verdict for c in verdict.checks}["metric"] == "pass"
    can = stats[1]
    assert can.lower is not None and can.lower < can.delta < can.upper
    last, _ = canary(frame, weight=50)
    assert last.action == "promote"


def test_canary_failing_on_a_fifth_of_rows_rolls_back_naming_the_error_rate():
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8),
            served("1.1.0", "canary", 300, accuracy=0.8, error_rate=0.2, seed=3),
        ]
    )
    verdict, stats = canary(frame)
    assert verdict.action == "rollback"
    assert "error_rate" in verdict.summary
    assert stats[1].error_rate == pytest.approx(0.2, abs=0.06)


def test_silently_wrong_canary_rolls_back_on_the_live_metric():
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8),
            served("1.1.0", "canary", 300, accuracy=0.34, seed=4),
        ]
    )
    verdict, _ = canary(frame)
    assert verdict.action == "rollback"
    assert [c.name for c in verdict.checks if c.verdict == "fail"] == ["metric"]


def test_slow_canary_rolls_back_on_the_latency_ratio():
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8, latency_ms=5),
            served("1.1.0", "canary", 300, accuracy=0.8, latency_ms=20, seed=5),
        ]
    )
    verdict, _ = canary(frame)
    assert verdict.action == "rollback"
    assert "latency" in verdict.summary


def test_an_interval_straddling_the_threshold_holds_for_more_labels():
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8),
            served("1.1.0", "canary", 120, accuracy=0.76, labelled=0.7, seed=6),
        ]
    )
    verdict, _ = canary(frame)
    checks = {c.name: c.verdict for c in verdict.checks}
    assert checks["metric"] == "wait", verdict.summary
    assert verdict.action == "hold"


def shadow_frame(shadow_accuracy: float, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    y = rng.choice(CLASSES, size=n)
    ids = [f"r{i}" for i in range(n)]
    return pd.concat(
        [
            served("1.0.0", "production", n, accuracy=0.75, ids=ids, labels=y, seed=12),
            served("1.1.0", "shadow", n, accuracy=shadow_accuracy, ids=ids, labels=y, seed=13),
        ]
    )


def shadow(frame: pd.DataFrame, running: float = 7200.0):
    return judges.judge_shadow(
        analysis.check_frame(frame),
        production="1.0.0",
        shadow="1.1.0",
        cfg=CFG,
        metric="accuracy",
        task="classification",
        running_seconds=running,
        n_resamples=400,
    )


def test_better_shadow_is_promoted_with_paired_statistics():
    verdict, st = shadow(shadow_frame(0.9))
    assert verdict.action == "promote_challenger", verdict.summary
    assert st.delta > 0.1 and st.lower > 0
    assert st.agreement is not None and 0 < st.agreement < 1


def test_worse_or_equal_shadow_keeps_production():
    assert shadow(shadow_frame(0.6))[0].action == "keep"
    same = shadow_frame(0.9)
    prod = same["role"] == "production"
    same.loc[~prod, "prediction"] = same.loc[prod, "prediction"].to_numpy()
    verdict, st = shadow(same)
    assert verdict.action == "keep" and st.delta == 0 and st.agreement == 1


def test_shadow_waits_for_its_window():
    verdict, _ = shadow(shadow_frame(0.9), running=600)
    assert verdict.action == "hold"


def health(frame: pd.DataFrame, *, in_window: bool = True, floor: float | None = 0.7):
    return judges.judge_health(
        analysis.check_frame(frame),
        production="1.0.0",
        cfg=CFG,
        metric="accuracy",
        task="classification",
        in_window=in_window,
        floor=floor,
    )


def test_directly_promoted_version_breaking_health_in_its_window_rolls_back():
    bad = served("1.0.0", "production", 300, accuracy=0.8, error_rate=0.2)
    assert health(bad)[0].action == "rollback"
    constant = served("1.0.0", "production", 300, accuracy=0.33)
    verdict, _ = health(constant)
    assert verdict.action == "rollback" and "metric" in verdict.summary
    good = served("1.0.0", "production", 300, accuracy=0.8)
    assert health(good)[0].action == "healthy"
    assert health(bad, in_window=False)[0].action == "none"


def test_frame_missing_a_log_column_is_refused_by_name():
    frame = served("1.0.0", "production", 5, accuracy=0.8).drop(columns=["latency_ms"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['latency_ms'\]"):
        analysis.check_frame(frame)


def test_table_lists_each_version_and_role_production_first():
    frame = analysis.check_frame(shadow_frame(0.9))
    rows = analysis.table(frame, "accuracy", "classification")
    assert [(s.version, s.role) for s in rows] == [("1.0.0", "production"), ("1.1.0", "shadow")]
    assert rows[0].requests == 600 and rows[0].labels == 600


# --------------------------------------------------------------------------- per request
def one_request(frame: pd.DataFrame, request_id: str, *, latency_ms: float) -> pd.DataFrame:
    """Every row of ``frame`` as the rows of one request, as the server logs them: one
    request id, one time, and the whole request's latency on each row."""
    out = frame.copy()
    out["request_id"] = request_id
    out["at"] = out["at"].iloc[0]
    out["latency_ms"] = latency_ms
    return out


def test_one_huge_slow_request_among_many_normal_ones_does_not_roll_back_a_healthy_canary():
    """A client sends 10,000 rows in one request (2 s, as it should take); 600 other canary
    requests are as quick as production's.  Judged per row, the big request's 10,000 rows
    would be the p95 and roll back a healthy canary; judged per request it is one of 601."""
    huge = one_request(
        served("1.1.0", "canary", 10_000, accuracy=0.82, seed=21), "bulk-1", latency_ms=2_000.0
    )
    frame = pd.concat(
        [
            served("1.0.0", "production", 1500, accuracy=0.8, seed=1),
            served("1.1.0", "canary", 600, accuracy=0.82, seed=2),
            huge,
        ]
    )
    verdict, stats = canary(frame)
    assert verdict.action == "advance", verdict.summary
    can = stats[1]
    assert can.requests == 601 and can.rows == 10_600
    assert can.p95_latency_ms < 20  # the normal requests' p95, not the bulk request's 2 s
    assert {c.name: c.verdict for c in verdict.checks}["latency"] == "pass"


def test_a_canary_slow_on_most_requests_still_rolls_back_on_the_per_request_p95():
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8, latency_ms=5),
            served("1.1.0", "canary", 300, accuracy=0.8, latency_ms=20, seed=5),
            one_request(
                served("1.1.0", "canary", 5_000, accuracy=0.8, seed=22), "bulk", latency_ms=4.0
            ),
        ]
    )
    verdict, _ = canary(frame)
    assert verdict.action == "rollback" and "latency" in verdict.summary


def test_error_rate_is_the_share_of_failed_requests_not_of_rows():
    """Two failed bulk requests of 500 rows each among 400 good one-row requests: 2 of 402
    requests failed (0.5%, within the 1% allowed) although 1,000 of 1,400 rows did."""
    failed = [
        one_request(
            served("1.1.0", "canary", 500, accuracy=0.8, error_rate=1.0, seed=30 + i),
            f"bulk-{i}",
            latency_ms=40.0,
        )
        for i in range(2)
    ]
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8, seed=1),
            served("1.1.0", "canary", 400, accuracy=0.82, seed=2),
            *failed,
        ]
    )
    verdict, stats = canary(frame)
    can = stats[1]
    assert (can.requests, can.errors, can.error_rows) == (402, 2, 1000)
    assert can.error_rate == pytest.approx(2 / 402, abs=1e-6)
    assert {c.name: c.verdict for c in verdict.checks}["error_rate"] == "pass"
    assert verdict.action == "advance", verdict.summary


def test_many_small_failed_requests_roll_back_even_beside_one_big_good_request():
    """20 of 401 requests failed (5%): rolled back, although they are 20 rows of 5,400."""
    frame = pd.concat(
        [
            served("1.0.0", "production", 1000, accuracy=0.8, seed=1),
            served("1.1.0", "canary", 400, accuracy=0.82, error_rate=0.05, seed=7),
            one_request(
                served("1.1.0", "canary", 5_000, accuracy=0.82, seed=23), "bulk", latency_ms=6.0
            ),
        ]
    )
    verdict, stats = canary(frame)
    can = stats[1]
    assert can.requests == 401 and can.errors == can.error_rows
    assert can.error_rate == pytest.approx(can.errors / 401, abs=1e-6) and can.errors >= 10
    assert verdict.action == "rollback" and "error_rate" in verdict.summary
    assert f"{can.errors} of 401 requests" in verdict.summary


def test_health_judges_failed_requests_not_failed_rows():
    good = served("1.0.0", "production", 300, accuracy=0.8)
    bulk_failure = one_request(
        served("1.0.0", "production", 3_000, accuracy=0.8, error_rate=1.0, seed=9),
        "bulk",
        latency_ms=30.0,
    )
    verdict, st = health(pd.concat([good, bulk_failure]))
    assert (st.requests, st.errors, st.error_rows) == (301, 1, 3000)
    assert verdict.action == "healthy", verdict.summary
