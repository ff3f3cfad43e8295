"""The dynamic batcher with a real scikit-learn model: one bad request must not fail the
requests batched with it (issue #23, item 5), and the queue is bounded (issue #19).

The model is a one-hot encoder that refuses categories it never saw (as a fork's own model
may) before a logistic regression: a request carrying an unseen category makes the shared
model call raise, as the drill's failing model does in production.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from retrain.serve.batching import Batcher, QueueFull
from retrain.serve.holder import ServedModel
from retrain.serve.inputs import Feature, InputSchema


@pytest.fixture(scope="module")
def served() -> ServedModel:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"x": rng.normal(size=200), "season": rng.choice(["winter", "summer"], size=200)}
    )
    y = np.where(frame["x"] > 0, "sun", "rain")
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="error"), ["season"])],
                    remainder="passthrough",
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, y)
    schema = InputSchema((Feature("x", numeric=True), Feature("season", numeric=False)))
    return ServedModel(model, "m", "1.0.0", "0" * 64, None, schema, "classification", "now")


def _cols(x: list[float], season: list[str]) -> dict[str, list]:
    return {"x": x, "season": season}


def test_one_bad_request_fails_alone_and_the_others_in_its_batch_get_their_answers(served):
    batches: list[int] = []

    async def go() -> list:
        batcher = Batcher(512, 0.05, observe_rows=batches.append)
        batcher.start()
        try:
            return await asyncio.gather(
                batcher.predict(served, _cols([1.0, -1.0], ["winter", "summer"]), 2),
                batcher.predict(served, _cols([0.5], ["monsoon"]), 1),  # unseen: the model fails
                batcher.predict(served, _cols([-2.0], ["summer"]), 1),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    first, bad, last = asyncio.run(go())
    assert batches[0] == 4, "the three requests were batched into one model call"
    assert isinstance(bad, ValueError) and "monsoon" in str(bad)
    assert first.predictions == ["sun", "rain"] and last.predictions == ["rain"]
    alone = served.model.predict_proba(
        pd.DataFrame({"x": [1.0, -1.0], "season": ["winter", "summer"]})
    )
    assert np.allclose(first.proba, alone)


def test_a_full_queue_refuses_at_once_instead_of_growing(served):
    async def go() -> None:
        batcher = Batcher(512, 0.0, max_queued_rows=3)
        # Not started: nothing drains the queue, as when the model is busy.
        pending = asyncio.ensure_future(
            batcher.predict(served, _cols([1.0] * 3, ["winter"] * 3), 3)
        )
        await asyncio.sleep(0)
        assert batcher.queued_rows == 3
        with pytest.raises(QueueFull, match="max_queued_rows 3"):
            await batcher.predict(served, _cols([1.0], ["winter"]), 1)
        batcher.start()
        assert (await pending).predictions == ["sun"] * 3
        assert batcher.queued_rows == 0
        await batcher.stop()

    asyncio.run(go())
