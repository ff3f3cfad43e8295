"""Retraining triggers (DESIGN.md section 4), on the bundled example's real data.

The production entry is written by hand so each story controls its age and its data; the
model-based checks (prediction drift, performance) are covered by the end-to-end stories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain import example
from retrain.core import registry as reg
from retrain.core.config import load_config
from retrain.decide import triggers
from tests.conftest import PROJECT
from tests.conftest import config_without_model_triggers as _config

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(PROJECT / "configs", root / "configs")
    example.materialise(root)
    shutil.copy(PROJECT / "registry.yaml", root / "registry.yaml")
    return root


def _production(root: Path, *, age_days: float) -> reg.Registry:
    files = {
        f"data/batches/{b}.csv": n
        for b, n in zip(example.BATCHES[:3], (182, 184, 181), strict=True)
    }
    created = (NOW - timedelta(days=age_days)).isoformat().replace("+00:00", "Z")
    entry = {
        "version": "1.0.0",
        "created": created,
        "bump": "initial",
        "data": {"files": files, "start": "2012-07-01", "end": "2013-06-30", "total_rows": 547},
        "schema": {"fingerprint": "x"},
        "artifact": {"path": "m.skops", "md5": "0" * 32, "sha256": "a" * 64},
    }
    return reg.Registry(model="seattle-weather", production="1.0.0", versions=[entry])


def test_bootstrap_fires_when_nothing_is_in_production(project):
    rep = triggers.check(_config(project), reg.load(project), now=NOW)
    assert rep.retrain and rep.fired == ["bootstrap"]


def test_nothing_fires_when_no_data_arrived_and_the_model_is_young(project):
    rep = triggers.check(_config(project), _production(project, age_days=10), now=NOW)
    assert not rep.retrain and rep.fired == []
    assert rep.checks["new_data"] == {"value": 0, "threshold": 100, "fired": False, "unit": "rows"}
    assert rep.checks["calendar"]["value"] == 10.0 and not rep.checks["calendar"]["fired"]


def test_calendar_fires_when_production_is_older_than_the_limit(project):
    rep = triggers.check(_config(project), _production(project, age_days=91), now=NOW)
    assert rep.fired == ["calendar"] and rep.retrain
    assert rep.checks["calendar"]["threshold"] == 90


def test_new_labelled_rows_fire_the_new_data_trigger(project):
    example.write_batch(project, "2013-H2")
    rep = triggers.check(_config(project), _production(project, age_days=10), now=NOW)
    assert rep.checks["new_data"]["value"] == 184
    assert "new_data" in rep.fired and rep.retrain


def test_cooldown_holds_back_a_retrain_but_a_manual_run_overrides_it(project):
    example.write_batch(project, "2013-H2")
    cfg = _config(project)
    young = _production(project, age_days=0.25)
    rep = triggers.check(cfg, young, now=NOW)
    assert "new_data" in rep.fired and not rep.retrain
    assert rep.cooldown["active"] and "cooldown" in rep.note
    manual = triggers.check(cfg, young, reason="hotfix for label noise", now=NOW)
    assert manual.retrain and {"manual", "new_data"} <= set(manual.fired)
    assert manual.checks["manual"]["value"] == "hotfix for label noise"


def test_a_shifted_batch_fires_data_drift_on_the_shifted_columns(project):
    """A heat wave: every temperature of the new half-year is 15 degrees higher."""
    path = example.write_batch(project, "2013-H2")
    frame = pd.read_csv(path)
    frame["temp_max"] = np.round(frame["temp_max"] + 15, 1).clip(upper=50)
    frame["temp_min"] = np.round(frame["temp_min"] + 15, 1).clip(upper=50)
    frame["wind"] = np.round(frame["wind"] * 2.5, 1).clip(upper=40)
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.1f")
    cfg = _config(project)
    rep = triggers.check(cfg, _production(project, age_days=10), now=NOW)
    drift = rep.checks["data_drift"]
    assert drift["fired"], drift
    assert {"temp_max", "temp_min", "wind"} <= set(drift["drifted_features"])
    assert "precipitation" not in drift["drifted_features"]


def test_an_unshifted_batch_of_the_same_season_does_not_fire_drift(project):
    """2013-H1 against 2012-H1: same season, a year apart; no feature should be flagged."""
    reference = pd.read_csv(project / "data/batches/2012-H1.csv")
    current = pd.read_csv(project / "data/batches/2013-H1.csv")
    from retrain.decide import drift

    cfg = load_config(project)
    kinds = {f.name: f.type for f in cfg.dataset.features}
    feats = list(kinds)
    rep = drift.drift_report(reference[feats], current[feats], kinds=kinds, config=cfg.drift)
    assert not rep.drifted, rep.to_dict()


def _weak_rule(**rule):
    from retrain.core.config import TriggersConfig

    return {"min_expected_gain": TriggersConfig.MinExpectedGain(**rule)}


def test_weak_triggers_below_min_expected_gain_skip_the_run_and_say_why(project):
    example.write_batch(project, "2013-H2")  # 184 new rows
    prod = _production(project, age_days=10)
    rep = triggers.check(
        _config(project, **_weak_rule(new_rows=500, drift_share=1.0)), prod, now=NOW
    )
    assert "new_data" in rep.fired and not rep.retrain
    assert rep.note.startswith("below min_expected_gain: only weak triggers fired (")
    assert "new_data 184 rows < 500" in rep.note
    gain = rep.to_dict()["min_expected_gain"]
    assert gain["skip"] and gain["new_rows"] == 500 and len(gain["weak"]) == len(rep.fired)


def test_a_strong_trigger_or_a_manual_run_retrains_despite_min_expected_gain(project):
    example.write_batch(project, "2013-H2")
    cfg = _config(project, **_weak_rule(new_rows=500, drift_share=1.0))
    enough = triggers.check(
        _config(project, **_weak_rule(new_rows=150, drift_share=1.0)),
        _production(project, age_days=10),
        now=NOW,
    )
    assert enough.retrain  # 184 rows >= 150: new_data is not weak
    old = triggers.check(cfg, _production(project, age_days=91), now=NOW)
    assert "calendar" in old.fired and old.retrain  # calendar is never weak
    manual = triggers.check(cfg, _production(project, age_days=10), reason="relabelled", now=NOW)
    assert manual.retrain and manual.to_dict().get("min_expected_gain") is None


def test_a_scheduled_run_below_min_expected_gain_exits_0_skipped(sandbox, tmp_path):
    """CLI level: ``retrain run --json`` on a fork whose production entry is written by hand
    (the triggers that need its artifact are off), after a small batch arrived."""

    sb = sandbox
    registry = _production(sb.root, age_days=10)
    entry = registry.versions[0]
    entry.created = (datetime.now(UTC) - timedelta(days=10)).isoformat().replace("+00:00", "Z")
    (sb.root / "registry.yaml").write_text(reg.dumps(registry))
    t = yaml.safe_load((sb.root / "configs" / "triggers.yaml").read_text())
    t["prediction_drift"] = {"enabled": False}
    t["performance"] = {"enabled": False}
    t["min_expected_gain"] = {"new_rows": 500, "drift_share": 1.0}
    (sb.root / "configs" / "triggers.yaml").write_text(yaml.safe_dump(t))
    sb.git("commit", "-qam", "a production entry and min_expected_gain")
    example.ingest_next_batch(sb.root, sb.env)
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "run", "--json"],
        cwd=sb.root,
        env={**os.environ, **sb.env},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["outcome"] == "skipped" and out["version"] is None and out["branch"] is None
    assert "new_data" in out["fired"]
    assert "below min_expected_gain" in out["triggers"]["note"]
    assert out["triggers"]["min_expected_gain"]["skip"] is True
    assert sb.git("branch", "--list", "retrain/*") == ""


# ----------------------------------------------------------------- the no-frame fast path
def test_a_week_with_nothing_new_reads_no_frame_once_the_batches_were_checked(project, monkeypatch):
    """After one full read, the same bytes under the same rules are known to pass with the
    same rows: the check answers without reading a frame, with the same report."""
    from retrain.pipeline import batchcheck, dataset

    cfg, prod = _config(project), _production(project, age_days=10)
    first = triggers.check(cfg, prod, now=NOW)  # reads and checks, and records the batches
    assert (project / batchcheck.RECORD).is_file()

    def no_reading(*args, **kwargs):
        raise AssertionError("a batch was read")

    with monkeypatch.context() as m:
        m.setattr(dataset, "read_table", no_reading)
        again = triggers.check(cfg, prod, now=NOW)
    assert again.to_dict() == first.to_dict() and not again.retrain


@pytest.mark.parametrize("change", ["byte", "new file", "rule"])
def test_any_change_to_the_batches_or_their_rules_reads_them_again(project, change):
    from retrain.pipeline import batchcheck

    cfg, prod = _config(project), _production(project, age_days=10)
    triggers.check(cfg, prod, now=NOW)
    assert batchcheck.recall(cfg.dataset, project) is not None
    if change == "byte":
        path = project / "data/batches/2012-H2.csv"
        path.write_text(path.read_text().replace("sun", "rain", 1))
    elif change == "new file":
        example.write_batch(project, "2013-H2")
    else:
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"min_rows": 2})})
    assert batchcheck.recall(cfg.dataset, project) is None
    rep = triggers.check(cfg, prod, now=NOW)
    if change == "new file":
        assert rep.checks["new_data"]["value"] == 184
    elif change == "byte":  # same rows, so still not new, but it was read and checked again
        assert rep.checks["new_data"]["value"] == 0
    assert batchcheck.recall(cfg.dataset, project) is not None  # recorded anew
