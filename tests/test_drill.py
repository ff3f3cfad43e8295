"""``retrain drill`` end to end (issue 9, item 6): a sandbox fork, a real server on loopback,
real git, DVC and MLflow.  No GitHub involved: monitor pushes the revert to the fork's origin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_drill_rolls_back_both_bad_models_by_itself_and_restores_the_old_answers(tmp_path):
    summary = tmp_path / "summary.md"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrain",
            "drill",
            "--dir",
            str(tmp_path / "drill"),
            "--json",
            "--summary",
            str(summary),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["passed"] is True
    kinds = {r["kind"]: r for r in report["rounds"]}
    assert set(kinds) == {"failing", "constant"}
    assert kinds["failing"]["errors"] > 0 and "error_rate" in kinds["failing"]["monitor_summary"]
    assert kinds["constant"]["errors"] == 0 and "metric" in kinds["constant"]["monitor_summary"]
    for r in report["rounds"]:
        assert r["monitor_verdict"] == "rollback"
        assert r["identical_answers"] is True and r["reference_requests"] > 0
        assert r["seconds_to_rollback"] > r["bad_served_after_s"] > 0
    text = summary.read_text()
    assert "Catastrophe drill: passed" in text and "byte for byte" in text
    # The fork's history tells the story: two promotions of bad versions, two rollbacks.
    sb = tmp_path / "drill" / "work"
    log = subprocess.run(
        ["git", "log", "--first-parent", "--format=%s", "main"],
        cwd=sb,
        capture_output=True,
        text=True,
    ).stdout
    assert log.count("Rollback seattle-weather to v1.0.0") == 2


def _drill(cwd: Path, workdir: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "drill", "--dir", str(workdir), "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res, json.loads(res.stdout)


def test_the_drill_drills_a_fork_onboarded_with_retrain_init(tmp_path):
    """Issue 22, item 4: a fork whose data is its own (here the Cars regression, onboarded
    with `retrain init` and committed) used to stop with "materialised data does not match
    the repository's data.dvc".  Its sandbox now carries the fork's data; with no production
    yet, the drill bootstraps one there, and breaks that model."""
    from retrain import example

    sb = example.make_sandbox(tmp_path / "fork", PROJECT)
    example.onboard_example(sb, "cars", hold_back=0)
    _, report = _drill(sb.root, tmp_path / "drill")
    assert report["passed"] is True
    kinds = {r["kind"]: r for r in report["rounds"]}
    assert kinds["failing"]["errors"] > 0 and kinds["constant"]["errors"] == 0
    assert "for every row" in kinds["constant"]["description"]
    for r in report["rounds"]:
        assert r["monitor_verdict"] == "rollback" and r["identical_answers"] is True
    log = subprocess.run(
        ["git", "log", "--first-parent", "--format=%s", "main"],
        cwd=tmp_path / "drill" / "work",
        capture_output=True,
        text=True,
    ).stdout
    assert log.count("Rollback cars-mpg to v1.0.0") == 2
    assert sb.git("status", "--porcelain") == ""  # the fork itself is untouched


def test_the_drill_drills_the_demos_fork_after_a_batch_arrived(tmp_path):
    """The demo's own fork after it received a batch: production v1.0.0 is the fork's model
    (fetched by hash from its DVC cache), the data is the fork's, not the template's."""
    from retrain import example
    from tests.conftest import Cli, bootstrap

    sb = example.make_sandbox(tmp_path / "fork", PROJECT)
    cli = Cli(sb)
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    head = sb.git("rev-parse", "HEAD")
    _, report = _drill(sb.root, tmp_path / "drill")
    assert report["passed"] is True
    assert {r["good_version"] for r in report["rounds"]} == {"1.0.0"}
    # The drill's sandbox holds the fork's four batches, and the fork moved not at all.
    work = tmp_path / "drill" / "work"
    assert sorted(p.name for p in (work / "data" / "batches").iterdir()) == sorted(
        p.name for p in (sb.root / "data" / "batches").iterdir()
    )
    assert sb.git("rev-parse", "HEAD") == head and sb.git("status", "--porcelain") == ""
    assert cli.json("status")["production"] == "1.0.0"
