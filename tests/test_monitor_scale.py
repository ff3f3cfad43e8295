"""``retrain monitor`` on the live log aggregates in the database and judges as before.

The project is a copy of this one's configs in a git repository whose registry.yaml names
v1.0.0 in production and v1.1.0 as a canary at 10% (or as a shadow), committed at a fixed
date: no model is trained, the judgement needs none.  The served rows are written to a real
log (SQLite, and Debian's PostgreSQL started by tests/postgres.py) the way the server writes
them: requests of several rows, some failed, labels posted by a token, some without one, some
rows labelled twice.  The same rows are judged twice: from the database (what ``retrain
monitor`` does) and from the frame of every row (what an export given to ``--log`` is), and
the two observations must be the same, number for number.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrain.core import registry as reg
from retrain.core.config import load_config
from retrain.rollout import analysis, monitor
from retrain.rollout.logsql import SqlView
from retrain.serve.predlog import PredictionLog, open_log
from tests.conftest import PROJECT
from tests.rollout_frames import hand_entry

STEP_AT = "2026-11-20T00:00:00+00:00"
CLASSES = ["drizzle", "fog", "rain", "snow", "sun"]


def _entry(version: str, accuracy: float) -> dict:
    return hand_entry(
        version,
        created="2026-11-01T00:00:00Z",
        accuracy=accuracy,
        files={"data/batches/b.csv": 9},
        start="2026-01-01",
        end="2026-10-01",
    )


def make_project(root: Path, rollout: reg.Rollout, analysis_keys: str = "") -> Path:
    """Configs of this project (strategy canary, small thresholds), a registry with the
    ``rollout``, committed at ``STEP_AT``; the log is ``.retrain/predictions.db``."""
    shutil.copytree(PROJECT / "configs", root / "configs")
    release = root / "configs" / "release.yaml"
    text = release.read_text().replace("strategy: direct", "strategy: canary")
    text += (
        "  analysis: {min_requests: 50, min_labels: 40, n_resamples: 300"
        + analysis_keys
        + "}\n  challenger: {min_labels: 60, window: 0s, min_delta: 0.02}\n"
    )
    release.write_text(text)
    r = reg.Registry(
        model="seattle-weather", production="1.0.0", versions=[_entry("1.0.0", 0.8),
                                                               _entry("1.1.0", 0.82)]
    )  # fmt: skip
    reg.save(root, reg.with_rollout(r, rollout))
    (root / ".gitignore").write_text(".retrain/\n")
    env = {**os.environ, "GIT_COMMITTER_DATE": STEP_AT, "GIT_AUTHOR_DATE": STEP_AT}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "Rollout step"]):  # fmt: skip
        subprocess.run(cmd, cwd=root, check=True, env=env)
    return root


def serve_rows(
    log: PredictionLog,
    rng: np.random.Generator,
    n_requests: int,
    *,
    accuracy: dict[str, float],
    shadow: str | None = None,
    canary: str | None = None,
    error_rate: float = 0.02,
    start: str = "2026-11-20T01:00:00Z",
) -> None:
    """``n_requests`` requests of 1 to 6 rows, as the server logs them: production answers
    (or the canary, one in five), a shadow's answers to the same requests when ``shadow``;
    labels posted for 60% of rows by a token, for 10% without one, some rows twice."""
    t0 = pd.Timestamp(start)
    records, labels, anonymous = [], [], []
    for i in range(n_requests):
        rid = uuid.UUID(int=int(rng.integers(0, 2**63))).hex
        at = (t0 + pd.Timedelta(seconds=7 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        size = int(rng.integers(1, 7))
        answered = [("1.0.0", "production")]
        if canary is not None and rng.random() < 0.2:
            answered = [(canary, "canary")]
        if shadow is not None:
            answered.append((shadow, "shadow"))
        truth = rng.integers(0, 5, size=size)
        for version, role in answered:
            failed = rng.random() < error_rate
            latency = round(float(rng.gamma(3.0, 4.0 if role == "canary" else 3.0)), 3)
            for j in range(size):
                right = rng.random() < accuracy[version]
                pred = None if failed else CLASSES[(truth[j] + (0 if right else 1)) % 5]
                proba = None if failed else {c: (0.6 if c == pred else 0.1) for c in CLASSES}
                records.append({"request_id": rid, "row": j, "at": at, "version": version,
                                "role": role, "prediction": pred, "proba": proba,
                                "latency_ms": latency, "input_hash": f"h{i}-{j}"})  # fmt: skip
        for j in range(size):
            u = rng.random()
            if u < 0.6:
                labels.append({"request_id": rid, "row": j, "label": CLASSES[truth[j]]})
                if u < 0.05:  # a wrong label first, then the right one: the latest counts
                    labels.insert(-1, {"request_id": rid, "row": j, "label": "fog"})
            elif u < 0.7:
                anonymous.append({"request_id": rid, "row": j, "label": CLASSES[truth[j]]})
    log.write(records)
    assert log.add_feedback(labels, by="labeller") == []
    assert log.add_feedback(anonymous, by=None) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    server = request.getfixturevalue("postgres")
    return str(server.create_db(f"m_{uuid.uuid4().hex[:12]}"))


def _both(root: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    """The observation from the database and from the frame of every row, as JSON."""
    monkeypatch.setenv("RETRAIN_LOG_URL", url)
    monkeypatch.delenv("RETRAIN_LOG_URL_FILE", raising=False)
    cfg = load_config(root)
    now = datetime.now(UTC)
    live = monitor.observe(cfg, now=now)
    frame, source = monitor.load_log(cfg, monitor.step_started(root))
    exported = monitor.observe(cfg, frame, now=now, source=source)
    assert live.source == source
    return live.to_dict(), exported.to_dict()


@pytest.mark.parametrize("sample", [None, 100], ids=["every-label", "sampled"])
def test_a_canary_judged_in_the_database_gets_the_verdict_and_numbers_of_its_export(
    tmp_path, log_url, monkeypatch, sample
):
    extra = "" if sample is None else f", max_labelled_rows: {sample}"
    root = make_project(tmp_path / "p", reg.Rollout(reg.Canary("1.1.0", 10)), extra)
    log = open_log(log_url, root)
    serve_rows(log, np.random.default_rng(1), 400, accuracy={"1.0.0": 0.7, "1.1.0": 0.8},
               canary="1.1.0")  # fmt: skip
    # Rows before the step began are not judged, by either path.
    serve_rows(log, np.random.default_rng(2), 20, accuracy={"1.0.0": 0.1, "1.1.0": 0.1},
               canary="1.1.0", start="2026-11-19T12:00:00Z")  # fmt: skip
    log.close()
    live, exported = _both(root, log_url, monkeypatch)
    assert live == exported
    assert live["mode"] == "canary" and live["verdict"] in ("advance", "hold", "rollback")
    prod, can = live["stats"]
    assert (prod["role"], can["role"]) == ("production", "canary")
    assert prod["requests"] > can["requests"] > 50 and prod["rows"] > prod["requests"]
    assert prod["errors"] > 0 and prod["error_rows"] >= prod["errors"]
    if sample is None:
        assert prod["labels_used"] is None and can["labels_used"] is None
    else:  # more labels than the limit: the metric and interval on a seeded sample of them
        assert prod["labels"] > sample and prod["labels_used"] == sample
        assert can["labels_used"] == sample
        checks = {c["name"]: c for c in live["checks"]}
        assert checks["labels"]["value"] == can["labels"]  # counted, not sampled


def test_a_shadow_judged_in_the_database_gets_the_verdict_and_numbers_of_its_export(
    tmp_path, log_url, monkeypatch
):
    root = make_project(tmp_path / "p", reg.Rollout(shadow=("1.1.0",)))
    log = open_log(log_url, root)
    serve_rows(log, np.random.default_rng(3), 200, accuracy={"1.0.0": 0.6, "1.1.0": 0.9},
               shadow="1.1.0")  # fmt: skip
    log.close()
    live, exported = _both(root, log_url, monkeypatch)
    assert live == exported
    assert live["verdict"] == "promote_challenger", live["summary"]
    shadow = next(s for s in live["stats"] if s["role"] == "shadow")
    assert 0 < shadow["agreement"] < 1 and shadow["lower"] > 0


def test_a_direct_promotion_judged_in_the_database_gets_the_numbers_of_its_export(
    tmp_path, log_url, monkeypatch
):
    root = make_project(tmp_path / "p", reg.Rollout())
    log = open_log(log_url, root)
    serve_rows(log, np.random.default_rng(4), 150, accuracy={"1.0.0": 0.75})
    log.close()
    live, exported = _both(root, log_url, monkeypatch)
    assert live == exported
    assert live["mode"] == "watch" and live["stats"][0]["requests"] == 150


def test_the_monitor_says_when_its_metric_rests_on_a_sample_and_rows_it_did_not_judge(tmp_path):
    """The CLI's report names the labels a metric was computed on when they were sampled,
    and the rows of versions it does not judge (a version rolled back, still logged by a
    replica that had not reloaded yet)."""
    root = make_project(
        tmp_path / "p", reg.Rollout(reg.Canary("1.1.0", 10)), ", max_labelled_rows: 100"
    )
    log = open_log("sqlite:///.retrain/predictions.db", root)
    serve_rows(log, np.random.default_rng(5), 300, accuracy={"1.0.0": 0.7, "1.1.0": 0.7},
               canary="1.1.0")  # fmt: skip
    log.write([{"request_id": "stale", "row": 0, "at": "2026-11-20T02:00:00Z",
                "version": "0.9.0", "role": "production", "prediction": "sun"}])  # fmt: skip
    log.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAIN_LOG_URL")}
    res = subprocess.run([sys.executable, "-m", "retrain", "monitor"], cwd=root, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "(on a sample of 100 labels)" in res.stdout
    assert "(1 of them served by versions or roles not judged)" in res.stdout
    out = json.loads(
        subprocess.run(
            [sys.executable, "-m", "retrain", "monitor", "--json"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
    )
    assert out["rows"] == out["rows_judged"] + 1
    assert [(s["version"], s["role"]) for s in out["stats"]] == [
        ("1.0.0", "production"),
        ("1.1.0", "canary"),
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=40),
    latencies=st.lists(st.floats(0.001, 5000, allow_nan=False), min_size=40, max_size=40),
    failed=st.lists(st.booleans(), min_size=40, max_size=40),
    missing=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_per_request_counts_and_p95_in_sql_equal_the_frames(
    tmp_path_factory, sizes, latencies, failed, missing
):
    """Requests, failed requests, rows and the exact p95 (numpy's linear interpolation)
    of request latencies: the same from SQL as from the frame, whatever the requests."""
    root = tmp_path_factory.mktemp("p95")
    log = open_log("sqlite:///log.db", root)
    records = []
    for i, size in enumerate(sizes):
        for j in range(size):
            records.append({
                "request_id": f"r{i}", "row": j, "at": f"2026-11-20T01:{i // 60:02d}:{i % 60:02d}Z",
                "version": "1.0.0", "role": "production",
                "prediction": None if failed[i] and j == size - 1 else "sun",
                # one request's rows may disagree on latency or lack it: the largest counts
                "latency_ms": None if missing[i] else latencies[i] + (j % 2) * 0.5,
            })  # fmt: skip
    log.write(records)
    view = SqlView(log, None, [("1.0.0", "production")])
    got = view.slice("1.0.0", "production", "accuracy", "classification").stats
    frame = analysis.check_frame(log.served())
    want = analysis.stats(frame, "1.0.0", "production", "accuracy", "classification")
    log.close()
    assert (got.requests, got.rows, got.errors, got.error_rows, got.p95_latency_ms) == (
        want.requests, want.rows, want.errors, want.error_rows, want.p95_latency_ms
    )  # fmt: skip
