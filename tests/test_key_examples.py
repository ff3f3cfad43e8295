"""Key examples: rows the team cares about, shown in the PR and held as must-pass.

Two real scikit-learn pipelines that look at precipitation only: production says "sun" on a
dry day, the candidate says "fog"; both say "rain" when it rains.  So which key example
changes, and which expected label breaks, is known in advance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from retrain.core.config import DatasetConfig, GatesConfig, load_model
from retrain.core.errors import DataError
from retrain.decide import key_examples
from retrain.decide.gates import GateInputs, ModelScores, SchemaChange, evaluate_gates
from retrain.report import markdown
from tests.conftest import PROJECT

HEADER = "precipitation,temp_max,temp_min,wind,season,expected,note\n"
ROWS = (
    "0.0,25.0,12.0,2.0,summer,sun,dry day\n"  # line 2: production sun, candidate fog
    "10.0,9.0,5.0,5.0,autumn,rain,storm\n"  # line 3: both rain
    "0.0,8.0,1.0,1.0,winter,,cold and dry\n"  # line 4: changes, nothing expected
)


@pytest.fixture(scope="module")
def ds() -> DatasetConfig:
    return load_model(DatasetConfig, PROJECT, "dataset")


def _model(dry_label: str) -> Pipeline:
    X = pd.DataFrame(
        {
            "precipitation": [0.0, 0.0, 5.0, 12.0],
            "temp_max": 10.0,
            "temp_min": 5.0,
            "wind": 3.0,
            "season": "winter",
        }
    )
    y = [dry_label, dry_label, "rain", "rain"]
    cols = ColumnTransformer([("p", "passthrough", ["precipitation"])])
    return Pipeline([("cols", cols), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X, y)


def _write(root: Path, text: str) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "key_examples.csv").write_text(text)


def _report(tmp_path: Path, ds: DatasetConfig) -> key_examples.KeyExampleReport:
    _write(tmp_path, HEADER + ROWS)
    keys = key_examples.load(tmp_path, ds)
    assert keys is not None
    production, candidate = _model("sun"), _model("fog")
    return key_examples.evaluate(keys, "classification", candidate, keys, production, keys)


def test_a_missing_file_means_no_key_examples(tmp_path: Path, ds):
    assert key_examples.load(tmp_path, ds) is None


def test_a_changed_prediction_is_marked_and_a_broken_expected_row_fails_naming_it(
    tmp_path: Path, ds
):
    rep = _report(tmp_path, ds)
    by_row = {r.row: r for r in rep.rows}
    assert (by_row[2].production, by_row[2].candidate, by_row[2].changed) == ("sun", "fog", True)
    assert by_row[3].changed is False and by_row[3].ok is True
    assert by_row[4].changed is True and by_row[4].ok is None
    assert by_row[2].candidate_proba == 1.0
    verdict, right, detail = rep.verdict()
    assert (verdict, right) == ("fail", 1)
    assert "row 2 (dry day): expected sun, candidate fog (production sun)" in detail

    y = np.array(["rain", "sun"])
    scores = ModelScores(
        y_pred=y,
        proba=None,
        classes=["rain", "sun"],
        latency={"p95_ms_single": 1.0, "p95_ms_batch": 1.0},
        size_bytes=1,
        train_seconds=1.0,
    )
    report = evaluate_gates(
        GateInputs(
            task="classification",
            metric="accuracy",
            y_true=y,
            subgroups={},
            candidate=scores,
            baseline=None,
            bump_requested=None,
            schema_change=SchemaChange(),
            data_valid=True,
            key_examples=rep,
        ),
        GatesConfig(),
    )
    gate = report.result("key_examples")
    assert gate.verdict == "fail" and not report.passed and "row 2 (dry day)" in gate.detail
    body = markdown.render_pr_body(
        {"model": "m", "version": "1.1.0", "base_version": "1.0.0", "gates": report.to_dict()}
    )
    assert "| 2 | dry day | sun | sun (1.00) | fog (1.00) | ❌ wrong |" in body
    assert "| 4 | cold and dry | – | sun (1.00) | fog (1.00) | 🔄 changed |" in body
    assert "| 3 | storm | rain | rain (1.00) | rain (1.00) | ✅ |" in body


def test_all_expected_rows_right_passes(tmp_path: Path, ds):
    _write(tmp_path, HEADER + "10.0,9.0,5.0,5.0,autumn,rain,storm\n")
    rep = key_examples.for_models(tmp_path, ds, None, _model("fog"), _model("sun"), None)
    assert rep is not None and rep.verdict()[0] == "pass"


MALFORMED = {
    "unknown column": (
        HEADER.strip() + ",station\n" + "0.0,25.0,12.0,2.0,summer,sun,dry,KSEA\n",
        ["unknown column", "station"],
    ),
    "missing feature column": (
        HEADER.replace("wind,", "") + "0.0,25.0,12.0,summer,sun,dry\n",
        ["missing feature column", "wind"],
    ),
    "bad value": (
        HEADER + ROWS + "0.0,hot,12.0,2.0,summer,,\n",
        ["row 5", "'temp_max'", "'hot'"],
    ),
    "out of range": (HEADER + "0.0,25.0,12.0,-3.0,summer,,\n", ["row 2", "'wind'"]),
    "unknown expected class": (
        HEADER + "0.0,25.0,12.0,2.0,summer,hail,\n",
        ["row 2", "'expected'", "'hail'", "not a known class"],
    ),
    "empty": ("", ["file is empty"]),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_file_is_refused_in_one_line(tmp_path: Path, ds, kind):
    text, needles = MALFORMED[kind]
    _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        key_examples.load(tmp_path, ds)
    message = str(info.value)
    assert "\n" not in message and message.startswith("data/key_examples.csv: ")
    for needle in needles:
        assert needle in message, (needle, message)


def test_a_column_the_dataset_ignores_rides_along(tmp_path: Path, ds):
    """A feature dropped by a MAJOR change stays in ignore_columns while production needs it."""
    reduced = ds.model_copy(
        update={
            "features": [f for f in ds.features if f.name != "wind"],
            "ignore_columns": ["wind"],
        }
    )
    _write(tmp_path, HEADER + ROWS)
    keys = key_examples.load(tmp_path, reduced)
    assert keys is not None and "wind" in keys.columns
    with pytest.raises(DataError, match="unknown column"):
        key_examples.load(tmp_path, reduced.model_copy(update={"ignore_columns": []}))
