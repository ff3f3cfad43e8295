"""No races (issue 14, item 3): one writer per checkout, one proposal per version, one record
per promotion.

Real git (a bare origin and clones of it), real DVC, real MLflow (SQLite) in a sandbox fork;
GitHub is not involved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrain import example
from retrain.core.errors import RaceLost
from retrain.release import gitops
from tests.conftest import PROJECT


def _retrain(sb: example.Sandbox, *args: str, cwd: Path | None = None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args],
        cwd=cwd or sb.root,
        env={**os.environ, **sb.env},
        capture_output=True,
        text=True,
        timeout=900,
        **kw,
    )


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> example.Sandbox:
    return example.make_sandbox(tmp_path_factory.mktemp("races") / "sb", PROJECT)


def test_a_second_run_on_the_same_checkout_stops_naming_the_holder(sb):
    first = subprocess.Popen(
        [sys.executable, "-m", "retrain", "run", "--push", "--json"],
        cwd=sb.root,
        env={**os.environ, **sb.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = sb.root / ".retrain" / "lock"
    deadline = time.monotonic() + 120
    holder: dict = {}
    while time.monotonic() < deadline and first.poll() is None:
        try:
            holder = json.loads(lock.read_text())
        except (OSError, json.JSONDecodeError):
            holder = {}
        if holder.get("pid") == first.pid and holder.get("state") == "running":
            break
        time.sleep(0.1)
    assert holder.get("pid") == first.pid, "the first run never took the lock"

    second = _retrain(sb, "run", "--push", "--json")
    out, err = first.communicate(timeout=900)
    assert second.returncode == 2, second.stdout + second.stderr
    lines = [ln for ln in second.stderr.splitlines() if ln and not ln.startswith("[retrain]")]
    assert len(lines) == 1, second.stderr
    line = lines[0]
    assert f"pid {first.pid}" in line and "retrain run" in line and "started" in line, line

    assert first.returncode == 0, err[-2000:]
    assert json.loads(out)["version"] == "1.0.0"
    assert sb.git("branch", "--list", "retrain/*").split() == ["retrain/v1.0.0"]
    assert json.loads(lock.read_text())["state"] == "done"


def test_two_promotes_of_one_commit_in_two_clones_record_it_once(sb, tmp_path):
    if not sb.git("ls-remote", "--heads", "origin", "retrain/v1.0.0"):  # run alone (-k)
        proposed = _retrain(sb, "run", "--push", "--json")
        assert proposed.returncode == 0, proposed.stderr[-2000:]
    merge = example.merge_proposal(sb, "retrain/v1.0.0")
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(sb.origin), str(other)], check=True)
    # Runner B promotes locally first (it has not pushed yet) ...
    local = _retrain(sb, "promote", "--json", cwd=other)
    assert local.returncode == 0, local.stderr
    # ... runner A promotes and pushes its tags ...
    a = _retrain(sb, "promote", "--push-tags", "--json")
    assert a.returncode == 0, a.stderr
    # ... then B pushes: origin already records this commit; B keeps origin's record.
    b = _retrain(sb, "promote", "--push-tags", "--json", cwd=other)
    assert b.returncode == 0, b.stderr
    assert any("kept theirs" in n for n in json.loads(b.stdout)["notes"]), b.stdout

    remote = sb.git("ls-remote", "--tags", "origin").splitlines()
    stage = [ln.split()[1] for ln in remote if "#production#" in ln and not ln.endswith("^{}")]
    records = [
        t
        for t in stage
        if f"commit={merge}"
        in sb.git("tag", "-l", "--format=%(contents)", t.removeprefix("refs/tags/"))
    ]
    assert len(records) == 1, stage
    b_tags = subprocess.run(
        ["git", "tag", "--list", "seattle-weather#production#*"],
        cwd=other,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in b_tags:  # B's local tags are origin's now
        ours = subprocess.run(
            ["git", "rev-parse", f"refs/tags/{name}"], cwd=other, capture_output=True, text=True
        ).stdout.strip()
        assert ours == sb.git("rev-parse", f"refs/tags/{name}")


def test_two_runners_proposing_one_version_the_loser_changes_nothing(tmp_path):
    """Both runners saw no retrain/v1.1.0 on origin; A pushes first, B's leased push fails,
    and origin keeps A's proposal."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    clones = []
    for name in ("a", "b"):
        path = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(origin), str(path)], check=True)
        clones.append(path)
    a, b = clones
    (a / "f").write_text("base\n")
    gitops.git(a, "add", "f")
    gitops.git(a, "commit", "-qm", "base")
    gitops.git(a, "push", "-q", "origin", "main")
    gitops.git(b, "pull", "-q", "origin", "main")
    ref = "refs/heads/retrain/v1.1.0"
    seen_a, seen_b = gitops.remote_sha(a, ref), gitops.remote_sha(b, ref)
    assert seen_a is None and seen_b is None
    commits = {}
    for path, text in ((a, "A"), (b, "B")):
        commits[path] = gitops.commit_files_to_branch(
            path, branch="retrain/v1.1.0", base="HEAD", files={"f": text.encode()}, message=text
        )
    gitops.push_with_lease(a, ref, seen_a, what="branch retrain/v1.1.0")
    with pytest.raises(RaceLost, match="pushed by another runner meanwhile"):
        gitops.push_with_lease(b, ref, seen_b, what="branch retrain/v1.1.0")
    assert gitops.remote_sha(a, ref) == commits[a]
    # A re-run that saw A's proposal may replace it (the newest candidate is reviewed).
    gitops.push_with_lease(b, ref, commits[a], what="branch retrain/v1.1.0")
    assert gitops.remote_sha(a, ref) == commits[b]
