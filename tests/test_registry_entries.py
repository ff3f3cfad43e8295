"""Typed registry entries: what is read is what is written back, and bad values name their key."""

from __future__ import annotations

import pytest

from retrain.core import registry as reg
from retrain.core.errors import RegistryError

# An entry as `retrain propose` writes it (the demo's v1.0.0, shortened).
WRITTEN = """\
# Model registry: written by `retrain`, reviewed in pull requests.
# `production` names the version serving now. Merging a retrain PR promotes;
# `git revert` of that merge rolls back. Do not edit by hand.
model: seattle-weather
production: 1.0.0
versions:
- version: 1.0.0
  created: '2026-11-25T23:10:13Z'
  reason:
    triggers:
    - bootstrap
    manual: null
  bump: initial
  code_commit: 2adbe22bce2e9f56987e433a957277c3bf9dcd59
  data:
    dvc_hash: 8c94b2d28f31c40e98940f98d566adfd.dir
    rows: 365
    total_rows: 547
    start: '2012-07-01'
    end: '2013-06-30'
    files:
      data/batches/2012-H1.csv: 182
      data/batches/2012-H2.csv: 184
  params:
    estimator: random_forest
    n_estimators: 100
  schema:
    classes:
    - rain
    - sun
    features:
      precipitation: numeric
      season: categorical
    fingerprint: sha256:fa3bc5229c07fe75
    target: weather
    task: classification
  artifact:
    path: artifacts/train/model.skops
    format: skops
    md5: aca8c8804fb8c69e581ff637faa2b5dd
    sha256: 622d3d4f1457988befb660493e5276f38049aa502ba1413b1a37a192632f7e1c
    size_bytes: 3328936
    remote: dvc
  model_card: reports/v1.0.0/model_card.json
  mlflow:
    run_id: 16e0571cb6be44f4882990bb7d53aed8
    model_version: '1'
    experiment: seattle-weather
  metrics:
    overall:
      accuracy: 0.463014
    subgroups:
      season:
        autumn:
          accuracy: 0.252747
          rows: 91
  gates:
    baseline: null
    passed: true
    results:
      data_valid:
        verdict: pass
        value: true
        threshold: true
      latency:
        verdict: pass
        value:
          p95_ms_single: 8.7366
        threshold:
          p95_ms_single: 100.0
"""


def test_an_entry_the_tool_wrote_reads_as_typed_records_and_writes_back_byte_identical():
    r = reg.parse_text(WRITTEN)
    entry = r.get("1.0.0")
    assert entry.artifact.sha256.startswith("622d3d4f")
    assert entry.data.files["data/batches/2012-H2.csv"] == 184
    assert entry.schema_.features == {"precipitation": "numeric", "season": "categorical"}
    assert entry.mlflow.model_version == "1"
    assert entry.gates.results["latency"].value == {"p95_ms_single": 8.7366}
    assert entry.reason.triggers == ["bootstrap"] and entry.reason.manual is None
    assert reg.dumps(r) == WRITTEN


@pytest.mark.parametrize("text", ["\x85", "a\u2028b", "x\u2029", "é and \x85"])
def test_unicode_line_breaks_in_a_value_survive_a_round_trip(text):
    """Found by the property test: with allow_unicode PyYAML writes NEL/LS/PS raw inside
    quotes and reads them back as a space; such a registry is written escaped instead."""
    r = reg.parse_text(WRITTEN)
    r.get("1.0.0").params = {"note": {text: text}}
    back = reg.parse_text(reg.dumps(r))
    assert back.get("1.0.0").params == {"note": {text: text}}


def test_unknown_keys_survive_a_rewrite():
    text = WRITTEN.replace("  bump: initial\n", "  bump: initial\n  note: hand-added\n").replace(
        "    remote: dvc\n", "    remote: dvc\n    bucket: models\n"
    )
    out = reg.dumps(reg.parse_text(text))
    assert "\n  note: hand-added\n" in out  # last in its entry (unknown keys sorted)
    assert "    remote: dvc\n    bucket: models\n" in out
    assert reg.dumps(reg.parse_text(out)) == out


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    rows: 365\n",
            "    rows: 365.5\n",
            "versions[0].data.rows: Input should be a valid integer",
        ),
        ("  bump: initial\n", "  bump: huge\n", "versions[0].bump: Input should be 'initial'"),
        ("      season: categorical\n", "      season: 3\n", "versions[0].schema.features.season"),
        ("    passed: true\n", "    passed: maybe\n", "versions[0].gates.passed"),
        (
            "  mlflow:\n    run_id",
            "  mlflow: []\n  other:\n    run_id",
            "versions[0].mlflow: expected a mapping",
        ),
        (
            "        verdict: pass\n        value: true\n",
            "        value: true\n",
            "versions[0].gates.results.data_valid: missing key 'verdict'",
        ),
        (
            "    md5: aca8",
            "    md5: ACA8",
            "versions[0].artifact.md5: expected 32 lowercase hex digits",
        ),
    ],
)
def test_a_wrong_value_in_an_entry_is_one_line_naming_its_key(old, new, message):
    assert old in WRITTEN
    with pytest.raises(RegistryError) as exc:
        reg.parse_text(WRITTEN.replace(old, new, 1))
    assert str(exc.value).startswith(f"registry.yaml: {message}")
    assert "\n" not in str(exc.value)
