"""Bad input (DESIGN.md section 10): one line naming the file and column or key, exit 2,
and nothing lost or half-written (no registry change, no branch, no stale stage output).

Data and configuration problems are driven through the CLI in one sandbox fork; each test
restores what it broke.  Registry and artifact problems are driven through the CLI too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from retrain import example
from tests.conftest import PROJECT, Cli

GOOD_ROW = "2013-07-01,0.0,20.0,10.0,3.0,summer,sun\n"
HEADER = "date,precipitation,temp_max,temp_min,wind,season,weather\n"


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> tuple[example.Sandbox, Cli]:
    sb = example.make_sandbox(tmp_path_factory.mktemp("bad") / "sb", PROJECT)
    return sb, Cli(sb)


def _assert_refused(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


BAD_BATCHES = {
    "missing column": (
        HEADER.replace(",wind", ""),
        "2013-07-01,0.0,20.0,10.0,summer,sun\n",
        ["missing column", "wind"],
    ),
    "extra column": (
        HEADER.strip() + ",station\n",
        GOOD_ROW.strip() + ",KSEA\n",
        ["unexpected column", "station"],
    ),
    "wrong type": (
        HEADER,
        "2013-07-01,0.0,hot,10.0,3.0,summer,sun\n",
        ["temp_max", "expected numbers", "'hot'"],
    ),
    "missing value": (
        HEADER,
        "2013-07-01,0.0,,10.0,3.0,summer,sun\n",
        ["temp_max", "missing value"],
    ),
    "unseen label": (
        HEADER,
        "2013-07-01,0.0,20.0,10.0,3.0,summer,hail\n",
        ["weather", "unknown label", "hail"],
    ),
    "out of range": (
        HEADER,
        "2013-07-01,-5.0,20.0,10.0,3.0,summer,sun\n",
        ["precipitation", "below its minimum"],
    ),
    "unknown level": (
        HEADER,
        "2013-07-01,0.0,20.0,10.0,3.0,monsoon,sun\n",
        ["season", "level 'monsoon'", "levels in configs/dataset.yaml"],
    ),
    "duplicated rows": (HEADER, GOOD_ROW + GOOD_ROW, ["duplicated row"]),
    "bad timestamp": (
        HEADER,
        "yesterday,0.0,20.0,10.0,3.0,summer,sun\n",
        ["date", "expected timestamps"],
    ),
    "truncated file": (
        HEADER,
        "2013-07-01,0.0,20.0,10.0,3.0,summer,sun\n2013-07-02,0.0,2",
        ["missing"],
    ),
    "empty file": ("", "", ["empty"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_BATCHES))
def test_bad_data_batch_is_refused_with_file_and_column(fork, kind):
    sb, cli = fork
    header, rows, needles = BAD_BATCHES[kind]
    bad = sb.root / "data" / "batches" / "2099-H1.csv"
    bad.write_text(header + rows)
    try:
        res = cli("validate", check=False)
        _assert_refused(res, "data/batches/2099-H1.csv", *needles)
        assert not (sb.root / "artifacts" / "validation.json").exists()
    finally:
        bad.unlink()


def test_committed_bad_data_stops_a_run_before_any_branch(fork):
    """The ingestion job committed a batch with an unknown label: the run stops at validate."""
    sb, cli = fork
    bad = sb.root / "data" / "batches" / "2099-H1.csv"
    bad.write_text(HEADER + "2013-07-01,0.0,20.0,10.0,3.0,summer,hail\n")
    sb.run("dvc", "add", "-q", "data")
    sb.git("commit", "-qam", "data: a batch with a typo")
    registry = (sb.root / "registry.yaml").read_bytes()
    try:
        res = cli("run", check=False)
        _assert_refused(res, "2099-H1.csv", "hail")
        assert sb.git("branch", "--list", "retrain/*") == ""
        assert (sb.root / "registry.yaml").read_bytes() == registry
        assert sb.git("status", "--porcelain", "--untracked-files=no") == ""
        assert not (sb.root / "artifacts" / "train" / "model.skops").exists()
    finally:
        sb.git("reset", "-q", "--hard", "HEAD~1")
        bad.unlink(missing_ok=True)
        sb.run("dvc", "checkout", "-q", "data.dvc")


def test_uncommitted_data_is_not_trained_on(fork):
    sb, cli = fork
    extra = sb.root / "data" / "batches" / "2013-H2.csv"
    example.write_batch(sb.root, "2013-H2")
    try:
        res = cli("run", "--force", check=False)
        _assert_refused(res, "data/", "data.dvc", "dvc add data")
        assert sb.git("status", "--porcelain", "--untracked-files=no") == ""
    finally:
        extra.unlink()


BAD_CONFIGS = {
    "unknown key": (
        "gates.yaml",
        "primary_metric: accuracy\nimprovment:\n  min_delta: 0.01\n",
        ["configs/gates.yaml", "improvment", "unknown key"],
    ),
    "wrong type": (
        "triggers.yaml",
        "cooldown_days: soon\n",
        ["configs/triggers.yaml", "cooldown_days"],
    ),
    "impossible threshold": (
        "gates.yaml",
        "improvement:\n  min_delta: -0.1\n",
        ["configs/gates.yaml", "improvement.min_delta"],
    ),
    "share above one": (
        "triggers.yaml",
        "data_drift:\n  max_share_drifted: 1.5\n",
        ["configs/triggers.yaml", "data_drift.max_share_drifted"],
    ),
    "subgroup not a feature": ("dataset.yaml", None, ["configs/dataset.yaml", "subgroups"]),
    "unknown model parameter": (
        "model.yaml",
        "estimator: random_forest\nparams:\n  n_trees: 5\n",
        ["configs/model.yaml", "params.n_trees"],
    ),
    "not yaml": ("release.yaml", "model_name: [unclosed\n", ["configs/release.yaml", "YAML"]),
    "churn key replaced": (
        "gates.yaml",
        "churn:\n  max_share: 0.35\n",
        ["configs/gates.yaml", "churn: max_share: replaced by churn.max_negative_flip_rate"],
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_bad_configuration_is_refused_with_file_and_key(fork, kind):
    sb, cli = fork
    name, text, needles = BAD_CONFIGS[kind]
    path = sb.root / "configs" / name
    original = path.read_text()
    if text is None:
        text = original.replace("subgroups: [season]", "subgroups: [station]")
    path.write_text(text)
    try:
        command = "train" if kind == "unknown model parameter" else "triggers"
        res = cli(command, check=False)
        _assert_refused(res, *needles)
    finally:
        path.write_text(original)


def _set_registry(sb: example.Sandbox, text: str) -> str:
    path = sb.root / "registry.yaml"
    original = path.read_text()
    path.write_text(text)
    return original


ENTRY = """  - version: {v}
    created: '2026-01-01T00:00:00Z'
    bump: initial
    schema: {{fingerprint: x}}
    artifact: {{path: artifacts/train/model.skops, md5: '{md5}', sha256: '{sha}'}}
"""
MD5, SHA = "0" * 32, "a" * 64

BAD_REGISTRIES = {
    "bad semver": (
        "model: seattle-weather\nproduction: null\nversions:\n"
        + ENTRY.format(v="1.0", md5=MD5, sha=SHA),
        ["versions[0].version", "1.0", "not a semantic version"],
    ),
    "duplicate version": (
        "model: seattle-weather\nproduction: 1.0.0\nversions:\n"
        + ENTRY.format(v="1.0.0", md5=MD5, sha=SHA)
        + ENTRY.format(v="1.0.0", md5=MD5, sha=SHA),
        ["duplicate version"],
    ),
    "production names no entry": (
        "model: seattle-weather\nproduction: 2.0.0\nversions:\n"
        + ENTRY.format(v="1.0.0", md5=MD5, sha=SHA),
        ["production", "2.0.0", "names no entry"],
    ),
    "bad hash": (
        "model: seattle-weather\nproduction: 1.0.0\nversions:\n"
        + ENTRY.format(v="1.0.0", md5=MD5, sha="abc"),
        ["sha256", "64"],
    ),
    "wrong model": (
        "model: other-model\nproduction: null\nversions: []\n",
        ["model", "other-model"],
    ),
    "unknown key": (
        "model: seattle-weather\nproduction: null\nversions: []\nstaging: 1.0.0\n",
        ["unknown key", "staging"],
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_REGISTRIES))
def test_broken_registry_is_refused_and_nothing_is_deployed(fork, kind):
    """A hand-broken registry committed to main: status, run and promote all refuse it."""
    sb, cli = fork
    text, needles = BAD_REGISTRIES[kind]
    original = _set_registry(sb, text)
    sb.git("commit", "-qam", f"hand-edit the registry ({kind})")
    try:
        for command in ("status", "run", "promote"):
            _assert_refused(cli(command, check=False), "registry.yaml", *needles)
        assert not (sb.root / ".retrain" / "deployed").exists()
        assert sb.git("branch", "--list", "retrain/*") == ""
        assert sb.git("tag", "--list") == ""
    finally:
        sb.git("reset", "-q", "--hard", "HEAD~1")
        assert (sb.root / "registry.yaml").read_text() == original


def test_predict_refuses_an_unknown_version_and_a_bad_input_file(fork, tmp_path: Path):
    sb, cli = fork
    res = cli(
        "predict", "--version", "9.9.9", "--input", str(sb.root / "data/holdout.csv"), check=False
    )
    _assert_refused(res, "registry.yaml", "9.9.9")
    bad = tmp_path / "rows.csv"
    bad.write_text("date,precipitation\n2015-01-01,1.0\n")
    out = tmp_path / "pred.csv"
    res = cli(
        "predict", "--version", "9.9.9", "--input", str(bad), "--output", str(out), check=False
    )
    assert res.returncode == 2 and not out.exists()


def test_committed_malformed_key_examples_stop_a_run_before_any_training(fork):
    """data/key_examples.csv names a class the model does not know: refused in one line,
    before dvc repro, with no branch and no registry change."""
    sb, cli = fork
    keys = sb.root / "data" / "key_examples.csv"
    good = keys.read_bytes()
    keys.write_text(
        "precipitation,temp_max,temp_min,wind,season,expected,note\n"
        "0.0,25.0,12.0,2.0,summer,hail,a typo\n"
    )
    sb.run("dvc", "add", "-q", "data")
    sb.git("commit", "-qam", "data: a key example with a typo")
    registry = (sb.root / "registry.yaml").read_bytes()
    try:
        res = cli("run", check=False)
        _assert_refused(res, "data/key_examples.csv", "row 2", "'expected'", "'hail'")
        assert sb.git("branch", "--list", "retrain/*") == ""
        assert (sb.root / "registry.yaml").read_bytes() == registry
        assert sb.git("status", "--porcelain", "--untracked-files=no") == ""
        assert not (sb.root / "artifacts" / "train" / "model.skops").exists()
    finally:
        sb.git("reset", "-q", "--hard", "HEAD~1")
        keys.write_bytes(good)
        sb.run("dvc", "checkout", "-q", "data.dvc")
