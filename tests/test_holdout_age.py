"""A holdout that does not age unseen (issue 23, item 6).

A fork onboarded with ``retrain init`` freezes the newest fifth of its first file.  Later
batches are newer than every holdout row, so:

- each judgement also scores both models on the newest rows of the training window, left
  out of a second fit of the candidate (the shipped model sees them all), and reports it in
  ``gate.json`` and the PR beside the frozen holdout;
- the run says that the frozen holdout is older than the data it judges;
- ``retrain holdout roll`` prepares a branch (and a PR) that makes the newest labelled rows
  the holdout and the old holdout a batch, with production re-scored on both, without
  touching the checkout; nothing changes until a person merges it.

Real git, DVC and MLflow in a sandbox fork; GitHub is stood in by a ``gh`` on PATH that
records its arguments (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain import example
from retrain.core.config import GatesConfig, load_config
from retrain.pipeline import out_of_time
from tests.conftest import PROJECT, Cli, bootstrap, gh_calls, install_fake_gh

DVC = str(Path(sys.executable).with_name("dvc"))


def daily(n: int, start: str, seed: int) -> pd.DataFrame:
    """A label that follows temperature, one row a day."""
    rng = np.random.default_rng(seed)
    temp = rng.normal(15, 8, n).round(1)
    wind = rng.gamma(2.0, 3.0, n).round(2)
    label = np.where(temp + rng.normal(0, 3, n) > 15, "warm", "cold")
    return pd.DataFrame(
        {
            "day": pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"),
            "temp": temp,
            "wind": wind,
            "label": label,
        }
    )


def _data_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((root / "data").rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def aged(tmp_path_factory: pytest.TempPathFactory):
    """Onboarded on 600 days (holdout: the newest 120), bootstrapped, then 200 newer days
    arrive and a retrain is judged."""
    base = tmp_path_factory.mktemp("aged")
    sb = example.make_sandbox(base / "sb", PROJECT)
    cli = Cli(sb, install_fake_gh(base))
    raw = base / "days.csv"
    daily(600, "2022-01-01", 0).to_csv(raw, index=False)
    cli("init", "--data", str(raw), "--target", "label", "--time-column", "day", "--name", "days")
    sb.run(DVC, "add", "-q", "data")
    sb.git("add", "-A")
    sb.git("commit", "-q", "-m", "Onboard days with retrain init")
    sb.run(DVC, "push", "-q")
    sb.git("push", "-q", "origin", "main")
    bootstrap(sb, cli)
    newer = daily(200, "2023-08-24", 1)  # the day after the 600th
    newer.to_csv(sb.root / "data" / "batches" / "batch-99.csv", index=False)
    sb.run(DVC, "add", "-q", "data")
    sb.git("commit", "-qam", "data: 200 newer days")
    sb.run(DVC, "push", "-q")
    sb.git("push", "-q", "origin", "main")
    out = cli.json("run")
    return sb, cli, out


def test_the_judgement_also_scores_both_models_on_the_newest_rows(aged):
    sb, _, out = aged
    m = out["gates"]["metrics"]
    oot = m["out_of_time"]
    cfg = load_config(sb.root)
    assert oot["by"] == "time" and oot["metric"] == cfg.gates.primary_metric
    assert oot["end"] == "2024-03-10"  # the newest labelled day
    assert oot["rows"] + oot["fit_rows"] == 480 + 200  # the window: every batch row
    assert oot["rows"] == 68 and oot["candidate"] and oot["baseline"]
    # production (trained up to the onboarded file's batches) never saw these days
    assert oot["production_overlap"] == 0 and oot["production_end"] < oot["start"]
    assert oot["lower"] <= oot["gain"] <= oot["upper"]
    # …and the frozen holdout is older than the data it judges
    frozen = m["frozen_holdout"]
    assert frozen["holdout_older"] is True and frozen["holdout"]["end"] < frozen["window"]["end"]
    text = (sb.root / "reports" / "latest" / "summary.md").read_text()
    assert "⚠️ The frozen holdout" in text and "is older than the data it judges" in text
    if out["outcome"] == "proposed":
        pr = (sb.root / "reports" / "latest" / "PR.md").read_text()
        assert "### Out of time: the newest rows" in pr
        assert "retrain holdout roll" in pr


def test_holdout_roll_prepares_a_reviewed_branch_and_pr_and_touches_nothing_else(aged):
    sb, cli, _ = aged
    head, data_before = sb.git("rev-parse", "HEAD"), _data_digest(sb.root)
    holdout_before = pd.read_csv(sb.root / "data" / "holdout.csv")
    res = cli.json("holdout", "roll", "--open-pr")
    branch = res["branch"]
    assert branch == "holdout/roll-2024-03-10" and res["pushed"] and res["pr_url"]
    assert res["rows"] == len(holdout_before) == res["old"]["rows"]
    assert res["moved"] == {"data/batches/batch-99.csv": len(holdout_before)}
    # the checkout is as it was: same commit, same data, clean tree
    assert sb.git("rev-parse", "HEAD") == head and _data_digest(sb.root) == data_before
    assert sb.git("status", "--porcelain", "--untracked-files=no") == ""
    # the branch changes data.dvc and adds the report, nothing else
    changed = set(sb.git("diff", "--name-only", head, branch).splitlines())
    folder = "reports/holdout/roll-2024-03-10"
    assert changed == {"data.dvc", f"{folder}/PR.md", f"{folder}/rescore.json"}
    assert sb.git("ls-remote", "--heads", "origin", branch)
    # production was re-scored on both holdouts
    rescore = yaml.safe_load(sb.git("show", f"{branch}:{folder}/rescore.json"))["rescore"]
    assert rescore["production"]["version"] == "1.0.0"
    metric = rescore["metric"]
    assert rescore["production"]["old"][metric] == pytest.approx(
        rescore["production"]["recorded"][metric], abs=1e-6
    )
    assert set(rescore["production"]["new"]) == set(rescore["trivial"]["new"])
    (call,) = [c for c in gh_calls(Path(cli.env["FAKE_GH_LOG"])) if "holdout" in str(c)]
    assert call["argv"][:2] == ["pr", "create"] and branch in call["argv"]
    assert "### Production re-scored" in call["body"] and "trivial model" in call["body"]

    # On the branch, the data is what it says: the newest rows are the holdout, the old
    # holdout is a batch, every labelled row is used once, and the validate stage passes.
    sb.git("checkout", "-q", branch)
    try:
        sb.run(DVC, "checkout", "-q")
        new = pd.read_csv(sb.root / "data" / "holdout.csv")
        assert new["day"].min() > holdout_before["day"].max()
        assert new["day"].max() == "2024-03-10"
        start, end = holdout_before["day"].min(), holdout_before["day"].max()
        old_batch = sb.root / "data" / "batches" / f"holdout-{start}-to-{end}.csv"
        assert pd.read_csv(old_batch).equals(holdout_before)
        batches = pd.concat(
            pd.read_csv(p) for p in sorted((sb.root / "data" / "batches").glob("*.csv"))
        )
        assert len(batches) + len(new) == 600 + 200 and not set(new["day"]) & set(batches["day"])
        cli("validate")
    finally:
        sb.git("checkout", "-q", "main")
        sb.run(DVC, "checkout", "-q")
    assert _data_digest(sb.root) == data_before


def test_rolling_is_refused_when_the_holdout_is_not_older(tmp_path):
    """The bundled example's holdout (2015) is newer than its batches (2012–2013)."""
    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    res = Cli(sb)("holdout", "roll", check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: data/holdout.csv: nothing to roll: the frozen holdout ends 2015-12-31 and the "
        "newest labelled row is from 2013-06-30"
    )
    assert sb.git("branch", "--list", "holdout/*") == ""


def test_the_out_of_time_slice_is_the_newest_share_and_never_cuts_a_day():
    from retrain.core.config import DatasetConfig

    ds = DatasetConfig.model_validate(
        {
            "name": "d",
            "target": "y",
            "time_column": "t",
            "features": [{"name": "x", "type": "numeric"}],
            "out_of_time": {"share": 0.1, "min_rows": 5},
        }
    )
    days = pd.to_datetime(["2024-01-01"] * 50 + ["2024-01-02"] * 45 + ["2024-01-03"] * 5, utc=True)
    frame = pd.DataFrame({"x": np.arange(100.0), "y": ["a", "b"] * 50, "t": days})
    cut, why = out_of_time.split(frame, ds)
    assert cut is not None and why == ""
    # the newest 10 rows start inside 2024-01-02: the whole day goes to the slice
    assert len(cut.judged) == 50 and cut.start == "2024-01-02" and cut.end == "2024-01-03"
    assert len(cut.fit) == 50 and cut.fit["t"].max() < cut.judged["t"].min()
    off = ds.model_copy(update={"out_of_time": ds.out_of_time.model_copy(update={"share": 0})})
    assert out_of_time.split(frame, off) == (None, "off (dataset.yaml out_of_time.share is 0)")
    few = ds.model_copy(update={"out_of_time": ds.out_of_time.model_copy(update={"min_rows": 20})})
    none, why = out_of_time.split(frame, few)
    assert none is None and "fewer than out_of_time.min_rows 20" in why


def test_out_of_time_is_reported_not_gating():
    from retrain.decide.gates import GateInputs, ModelScores, SchemaChange, evaluate_gates
    from retrain.decide.out_of_time import OutOfTimeInputs

    y = np.array(["a", "b"] * 50, dtype=object)
    worse = y.copy()
    worse[:40] = np.where(y[:40] == "a", "b", "a")

    def s(p):
        return ModelScores(p, None, None, {"p95_ms_single": 1.0, "p95_ms_batch": 1.0}, 1, 1.0)

    inputs = GateInputs(
        task="classification",
        metric="accuracy",
        y_true=y,
        subgroups={},
        candidate=s(y.copy()),
        baseline=None,
        bump_requested=None,
        schema_change=SchemaChange(),
        data_valid=True,
        out_of_time=OutOfTimeInputs(
            y_true=y,
            candidate=s(worse),
            baseline=s(y.copy()),
            slice={"rows": 100, "fit_rows": 900, "by": "time", "start": None, "end": None},
        ),
    )
    report = evaluate_gates(inputs, GatesConfig())
    oot = report.metrics["out_of_time"]
    assert oot["gain"] == pytest.approx(-0.4) and oot["upper"] < 0  # clearly worse there…
    assert report.passed  # …and still only reported
    assert "out_of_time" not in [r.name for r in report.results]
