"""What reads the prediction log: ``retrain audit``, ``retrain feedback export`` and the
live performance trigger, through the CLI on a real git history and a real SQLite log.

The project is a copy of this one (configs, the bundled example's data) in a git repository
whose ``registry.yaml`` history is written commit by commit, with fixed commit dates: v1.0.0
promoted (PR #1), v1.1.0 promoted (PR #2), then the merge of v1.1.0 reverted.  The served
rows are written to the log directly, as ``retrain serve`` would for each version; the live
server's own story belongs to the server's tests.  No model is trained: the checks here need
none (the production entry records its holdout accuracy, 0.8).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrain import example
from retrain.core import registry as reg
from retrain.core.config import load_config
from retrain.decide import triggers
from retrain.pipeline import dataset
from retrain.serve import audit, feedback
from retrain.serve.logwriter import LogWriter
from retrain.serve.predlog import open_log
from tests.conftest import PROJECT
from tests.rollout_frames import hand_entry

FILES = {
    f"data/batches/{b}.csv": n for b, n in zip(example.BATCHES[:3], (182, 184, 181), strict=True)
}
LABELS = ["drizzle", "fog", "rain", "snow", "sun"]


def _entry(version: str, created: str, accuracy: float) -> dict:
    return hand_entry(
        version,
        created=created,
        accuracy=accuracy,
        files=FILES,
        start="2012-07-01",
        end="2013-06-30",
    )


def _commit(root: Path, message: str, date: str) -> str:
    env = {**os.environ, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=root, check=True, env=env)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def _registry(root: Path, production: str | None, versions: list[dict]) -> None:
    reg.save(root, reg.Registry(model="seattle-weather", production=production, versions=versions))


@pytest.fixture
def project(tmp_path: Path) -> dict:
    """A fork with v1.0.0 promoted, v1.1.0 promoted, and v1.1.0's merge reverted."""
    root = tmp_path / "proj"
    shutil.copytree(PROJECT / "configs", root / "configs")
    (root / "configs" / "serve.yaml").write_text("log_inputs: true\n")
    example.materialise(root)
    (root / ".gitignore").write_text("data/\n.retrain/\nartifacts/\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    _registry(root, None, [])
    v1 = _entry("1.0.0", "2026-11-09T12:00:00Z", 0.8)
    v11 = _entry("1.1.0", "2026-11-14T12:00:00Z", 0.85)
    commits = {"init": _commit(root, "init", "2026-11-01T00:00:00Z")}
    _registry(root, "1.0.0", [v1])
    commits["1.0.0"] = _commit(
        root, "Merge pull request #1 from o/retrain/v1.0.0", "2026-11-10T00:00:00Z"
    )
    _registry(root, "1.1.0", [v1, v11])
    commits["1.1.0"] = _commit(
        root, "Merge pull request #2 from o/retrain/v1.1.0", "2026-11-15T00:00:00Z"
    )
    _registry(root, "1.0.0", [v1])
    commits["revert"] = _commit(root, 'Revert "Merge pull request #2"', "2026-11-18T00:00:00Z")
    return {"root": root, "commits": commits}


def _rows(request_id: str, version: str, at: str, n: int, *, role: str = "production",
          inputs: bool = True) -> list[dict]:  # fmt: skip
    out = []
    for i in range(n):
        pred = LABELS[i % 5]
        out.append(
            {
                "request_id": request_id,
                "row": i,
                "at": at,
                "version": version,
                "role": role,
                "prediction": pred,
                "proba": {c: (0.6 if c == pred else 0.1) for c in LABELS},
                "latency_ms": 2.0,
                "input_hash": f"{request_id}-{i}",
                "inputs": {
                    "precipitation": round(0.1 * i, 1),
                    "temp_max": 10.0 + i % 7,
                    "temp_min": 2.0,
                    "wind": 3.0,
                    "season": "autumn",
                }
                if inputs
                else None,
            }
        )
    return out


def _serve(
    root: Path,
    records: list[dict],
    labels: dict[tuple[str, int], str],
    *,
    by: str | None = "labeller",
) -> None:
    """Log ``records`` the way the server does (a LogWriter), then post ``labels`` as the
    token named ``by`` would (None: without a token, the development switch)."""
    writer = LogWriter(open_log("sqlite:///.retrain/predictions.db", root))
    writer.submit(records)
    unknown = writer.add_feedback(
        [{"request_id": r, "row": i, "label": lab} for (r, i), lab in labels.items()], by=by
    )
    assert unknown == [] and writer.dropped == 0
    writer.close()


def _swap_traffic(root: Path, *, good: bool, by: str | None = "labeller") -> None:
    """Requests served before the swap (1.0.0), during (1.1.0), and after the revert (1.0.0);
    feedback for every row, right or wrong for the rows after the revert."""
    before = _rows("req-before", "1.0.0", "2026-11-12T08:00:00Z", 40)
    during = _rows("req-during", "1.1.0", "2026-11-16T08:00:00Z", 3)
    shadow = _rows("req-during", "1.0.0", "2026-11-16T08:00:00Z", 3, role="shadow")
    after = _rows("req-after", "1.0.0", "2026-11-19T08:00:00Z", 60)
    labels = {("req-before", r["row"]): "rain" for r in before}  # all wrong, before the window
    labels |= {("req-during", r["row"]): r["prediction"] for r in during}
    for r in after:
        wrong = LABELS[(LABELS.index(r["prediction"]) + 1) % 5]
        labels[("req-after", r["row"])] = r["prediction"] if good or r["row"] % 2 else wrong
    _serve(root, before + during + shadow + after, labels, by=by)


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args], cwd=root, capture_output=True, text=True
    )


# --------------------------------------------------------------------------- audit
def test_audit_names_the_version_and_the_commit_before_during_and_after_a_swap(project):
    root, commits = project["root"], project["commits"]
    _swap_traffic(root, good=True)

    log = open_log("sqlite:///.retrain/predictions.db", root)
    before = audit.audit(root, log, "req-before")
    (v,) = before["versions"]
    assert v == "1.0.0" and {r["version"] for r in before["rows"]} == {"1.0.0"}
    info = before["versions"]["1.0.0"]
    assert info["registry"] == "registry.yaml"
    assert info["entry"]["artifact"]["path"] == "artifacts/model-1.0.0.skops"
    assert info["put_in_production_by"]["commit"] == commits["1.0.0"]
    assert info["put_in_production_by"]["event"] == "promote"
    assert info["put_in_production_by"]["pr"] == 1
    assert before["rows"][0]["label"] == "rain"

    # v1.1.0 was removed from registry.yaml by the revert: its entry comes from git history.
    during = json.loads(_cli(root, "audit", "req-during", "--json").stdout)
    assert set(during["versions"]) == {"1.1.0", "1.0.0"}
    new = during["versions"]["1.1.0"]
    assert new["roles"] == ["production"]
    assert new["registry"].startswith("registry.yaml@") and "removed since" in new["registry"]
    assert new["entry"]["code_commit"] == "c0ffee110"
    assert new["put_in_production_by"]["commit"] == commits["1.1.0"]
    shadow = during["versions"]["1.0.0"]
    assert shadow["roles"] == ["shadow"] and shadow["put_in_production_by"] is None
    assert shadow["production_then"]["version"] == "1.1.0"
    assert during["versions"]["1.1.0"]["production_then"]["commit"] == commits["1.1.0"]

    after = audit.audit(root, log, "req-after")
    log.close()
    ev = after["versions"]["1.0.0"]["put_in_production_by"]
    assert ev["commit"] == commits["revert"] and ev["event"] == "rollback" and ev["from"] == "1.1.0"

    text = _cli(root, "audit", "req-during")
    assert text.returncode == 0
    assert "v1.1.0 (production)" in text.stdout and commits["1.1.0"][:12] in text.stdout


def test_audit_of_an_unknown_request_is_one_line_and_exit_2(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    res = _cli(root, "audit", "no-such-request")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "error: request_id 'no-such-request': not in the prediction log "
        "(sqlite:///" + str(root / ".retrain" / "predictions.db") + "), neither as the "
        "server's id nor as a client's X-Request-ID"
    ]


def test_audit_of_an_unreachable_log_is_one_line_not_a_traceback(project):
    root = project["root"]
    (root / ".retrain").write_text("not a directory")
    res = _cli(root, "audit", "req-1", "--log", "sqlite:///.retrain/sub/p.db")
    assert res.returncode == 2 and "not in the prediction log" in res.stderr  # never created
    res = _cli(root, "audit", "req-1", "--log", "postgresql://nobody@127.0.0.1:1/db")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("error: prediction log ")


# --------------------------------------------------------------------------- trigger
def test_bad_live_feedback_fires_the_performance_trigger(project):
    root = project["root"]
    _swap_traffic(root, good=False)
    out = json.loads(_cli(root, "triggers", "--json").stdout)
    live = out["checks"]["live_performance"]
    # 60 rows served by 1.0.0 since the revert put it back; half of them wrong.
    assert live["rows"] == 60 and live["version"] == "1.0.0"
    assert live["since"] == "2026-11-18T00:00:00.000000Z"
    assert live["value"] == 0.5 and live["threshold"] == 0.75 and live["fired"]
    assert "live_performance" in out["fired"]


def test_good_live_feedback_does_not_fire(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    cfg, registry = load_config(root), reg.load(root)
    rep = triggers.check(cfg, registry, live=feedback.live_for_triggers(cfg, registry))
    live = rep.checks["live_performance"]
    assert live["rows"] == 60 and live["value"] == 1.0 and not live["fired"]
    assert "live_performance" not in rep.fired


def test_too_few_labels_or_no_log_decide_nothing(project):
    root = project["root"]
    cfg = load_config(root)
    registry = reg.load(root)
    live = feedback.live_for_triggers(cfg, registry)  # nothing was ever served
    assert live is not None and live.error is not None and live.frame is None
    _serve(root, _rows("few", "1.0.0", "2026-11-20T00:00:00Z", 5), {("few", 0): "fog"})
    live = feedback.live_for_triggers(cfg, registry)
    assert live is not None and len(live.frame) == 1
    rep = triggers.check(cfg, registry, live=live)
    check = rep.checks["live_performance"]
    assert check["rows"] == 1 and check["value"] is None and not check["fired"]
    assert "fewer than min_rows 30" in check["note"]


def test_without_a_prediction_log_the_live_check_says_it_was_not_checked(project):
    """Issue 22, item 3: the check used to vanish from the table when no log existed, so in
    CI (where the servers' log is elsewhere) nobody could see it never ran."""
    root = project["root"]
    res = _cli(root, "triggers")
    assert res.returncode == 0, res.stderr
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("live_performance"))
    assert row.endswith("no  (not checked: no prediction log at .retrain/predictions.db)"), row
    out = json.loads(_cli(root, "triggers", "--json").stdout)["checks"]["live_performance"]
    assert out["value"] is None and not out["fired"]
    assert out["note"] == "not checked: no prediction log at .retrain/predictions.db"
    # `retrain run` sees the missing file from its path alone (no SQLAlchemy): same check.
    from retrain import run

    live = run._live_feedback(load_config(root), reg.load(root))
    assert live.error == "not checked: no prediction log at .retrain/predictions.db"
    assert not (root / ".retrain" / "predictions.db").exists()  # reading created nothing


def test_retrain_log_url_points_the_reading_commands_at_the_servers_log(project, tmp_path):
    """CI has no server beside it: RETRAIN_LOG_URL (a secret in retrain.yml and monitor.yml)
    names the servers' log, and the trigger and monitor read it instead of serve.yaml's."""
    root = project["root"]
    _swap_traffic(root, good=False)
    moved = tmp_path / "elsewhere.db"
    shutil.move(root / ".retrain" / "predictions.db", moved)
    env = {**os.environ, "RETRAIN_LOG_URL": f"sqlite:///{moved}"}
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "triggers", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    live = json.loads(res.stdout)["checks"]["live_performance"]
    assert live["rows"] == 60 and live["fired"] and live["source"] == f"sqlite:///{moved}"
    mon = subprocess.run(
        [sys.executable, "-m", "retrain", "monitor"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert mon.returncode == 0, mon.stderr
    assert f"read from sqlite:///{moved}" in mon.stdout
    # Without it, monitor names the log it read, and says that nothing was ever logged there.
    mon = _cli(root, "monitor")
    assert mon.returncode == 0, mon.stderr
    assert "read from sqlite:///" in mon.stdout and "(no such file" in mon.stdout


def test_log_loss_on_live_feedback_uses_the_logged_probabilities(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    cfg = load_config(root)
    cfg = cfg.model_copy(
        update={"gates": cfg.gates.model_copy(update={"primary_metric": "log_loss"})}
    )
    registry = reg.load(root)
    check = triggers.check(cfg, registry, live=feedback.live_for_triggers(cfg, registry)).checks[
        "live_performance"
    ]
    assert check["metric"] == "log_loss" and check["rows"] == 60
    # Every label is the predicted class, logged with probability 0.6.
    assert check["value"] == pytest.approx(0.5108, abs=1e-4)


# --------------------------------------------------------------------------- export
def test_feedback_export_writes_a_batch_that_validation_accepts(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    out = root / "data" / "batches" / "2026-11-live.csv"
    res = _cli(root, "feedback", "export", "--since", "2026-11-18", "--output", str(out))
    assert res.returncode == 0, res.stderr
    assert "wrote 60 labelled row(s)" in res.stdout
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "date", "precipitation", "temp_max", "temp_min", "wind", "season", "weather",
    ]  # fmt: skip
    assert len(frame) == 60 and set(frame["weather"]) <= set(LABELS)
    cfg = load_config(root)
    dataset.check_frame(dataset.read_table(out), cfg.dataset, "export")
    # The whole dataset, with the new batch in it, passes the pipeline's validate stage.
    res = _cli(root, "validate")
    assert res.returncode == 0, res.stderr
    assert not list(out.parent.glob(".*.tmp"))


def test_feedback_export_refuses_to_overwrite_a_batch(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    existing = root / "data" / "batches" / "2012-H1.csv"
    before = existing.read_bytes()
    res = _cli(root, "feedback", "export", "--since", "2026-11-01", "--output", str(existing))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "already exists" in res.stderr and existing.read_bytes() == before


def _bad_export(root: Path, *args: str) -> str:
    batches = root / "data" / "batches"
    listing = sorted(p.name for p in batches.iterdir())
    res = _cli(root, "feedback", "export", *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert sorted(p.name for p in batches.iterdir()) == listing  # nothing written
    return res.stderr


def test_feedback_export_bad_inputs_are_one_line_exit_2_and_write_nothing(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    out = "data/batches/new.csv"
    assert "ISO 8601" in _bad_export(root, "--since", "yesterday-ish", "--output", out)
    assert ".csv or .parquet" in _bad_export(
        root, "--since", "2026-11-01", "--output", "data/batches/new.txt"
    )
    # A label outside the dataset's classes is refused by the dataset's own validation.
    _serve(root, _rows("odd", "1.0.0", "2026-11-21T00:00:00Z", 1), {("odd", 0): "hail"})
    err = _bad_export(root, "--since", "2026-11-01", "--output", out)
    assert "unknown label(s) ['hail']" in err and "nothing written" in err


def test_feedback_export_needs_the_inputs_logged(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    (root / "configs" / "serve.yaml").write_text("log_inputs: false\n")
    err = _bad_export(root, "--since", "2026-11-01", "--output", "data/batches/new.csv")
    assert err.startswith("error: configs/serve.yaml: log_inputs: false;")
    # Switched on later: rows served before it have no inputs, and say so.
    (root / "configs" / "serve.yaml").write_text(
        "log_inputs: true\nlog_url: sqlite:///.retrain/b.db\n"
    )
    writer = LogWriter(open_log("sqlite:///.retrain/b.db", root))
    writer.submit(_rows("blind", "1.0.0", "2026-11-20T00:00:00Z", 2, inputs=False))
    writer.add_feedback([{"request_id": "blind", "label": "sun"}], by="labeller")
    writer.close()
    err = _bad_export(root, "--since", "2026-11-01", "--output", "data/batches/new.csv")
    assert "served without their inputs" in err


def test_feedback_export_with_nothing_labelled_writes_nothing(project):
    root = project["root"]
    _swap_traffic(root, good=True)
    res = _cli(
        root, "feedback", "export", "--since", "2027-01-01", "--output", "data/batches/n.csv"
    )
    assert res.returncode == 0 and "nothing written" in res.stdout
    assert not (root / "data" / "batches" / "n.csv").exists()


def test_a_bad_serve_config_is_one_line_exit_2(project):
    root = project["root"]
    (root / "configs" / "serve.yaml").write_text(yaml.safe_dump({"log_url": "mysql://x"}))
    res = _cli(root, "audit", "req-1")
    assert res.returncode == 2 and res.stderr.startswith(
        "error: configs/serve.yaml: log_url: expected sqlite:///"
    )


# --------------------------------------------------------------------------- trust (#19)
def test_labels_posted_without_a_token_neither_fire_the_trigger_nor_become_training_data(
    project,
):
    """The same wrong labels that fire live_performance when a token wrote them decide
    nothing when none did (the development switch): the trigger sees no labelled rows and
    `feedback export` writes nothing; `retrain audit` still shows them."""
    root = project["root"]
    _swap_traffic(root, good=False, by=None)
    live = json.loads(_cli(root, "triggers", "--json").stdout)["checks"]["live_performance"]
    assert live["rows"] == 0 and not live["fired"], live
    out = root / "data" / "batches" / "anonymous.csv"
    res = _cli(root, "feedback", "export", "--since", "2026-11-18", "--output", str(out))
    assert res.returncode == 0 and "nothing written" in res.stdout and not out.exists()
    shown = json.loads(_cli(root, "audit", "req-after", "--json").stdout)
    assert shown["rows"][1]["label"] is not None and shown["rows"][1]["label_by"] is None


def test_a_second_label_is_history_and_audit_shows_both_with_who_wrote_them(project):
    root = project["root"]
    _serve(root, _rows("r", "1.0.0", "2026-11-20T00:00:00Z", 2), {("r", 0): "rain"})
    _serve(root, [], {("r", 0): "snow"}, by="second-labeller")
    text = _cli(root, "audit", "r")
    assert text.returncode == 0, text.stderr
    assert "label 'snow'" in text.stdout and "by token second-labeller" in text.stdout
    assert "'rain' at" in text.stdout and "by token labeller" in text.stdout
    doc = json.loads(_cli(root, "audit", "r", "--json").stdout)
    assert [(h["label"], h["by"]) for h in doc["labels"]] == [
        ("rain", "labeller"),
        ("snow", "second-labeller"),
    ]
    assert doc["rows"][0]["label"] == "snow"  # the latest counts


def test_a_client_id_sent_with_two_requests_is_audited_as_two_requests(project):
    """Issue #19: a client reusing an X-Request-ID made `retrain audit` list 201 rows, row 0
    twice.  The server's ids keep the requests apart; the client's id finds both, each
    audited on its own."""
    root = project["root"]
    big = [dict(r, client_request_id="dup") for r in _rows("srv-a", "1.0.0", AT20, 200)]
    small = [dict(r, client_request_id="dup") for r in _rows("srv-b", "1.0.0", AT20, 1)]
    _serve(root, big + small, {("srv-b", 0): "fog"})
    doc = json.loads(_cli(root, "audit", "dup", "--json").stdout)
    assert doc["client_request_id"] == "dup"
    assert [(r["request_id"], len(r["rows"])) for r in doc["requests"]] == [
        ("srv-a", 200),
        ("srv-b", 1),
    ]
    assert doc["requests"][0]["rows"][0]["label"] is None  # the label is srv-b's alone
    text = _cli(root, "audit", "dup").stdout
    assert "was sent with 2 request(s)" in text
    assert "request srv-a (200 row(s), client's X-Request-ID dup" in text


AT20 = "2026-11-20T00:00:00Z"


def test_monitor_takes_the_log_url_from_a_secret_file_and_counts_only_token_labels(
    project, tmp_path, monkeypatch
):
    from retrain.rollout import monitor

    root = project["root"]
    (root / "configs" / "serve.yaml").write_text("log_url: sqlite:///.retrain/absent.db\n")
    secret = tmp_path / "log-url"
    secret.write_text(f"sqlite:///{root / '.retrain' / 'predictions.db'}\n")
    _serve(root, _rows("t", "1.0.0", AT20, 3), {("t", 0): "rain"})
    _serve(root, [], {("t", 1): "sun"}, by=None)
    monkeypatch.setenv("RETRAIN_LOG_URL_FILE", str(secret))
    monkeypatch.delenv("RETRAIN_LOG_URL", raising=False)
    frame, source = monitor.load_log(load_config(root), pd.Timestamp("2026-11-01", tz="UTC"))
    assert source == f"sqlite:///{root / '.retrain' / 'predictions.db'}"  # the log it read
    assert frame["label"].tolist()[0] == "rain" and frame["label"].isna().tolist()[1:] == [1, 1]
    assert frame["label_by"].tolist()[0] == "labeller" and frame["label_by"].isna().sum() == 2
    monkeypatch.setenv("RETRAIN_LOG_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(Exception, match="RETRAIN_LOG_URL_FILE=.*cannot be read"):
        monitor.load_log(load_config(root), pd.Timestamp("2026-11-01", tz="UTC"))
