"""Real remotes: the DVC remote on an S3-protocol server, MLflow as a tracking server.

Both servers are real and run on 127.0.0.1 for this module only, started and stopped by its
fixtures: moto's S3 server (``ThreadedMotoServer``, a thread of the test process, with IAM authentication switched on once
the bucket and its user exist, so a wrong secret is refused the way AWS refuses it), reached
by DVC through ``dvc-s3`` and the remote's ``endpointurl``; and ``mlflow server`` with its own
SQLite backend store and artifact root.  Every command runs in a fresh clone of the fork's
bare ``origin`` (a CI runner, an on-call laptop), so artifacts come from the bucket, never from
a local cache.  GitHub is not involved: a PR is a pushed branch, merging is ``git merge``.

The module holds one loop story (last, so the tampering and fault cases see the v1.1.0
proposal before it is merged) and shares one fork between its tests (``xdist_group``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrain import example
from tests.conftest import PROJECT, Cli
from tests.servers import TrackingServer, free_port, listening

pytestmark = pytest.mark.xdist_group("remotes")

MODEL = "seattle-weather"
BUCKET = "retrain-models"
PREFIX = "dvcstore"


# --------------------------------------------------------------------------- S3 (moto)
@dataclass
class S3:
    url: str
    key_id: str
    secret: str
    client: object  # boto3 S3 client with the CI user's credentials

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def key(self, md5: str) -> str:
        return f"{PREFIX}/files/md5/{md5[:2]}/{md5[2:]}"

    def get(self, md5: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=self.key(md5))["Body"].read()  # type: ignore[attr-defined]

    def put(self, md5: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=self.key(md5), Body=data)  # type: ignore[attr-defined]


def _reset_auth(url: str, count: bytes) -> None:
    """moto: authenticate every request after the first ``count`` from now on."""
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=count,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


@pytest.fixture(scope="module")
def s3() -> S3:
    """moto's S3 server on a free loopback port; a bucket, and a user allowed to use it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        setup = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="retrain-ci")
        iam.put_user_policy(
            UserName="retrain-ci",
            PolicyName="dvc-remote",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="retrain-ci")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        # From here on every request must be signed by a known key (moto's IAM check).
        _reset_auth(url, b"0")
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        yield S3(url, key["AccessKeyId"], key["SecretAccessKey"], client)
    finally:
        try:
            _reset_auth(url, b"inf")
        finally:
            server.stop()
    assert not listening(port), "moto's S3 server still listening after stop"


# --------------------------------------------------------------------------- MLflow server
@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> TrackingServer:
    server = TrackingServer(tmp_path_factory.mktemp("mlflow-server"), model=MODEL)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- the fork
@dataclass
class Loop:
    sb: example.Sandbox
    cli: Cli
    base: Path
    bootstrap: dict
    proposal: dict
    features: Path  # an input file with only the feature columns (predict says nothing else)

    def clone(self, name: str, *, data: bool = False) -> Path:
        """A fresh clone of origin: no data, an empty DVC cache (a CI runner, a laptop)."""
        dest = self.base / name
        subprocess.run(
            ["git", "clone", "-q", str(self.sb.origin), str(dest)], check=True, env=self.cli.env
        )
        if data:
            self.dvc(dest, "pull", "-q", "data.dvc")
        return dest

    def dvc(self, cwd: Path, *args: str) -> None:
        res = subprocess.run(
            [str(Path(sys.executable).with_name("dvc")), *args],
            cwd=cwd,
            env=self.cli.env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout + res.stderr

    def git(self, cwd: Path, *args: str) -> str:
        return self.sb.git(*args, cwd=cwd)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, s3: S3, tracking: TrackingServer) -> Loop:
    """A fork whose DVC remote is the bucket and whose MLflow is the server; bootstrapped
    (v1.0.0 proposed by a runner, merged, promoted by another runner) and, after a new batch,
    with v1.1.0 proposed on origin (not merged: the story merges it)."""
    base = tmp_path_factory.mktemp("remotes")
    sb = example.make_sandbox(base / "sb", PROJECT)
    sb.env.update({**s3.env(), "MLFLOW_TRACKING_URI": tracking.url})
    dvc = str(Path(sys.executable).with_name("dvc"))
    # The platform engineer's step 1: the remote is the bucket; the local folder remote goes.
    sb.run(dvc, "remote", "add", "-d", "-f", "s3", f"s3://{BUCKET}/{PREFIX}")
    sb.run(dvc, "remote", "modify", "s3", "endpointurl", s3.url)
    sb.run(dvc, "remote", "remove", "sandbox")
    shutil.rmtree(sb.dvc_remote)
    sb.git("commit", "-qam", "DVC remote: S3 bucket")
    sb.run(dvc, "push", "-q")
    sb.git("push", "-q", "origin", "main")
    cli = Cli(sb)
    lp = Loop(sb, cli, base, {}, {}, base / "features.csv")
    cfg_features = ["date", "precipitation", "temp_max", "temp_min", "wind", "season"]
    pd.read_csv(sb.root / "data" / "holdout.csv")[cfg_features].head(50).to_csv(
        lp.features, index=False
    )

    runner = lp.clone("runner-1", data=True)
    lp.bootstrap = cli.json("run", "--push", cwd=runner)
    example.merge_proposal(sb, "retrain/v1.0.0")
    promoter = lp.clone("promote-1")
    promoted = cli.json("promote", "--push-tags", cwd=promoter)
    assert promoted["event"] == "promote" and promoted["version"] == "1.0.0", promoted
    lp.bootstrap["promote"] = promoted

    example.ingest_next_batch(sb.root, sb.env)  # dvc push goes to the bucket
    runner = lp.clone("runner-2", data=True)
    lp.proposal = cli.json("run", "--push", cwd=runner)
    assert lp.proposal["outcome"] == "proposed" and lp.proposal["version"] == "1.1.0"
    sb.git("fetch", "-q", "origin")
    return lp


def _registry(lp: Loop, rev: str) -> dict:
    return yaml.safe_load(lp.sb.git("show", f"{rev}:registry.yaml"))


def _entry(lp: Loop, rev: str, version: str) -> dict:
    return next(e for e in _registry(lp, rev)["versions"] if e["version"] == version)


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, no traceback, exactly one error line; returns it."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    return errors[0]


def _nothing_promoted(clone: Path) -> None:
    assert not (clone / ".retrain" / "deployed").exists()
    tags = subprocess.run(
        ["git", "tag", "--list", f"{MODEL}@v1.1.0", f"{MODEL}#*"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert f"{MODEL}@v1.1.0" not in tags


# --------------------------------------------------------------------------- tampering
def _proposal_clone(lp: Loop, name: str, *, edit_sha: str | None = None) -> Path:
    """A clone on ``pr`` (the v1.1.0 proposal, optionally with its sha256 edited by hand in
    the PR's one commit) and ``merged`` (main at proposal time + --no-ff merge of ``pr``)."""
    clone = lp.clone(name)
    lp.git(clone, "checkout", "-q", "-b", "pr", "origin/retrain/v1.1.0")
    if edit_sha is not None:
        reg = clone / "registry.yaml"
        sha = _entry(lp, "origin/retrain/v1.1.0", "1.1.0")["artifact"]["sha256"]
        reg.write_text(reg.read_text().replace(sha, edit_sha))
        lp.git(clone, "commit", "-q", "--amend", "-a", "--no-edit")
    lp.git(clone, "checkout", "-q", "-b", "merged", "pr~1")
    lp.git(clone, "merge", "-q", "--no-ff", "-m", "Merge pull request #2", "pr")
    return clone


def _refused_everywhere(lp: Loop, clone: Path, expect: str) -> list[str]:
    """verify (on the PR), promote (after the merge) and predict each refuse, one line."""
    lines = []
    lp.git(clone, "checkout", "-q", "pr")
    lines.append(error_line(lp.cli("verify", "--base", "pr~1", cwd=clone, check=False)))
    lp.git(clone, "checkout", "-q", "merged")
    lines.append(error_line(lp.cli("promote", cwd=clone, check=False)))
    lines.append(
        error_line(
            lp.cli(
                "predict", "--version", "1.1.0", "--input", str(lp.features), cwd=clone, check=False
            )
        )
    )
    for line in lines:
        assert "version 1.1.0" in line and "sha256 mismatch" in line, line
        assert "refusing to load" in line and expect in line, line
    _nothing_promoted(clone)
    return lines


def test_an_artifact_whose_bytes_changed_in_the_remote_is_refused(loop: Loop, s3: S3):
    md5 = _entry(loop, "origin/retrain/v1.1.0", "1.1.0")["artifact"]["md5"]
    original = s3.get(md5)
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF  # one byte, still a zip header: the hash catches it
    s3.put(md5, bytes(tampered))
    try:
        clone = _proposal_clone(loop, "tamper-remote")
        lines = _refused_everywhere(loop, clone, f"DVC remote 's3' (s3://{BUCKET}/{PREFIX}")
        assert s3.key(md5).split("/", 1)[1] in lines[-1]
        assert not list((clone / ".retrain" / "artifacts").glob("*.skops"))
    finally:
        s3.put(md5, original)


def test_a_sha256_edited_by_hand_in_the_pr_is_refused(loop: Loop):
    clone = _proposal_clone(loop, "tamper-registry", edit_sha="ab" * 32)
    lines = _refused_everywhere(loop, clone, "DVC remote 's3'")
    assert all("registry says abababababab" in line for line in lines)


def test_a_model_file_swapped_in_the_dvc_cache_is_refused(loop: Loop, s3: S3):
    """The swapped-in file is a real, loadable model (v1.0.0's): only the hash tells."""
    md5 = _entry(loop, "origin/retrain/v1.1.0", "1.1.0")["artifact"]["md5"]
    other = _entry(loop, "origin/main", "1.0.0")["artifact"]["md5"]
    clone = _proposal_clone(loop, "tamper-cache")
    cached = clone / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(s3.get(other))
    lines = _refused_everywhere(loop, clone, f"the DVC cache (.dvc/cache/files/md5/{md5[:2]}/")
    assert len(lines) == 3


# --------------------------------------------------------------------------- remote faults
def _fault_clone(lp: Loop, name: str) -> Path:
    clone = lp.clone(name, data=True)  # pulled while the remote works: push has work to do
    lp.git(clone, "checkout", "-q", "-b", "pr", "origin/retrain/v1.1.0")
    return clone


def _fault_commands(lp: Loop, clone: Path, cli: Cli) -> list[str]:
    verify = cli("verify", "--base", "pr~1", cwd=clone, check=False)
    predict = cli(
        "predict", "--version", "1.0.0", "--input", str(lp.features), cwd=clone, check=False
    )
    # dvc push as propose runs it (the library call behind `retrain run`), in its own process
    push = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from retrain.release import dvcops\n"
            "try:\n    dvcops.push(Path('.'))\n"
            "except Exception as e:\n    print(type(e).__name__, '|', e); sys.exit(3)",
        ],
        cwd=clone,
        env=cli.env,
        capture_output=True,
        text=True,
    )
    assert push.returncode == 3, push.stdout + push.stderr
    assert push.stdout.startswith("RemoteError | "), push.stdout
    return [error_line(verify), error_line(predict), push.stdout.strip().split(" | ", 1)[1]]


def test_wrong_credentials_are_one_line_exit_2(loop: Loop):
    clone = _fault_clone(loop, "fault-credentials")
    bad = Cli(loop.sb)
    bad.env = {**loop.cli.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    for line in _fault_commands(loop, clone, bad):
        assert f"DVC remote 's3' (s3://{BUCKET}/{PREFIX})" in line, line
        assert "access denied" in line and "credentials" in line, line


def test_a_missing_bucket_is_one_line_exit_2(loop: Loop):
    clone = _fault_clone(loop, "fault-bucket")
    loop.dvc(clone, "remote", "modify", "--local", "s3", "url", "s3://no-such-bucket/dvcstore")
    for line in _fault_commands(loop, clone, loop.cli):
        assert "DVC remote 's3' (s3://no-such-bucket/dvcstore)" in line, line
        assert "bucket 'no-such-bucket' does not exist" in line, line


def test_a_missing_object_is_one_line_exit_2(loop: Loop):
    """The bucket exists and the credentials are good, but nothing was pushed under this
    prefix: verify says the proposal's artifact is not in the remote, predict names the
    object it looked for."""
    clone = _fault_clone(loop, "fault-object")
    loop.dvc(clone, "remote", "modify", "--local", "s3", "url", f"s3://{BUCKET}/empty")
    md5_11 = _entry(loop, "origin/retrain/v1.1.0", "1.1.0")["artifact"]["md5"]
    md5_10 = _entry(loop, "origin/main", "1.0.0")["artifact"]["md5"]
    verify = error_line(loop.cli("verify", "--base", "pr~1", cwd=clone, check=False))
    assert f"artifact md5 {md5_11} is not in the DVC remote" in verify
    predict = error_line(
        loop.cli(
            "predict", "--version", "1.0.0", "--input", str(loop.features), cwd=clone, check=False
        )
    )
    assert f"version 1.0.0: artifact md5 {md5_10} is in neither the DVC cache" in predict
    assert f"s3://{BUCKET}/empty/files/md5/{md5_10[:2]}/{md5_10[2:]}" in predict


# --------------------------------------------------------------------------- the story
def test_the_whole_loop_on_an_s3_remote_and_an_mlflow_tracking_server(
    loop: Loop, s3: S3, tracking: TrackingServer
):
    """bootstrap → retrain → merge → promote → rollback on a fresh clone; the aliases follow
    on the tracking server; with the server down promote still promotes from git, and a later
    promote catches the aliases up."""
    lp, sb, cli = loop, loop.sb, loop.cli
    # Bootstrap (in the fixture): proposed by a runner, its model and data in the bucket.
    assert lp.bootstrap["outcome"] == "proposed" and lp.bootstrap["version"] == "1.0.0"
    v10 = _entry(lp, "origin/main", "1.0.0")
    assert s3.get(v10["artifact"]["md5"])  # the object is in the bucket
    assert not sb.dvc_remote.exists()  # and there is no local remote to fall back on
    # The training run was logged on the server: run, registered version, model artifact.
    client = tracking.client()
    run = client.get_run(v10["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics
    mv10 = v10["mlflow"]["model_version"]
    assert client.get_model_version(MODEL, mv10).run_id == v10["mlflow"]["run_id"]
    assert list(tracking.artifacts.rglob("MLmodel")), "no model artifact on the server"
    assert tracking.alias() == mv10 and tracking.alias("champion") == mv10
    tags = sb.git("ls-remote", "--tags", "origin")
    assert f"refs/tags/{MODEL}@v1.0.0" in tags

    # Retrain (in the fixture): a new batch, a fresh runner, gates against production
    # fetched from the bucket, v1.1.0 proposed.  The promotion gate checks it on a fresh clone.
    assert "new_data" in lp.proposal["fired"]
    v11 = _entry(lp, "origin/retrain/v1.1.0", "1.1.0")
    mv11 = v11["mlflow"]["model_version"]
    assert mv11 != mv10 and s3.get(v11["artifact"]["md5"])
    gate = lp.clone("gate", data=True)  # the check may re-score on the frozen holdout
    lp.git(gate, "checkout", "-q", "origin/retrain/v1.1.0")
    out = cli("verify", "--base", "origin/main", cwd=gate).stdout
    assert "artifact in the DVC remote" in out

    # Merge; the promote job (a fresh clone) verifies from the bucket and moves the aliases.
    example.merge_proposal(sb, "retrain/v1.1.0")
    promoted = cli.json("promote", "--push-tags", cwd=lp.clone("promote-2"))
    assert promoted["event"] == "promote" and promoted["version"] == "1.1.0", promoted
    assert tracking.alias() == mv11 and tracking.alias("champion") == mv11

    # 3 a.m., a fresh clone with no data and no cache: roll back, promote records it.
    oncall = lp.clone("oncall")
    cli("rollback", "--push", cwd=oncall)
    rolled = cli.json("promote", "--push-tags", cwd=oncall)
    assert rolled["event"] == "rollback" and rolled["version"] == "1.0.0", rolled
    assert tracking.alias() == mv10 and tracking.alias("champion") == mv10
    deployed = json.loads((oncall / ".retrain" / "deployed" / "current.json").read_text())
    assert deployed["version"] == "1.0.0" and deployed["sha256"] == v10["artifact"]["sha256"]
    pred = cli("predict", "--version", "1.0.0", "--input", str(lp.features), cwd=oncall)
    assert len(pred.stdout.splitlines()) == 51
    assert not (oncall / "data" / "batches").exists()

    # The tracking server goes down; v1.1.0 is put back (revert of the rollback) and promoted.
    tracking.stop()
    lp.git(oncall, "revert", "--no-edit", "HEAD")
    lp.git(oncall, "push", "-q", "origin", "HEAD:main")
    started = time.monotonic()
    down = cli("promote", "--json", "--push-tags", cwd=oncall)
    assert time.monotonic() - started < 120  # not MLflow's retry schedule
    res = json.loads(down.stdout)
    assert res["event"] == "promote" and res["version"] == "1.1.0", res
    notes = " ".join(res["notes"])
    assert "MLflow not updated" in notes and "unreachable" in notes, notes
    deployed = json.loads((oncall / ".retrain" / "deployed" / "current.json").read_text())
    assert deployed["version"] == "1.1.0"
    stage_tags = sb.git("ls-remote", "--refs", "--tags", "origin", f"{MODEL}#production#*")
    assert len(stage_tags.splitlines()) == 4  # promote, promote, rollback, promote: git has it all

    # The server is back: aliases still say v1.0.0 until the next promote catches them up.
    tracking.start()
    assert tracking.alias() == mv10
    lp.git(oncall, "commit", "-q", "--allow-empty", "-m", "docs: on-call notes")
    later = cli.json("promote", cwd=oncall)
    assert later["event"] == "none", later
    assert any(n.startswith("caught up: MLflow aliases") for n in later["notes"]), later
    assert tracking.alias() == mv11 and tracking.alias("champion") == mv11
    # Caught up: the next one has nothing to do.
    assert cli.json("promote", cwd=oncall)["notes"] == []
