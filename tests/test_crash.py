"""Crash consistency (issue 14, item 2): SIGKILL at every named step, then the same command.

``RETRAIN_FAULT_AT=<step>`` makes the process kill itself at that step
(``retrain.core.faults.STEPS`` names them); with ``RETRAIN_FAULT_KILL=group`` a fault inside
a DVC stage takes ``dvc repro`` and the ``retrain run`` above it down too, which is what a
``kill -9`` of the scheduled job does.  After each kill the same command runs again, without
the hook and without any manual repair, and then:

- main (local and on origin) and registry.yaml are unchanged, or fully changed, never half;
- no branch on origin references an artifact that the DVC remote lacks;
- tags, the MLflow aliases and the deployed copy agree with registry.yaml.

Real git (a bare origin), real DVC (a local remote), real MLflow (SQLite).  The expensive
states (bootstrapped; a proposal merged; promoted) are built once per module and copied per
case with ``shutil.copytree``.  GitHub is not involved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from retrain import example
from retrain.core.faults import STEPS
from retrain.pipeline import artifacts
from tests.conftest import PROJECT, Cli, bootstrap

MODEL = "seattle-weather"


def copy_sandbox(template: example.Sandbox, dest: Path) -> example.Sandbox:
    """A copy of a sandbox whose origin and DVC remote are its own copies."""
    shutil.copytree(template.base, dest, symlinks=True)
    sb = example.Sandbox(
        base=dest,
        root=dest / "work",
        origin=dest / "origin.git",
        dvc_remote=dest / "dvc-remote",
        env=example.sandbox_env(dest),
    )
    sb.git("remote", "set-url", "origin", str(sb.origin))
    sb.run("dvc", "remote", "modify", "--local", "sandbox", "url", str(sb.dvc_remote))
    return sb


def retrain(
    sb: example.Sandbox, *args: str, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **sb.env}
    env.pop("RETRAIN_FAULT_AT", None)
    if fault:
        env.update({"RETRAIN_FAULT_AT": fault, "RETRAIN_FAULT_KILL": "group"})
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args],
        cwd=sb.root,
        env=env,
        capture_output=True,
        text=True,
        start_new_session=True,  # a group kill takes this command and its children only
        timeout=900,
    )


def _registry(sb: example.Sandbox, rev: str = "HEAD") -> dict:
    return yaml.safe_load(sb.git("show", f"{rev}:registry.yaml"))


def assert_consistent(sb: example.Sandbox) -> None:
    """Tags, aliases and the deployed copy agree with registry.yaml on main; every pushed
    branch's artifacts are in the DVC remote; the checkout is clean."""
    assert sb.git("status", "--porcelain", "--untracked-files=no") == ""
    assert sb.git("rev-parse", "HEAD") == sb.git("rev-parse", "origin/main")
    doc = _registry(sb)
    prod = doc["production"]
    entry = next(e for e in doc["versions"] if e["version"] == prod)
    assert f"{MODEL}@v{prod}" in sb.git("tag", "--list")
    mlflow.set_tracking_uri(sb.env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    for alias in ("production", "champion"):
        mv = client.get_model_version_by_alias(MODEL, alias)
        assert str(mv.version) == str(entry["mlflow"]["model_version"]), alias
    deployed = json.loads((sb.root / ".retrain" / "deployed" / "current.json").read_text())
    assert deployed["version"] == prod
    assert deployed["sha256"] == entry["artifact"]["sha256"]
    model_file = sb.root / ".retrain" / "deployed" / f"{MODEL}.skops"
    assert artifacts.sha256_of(model_file) == entry["artifact"]["sha256"]
    for line in sb.git("ls-remote", "--heads", "origin").splitlines():
        ref = line.split()[1].removeprefix("refs/heads/")
        pushed = yaml.safe_load(sb.git("show", f"{line.split()[0]}:registry.yaml"))
        for e in pushed["versions"]:
            assert artifacts.in_remote(sb.root, e["artifact"]), (ref, e["version"])
    # Each change of production on main is recorded by exactly one stage tag.
    recorded: dict[str, int] = {}
    for t in sb.git("tag", "--list", f"{MODEL}#production#*").split():
        body = sb.git("tag", "-l", "--format=%(contents)", t)
        commit = next(w for w in body.split() if w.startswith("commit="))
        recorded[commit] = recorded.get(commit, 0) + 1
    assert all(n == 1 for n in recorded.values()), recorded


# --------------------------------------------------------------------------- templates
@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> example.Sandbox:
    """v1.0.0 promoted, tags pushed; a new batch ingested, so the next run proposes v1.1.0."""
    sb = example.make_sandbox(tmp_path_factory.mktemp("crash") / "t1", PROJECT)
    cli = Cli(sb)
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    return sb


@pytest.fixture(scope="module")
def merged(bootstrapped, tmp_path_factory) -> example.Sandbox:
    """v1.1.0 proposed and merged on main (pushed); promote has not run."""
    sb = copy_sandbox(bootstrapped, tmp_path_factory.mktemp("crash") / "t2")
    res = retrain(sb, "run", "--push", "--json")
    assert res.returncode == 0, res.stderr
    example.merge_proposal(sb, json.loads(res.stdout)["branch"])
    return sb


@pytest.fixture(scope="module")
def promoted(merged, tmp_path_factory) -> example.Sandbox:
    """v1.1.0 in production, tags pushed."""
    sb = copy_sandbox(merged, tmp_path_factory.mktemp("crash") / "t3")
    res = retrain(sb, "promote", "--push-tags")
    assert res.returncode == 0, res.stderr
    return sb


# --------------------------------------------------------------------------- cases
@pytest.mark.parametrize("step", STEPS["run"])
def test_run_killed_at_each_step_reruns_cleanly(step, bootstrapped, tmp_path):
    sb = copy_sandbox(bootstrapped, tmp_path / "sb")
    main = sb.git("rev-parse", "HEAD")
    registry = (sb.root / "registry.yaml").read_bytes()
    killed = retrain(sb, "run", "--push", "--json", fault=step)
    assert killed.returncode == -9, (step, killed.returncode, killed.stderr[-2000:])

    again = retrain(sb, "run", "--push", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    out = json.loads(again.stdout)
    assert out["outcome"] == "proposed" and out["version"] == "1.1.0", out
    assert sb.git("rev-parse", "HEAD") == main == sb.git("rev-parse", "origin/main")
    assert (sb.root / "registry.yaml").read_bytes() == registry
    assert sb.git("ls-remote", "--heads", "origin", "retrain/v1.1.0")
    assert_consistent(sb)


@pytest.mark.parametrize("step", STEPS["promote"])
def test_promote_killed_at_each_step_reruns_cleanly(step, merged, tmp_path):
    sb = copy_sandbox(merged, tmp_path / "sb")
    merge = sb.git("rev-parse", "HEAD")
    killed = retrain(sb, "promote", "--push-tags", fault=step)
    assert killed.returncode == -9, (step, killed.returncode, killed.stderr[-2000:])

    again = retrain(sb, "promote", "--push-tags", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    out = json.loads(again.stdout)
    assert out["event"] == "promote" and out["version"] == "1.1.0", out
    assert sb.git("rev-parse", "HEAD") == merge
    remote_tags = sb.git("ls-remote", "--tags", "origin")
    assert f"refs/tags/{MODEL}@v1.1.0" in remote_tags
    assert_consistent(sb)
    assert _registry(sb)["production"] == "1.1.0"


@pytest.mark.parametrize("step", STEPS["rollback"])
def test_rollback_killed_at_each_step_reruns_cleanly(step, promoted, tmp_path):
    sb = copy_sandbox(promoted, tmp_path / "sb")
    before = sb.git("rev-parse", "HEAD")
    killed = retrain(sb, "rollback", "--push", fault=step)
    assert killed.returncode == -9, (step, killed.returncode, killed.stderr[-2000:])
    # Never half: main is where it was or carries the whole rollback.
    assert _registry(sb)["production"] in {"1.0.0", "1.1.0"}

    again = retrain(sb, "rollback", "--push")
    assert again.returncode == 0, again.stderr[-2000:]
    new = sb.git("log", "--format=%s", f"{before}..origin/main").splitlines()
    assert len(new) == 1 and new[0].startswith(f"Rollback {MODEL} to v1.0.0"), new
    assert _registry(sb, "origin/main")["production"] == "1.0.0"
    promote = retrain(sb, "promote", "--push-tags", "--json")
    assert promote.returncode == 0, promote.stderr[-2000:]
    assert json.loads(promote.stdout)["event"] == "rollback"
    assert_consistent(sb)


def test_a_killed_run_with_the_users_own_edits_is_still_refused(bootstrapped, tmp_path):
    """Only the pipeline's own leftovers are restored: an edit of the user's is never thrown
    away, and the run stops (exit 2) as for any dirty tree."""
    sb = copy_sandbox(bootstrapped, tmp_path / "sb")
    killed = retrain(sb, "run", "--json", fault="stage:validate")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "artifacts/validation.json" in sb.git("diff", "--name-only", "HEAD")
    model_yaml = sb.root / "configs" / "model.yaml"
    model_yaml.write_text(model_yaml.read_text() + "# trying something\n")
    again = retrain(sb, "run", "--json")
    assert again.returncode == 2, again.stderr[-2000:]
    assert "working tree has uncommitted changes" in again.stderr
    assert model_yaml.read_text().endswith("# trying something\n")
