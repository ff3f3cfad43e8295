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
