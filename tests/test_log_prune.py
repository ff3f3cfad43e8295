"""``retrain log prune``: the prediction log keeps ``log_retention``, never what monitor judges.

A project (this one's configs, a hand-written registry committed at a chosen date: no model
is trained) whose canary step began 40 days ago, with a retention of 30 days, and a real log
(SQLite, and Debian's PostgreSQL from tests/postgres.py) holding rows from before the step,
rows of the step older than the retention, and recent rows, with labels.  Prune deletes only
what neither the retention nor the monitor keeps, a few rows per transaction, and the
monitor's judgement is the same before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from retrain.core import registry as reg
from retrain.core.config import load_config, load_serve_config
from retrain.rollout import monitor, retention
from retrain.serve.predlog import labels, open_log, predictions
from tests.conftest import PROJECT
from tests.rollout_frames import hand_entry

NOW = datetime.now(UTC).replace(microsecond=0)


def _entry(version: str) -> dict:
    return hand_entry(
        version,
        created="2026-01-01T00:00:00Z",
        accuracy=0.8,
        files={"data/b.csv": 9},
        start="2025-01-01",
        end="2025-10-01",
        initial="0.9.0",
    )


def _commit(root: Path, message: str, when: datetime) -> None:
    stamp = when.isoformat()
    env = {**os.environ, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_DATE": stamp}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=root, check=True, env=env)


def _registry(root: Path, rollout: reg.Rollout | None) -> None:
    r = reg.Registry(
        model="seattle-weather",
        production="1.0.0",
        versions=[_entry("0.9.0"), _entry("1.0.0"), _entry("1.1.0")],
    )
    reg.save(root, reg.with_rollout(r, rollout) if rollout else r)


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Path:
    """The canary 1.1.0 at 10% since 40 days ago; log_retention 30d."""
    root = tmp_path / "p"
    shutil.copytree(PROJECT / "configs", root / "configs")
    release = root / "configs" / "release.yaml"
    release.write_text(release.read_text().replace("strategy: direct", "strategy: canary"))
    (root / "configs" / "serve.yaml").write_text("log_retention: 30d\n")
    (root / ".gitignore").write_text(".retrain/\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    _registry(root, reg.Rollout(reg.Canary("1.1.0", 10)))
    _commit(root, "Rollout: canary 1.1.0 at 10%", NOW - timedelta(days=40))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
    else:
        url = request.getfixturevalue("postgres").create_db(f"p_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("RETRAIN_LOG_URL", url)
    monkeypatch.delenv("RETRAIN_LOG_URL_FILE", raising=False)
    return root


def _serve(root: Path, name: str, version: str, role: str, days_ago: float, n: int) -> None:
    """``n`` one-row requests served ``days_ago``, each labelled by a token a minute later."""
    log = open_log(os.environ["RETRAIN_LOG_URL"], root)
    at = NOW - timedelta(days=days_ago)
    log.write([
        {"request_id": f"{name}-{i}", "row": 0, "at": at + timedelta(seconds=i),
         "version": version, "role": role, "prediction": "sun" if i % 3 else "rain",
         "latency_ms": 2.0 + i % 5}
        for i in range(n)
    ])  # fmt: skip
    log.add_feedback([{"request_id": f"{name}-{i}", "label": "sun"} for i in range(n)],
                     by="labeller")  # fmt: skip
    with log.engine.begin() as conn:  # the labels were posted a minute after their rows
        conn.execute(
            labels.update()
            .where(labels.c.request_id.like(f"{name}-%"))
            .values(at=(at + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        )
    log.close()


def _left(root: Path) -> dict[str, int]:
    """Rows left per group (the request id's prefix), and labels left."""
    from collections import Counter

    log = open_log(os.environ["RETRAIN_LOG_URL"], root)
    with log.engine.connect() as conn:
        ids = conn.execute(sa.select(predictions.c.request_id)).scalars().all()
        n_labels = conn.execute(sa.select(sa.func.count()).select_from(labels)).scalar_one()
    log.close()
    return {**Counter(str(i).split("-")[0] for i in ids), "labels": int(n_labels)}


def _fill(root: Path) -> None:
    _serve(root, "old", "0.9.0", "production", 45, 30)  # before the step, past retention
    _serve(root, "pre", "1.0.0", "production", 41, 12)  # production, before the step began
    _serve(root, "stp", "1.0.0", "production", 35, 25)  # the step's, older than retention
    _serve(root, "can", "1.1.0", "canary", 35, 8)  # the canary's, older than retention
    _serve(root, "new", "1.0.0", "production", 2, 20)  # recent


def test_prune_deletes_what_retention_lets_go_in_batches_and_never_what_monitor_judges(project):
    root = project
    _fill(root)
    cfg = load_config(root)
    before = monitor.observe(cfg, now=NOW).to_dict()
    log = open_log(os.environ["RETRAIN_LOG_URL"], root)
    dry = retention.prune(cfg, load_serve_config(root), log, now=NOW, batch=7, dry_run=True)
    assert (dry.rows, dry.labels) == (42, 42) and _left(root)["old"] == 30  # nothing deleted
    result = retention.prune(cfg, load_serve_config(root), log, now=NOW, batch=7)
    log.close()
    assert (result.rows, result.labels) == (42, 42)
    assert result.batches == 7 + 7  # 42 rows and 42 labels, 7 a transaction, then none left
    assert result.kept is not None and result.kept.versions == ["1.0.0", "1.1.0"]
    assert _left(root) == {"stp": 25, "can": 8, "new": 20, "labels": 53}
    after = monitor.observe(cfg, now=NOW).to_dict()
    assert after == before  # every row and label the monitor judges is still there
    assert [s["requests"] for s in after["stats"]] == [45, 8]

    # The rollout ends (the canary is removed): its step's old rows are the retention's now.
    _registry(root, None)
    _commit(root, "Rollout: remove the canary", NOW - timedelta(minutes=5))
    log = open_log(os.environ["RETRAIN_LOG_URL"], root)
    result = retention.prune(load_config(root), load_serve_config(root), log, now=NOW)
    log.close()
    assert result.kept is None and (result.rows, result.labels) == (33, 33)
    assert _left(root) == {"new": 20, "labels": 20}


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "retrain", *args], cwd=root,
                          capture_output=True, text=True)  # fmt: skip


def test_the_prune_command_says_what_it_deleted_and_what_it_kept_for_monitor(project):
    root = project
    _fill(root)
    res = _cli(root, "log", "prune", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "would delete 42 served row(s) and 42 label(s) older than" in res.stdout
    assert "kept the rows of 1.0.0, 1.1.0 served since" in res.stdout
    assert "the rollout step being judged" in res.stdout
    out = json.loads(_cli(root, "log", "prune", "--json").stdout)
    assert out["rows_deleted"] == 42 and out["labels_deleted"] == 42 and not out["dry_run"]
    again = json.loads(_cli(root, "log", "prune", "--json").stdout)
    assert again["rows_deleted"] == 0  # nothing left to delete: a second run is a no-op


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("log_retention: 0d\n", "log_retention: expected a duration above zero like 30d"),
        ("log_retention: a month\n", "log_retention: expected a duration like 90s, 30m, 24h or 7d"),
    ],
)
def test_a_bad_retention_is_one_line_exit_2_and_nothing_is_deleted(project, text, message):
    root = project
    _fill(root)
    (root / "configs" / "serve.yaml").write_text(text)
    res = _cli(root, "log", "prune")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "configs/serve.yaml" in res.stderr and message in res.stderr
    assert _left(root)["old"] == 30


def test_retention_off_or_no_log_deletes_nothing(project, tmp_path):
    root = project
    _fill(root)
    (root / "configs" / "serve.yaml").write_text("log_retention: null\n")
    res = _cli(root, "log", "prune")
    assert res.returncode == 0 and "log_retention: null; nothing is pruned" in res.stdout
    assert _left(root)["old"] == 30
    env_url = os.environ["RETRAIN_LOG_URL"]
    if env_url.startswith("sqlite"):
        os.environ["RETRAIN_LOG_URL"] = f"sqlite:///{tmp_path / 'never-written.db'}"
        try:
            (root / "configs" / "serve.yaml").write_text("log_retention: 30d\n")
            res = _cli(root, "log", "prune")
            assert res.returncode == 0 and "nothing to prune" in res.stdout
            assert not (tmp_path / "never-written.db").exists()
        finally:
            os.environ["RETRAIN_LOG_URL"] = env_url


def test_a_bad_batch_size_is_one_line_exit_2(project):
    res = _cli(project, "log", "prune", "--batch", "0")
    assert res.returncode == 2 and "--batch: expected a positive number of rows" in res.stderr
