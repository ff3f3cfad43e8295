"""``retrain init`` on the two bundled examples' raw files, then the loop with no other edit.

The raw files come from the ``vega_datasets`` package's own files (offline): Cars 1970–1982
(miles per gallon, a regression target with missing values, an identifier column and a
categorical subgroup) and Seattle weather (the classification example, whose onboarded form
is the repository's own configs).  Each is onboarded in a sandbox fork by
:func:`retrain.example.onboard_example`, which runs ``retrain init`` with the example's flags
and holds the newest batch back so that it can arrive after the bootstrap.

Both go the whole way: bootstrap → new batch → retrain → gates → merge → promote →
revert (``retrain rollback``) → promote records the rollback, and production's predictions
after the rollback are those of before.  Real git, DVC and MLflow; GitHub
is not involved (a merge is done with git as pressing "Merge" would).
"""

from __future__ import annotations

import re
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


@pytest.fixture(scope="module")
def cars(tmp_path_factory: pytest.TempPathFactory):
    """A sandbox fork onboarded onto the Cars raw file, with its newest batch held back."""
    sb = example.make_sandbox(tmp_path_factory.mktemp("cars") / "sb", PROJECT)
    out, held = example.onboard_example(sb, "cars")
    return sb, Cli(sb), out, held


def test_the_cars_raw_file_is_onboarded_as_a_regression(cars):
    sb, _, out, held = cars
    assert "regression of 'Miles_per_Gallon'" in out
    assert "8 row(s) without a target value left out" in out
    assert "primary_metric accuracy is not a regression metric; set to rmse" in out
    cfg = load_config(sb.root)
    ds = cfg.dataset
    assert ds.task == "regression" and ds.labels is None and ds.time_column == "Year"
    assert ds.ignore_columns == ["Name"] and ds.subgroups == ["Origin"]
    assert ds.feature("Horsepower").allow_missing and ds.feature("Origin").type == "categorical"
    assert cfg.gates.primary_metric == "rmse" and cfg.release.model_name == "cars-mpg"
    # the template's thresholds were written for accuracy; in MPG they scale with the spread
    std = example.cars_raw_frame()["Miles_per_Gallon"].std()
    assert cfg.gates.improvement.min_delta == float(f"{0.01 * std:.2g}") == 0.078
    assert cfg.gates.subgroups.max_regression == float(f"{0.05 * std:.2g}")
    assert cfg.gates.patch.max_regression == float(f"{0.005 * std:.2g}")
    assert cfg.triggers.performance.max_drop == float(f"{0.05 * std:.2g}")
    assert "thresholds in the target's units" in out
    # so are the rollout's thresholds on the live metric, defaults the template does not write
    live = cfg.release.rollout
    assert live.analysis.min_metric_change == float(f"{-0.02 * std:.2g}") == -0.16
    assert live.health.max_metric_drop == float(f"{0.1 * std:.2g}") == 0.78
    assert live.challenger.min_delta == float(f"{0.01 * std:.2g}") == 0.078
    assert (
        "release.yaml: live-metric thresholds in the target's units (x its standard deviation "
        f"{std:.4g}): rollout.analysis.min_metric_change -0.02 -> -0.16, "
        "rollout.health.max_metric_drop 0.1 -> 0.78, rollout.challenger.min_delta 0.01 -> 0.078"
    ) in out
    assert yaml.safe_load((sb.root / "registry.yaml").read_text())["model"] == "cars-mpg"
    assert [p.name for p in held] == ["batch-03.csv"]
    holdout = pd.read_csv(sb.root / "data" / "holdout.csv")
    newest = pd.read_csv(held[0])
    assert len(holdout) == 80 and holdout["Year"].min() >= newest["Year"].max()
    assert sb.git("status", "--porcelain") == ""  # the onboarded fork is committed


def test_cars_bootstrap_new_batch_retrain_merge_promote_revert(cars):
    sb, cli, _, held = cars
    first = bootstrap(sb, cli)
    assert first["gates"]["metric"] == "rmse"
    holdout = sb.root / "data" / "holdout.csv"
    before = cli("predict", "--version", "1.0.0", "--input", str(holdout)).stdout
    assert len(before.splitlines()) == 81  # header + one number per holdout row
    float(before.splitlines()[1].split(",")[-1])

    assert example.receive_held(sb, held) == "batch-03.csv"
    second = cli.json("run")
    assert second["outcome"] == "proposed" and second["version"] == "1.1.0", second
    assert "new_data" in second["fired"]
    gates = second["gates"]["gates"]
    assert all(g["verdict"] in ("pass", "skip") for g in gates.values()), gates
    # rmse is lower-is-better: the candidate's rmse is lower and the oriented gain positive
    metrics = second["gates"]["metrics"]
    assert metrics["candidate"]["rmse"] < metrics["baseline"]["rmse"]
    assert gates["improvement"]["value"] > 0
    assert "(lower is better)" in gates["improvement"]["detail"]
    body = (sb.root / "reports" / "latest" / "PR.md").read_text()
    assert re.search(r"rmse is [\d.]+ vs [\d.]+ in production \(-[\d.]+, better", body), body
    assert "classes" not in body.split("### Gates")[0]  # a regression has no class set
    merge_promote_then_revert(sb, cli, second, holdout, before)


def test_weather_raw_file_init_bootstrap_new_batch_retrain_merge_promote_revert(tmp_path):
    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    cli = Cli(sb)
    out, held = example.onboard_example(sb, "weather")
    assert "classification of 'weather'" in out
    cfg = load_config(sb.root)
    assert cfg.dataset.labels == ["drizzle", "fog", "rain", "snow", "sun"]
    # snow is under 2% of the days: init says the target is imbalanced; no class dominates
    # (sun is under half), so accuracy stays the primary metric and macro F1 judges the
    # trivial baseline and guards the rare classes, as the repository's own configs do
    assert "imbalanced target: 'snow' is" in out
    assert cfg.gates.primary_metric == "accuracy"
    assert cfg.gates.trivial_baseline.metric == "f1_macro"
    assert cfg.gates.guardrails["f1_macro"].max_drop == 0.02
    assert cfg.release.model_name == "seattle-weather"
    assert cfg.gates.improvement.min_delta == 0.01  # a share's units: left as they are
    assert len(list((sb.root / "data" / "batches").glob("*.csv"))) == 5
    bootstrap(sb, cli)
    holdout = sb.root / "data" / "holdout.csv"
    before = cli("predict", "--version", "1.0.0", "--input", str(holdout)).stdout
    example.receive_held(sb, held)
    second = cli.json("run")
    assert "new_data" in second["fired"]
    assert second["outcome"] == "proposed" and second["version"] == "1.1.0", second
    # compared with production on the frozen holdout (not the bootstrap's skip)
    assert second["gates"]["gates"]["improvement"]["verdict"] == "pass", second
    assert second["gates"]["metrics"]["baseline"]["accuracy"] is not None
    merge_promote_then_revert(sb, cli, second, holdout, before)


def test_demo_refuses_an_unknown_example_before_touching_its_directory(tmp_path):
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / "keep.txt").write_text("mine")
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "demo", "--example", "boats", "--dir", str(workdir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: --example: no bundled example 'boats'; expected one of ['cars', 'weather']"
    )
    assert [p.name for p in workdir.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("metric", "sentence"),
    [("rmse", "Input schema unchanged."), ("accuracy", "Input schema and classes unchanged.")],
)
def test_the_pr_body_speaks_of_classes_only_for_a_classifier(metric, sentence):
    from retrain.report import markdown

    ctx = {"model": "m", "version": "1.1.0", "gates": {"metric": metric, "gates": {}}}
    verdict = markdown.render_pr_body(ctx).split("\n\n")[1]
    assert sentence in verdict and verdict.count("classes") == sentence.count("classes")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The template's configuration files in a DVC repository (no git, no data)."""
    root = tmp_path / "template"
    root.mkdir()
    for rel in ("configs", "dvc.yaml", "registry.yaml"):
        src = PROJECT / rel
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / rel)
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def _init_on_a_linear_target(
    template: Path, data: Path, target: str, scale: float, *, seed: int
) -> tuple[Path, str]:
    """``retrain init`` in ``template`` on 300 rows of ``target = scale * (x + noise)``;
    the file and init's output."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, 300)
    pd.DataFrame({"x": x, target: scale * (x + rng.normal(0, 0.3, 300))}).to_csv(data, index=False)
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "init", "--data", str(data), "--target", target],
        cwd=template,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return data, res.stdout


def test_a_tiny_regression_target_gets_thresholds_it_can_meet(template, tmp_path):
    """Left at accuracy's 0.01, min_delta would ask a 1e-4-scale rmse for an impossible gain."""
    data, _ = _init_on_a_linear_target(template, tmp_path / "rates.csv", "rate", 1e-4, seed=3)
    cfg = load_config(template)
    std = pd.read_csv(data)["rate"].std()
    assert cfg.gates.improvement.min_delta == pytest.approx(0.01 * std, rel=0.05)
    assert 0 < cfg.gates.improvement.min_delta < 1e-5
    assert cfg.triggers.performance.max_drop == pytest.approx(0.05 * std, rel=0.05)
    text = (template / "configs" / "gates.yaml").read_text()
    assert "# candidate must beat production by at least this much" in text  # comments kept
    live = cfg.release.rollout
    assert live.analysis.min_metric_change == pytest.approx(-0.02 * std, rel=0.05)
    assert live.health.max_metric_drop == pytest.approx(0.1 * std, rel=0.05)
    assert live.challenger.min_delta == pytest.approx(0.01 * std, rel=0.05)
    assert 0 < live.challenger.min_delta < 1e-5


def test_a_forks_own_live_thresholds_are_scaled_in_place(template, tmp_path):
    """A release.yaml that already sets some rollout thresholds: those values are scaled where
    they stand (their comments kept), the missing ones added to their section, and one in a
    section written inline is left alone and named in init's notes."""
    release = template / "configs" / "release.yaml"
    release.write_text(
        release.read_text()
        + "  analysis:\n    min_requests: 100\n    min_metric_change: -0.05  # ours\n"
        + "  health: {min_requests: 10}\n"
    )
    data, out = _init_on_a_linear_target(template, tmp_path / "prices.csv", "price", 1e3, seed=4)
    std = pd.read_csv(data)["price"].std()
    live = load_config(template).release.rollout
    assert live.analysis.min_metric_change == float(f"{-0.05 * std:.2g}")
    assert live.analysis.min_requests == 100
    assert live.challenger.min_delta == float(f"{0.01 * std:.2g}")
    assert live.health.max_metric_drop == 0.1  # inline section: not touched
    text = release.read_text()
    assert f"min_metric_change: {float(f'{-0.05 * std:.2g}'):g}  # ours" in text
    assert "rollout.health.max_metric_drop left as is (its section is written inline)" in out
