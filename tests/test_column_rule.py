"""One column rule for ``retrain predict`` and the server (issue 22, item 5).

A client used to be unable to send one file to both: ``predict`` required the time column
(and ignored any other), the server answered 422 to the time column and the target.  Now
both ignore the columns the dataset declares as not features (target, time column,
``ignore_columns``) and refuse any other unknown column, with the same words.  The rows are
the bundled example's own holdout, read by ``predict``'s reader and by the server's body
check (``retrain.serve.inputs.to_columns``, what ``/invocations`` runs before the model).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from retrain import example
from retrain.core.config import load_config
from retrain.core.errors import DataError
from retrain.pipeline import predict
from retrain.serve import inputs
from tests.conftest import PROJECT

CFG = load_config(PROJECT).dataset


def _schema() -> inputs.InputSchema:
    """The server's schema of a model trained on the dataset's features."""
    feats = tuple(
        inputs.Feature(f.name, f.type == "numeric", f.min, f.max, f.allow_missing)
        for f in CFG.features
    )
    return inputs.InputSchema(feats, predict.not_features(CFG))


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("data")
    example.materialise(root)
    return pd.read_csv(root / "data" / "holdout.csv").head(5)


def _both(frame: pd.DataFrame, tmp_path: Path):
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    records = frame.to_dict(orient="records")
    return path, records


def test_the_same_file_with_time_column_and_target_goes_to_predict_and_to_the_server(
    holdout, tmp_path
):
    assert {"date", "weather"} <= set(holdout.columns)
    path, records = _both(holdout, tmp_path)
    X, ignored = predict.read_inputs(CFG, path)
    assert list(X.columns) == CFG.feature_names and len(X) == 5
    assert ignored == ["date", "weather"]
    columns, n = inputs.to_columns(records, _schema(), "dataframe_records", 100)
    assert n == 5 and list(columns) == CFG.feature_names
    assert columns["wind"] == list(X["wind"])


def test_predict_no_longer_needs_the_time_column(holdout, tmp_path):
    path, records = _both(holdout[CFG.feature_names], tmp_path)
    X, ignored = predict.read_inputs(CFG, path)
    assert len(X) == 5 and ignored == []
    assert inputs.to_columns(records, _schema(), "inputs", 100)[1] == 5


def test_an_unknown_column_is_refused_by_both_in_the_same_words(holdout, tmp_path):
    path, records = _both(holdout.assign(station="KSEA"), tmp_path)
    with pytest.raises(DataError) as err:
        predict.read_inputs(CFG, path)
    with pytest.raises(inputs.RequestError) as req:
        inputs.to_columns(records, _schema(), "dataframe_records", 100)
    assert req.value.status == 422 and req.value.field == "dataframe_records.0.station"
    assert str(err.value) == f"{path}: {req.value.message}"
    assert "unexpected column(s) ['station']" in req.value.message
    assert "['date', 'weather'] (ignored)" in req.value.message


def test_a_missing_feature_is_refused_by_both(holdout, tmp_path):
    path, records = _both(holdout.drop(columns=["wind"]), tmp_path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['wind'\]"):
        predict.read_inputs(CFG, path)
    with pytest.raises(inputs.RequestError, match=r"missing column\(s\) \['wind'\]"):
        inputs.to_columns(records, _schema(), "dataframe_records", 100)
