"""A retrain measures each thing once (issue 11, item 2), with the same results.

- Latency: inside ``latency.alongside`` (what ``retrain run`` wraps its in-process stages
  in), the evaluate stage's measurement of the candidate is interleaved with production and
  the pair is kept for the gates, which take it instead of timing the same models again.
- Models: inside ``artifacts.shared_loads`` a verified artifact is deserialised once per
  sha256, and the file's sha256 is still checked on every load.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from retrain.core.config import GatesConfig
from retrain.core.errors import ArtifactError
from retrain.pipeline import artifacts, latency

CFG = GatesConfig.Latency(repeats=5, batch_size=4, batch_repeats=5, rounds=2)


class Recorder:
    """Stands in for an estimator: records the columns it was asked about and sleeps."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self.columns: list[list[str]] = []

    def predict(self, X):
        self.columns.append(list(X.columns))
        time.sleep(self.seconds)
        return np.zeros(len(X))


def holdout() -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0), "old": np.arange(20.0)})


def test_alone_the_candidate_is_measured_and_no_pair_is_kept():
    cand = Recorder()
    out = latency.measure_candidate(cand, holdout(), ["a", "b"], CFG, "sha-alone")
    assert set(out) == {"p95_ms_single", "p95_ms_batch"}
    assert latency.measured_pair("sha-alone", "1.0.0") is None


def test_beside_production_both_are_measured_interleaved_and_the_gates_take_the_pair_once():
    cand, prod = Recorder(0.001), Recorder(0.003)
    with latency.alongside("1.0.0", prod, lambda h: h[["a", "old"]]):
        assert latency.alongside_version() == "1.0.0"
        out = latency.measure_candidate(cand, holdout(), ["a", "b"], CFG, "sha-c")
    assert latency.alongside_version() is None
    # each model was given its own columns, and both as many calls (taking turns)
    assert set(map(tuple, cand.columns)) == {("a", "b")}
    assert set(map(tuple, prod.columns)) == {("a", "old")}
    assert len(cand.columns) == len(prod.columns)
    pair = latency.measured_pair("sha-c", "1.0.0")
    assert pair is not None and pair["candidate"] == out
    assert pair["production"]["p95_ms_single"] > out["p95_ms_single"]  # 3 ms vs 1 ms sleeps
    assert latency.measured_pair("sha-c", "1.0.0") is None  # taken once
    # a pair measured beside another production version is not the one the gates need
    with latency.alongside("1.0.0", prod, lambda h: h[["a", "old"]]):
        latency.measure_candidate(cand, holdout(), ["a", "b"], CFG, "sha-d")
    assert latency.measured_pair("sha-d", "1.1.0") is None


@pytest.fixture()
def saved(tmp_path):
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    model = DecisionTreeClassifier(random_state=0).fit(X, [0, 1, 0, 1])
    path = tmp_path / "model.skops"
    ref = artifacts.save_model(model, path)
    return path, ref["sha256"]


def test_shared_loads_deserialise_once_per_sha256_and_only_within(saved):
    path, sha = saved
    assert artifacts.load_verified(path, sha) is not artifacts.load_verified(path, sha)
    with artifacts.shared_loads():
        first = artifacts.load_verified(path, sha)
        assert artifacts.load_verified(path, sha) is first
        with artifacts.shared_loads():  # nested: the same store
            assert artifacts.load_verified(path, sha) is first
    assert artifacts.load_verified(path, sha) is not first


def test_a_shared_load_still_checks_the_file_against_its_sha256(saved):
    path, sha = saved
    with artifacts.shared_loads():
        artifacts.load_verified(path, sha)
        path.write_bytes(path.read_bytes() + b"tampered")
        with pytest.raises(ArtifactError, match="sha256 mismatch"):
            artifacts.load_verified(path, sha)
