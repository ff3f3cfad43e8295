"""``retrain init``: a fork onboarded onto its own data, then the whole loop with no other edit.

The data file is made here with awkward column names (spaces, dashes, unicode), an
identifier column, missing values, a boolean target and a time column.  After ``init`` the
fork bootstraps v1.0.0, receives the batch it held back, retrains, passes the gates,
merges, promotes, reverts and rolls back, on real git, DVC and MLflow (GitHub is not
involved: merges are done with git as a PR merge would).  Bad flags and data are refused
with one line and exit 2, and nothing is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain import example
from retrain.core.config import load_config
from tests.conftest import PROJECT, Cli, bootstrap, merge_promote_then_revert

TARGET = "will churn?"
TIME = "signup date"
CITY = "städte"


def awkward_frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Churn by temperature in every city but Zürich, which appears late and churns by wind."""
    rng = np.random.default_rng(seed)
    temp = rng.normal(18, 6, n).round(1)
    wind = rng.gamma(2.0, 3.0, n).round(2)
    late = np.arange(n) >= 640
    city = np.where(late & (rng.random(n) < 0.5), "Zürich", rng.choice(["Köln", "Graz", "Bern"], n))
    churn = np.where(city == "Zürich", wind > 6, temp > 20)
    churn = np.where(rng.random(n) < 0.03, ~churn, churn)
    frame = pd.DataFrame(
        {
            "customer id": [f"c-{i:05d}" for i in range(n)],
            TIME: pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "temp (°C)": temp,
            "wind-speed": wind,
            CITY: city,
            "plan tier": rng.choice(["basic", "plus", None], n, p=[0.6, 0.3, 0.1]),
            TARGET: pd.Series(churn, dtype=object),
        }
    )
    frame.loc[rng.choice(n, 40, replace=False), "wind-speed"] = np.nan
    frame.loc[rng.choice(n, 15, replace=False), TARGET] = None  # unlabelled rows
    return frame


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git/" not in str(p)
    }


def _dvc(root: Path) -> None:
    exe = Path(sys.executable).with_name("dvc")
    subprocess.run([str(exe), "init", "--no-scm", "-q"], cwd=root, check=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's configuration files in a DVC repository (no git, no data)."""
    root = tmp_path_factory.mktemp("template")
    for rel in ("configs", "dvc.yaml", "registry.yaml"):
        src = PROJECT / rel
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / rel)
    _dvc(root)
    return root


def _retrain(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args],
        cwd=root,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
    )


def test_init_on_the_bundled_examples_raw_file_infers_what_the_template_declares(
    template, tmp_path
):
    root = tmp_path / "fork"
    shutil.copytree(template, root)
    raw = tmp_path / "seattle-weather.csv"
    example.source_frame().drop(columns=["season"]).to_csv(raw, index=False)
    res = _retrain(root, "init", "--data", str(raw), "--target", "weather", "--time-column", "date")
    assert res.returncode == 0, res.stderr
    assert "classification of 'weather'" in res.stdout
    assert "retrain run" in res.stdout.splitlines()[-1]
    cfg = load_config(root)
    ds = cfg.dataset
    assert cfg.release.model_name == "seattle-weather" and ds.task == "classification"
    assert ds.labels == ["drizzle", "fog", "rain", "snow", "sun"]
    assert {f.name: f.type for f in ds.features} == dict.fromkeys(
        ["precipitation", "temp_max", "temp_min", "wind"], "numeric"
    )
    assert ds.feature("precipitation").min == 0  # never negative, stays non-negative
    holdout = pd.read_csv(root / "data" / "holdout.csv")
    batches = sorted((root / "data" / "batches").glob("*.csv"))
    last = pd.read_csv(batches[-1])
    assert len(holdout) == round(1461 * 0.2) and holdout["date"].min() > last["date"].max()
    assert (root / "data.dvc").is_file()
    artifact = yaml.safe_load((root / "dvc.yaml").read_text())["artifacts"]
    assert list(artifact) == ["seattle-weather"]


def _bad_cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    good = tmp / "good.csv"
    awkward_frame(300).to_csv(good, index=False)
    constant = tmp / "constant.csv"
    awkward_frame(300).assign(**{TARGET: True}).to_csv(constant, index=False)
    garbage = tmp / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    base = ["--data", str(good), "--target", TARGET]
    return {
        "missing target column": (
            ["--data", str(good), "--target", "churn"],
            ["--target", "no column 'churn'"],
        ),
        "constant target": (["--data", str(constant), "--target", TARGET], ["is constant"]),
        "unreadable file": (
            ["--data", str(garbage), "--target", TARGET],
            ["garbage.parquet", "cannot be read"],
        ),
        "no such file": (["--data", str(tmp / "nope.csv"), "--target", TARGET], ["not found"]),
        "holdout share out of range": (
            [*base, "--holdout-share", "0.9"],
            ["--holdout-share", "between 0.05 and 0.5"],
        ),
        "holdout share not a number": (
            [*base, "--holdout-share", "a fifth"],
            ["--holdout-share", "expected a number"],
        ),
        "bad name": ([*base, "--name", "My Model"], ["--name", "'My Model'"]),
        "missing time column": (
            [*base, "--time-column", "when"],
            ["--time-column", "no column 'when'"],
        ),
        "time column not timestamps": (
            [*base, "--time-column", CITY],
            [CITY, "expected timestamps"],
        ),
        "batches zero": ([*base, "--batches", "0"], ["--batches", "1 to 100"]),
        "batches not a number": ([*base, "--batches", "many"], ["--batches", "whole number"]),
    }


def test_bad_flags_and_data_are_one_line_exit_2_and_nothing_written(template, tmp_path):
    cases = _bad_cases(tmp_path)
    before = _snapshot(template)
    for case, (args, needles) in cases.items():
        res = _retrain(template, "init", *args)
        assert res.returncode == 2, (case, res.stdout, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, res.stderr)
        for needle in needles:
            assert needle in lines[0], (case, needle, lines[0])
        assert _snapshot(template) == before, case


def test_a_registry_with_versions_is_kept_unless_forced(template, tmp_path):
    root = tmp_path / "fork"
    shutil.copytree(template, root)
    entry = {
        "version": "1.0.0",
        "created": "2026-01-01T00:00:00Z",
        "bump": "initial",
        "schema": {},
        "artifact": {"path": "m", "md5": "0" * 32, "sha256": "0" * 64},
    }
    (root / "registry.yaml").write_text(
        yaml.safe_dump({"model": "seattle-weather", "production": "1.0.0", "versions": [entry]})
    )
    data = tmp_path / "churn.csv"
    awkward_frame(300).to_csv(data, index=False)
    before = _snapshot(root)
    res = _retrain(root, "init", "--data", str(data), "--target", TARGET)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: registry.yaml: already has 1 version(s) of 'seattle-weather'; retrain init "
        "would reset it (pass --force to start over)"
    )
    assert _snapshot(root) == before
    res = _retrain(root, "init", "--data", str(data), "--target", TARGET, "--force")
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load((root / "registry.yaml").read_text()) == {
        "model": "churn",
        "production": None,
        "versions": [],
    }


def test_init_then_bootstrap_new_batch_retrain_merge_promote_revert_with_no_other_edit(tmp_path):
    sb = example.make_sandbox(tmp_path / "sb")
    cli = Cli(sb)
    raw = tmp_path / "customers.csv"
    awkward_frame().to_csv(raw, index=False)
    out = cli(
        "init",
        "--data",
        str(raw),
        "--target",
        TARGET,
        "--time-column",
        TIME,
        "--name",
        "churn-demo",
    ).stdout
    assert "classification of 'will churn?'" in out
    assert "'customer id'" in out and "15 row(s) without a target value left out" in out
    cfg = load_config(sb.root)
    ds = cfg.dataset
    assert ds.labels == ["False", "True"] and ds.ignore_columns == ["customer id"]
    assert ds.feature("wind-speed").allow_missing and ds.feature("plan tier").allow_missing
    assert ds.feature(CITY).type == "categorical" and ds.subgroups == [CITY]
    batches = sorted((sb.root / "data" / "batches").glob("*.csv"))
    assert len(batches) == 5

    # The fork as committed before the newest batch arrived (the held-back batch is ingested
    # later, as the team's ingestion job would).
    held = tmp_path / batches[-1].name
    shutil.move(batches[-1], held)
    sb.run(str(Path(sys.executable).with_name("dvc")), "add", "-q", "data")
    sb.git("add", "-A")
    sb.git("commit", "-q", "-m", "Onboard churn-demo with retrain init")
    sb.run(str(Path(sys.executable).with_name("dvc")), "push", "-q")
    sb.git("push", "-q", "origin", "main")

    first = bootstrap(sb, cli)
    assert first["version"] == "1.0.0"
    holdout = sb.root / "data" / "holdout.csv"
    before = cli("predict", "--version", "1.0.0", "--input", str(holdout)).stdout

    assert example.receive_held(sb, [held]) == batches[-1].name
    second = cli.json("run")
    assert second["outcome"] == "proposed" and second["version"] == "1.1.0", second
    assert "new_data" in second["fired"]
    merge_promote_then_revert(sb, cli, second, holdout, before)


def test_a_numeric_target_is_regression_and_the_primary_metric_follows(template, tmp_path):
    root = tmp_path / "fork"
    shutil.copytree(template, root)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 400)
    data = tmp_path / "house prices.parquet"
    pd.DataFrame(
        {"size m²": x * 20 + 90, "price (k€)": x * 50 + 300 + rng.normal(0, 5, 400)}
    ).to_parquet(data)
    res = _retrain(root, "init", "--data", str(data), "--target", "price (k€)")
    assert res.returncode == 0, res.stderr
    assert (
        "gates.yaml: primary_metric accuracy is not a regression metric; set to rmse" in res.stdout
    )
    cfg = load_config(root)
    assert cfg.dataset.task == "regression" and cfg.dataset.labels is None
    assert cfg.gates.primary_metric == "rmse" and cfg.release.model_name == "house-prices"
    assert len(pd.read_csv(root / "data" / "holdout.csv")) == 80  # a seeded random fifth


def test_the_templates_key_examples_are_removed_with_a_note(template, tmp_path):
    """The template ships data/key_examples.csv for the weather data: a fork's own data has
    other columns, so init removes the file (a left-over would be refused as malformed)."""
    root = tmp_path / "fork"
    shutil.copytree(template, root)
    (root / "data").mkdir()
    (root / "data" / "key_examples.csv").write_text("precipitation,wind,expected\n0,1,sun\n")
    rng = np.random.default_rng(2)
    data = tmp_path / "plain.csv"
    pd.DataFrame({"x": rng.normal(0, 1, 300), "y": rng.integers(0, 2, 300)}).to_csv(
        data, index=False
    )
    res = _retrain(root, "init", "--data", str(data), "--target", "y")
    assert res.returncode == 0, res.stderr
    assert not (root / "data" / "key_examples.csv").exists()
    assert "data/key_examples.csv (the bundled example's rows) removed" in res.stdout


def test_init_writes_down_the_levels_of_each_categorical_column():
    """The levels seen become the column's contract (validate and serve refuse others,
    issue #19); a column with more than MAX_LEVELS levels is left open."""
    from retrain.onboard.infer import MAX_LEVELS, infer_features

    n = 2 * (MAX_LEVELS + 1)
    frame = pd.DataFrame(
        {
            "answer": (["Yes", "No", None] * n)[:n],
            "city": [f"c{i % (MAX_LEVELS + 1)}" for i in range(n)],
            "x": range(n),
            "y": [0, 1] * (n // 2),
        }
    )
    features, _ = infer_features(frame, "y", None)
    spec = {f["name"]: f for f in features}
    assert spec["answer"]["levels"] == ["No", "Yes"] and spec["answer"]["allow_missing"]
    assert "levels" not in spec["city"] and "levels" not in spec["x"]
