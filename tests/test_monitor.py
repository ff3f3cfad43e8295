"""``retrain monitor`` end to end on a sandbox fork: real git, DVC and MLflow.

The fork runs with ``strategy: canary``: a retrain whose gates pass is proposed as the canary
at the first step; monitor reads a prediction-log export (``--log``, the frame the server's
log produces, with feedback labels) and acts through git.  GitHub is stood in by a ``gh`` on
PATH that records its arguments and the PR body (tests/conftest.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrain import example
from tests.conftest import Cli, bootstrap, gh_calls, install_fake_gh
from tests.rollout_frames import served

PROJECT = Path(__file__).resolve().parents[1]

ROLLOUT = """rollout:
  strategy: canary
  steps: [10, 50]
  watch_window: 1h
  auto_rollback: pr
  analysis: {min_requests: 100, min_labels: 80, n_resamples: 300}
  health: {min_requests: 50, min_labels: 50}
  challenger: {min_labels: 150, window: 0s, min_delta: 0.02}
"""


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory):
    """v1.0.0 in production and v1.1.0 merged as the canary at 10%; built once."""
    base = tmp_path_factory.mktemp("monitor")
    sb = example.make_sandbox(base / "sb", PROJECT)
    cli = Cli(sb, install_fake_gh(base))
    release = sb.root / "configs" / "release.yaml"
    release.write_text(re.sub(r"(?ms)^rollout:.*", ROLLOUT, release.read_text()))
    sb.git("commit", "-qam", "release: canary strategy")
    sb.git("push", "-q", "origin", "main")
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run")
    assert out["outcome"] == "proposed" and out["version"] == "1.1.0", out
    proposed = yaml.safe_load(sb.git("show", f"{out['branch']}:registry.yaml"))
    assert proposed["production"] == "1.0.0"
    assert proposed["rollout"] == {"canary": {"version": "1.1.0", "weight": 10}}
    base_sha = sb.git("rev-parse", "HEAD")
    sb.git("checkout", "-q", out["branch"])
    checked = cli("verify", "--base", base_sha)
    assert "enters as a rollout" in checked.stdout
    sb.git("checkout", "-q", "main")
    example.merge_proposal(sb, out["branch"])
    cli("promote")
    return sb, cli, sb.git("rev-parse", "HEAD")


@pytest.fixture
def canary(fork):
    """The fork reset to 'canary at 10%' for each test."""
    sb, cli, sha = fork
    sb.git("checkout", "-q", "main")
    sb.git("reset", "-q", "--hard", sha)
    sb.git("push", "-q", "--force", "origin", "main")
    log = Path(cli.env["FAKE_GH_LOG"])
    log.unlink(missing_ok=True)
    for f in (sb.root / ".retrain").glob("predictions.db*"):
        f.unlink()  # each test starts with an empty prediction log
    return sb, cli, log


def write_log(path: Path, *frames: pd.DataFrame) -> Path:
    pd.concat(frames).to_csv(path, index=False)
    return path


def now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def registry(sb: example.Sandbox, rev: str = "HEAD") -> dict:
    return yaml.safe_load(sb.git("show", f"{rev}:registry.yaml"))


def test_healthy_canary_advances_then_is_promoted(canary, tmp_path):
    sb, cli, gh = canary
    t = now()
    log = write_log(
        tmp_path / "log.csv",
        served("1.0.0", "production", 900, accuracy=0.7, start=t, seed=1),
        served("1.1.0", "canary", 300, accuracy=0.78, start=t, seed=2),
    )
    out = cli.json("monitor", "--open-pr", "--log", str(log))
    assert out["verdict"] == "advance", out["summary"]
    assert out["action"]["branch"] == "rollout/advance-v1.1.0-50"
    assert registry(sb, "origin/rollout/advance-v1.1.0-50")["rollout"]["canary"]["weight"] == 50
    body = gh_calls(gh)[-1]["body"]
    assert "| 1.1.0 | canary | 300 |" in body and "live.png" in body
    assert sb.git("rev-parse", "HEAD") == sb.git("rev-parse", "origin/main")  # main untouched

    example.merge_proposal(sb, "rollout/advance-v1.1.0-50")
    t = now()
    log = write_log(
        tmp_path / "log2.csv",
        served("1.0.0", "production", 600, accuracy=0.7, start=t, seed=3),
        served("1.1.0", "canary", 600, accuracy=0.78, start=t, seed=4),
    )
    out = cli.json("monitor", "--open-pr", "--log", str(log))
    assert out["verdict"] == "promote", out["summary"]
    final = registry(sb, f"origin/{out['action']['branch']}")
    assert final["production"] == "1.1.0" and "rollout" not in final
    example.merge_proposal(sb, out["action"]["branch"])
    promoted = cli.json("promote")
    assert promoted["event"] == "promote" and promoted["version"] == "1.1.0"
    events = [e["event"] for e in cli.json("status")["rollout_history"]]
    assert events == ["canary_started", "canary_advanced", "canary_promoted"]


def test_canary_failing_on_a_fifth_of_rows_is_removed_by_a_push(canary, tmp_path):
    sb, cli, gh = canary
    t = now()
    log = write_log(
        tmp_path / "log.csv",
        served("1.0.0", "production", 900, accuracy=0.7, start=t),
        served("1.1.0", "canary", 200, accuracy=0.7, error_rate=0.2, start=t, seed=5),
    )
    out = cli.json("monitor", "--push", "--log", str(log))
    assert out["verdict"] == "rollback" and "error_rate" in out["summary"]
    assert out["action"]["kind"] == "push"
    assert sb.git("rev-parse", "origin/main") == out["action"]["commit"]
    after = registry(sb, "origin/main")
    assert after["production"] == "1.0.0" and "rollout" not in after
    assert not sb.git("status", "--porcelain", "--untracked-files=no")
    assert gh_calls(gh) == []
    st = cli.json("status")
    assert st["rollout"] is None
    assert st["rollout_history"][-1]["event"] == "canary_rolled_back"


def test_not_enough_traffic_holds_and_changes_nothing(canary, tmp_path):
    sb, cli, gh = canary
    head = sb.git("rev-parse", "HEAD")
    t = now()
    log = write_log(
        tmp_path / "log.csv",
        served("1.0.0", "production", 300, accuracy=0.7, start=t),
        served("1.1.0", "canary", 30, accuracy=0.7, start=t),
    )
    out = cli.json("monitor", "--open-pr", "--log", str(log))
    assert out["verdict"] == "hold"
    assert out["missing"] == {"requests": 70, "labels": 50}
    assert sb.git("rev-parse", "HEAD") == head and gh_calls(gh) == []


def _declare_shadow(sb: example.Sandbox) -> None:
    from retrain.core import registry as reg

    r = reg.parse_text((sb.root / "registry.yaml").read_text())
    (sb.root / "registry.yaml").write_text(
        reg.dumps(reg.with_rollout(r, reg.Rollout(shadow=("1.1.0",))))
    )
    sb.git("commit", "-qam", "Rollout: shadow 1.1.0 instead of a canary")
    sb.git("push", "-q", "origin", "main")


@pytest.mark.parametrize(("accuracy", "pr"), [(0.9, True), (0.55, False)])
def test_shadow_better_on_live_labels_opens_the_promotion_pr(canary, tmp_path, accuracy, pr):
    sb, cli, gh = canary
    _declare_shadow(sb)
    import numpy as np

    from tests.rollout_frames import CLASSES

    y = np.random.default_rng(7).choice(CLASSES, size=400)
    ids = [f"r{i}" for i in range(400)]
    t = now()
    log = write_log(
        tmp_path / "log.csv",
        served("1.0.0", "production", 400, accuracy=0.7, ids=ids, labels=y, start=t, seed=8),
        served("1.1.0", "shadow", 400, accuracy=accuracy, ids=ids, labels=y, start=t, seed=9),
    )
    out = cli.json("monitor", "--open-pr", "--log", str(log))
    if pr:
        assert out["verdict"] == "promote_challenger", out["summary"]
        promoted = registry(sb, f"origin/{out['action']['branch']}")
        assert promoted["production"] == "1.1.0" and "rollout" not in promoted
        assert "paired" in gh_calls(gh)[-1]["body"]
    else:
        assert out["verdict"] == "keep" and gh_calls(gh) == []


def test_directly_promoted_bad_version_in_its_watch_window_is_reverted(canary, tmp_path):
    sb, cli, gh = canary
    text = (sb.root / "registry.yaml").read_text()
    text = re.sub(r"(?m)^rollout:\n(  .*\n)+", "", text).replace(
        "production: 1.0.0", "production: 1.1.0"
    )
    (sb.root / "registry.yaml").write_text(text)
    sb.git("commit", "-qam", "Promote 1.1.0 directly")
    sb.git("push", "-q", "origin", "main")
    cli("promote")
    log = write_log(
        tmp_path / "log.csv",
        served("1.1.0", "production", 200, accuracy=0.3, start=now(), seed=10),
    )
    out = cli.json("monitor", "--push", "--log", str(log))
    assert out["mode"] == "watch" and out["verdict"] == "rollback", out["summary"]
    assert out["action"]["reverted"]
    assert registry(sb, "origin/main")["production"] == "1.0.0"
    assert "Rollback seattle-weather to v1.0.0" in sb.git("log", "-1", "--format=%s", "origin/main")


def test_a_rollback_resting_on_labels_no_token_wrote_opens_a_pr_instead_of_pushing(
    canary, tmp_path
):
    """`--push` (or `auto_rollback: push`) acts on label evidence only when a token wrote
    the labels: the same bad version judged on a log file without `label_by` is rolled back
    through a PR a person merges, and main is not touched (issue #19).  GitHub is stood in
    by the recording `gh`."""
    sb, cli, gh = canary
    text = (sb.root / "registry.yaml").read_text()
    text = re.sub(r"(?m)^rollout:\n(  .*\n)+", "", text).replace(
        "production: 1.0.0", "production: 1.1.0"
    )
    (sb.root / "registry.yaml").write_text(text)
    sb.git("commit", "-qam", "Promote 1.1.0 directly")
    sb.git("push", "-q", "origin", "main")
    cli("promote")
    main = sb.git("rev-parse", "origin/main")
    log = write_log(
        tmp_path / "log.csv",
        served("1.1.0", "production", 200, accuracy=0.3, start=now(), seed=10, label_by=None),
    )
    out = cli.json("monitor", "--push", "--log", str(log))
    assert out["verdict"] == "rollback" and not out["labels_authenticated"], out["summary"]
    assert out["action"]["kind"] == "pr" and "not pushed" in out["action"]["note"]
    assert sb.git("rev-parse", "origin/main") == main
    assert gh_calls(gh)[-1]["argv"][:2] == ["pr", "create"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("weight: 10", "weight: 140"), "rollout.canary.weight: expected a whole percent"),
        (("version: 1.1.0\n    weight", "version: 1.0.0\n    weight"), "is production already"),
        (("version: 1.1.0\n    weight", "version: 3.0.0\n    weight"), "3.0.0 names no entry"),
    ],
)
def test_verify_refuses_bad_rollout_state_with_one_line(canary, edit, message):
    sb, cli, _ = canary
    base = sb.git("rev-parse", "HEAD")
    path = sb.root / "registry.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1]))
    res = cli("verify", "--base", base, check=False)
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    sb.git("checkout", "--", "registry.yaml")


def test_verify_refuses_a_change_of_production_that_carries_code(canary):
    """The promotion gate runs the base branch's code; a PR that moved production and
    changed code (here the environment, pyproject.toml) would have its model judged by
    code no one merged, so verify refuses it, naming the files (issue #19)."""
    sb, cli, _ = canary
    base = sb.git("rev-parse", "HEAD")
    path = sb.root / "registry.yaml"
    text = re.sub(r"(?m)^rollout:\n(  .*\n)+", "", path.read_text())
    path.write_text(text.replace("production: 1.0.0", "production: 1.1.0"))
    project = sb.root / "pyproject.toml"
    original = project.read_text()
    project.write_text(original + "\n# a change under review\n")
    try:
        res = cli("verify", "--base", base, check=False)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "also changes code or its environment (pyproject.toml)" in res.stderr
        project.write_text(original)
        ok = cli("verify", "--base", base)
        assert "carries no code" in ok.stdout and "production moves from 1.0.0" in ok.stdout
    finally:
        project.write_text(original)
        sb.git("checkout", "--", "registry.yaml")


def test_verify_refuses_a_shadow_whose_artifact_is_not_in_the_remote(canary):
    sb, cli, _ = canary
    base = sb.git("rev-parse", "HEAD")
    doc = yaml.safe_load((sb.root / "registry.yaml").read_text())
    ghost = {**doc["versions"][-1], "version": "1.2.0"}
    ghost["artifact"] = {**ghost["artifact"], "md5": "f" * 32}
    from retrain.core import registry as reg

    r = reg.parse_text((sb.root / "registry.yaml").read_text())
    r = reg.Registry(model=r.model, production=r.production, versions=[*r.versions, ghost])
    r = reg.with_rollout(r, reg.Rollout(shadow=("1.2.0",)))
    (sb.root / "registry.yaml").write_text(reg.dumps(r))
    res = cli("verify", "--base", base, check=False)
    assert res.returncode == 2
    assert "rollout.shadow[0]: 1.2.0's artifact md5 ffff" in res.stderr
    assert "not in the DVC remote" in res.stderr
    sb.git("checkout", "--", "registry.yaml")


def test_monitor_refuses_a_log_missing_a_column(canary, tmp_path):
    _, cli, _ = canary
    log = tmp_path / "log.csv"
    served("1.0.0", "production", 5, accuracy=0.7).drop(columns=["version"]).to_csv(log)
    res = cli("monitor", "--log", str(log), check=False)
    assert res.returncode == 2 and "missing column(s) ['version']" in res.stderr


# =========================================================================== the live server
# `retrain serve --follow origin/main` on a free loopback port, started and stopped by each test.


@pytest.fixture
def server(canary):
    from retrain.rollout.drill import Server

    sb, cli, gh = canary
    srv = Server(sb.root, cli.env, interval=0.3)
    try:
        srv.wait_version("1.0.0")
        srv.wait_rollout({"canary": {"version": "1.1.0", "weight": 10}})
        yield srv
    finally:
        srv.stop()


def _holdout_rows(sb: example.Sandbox, n: int) -> pd.DataFrame:
    from retrain.core.config import load_config

    cfg = load_config(sb.root)
    frame = pd.read_csv(sb.root / cfg.dataset.holdout)
    return frame[cfg.dataset.feature_names].head(n)


def _log(sb: example.Sandbox, expected: int) -> pd.DataFrame:
    from retrain.rollout.drill import _wait_logged
    from retrain.serve import predlog

    _wait_logged(sb.root, expected)
    log = predlog.open_log("sqlite:///.retrain/predictions.db", sb.root)
    try:
        return log.served()
    finally:
        log.close()


def test_canary_at_10_percent_answers_a_tenth_of_2000_requests_and_keys_stick(canary, server):
    from retrain.rollout.drill import invoke

    sb, _, _ = canary
    row = _holdout_rows(sb, 1)
    versions = []
    for i in range(2000):
        status, doc, _ = invoke(server, row, f"req-{i}")
        assert status == 200, doc
        versions.append(doc["model_version"])
    share = versions.count("1.1.0") / len(versions)
    assert abs(share - 0.10) <= 0.025, share
    assert set(versions) == {"1.0.0", "1.1.0"}
    for key in ("alice", "bob", "carol", "dave", "erin"):
        seen = {invoke(server, row, f"{key}-{j}", key=key)[1]["model_version"] for j in range(5)}
        assert len(seen) == 1, (key, seen)
    log = _log(sb, 2025)
    roles = log.groupby("version")["role"].unique()
    assert list(roles["1.1.0"]) == ["canary"] and list(roles["1.0.0"]) == ["production"]


def test_with_a_shadow_every_answer_is_production_and_the_shadow_is_logged(canary, server):
    from retrain.rollout.drill import answers, invoke

    sb, _, _ = canary
    rows = _holdout_rows(sb, 60)
    # Production-only answers first: the same server with the canary taken out.
    text = (sb.root / "registry.yaml").read_text()
    (sb.root / "registry.yaml").write_text(re.sub(r"(?m)^rollout:\n(  .*\n)+", "", text))
    sb.git("commit", "-qam", "Rollout: remove canary")
    sb.git("push", "-q", "origin", "main")
    server.wait_rollout(None)
    alone = [answers(invoke(server, rows.iloc[[i]], f"alone-{i}")[1]) for i in range(len(rows))]
    _declare_shadow(sb)
    server.wait_rollout({"shadow": ["1.1.0"]})
    shadowed = []
    for i in range(len(rows)):
        status, doc, _ = invoke(server, rows.iloc[[i]], f"shadowed-{i}")
        assert status == 200 and doc["model_version"] == "1.0.0"
        shadowed.append(answers(doc))
    assert shadowed == alone
    log = _log(sb, 3 * len(rows))
    sh = log[log["role"] == "shadow"]
    # The client's X-Request-ID is kept beside the server's own id (which every row carries).
    assert sorted(sh["client_request_id"]) == sorted(f"shadowed-{i}" for i in range(len(rows)))
    assert sh["request_id"].is_unique
    assert set(sh["version"]) == {"1.1.0"} and sh["prediction"].notna().all()


def test_bad_rollout_state_is_refused_by_the_reload_and_the_server_keeps_serving(canary, server):
    from retrain.rollout.drill import http, invoke

    sb, _, _ = canary
    path = sb.root / "registry.yaml"
    path.write_text(path.read_text().replace("weight: 10", "weight: 140"))
    sb.git("commit", "-qam", "Rollout: weight 140 (bad)")
    sb.git("push", "-q", "origin", "main")
    import time

    deadline = time.monotonic() + 60
    health: dict = {}
    while time.monotonic() < deadline:
        status, body = http("GET", f"{server.url}/health")
        health = json.loads(body)
        if "rollout.canary.weight" in json.dumps(health):
            break
        time.sleep(0.2)
    assert "rollout.canary.weight: expected a whole percent from 1 to 99 (got 140)" in json.dumps(
        health
    )
    status, doc = (
        http("GET", f"{server.url}/version")[0],
        json.loads(http("GET", f"{server.url}/version")[1]),
    )
    assert status == 200 and doc["rollout"] == {"canary": {"version": "1.1.0", "weight": 10}}
    assert invoke(server, _holdout_rows(sb, 1), "still-up")[0] == 200


def test_canary_failing_on_a_share_of_rows_is_rolled_back_and_gets_no_more_traffic(canary, server):
    """A real failing canary: the drill's model whose encoder never saw one season answers
    500 on those rows, which the server logs as errors; monitor reads the live log, pushes
    the removal of the canary, and the server stops routing to it."""
    from retrain.rollout.drill import invoke, register_bad, trust_the_tripwire

    sb, cli, _ = canary
    trust_the_tripwire(sb.root, sb.git)  # the sandbox's model.yaml trusts the failing wrapper
    version, _ = register_bad(sb.root, cli.env, "failing", git=sb.git, canary_weight=50)
    sb.git(
        "merge", "-q", "--no-ff", "-m", "Merge pull request #2 from drill/failing", "drill/failing"
    )
    sb.git("push", "-q", "origin", "main")
    server.wait_rollout({"canary": {"version": version, "weight": 50}})
    rows = _holdout_rows(sb, 300)
    codes = {"1.0.0": [], version: []}
    for i in range(len(rows)):
        status, doc, _ = invoke(server, rows.iloc[[i]], f"r{i}")
        if status == 200:
            codes[doc["model_version"]].append(status)
        else:
            codes[version].append(status)
    assert 500 in codes[version] and set(codes["1.0.0"]) == {200}
    _log(sb, len(rows))
    out = cli.json("monitor", "--push")
    assert out["verdict"] == "rollback" and "error_rate" in out["summary"], out["summary"]
    assert "rollout" not in registry(sb, "origin/main")
    server.wait_rollout(None)
    after = {invoke(server, rows.iloc[[i]], f"after-{i}")[1]["model_version"] for i in range(100)}
    assert after == {"1.0.0"}
