"""The user's flow end to end, through the CLI, on real git, DVC and MLflow.

bootstrap → new data → scheduled run → branch retrain/v1.1.0 → merge (--no-ff, as a PR merge
does) → promote → revert of the merge → promote records the rollback.  GitHub is not
involved here: the PR is the pushed branch, the merge is done with git.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from retrain import example
from tests.conftest import Cli, bootstrap


def _alias(sb: example.Sandbox, alias: str = "production") -> str:
    mlflow.set_tracking_uri(sb.env["MLFLOW_TRACKING_URI"])
    return str(mlflow.MlflowClient().get_model_version_by_alias("seattle-weather", alias).version)


def _registry(sb: example.Sandbox, rev: str = "HEAD") -> dict:
    return yaml.safe_load(sb.git("show", f"{rev}:registry.yaml"))


def test_new_data_is_proposed_promoted_reverted_and_rolled_back(sandbox, cli: Cli, tmp_path):
    sb = sandbox
    bootstrap(sb, cli)
    st = cli.json("status")
    assert st["production"] == "1.0.0"
    assert [e["event"] for e in st["history"]] == ["promote"]
    assert sb.git("tag", "--list", "seattle-weather@v1.0.0") == "seattle-weather@v1.0.0"
    v1_mlflow = _registry(sb)["versions"][0]["mlflow"]["model_version"]
    assert _alias(sb) == v1_mlflow

    # Predictions of 1.0.0 before anything else happens: the rollback must reproduce them.
    holdout = sb.root / "data" / "holdout.csv"
    before = tmp_path / "before.csv"
    cli("predict", "--version", "1.0.0", "--input", str(holdout), "--output", str(before))

    # Nothing new: the scheduled run ends quickly, trains nothing, proposes nothing.
    skipped = cli.json("run")
    assert skipped["outcome"] == "skipped" and skipped["branch"] is None

    # A new half-year of labelled data arrives; the scheduled run retrains and proposes 1.1.0.
    example.ingest_next_batch(sb.root, sb.env)
    main_before = sb.git("rev-parse", "HEAD")
    tracked_before = sb.git("status", "--porcelain", "--untracked-files=no")
    out = cli.json("run")
    assert out["outcome"] == "proposed", out
    assert out["version"] == "1.1.0" and out["branch"] == "retrain/v1.1.0"
    assert "new_data" in out["fired"]
    assert all(g["verdict"] != "fail" for g in out["gates"]["gates"].values())
    # run left the checkout as it found it: same commit, tracked files unchanged.
    assert sb.git("rev-parse", "HEAD") == main_before
    assert sb.git("status", "--porcelain", "--untracked-files=no") == tracked_before
    assert _registry(sb)["production"] == "1.0.0"

    # The branch changes what it must: production + one appended entry, dvc.lock, the report.
    changed = set(sb.git("diff", "--name-only", "main", "retrain/v1.1.0").splitlines())
    assert {
        "registry.yaml",
        "dvc.lock",
        "reports/v1.1.0/model_card.json",
        "reports/v1.1.0/PR.md",
    } <= changed
    assert all(
        p.startswith(("reports/v1.1.0/", "artifacts/")) or p in {"registry.yaml", "dvc.lock"}
        for p in changed
    ), changed
    proposed = _registry(sb, "retrain/v1.1.0")
    assert proposed["production"] == "1.1.0"
    assert proposed["versions"][:-1] == _registry(sb)["versions"]
    new = proposed["versions"][-1]
    assert new["bump"] == "minor" and new["gates"]["baseline"] == "1.0.0"
    assert new["data"]["dvc_hash"] != _registry(sb)["versions"][0]["data"]["dvc_hash"]
    # Harmful churn against 1.0.0 (rows it got right that 1.1.0 gets wrong) is recorded,
    # gated (gates.yaml max_negative_flip_rate 0.05) and shown in the PR with the total churn
    # and its transition table, next to the key examples and what the retrain cost.
    churn = new["churn"]
    assert churn["kind"] == "negative_flips" and churn["max"] == 0.05
    assert churn["lower"] <= churn["value"] <= churn["upper"]
    assert churn["value"] == pytest.approx(churn["negative"] / churn["rows"], abs=1e-6)
    assert churn["negative"] + churn["positive"] <= churn["changed"]
    assert new["gates"]["results"]["churn"]["verdict"] == "pass"
    # …and it beats the model that ignores its inputs, as the bootstrap did
    assert new["gates"]["results"]["trivial_baseline"]["verdict"] == "pass"
    assert _registry(sb)["versions"][0]["gates"]["results"]["trivial_baseline"]["verdict"] == (
        "pass"
    )
    assert out["gates"]["gates"]["key_examples"]["verdict"] == "pass"
    assert out["cost"]["wall_seconds"] > 0 and out["cost"]["fit_seconds"] > 0
    pr = sb.git("show", "retrain/v1.1.0:reports/v1.1.0/PR.md")
    assert "### Prediction churn" in pr and "| production ↓ · candidate → |" in pr
    assert f"**{churn['negative']} of {churn['rows']}** holdout rows that production" in pr
    assert f"In all {churn['changed']} rows" in pr
    assert "### Key examples" in pr and "a hot dry summer day" in pr
    assert "### What the retrain cost" in pr

    # The promotion gate (what CI runs on the PR) accepts the branch.
    sb.git("checkout", "-q", "retrain/v1.1.0")
    cli("verify", "--base", "main")
    sb.git("checkout", "-q", "main")

    # Merge, as the PR button does, and promote.
    merge = example.merge_proposal(sb, "retrain/v1.1.0")
    promoted = cli.json("promote")
    assert promoted["event"] == "promote" and promoted["version"] == "1.1.0"
    st = cli.json("status")
    assert st["production"] == "1.1.0"
    assert sb.git("tag", "--list", "seattle-weather@v1.1.0") == "seattle-weather@v1.1.0"
    v11_mlflow = proposed["versions"][-1]["mlflow"]["model_version"]
    assert _alias(sb) == v11_mlflow and _alias(sb, "champion") == v11_mlflow

    # 3 a.m.: revert the merge. Promote sees production move back and records a rollback.
    sb.git("revert", "--no-edit", "-m", "1", merge)
    rolled = cli.json("promote")
    assert rolled["event"] == "rollback" and rolled["version"] == "1.0.0"
    assert rolled["previous"] == "1.1.0"
    st = cli.json("status")
    assert st["production"] == "1.0.0"
    assert [e["event"] for e in st["history"]] == ["promote", "promote", "rollback"]
    assert st["history"][-1]["from"] == "1.1.0"
    assert _alias(sb) == v1_mlflow
    stage_tags = sb.git("tag", "--list", "seattle-weather#production#*").split()
    assert len(stage_tags) == 3
    after = tmp_path / "after.csv"
    cli("predict", "--version", "1.0.0", "--input", str(holdout), "--output", str(after))
    assert after.read_bytes() == before.read_bytes()
    # GTO reads the same history from our tags (its grammar): production is back on v1.0.0.
    gto = subprocess.run(
        [str(Path(sys.executable).with_name("gto")), "show", "--json"],
        cwd=sb.root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(gto.stdout)["seattle-weather"]["stage"]["production"] == "v1.0.0"
    # Promote is idempotent: running it again on the same commit records nothing new.
    assert cli.json("promote")["event"] == "rollback"
    assert len(sb.git("tag", "--list", "seattle-weather#production#*").split()) == 3


def test_rollback_on_a_fresh_clone_needs_no_training_data(sandbox, cli: Cli, tmp_path, fake_gh):
    """On-call flow: a fresh clone with no data and an empty DVC cache rolls back with one
    command; promote then redeploys the old artifact fetched from the DVC remote."""
    sb = sandbox
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run")
    assert out["version"] == "1.1.0", out
    example.merge_proposal(sb, out["branch"])
    cli("promote", "--push-tags")

    oncall = tmp_path / "oncall"
    subprocess.run(["git", "clone", "-q", str(sb.origin), str(oncall)], check=True, env=cli.env)
    assert not (oncall / "data" / "batches").exists()
    res = cli("rollback", "--push", cwd=oncall)
    assert "1.1.0 -> v1.0.0" in res.stdout
    assert yaml.safe_load((oncall / "registry.yaml").read_text())["production"] == "1.0.0"
    assert subprocess.run(
        ["git", "log", "-1", "--format=%s", "origin/main"],
        cwd=oncall,
        capture_output=True,
        text=True,
    ).stdout.startswith("Rollback")
    promoted = cli.json("promote", cwd=oncall)
    assert promoted["event"] == "rollback" and promoted["version"] == "1.0.0"
    # v1.0.0's bytes were deserialised when it was first promoted (its tag records their
    # sha256): going back to it compares the sha256, without skops.
    assert any("loaded when first promoted" in n for n in promoted["notes"]), promoted
    deployed = json.loads((oncall / ".retrain" / "deployed" / "current.json").read_text())
    assert deployed["version"] == "1.0.0" and deployed["event"] == "rollback"
    assert not (oncall / "data" / "batches").exists()
    assert not (oncall / "artifacts" / "train" / "model.skops").exists()

    # The same rollback promoted from another clone while v1.0.0's object in the DVC remote
    # has one byte changed: the sha256 refuses it and nothing is deployed.
    md5 = yaml.safe_load((oncall / "registry.yaml").read_text())["versions"][0]["artifact"]["md5"]
    obj = sb.dvc_remote / "files" / "md5" / md5[:2] / md5[2:]
    original = obj.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    obj.write_bytes(bytes(tampered))
    try:
        second = tmp_path / "oncall2"
        subprocess.run(["git", "clone", "-q", str(sb.origin), str(second)], check=True, env=cli.env)
        res = cli("promote", cwd=second, check=False)
        assert res.returncode == 2, res.stderr
        assert "sha256 mismatch" in res.stderr and "refusing to load" in res.stderr
        assert not (second / ".retrain" / "deployed" / "current.json").exists()
    finally:
        obj.write_bytes(original)


def test_worse_candidate_is_gated_and_nothing_is_proposed(sandbox, cli: Cli):
    sb = sandbox
    bootstrap(sb, cli)
    (sb.root / "configs" / "model.yaml").write_text(
        "estimator: decision_tree\nrandom_state: 0\nparams:\n  max_depth: 1\n"
    )
    sb.git("commit", "-qam", "model: try a stump")
    registry_before = (sb.root / "registry.yaml").read_bytes()
    out = cli.json("run", "--force", "--reason", "try a smaller model")
    assert out["outcome"] == "gated", out
    assert out["branch"] is None and out["version"] is None
    assert out["gates"]["gates"]["improvement"]["verdict"] == "fail"
    assert sb.git("branch", "--list", "retrain/*") == "retrain/v1.0.0"  # the merged bootstrap
    assert "v1.1.0" not in sb.git("ls-remote", "--heads", "origin")
    assert (sb.root / "registry.yaml").read_bytes() == registry_before
    gate = json.loads((sb.root / "reports" / "latest" / "gate.json").read_text())
    assert gate["passed"] is False
    assert "improvement" in (sb.root / "reports" / "latest" / "summary.md").read_text()


def test_scheduled_run_opens_a_pull_request_through_gh(sandbox, cli: Cli, fake_gh):
    """`gh` is a recording stand-in on PATH (GitHub cannot be reached from tests)."""
    from tests.conftest import gh_calls

    out = cli.json("run", "--open-pr")
    assert out["outcome"] == "proposed" and out["pr_url"].startswith("https://github.com/")
    calls = gh_calls(fake_gh)
    assert len(calls) == 1
    argv = calls[0]["argv"]
    assert argv[:2] == ["pr", "create"]
    assert argv[argv.index("--head") + 1] == "retrain/v1.0.0"
    assert argv[argv.index("--title") + 1].startswith("Promote seattle-weather v1.0.0")
    assert "| Gate" in calls[0]["body"] or "gate" in calls[0]["body"].lower()
    assert sandbox.git("ls-remote", "--heads", "origin", "retrain/v1.0.0")


def test_triggers_report_nothing_when_nothing_changed(sandbox, cli: Cli):
    bootstrap(sandbox, cli)
    rep = cli.json("triggers")
    assert rep["retrain"] is False and rep["fired"] == []
    assert rep["checks"]["new_data"]["value"] == 0
    assert rep["checks"]["new_data"]["threshold"] == 100


def test_a_shifted_batch_fires_drift_alone_and_the_run_retrains(sandbox, cli: Cli):
    """60 new rows (below the new-data threshold of 100) from a heat wave: only drift fires,
    and the scheduled run retrains on it."""
    import numpy as np
    import pandas as pd

    sb = sandbox
    bootstrap(sb, cli)
    path = example.write_batch(sb.root, "2013-H2")
    frame = pd.read_csv(path).head(60)
    for col in ("temp_max", "temp_min"):
        frame[col] = np.round(frame[col] + 15, 1).clip(upper=50)
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.1f")
    sb.run("dvc", "add", "-q", "data")
    sb.git("commit", "-qam", "data: a hot half-year")
    rep = cli.json("triggers")
    assert rep["checks"]["new_data"] == {
        "value": 60,
        "threshold": 100,
        "fired": False,
        "unit": "rows",
    }
    assert rep["checks"]["data_drift"]["fired"]
    assert {"temp_max", "temp_min"} <= set(rep["checks"]["data_drift"]["drifted_features"])
    assert "data_drift" in rep["fired"] and "new_data" not in rep["fired"] and rep["retrain"]
    out = cli.json("run")
    assert out["outcome"] in {"proposed", "gated"}, out
    assert "data_drift" in out["fired"]
    assert out["gates"]["gates"]["data_valid"]["verdict"] == "pass"


def test_a_schema_change_is_proposed_as_major_whatever_bump_was_requested(sandbox, cli: Cli):
    """Dropping a feature changes the input schema: the proposal is 2.0.0 even though a
    patch was requested, and the PR names the column."""
    sb = sandbox
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    ds = sb.root / "configs" / "dataset.yaml"
    text = ds.read_text().replace("  - {name: wind, type: numeric, min: 0, max: 40}\n", "")
    ds.write_text(text.replace("labels: [", "ignore_columns: [wind]\nlabels: ["))
    sb.git("commit", "-qam", "dataset: stop using wind")
    out = cli.json("run", "--bump", "patch", "--reason", "wind sensor retired")
    assert out["outcome"] == "proposed", out
    assert out["version"] == "2.0.0" and out["bump"] == "major"
    assert out["gates"]["gates"]["schema_bump"]["verdict"] == "pass"
    body = sb.git("show", "retrain/v2.0.0:reports/v2.0.0/PR.md")
    assert "wind" in body and "MAJOR" in body
    proposed = yaml.safe_load(sb.git("show", "retrain/v2.0.0:registry.yaml"))
    assert "wind" not in proposed["versions"][-1]["schema"]["features"]


def test_a_regression_model_runs_the_same_loop(sandbox, cli: Cli, tmp_path):
    """The same data as a regression problem (tomorrow's forecast desk wants temp_max):
    bootstrap, new data, proposal with RMSE gates, promote, predict."""
    sb = sandbox
    ds = sb.root / "configs" / "dataset.yaml"
    text = ds.read_text()
    text = text.replace("target: weather", "target: temp_max").replace(
        "task: classification", "task: regression"
    )
    text = text.replace("labels: [drizzle, fog, rain, snow, sun]", "ignore_columns: [weather]")
    text = text.replace("  - {name: temp_max, type: numeric, min: -30, max: 50}\n", "")
    ds.write_text(text)
    (sb.root / "configs" / "gates.yaml").write_text(
        (sb.root / "configs" / "gates.yaml")
        .read_text()
        .replace("primary_metric: accuracy", "primary_metric: rmse")
        .replace("metric: f1_macro", "metric: rmse")  # the trivial baseline's metric too
        .replace("max_regression: 0.05   #", "max_regression: 1.0   #")
        .replace("min_delta: 0.01", "min_delta: 0.0")
    )
    # The fork's key examples follow the new target: temp_max is now what is predicted.
    (sb.root / "data" / "key_examples.csv").write_text(
        "precipitation,temp_min,wind,season,expected,tolerance,note\n"
        "0.0,15.0,2.5,summer,28.0,10.0,a hot dry summer day\n"
        "20.0,5.0,5.0,autumn,,,a stormy autumn day\n"
    )
    sb.run("dvc", "add", "-q", "data")
    sb.git("commit", "-qam", "model: predict temp_max")
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run")
    assert out["outcome"] in {"proposed", "gated"}, out
    gates = out["gates"]
    assert gates["metric"] == "rmse"
    assert set(gates["metrics"]["candidate"]) >= {"rmse", "mae", "r2"}
    assert gates["gates"]["improvement"]["verdict"] in {"pass", "fail"}
    pred = tmp_path / "pred.csv"
    res = cli(
        "predict",
        "--version",
        "1.0.0",
        "--input",
        str(sb.root / "data/holdout.csv"),
        "--output",
        str(pred),
    )
    assert "ignoring column(s) ['date', 'temp_max', 'weather']" in res.stderr
    values = [float(v) for v in pred.read_text().splitlines()[1:]]
    assert len(values) == 365 and -30 < min(values) < max(values) < 50
