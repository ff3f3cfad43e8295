"""A version number names one artifact forever, and the promotion gate trusts nothing the PR
claims (issue 14, items 1 and 7).

One sandbox (real git, DVC, MLflow) walks the story once: bootstrap v1.0.0 → new data → v1.1.0
merged and promoted → reverted (rollback) → new parameters → the next retrain proposes v1.2.0,
not v1.1.0 again.
The tests then try hand-made pull requests against that proposal with ``retrain verify`` (what
the promotion-gate workflow runs), and finally merge and promote the honest one.  GitHub is
not involved: a PR is a branch, the merge is done with git.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from retrain import example
from tests.conftest import PROJECT, Cli, bootstrap


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("versions")
    sb = example.make_sandbox(base / "sb", PROJECT)
    cli = Cli(sb)
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    first = cli.json("run")
    assert first["version"] == "1.1.0", first
    merge = example.merge_proposal(sb, first["branch"])
    cli("promote", "--push-tags")
    sb.git("revert", "--no-edit", "-m", "1", merge)
    sb.git("push", "-q", "origin", "main")
    rolled = cli.json("promote")
    assert rolled["event"] == "rollback" and rolled["version"] == "1.0.0", rolled
    assert "1.1.0" not in {e["version"] for e in _registry(sb)["versions"]}
    # New parameters (a MINOR change, like new data without a class-set change): the next
    # retrain makes another artifact, which must not be called 1.1.0.
    model_yaml = sb.root / "configs" / "model.yaml"
    model_yaml.write_text(model_yaml.read_text().replace("random_state: 0", "random_state: 1"))
    sb.git("commit", "-qam", "model: another seed")
    sb.git("push", "-q", "origin", "main")
    second = cli.json("run", "--force", "--reason", "new parameters after the rollback")
    return {"sb": sb, "cli": cli, "second": second}


def _registry(sb: example.Sandbox, rev: str = "HEAD") -> dict:
    return yaml.safe_load(sb.git("show", f"{rev}:registry.yaml"))


def _hand_made_pr(sb: example.Sandbox, name: str, edit, from_branch: str = "retrain/v1.2.0"):
    """A branch off the proposal with registry.yaml edited by ``edit(doc)``; checked out."""
    sb.git("checkout", "-q", "-B", name, from_branch)
    path = sb.root / "registry.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    sb.git("commit", "-qam", f"hand-made: {name}")


def _verify_fails(story: dict, *needles: str) -> str:
    sb, cli = story["sb"], story["cli"]
    try:
        res = cli("verify", "--base", "main", check=False)
    finally:
        sb.git("checkout", "-q", "main")
    assert res.returncode == 2, res.stdout + res.stderr
    # Progress lines ("[retrain] ...") go to stderr too; the error is one line after them.
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("[retrain]")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    err = lines[0]
    for needle in needles:
        assert needle in err, err
    return err


def test_after_a_rollback_the_next_retrain_takes_the_next_free_number(story):
    sb, second = story["sb"], story["second"]
    assert second["outcome"] == "proposed", second
    assert second["version"] == "1.2.0" and second["branch"] == "retrain/v1.2.0"
    # The tag of the rolled-back version still names its own artifact.
    tag_body = sb.git("tag", "-l", "--format=%(contents)", "seattle-weather@v1.1.0")
    v11 = yaml.safe_load(sb.git("show", "seattle-weather@v1.1.0:registry.yaml"))["versions"][-1]
    assert f"sha256={v11['artifact']['sha256']}" in tag_body
    proposed = _registry(sb, "retrain/v1.2.0")["versions"][-1]
    assert proposed["artifact"]["sha256"] != v11["artifact"]["sha256"]


def test_a_pr_that_reuses_a_rolled_back_version_fails_verify(story):
    sb = story["sb"]
    v11_sha = yaml.safe_load(sb.git("show", "seattle-weather@v1.1.0:registry.yaml"))["versions"][
        -1
    ]["artifact"]["sha256"]

    def reuse(doc: dict) -> None:
        doc["versions"][-1]["version"] = "1.1.0"
        doc["production"] = "1.1.0"

    _hand_made_pr(sb, "hand/reuse-1.1.0", reuse)
    err = _verify_fails(story, "version 1.1.0 was already registered", v11_sha[:12])
    assert "tag seattle-weather@v1.1.0" in err or "registry.yaml at" in err


def test_a_hand_edited_accuracy_fails_verify_naming_the_field(story):
    def brag(doc: dict) -> None:
        doc["versions"][-1]["metrics"]["overall"]["accuracy"] = 0.99

    _hand_made_pr(story["sb"], "hand/accuracy", brag)
    _verify_fails(story, "metrics.overall.accuracy", "recorded 0.99", "recomputed 0.")


def test_an_edited_gate_report_fails_verify(story):
    sb = story["sb"]
    sb.git("checkout", "-q", "-B", "hand/gate-json", "retrain/v1.2.0")
    path = sb.root / "reports" / "v1.2.0" / "gate.json"
    path.write_text(path.read_text().replace('"verdict": "pass"', '"verdict": "skip"', 1))
    sb.git("commit", "-qam", "hand-made: soften a gate in the report")
    _verify_fails(story, "reports/v1.2.0/gate.json", "verdict", "recorded 'skip'")


def test_gates_recorded_as_passing_but_failing_when_recomputed_never_go_green(story):
    """The PR claims v1.2.0 with the honest proposal's passing gates, but its artifact is
    production's own model: recomputed, it does not beat production."""

    def old_model(doc: dict) -> None:
        doc["versions"][-1]["artifact"] = dict(doc["versions"][0]["artifact"])
        doc["versions"][-1]["schema"] = doc["versions"][0]["schema"]

    _hand_made_pr(story["sb"], "hand/old-model", old_model)
    _verify_fails(story, "gate(s) fail when recomputed", "improvement", "recorded passed=True")


def test_promote_refuses_an_entry_whose_artifact_differs_from_its_tag(story):
    """What the old code did: v1.1.0 proposed again with another artifact and merged.
    Promote refuses to move production to it; nothing is tagged or deployed."""
    sb, cli = story["sb"], story["cli"]
    main = sb.git("rev-parse", "HEAD")
    doc = _registry(sb)
    entry = dict(_registry(sb, "retrain/v1.2.0")["versions"][-1], version="1.1.0")
    doc["versions"].append(entry)
    doc["production"] = "1.1.0"
    (sb.root / "registry.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sb.git("commit", "-qam", "hand-made: v1.1.0 again, another model")
    tags = sb.git("tag", "--list")
    deployed = (sb.root / ".retrain" / "deployed" / "current.json").read_text()
    try:
        res = cli("promote", check=False)
    finally:
        sb.git("reset", "-q", "--hard", main)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "tag seattle-weather@v1.1.0" in res.stderr and "differs" in res.stderr, res.stderr
    assert sb.git("tag", "--list") == tags
    assert (sb.root / ".retrain" / "deployed" / "current.json").read_text() == deployed


def test_the_honest_proposal_verifies_merges_and_promotes(story):
    sb, cli = story["sb"], story["cli"]
    sb.git("checkout", "-q", "retrain/v1.2.0")
    try:
        res = cli("verify", "--base", "main")
    finally:
        sb.git("checkout", "-q", "main")
    assert "recomputed on 365 holdout rows" in res.stdout, res.stdout
    assert "gate.json matches" in res.stdout
    example.merge_proposal(sb, "retrain/v1.2.0")
    promoted = cli.json("promote", "--push-tags")
    assert promoted["event"] == "promote" and promoted["version"] == "1.2.0", promoted
    st = cli.json("status")
    assert st["production"] == "1.2.0"
    assert [v["version"] for v in st["versions"]] == ["1.0.0", "1.2.0"]
    assert "seattle-weather@v1.2.0" in sb.git("ls-remote", "--tags", "origin")


def test_registered_versions_come_from_tags_and_every_registry_on_main(story):
    from retrain.release import history

    sb = story["sb"]
    found = history.registered_versions(sb.root, "seattle-weather", fetch=False)
    assert {"1.0.0", "1.1.0", "1.2.0"} <= set(found)
    assert found["1.1.0"].where == "tag seattle-weather@v1.1.0"
    assert Path(sb.root).is_dir()
