"""The server predicts, and the latency gate times, with native thread pools limited alike.

A model that records how many OpenMP threads its calling thread may use (what scikit-learn's
OpenMP estimators ask before each predict) is called through the server's batcher and
through the latency measurement, with ``serve.yaml: threads`` at 1 and unset.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest
import threadpoolctl

from retrain.core.config import GatesConfig, ServeConfig
from retrain.core.errors import ConfigError
from retrain.pipeline import latency
from retrain.pipeline.predict import predict_rows
from retrain.serve.batching import Batcher
from retrain.serve.holder import ServedModel
from retrain.serve.inputs import Feature, InputSchema


def openmp_threads() -> int:
    """What ``omp_get_max_threads`` answers on the calling thread."""
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime, whatever ran before)

    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
    assert info, "scikit-learn's OpenMP runtime is loaded"
    return int(info[0]["num_threads"])


class ThreadsSeen:
    """A classifier that notes the OpenMP thread count of each call."""

    classes_ = np.array(["no", "yes"])

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def predict_proba(self, X: Any) -> np.ndarray:
        self.seen.add(openmp_threads())
        return np.tile([0.25, 0.75], (len(X), 1))

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def served(model: Any) -> ServedModel:
    return ServedModel(
        model=model,
        name="m",
        version="1.0.0",
        sha256="0" * 64,
        registry_commit=None,
        schema=InputSchema((Feature("a", True), Feature("b", True))),
        task="classification",
        loaded_at="2026-01-01T00:00:00Z",
    )


async def _through_batcher(model: ThreadsSeen, threads: int | None) -> list[Any]:
    batcher = Batcher(max_rows=64, max_wait=0.0, threads=threads)
    batcher.start()
    try:
        out = await asyncio.gather(
            *(batcher.predict(served(model), {"a": [1.0], "b": [2.0]}, 1) for _ in range(5))
        )
    finally:
        await batcher.stop()
    return [p.predictions for p in out]


def test_the_server_predicts_with_the_native_threads_serve_yaml_allows():
    default = openmp_threads()
    limited = ThreadsSeen()
    assert asyncio.run(_through_batcher(limited, 1)) == [["yes"]] * 5
    assert limited.seen == {1}
    unlimited = ThreadsSeen()
    asyncio.run(_through_batcher(unlimited, None))
    assert unlimited.seen == {default}
    assert openmp_threads() == default, "the limit is undone after each call"


def test_the_latency_gate_times_single_rows_and_batches_under_the_same_limit():
    X = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0)})
    cfg = GatesConfig.Latency(repeats=5, batch_size=8, batch_repeats=5, rounds=1)
    model = ThreadsSeen()
    latency.measure_latency(model, X, cfg)  # the gate's default is the server's: 1 thread
    assert model.seen == {1}
    model = ThreadsSeen()
    latency.measure_latency(model, X, cfg, threads=None)
    assert model.seen == {openmp_threads()}


def test_predict_rows_limits_only_when_asked():
    model = ThreadsSeen()
    y, proba, classes = predict_rows(model, pd.DataFrame({"a": [1.0]}), "classification", threads=1)
    assert y.tolist() == ["yes"] and classes == ["no", "yes"] and model.seen == {1}


def test_serve_yaml_threads_defaults_to_one_and_refuses_zero(tmp_path):
    from retrain.core.config import load_serve_config

    assert ServeConfig().threads == 1
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "serve.yaml").write_text("threads: null\n")
    assert load_serve_config(tmp_path).threads is None
    (tmp_path / "configs" / "serve.yaml").write_text("threads: 0\n")
    with pytest.raises(ConfigError, match=r"configs/serve.yaml: threads"):
        load_serve_config(tmp_path)
