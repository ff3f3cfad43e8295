"""Where a server reads its revision, and what of it: the serving configs only, the fork's
code of that revision, mounted directories read whole across an atomic swap, old artifacts
evicted, reconciles jittered.  Real files, real skops artifacts; no server process."""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrain.core import registry as reg
from retrain.core.config.serving import load_serving_config
from retrain.core.errors import ConfigError
from retrain.pipeline import artifacts
from retrain.serve import evict, replicas
from retrain.serve.follow import forget_modules_outside
from retrain.serve.predlog import log_url_of
from retrain.serve.source import MountedPath
from tests.conftest import PROJECT


def configs_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "configs", root / "configs")
    shutil.copy(PROJECT / "registry.yaml", root / "registry.yaml")
    return root


# --------------------------------------------------------------------------- configs
def test_typos_in_training_configs_do_not_reach_the_server(tmp_path):
    root = configs_copy(tmp_path)
    (root / "configs" / "gates.yaml").write_text("primary_metrik: accuracy\n")
    (root / "configs" / "drift.yaml").write_text("{not yaml")
    (root / "configs" / "triggers.yaml").unlink()
    model = root / "configs" / "model.yaml"
    model.write_text(model.read_text() + "paramz: {}\n")  # not serving's key
    release = root / "configs" / "release.yaml"
    release.write_text(release.read_text().replace("retention:", "retentoin:"))
    cfg = load_serving_config(root)
    assert cfg.model_name == "seattle-weather" and cfg.dataset.name == "seattle-weather"


@pytest.mark.parametrize(
    "file, text, key",
    [
        ("dataset.yaml", "name: x\ntarget: y\nfeatures: []\n", "features"),
        ("model.yaml", "estimator: random_forest\ntrusted_types: [notdotted]\n", "trusted_types"),
        ("release.yaml", "model_name: Not A Name\n", "model_name"),
        ("serve.yaml", "feedback_wait_s: -1\n", "feedback_wait_s"),
        ("serve.yaml", "keep_artefacts: 2\n", "keep_artefacts"),
    ],
)
def test_what_serving_reads_is_still_checked_naming_file_and_key(tmp_path, file, text, key):
    root = configs_copy(tmp_path)
    (root / "configs" / file).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_serving_config(root)
    assert f"configs/{file}" in str(err.value) and key in str(err.value)


def test_the_log_url_comes_from_the_environment_when_set(tmp_path, monkeypatch):
    serve = load_serving_config(configs_copy(tmp_path)).serve
    monkeypatch.setenv("RETRAIN_LOG_URL", "postgresql://u:secret@db:5432/log")
    assert log_url_of(serve)[0] == "postgresql://u:secret@db:5432/log"
    monkeypatch.setenv("RETRAIN_LOG_URL", " ")
    assert log_url_of(serve)[0] == serve.log_url


# --------------------------------------------------------------------------- mounts
def configmap(path: Path, stamp: str, registry: str) -> None:
    """Publish one ConfigMap update the kubelet's way (new dir, then swap ``..data``)."""
    target = path / stamp
    (target / "configs").mkdir(parents=True)
    (target / "registry.yaml").write_text(registry)
    for name in ("dataset", "model", "release", "serve"):
        shutil.copy(PROJECT / "configs" / f"{name}.yaml", target / "configs" / f"{name}.yaml")
    tmp = path / "..data_tmp"
    tmp.symlink_to(stamp)
    os.replace(tmp, path / "..data")
    for top in ("registry.yaml", "configs"):
        if not (path / top).is_symlink():
            (path / top).symlink_to(f"..data/{top}")


def test_a_configmap_mount_is_read_from_one_revision_only(tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    configmap(mount, "..2026_01_01_a", "model: m\nproduction: null\nversions: []\n# a\n")
    source = MountedPath(mount)
    first = source.read()
    assert first.root == (mount / "..2026_01_01_a").resolve() and first.text.endswith("# a\n")
    assert first.commit is None
    configmap(mount, "..2026_01_01_b", "model: m\nproduction: null\nversions: []\n# b\n")
    shutil.rmtree(mount / "..2026_01_01_a")  # the kubelet removes the old files
    second = source.read()
    assert second.text.endswith("# b\n") and second.key != first.key
    assert second.root.name == "..2026_01_01_b"
    # Unchanged files, unchanged key: the server does not re-read its configs.
    assert source.read().key == second.key


def test_a_git_sync_link_names_its_commit(tmp_path):
    commit = "ab" * 20
    tree = tmp_path / "git" / ".worktrees" / commit
    shutil.copytree(PROJECT / "configs", tree / "configs")
    (tree / "registry.yaml").write_text("model: m\nversions: []\n")
    (tmp_path / "git" / "current").symlink_to(f".worktrees/{commit}")
    rev = MountedPath(tmp_path / "git" / "current").read()
    assert rev.commit == commit and rev.root == tree.resolve()


def test_an_empty_mount_is_a_failed_read_not_a_crash(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="registry.yaml: file not found"):
        MountedPath(tmp_path / "empty").read()


# --------------------------------------------------------------------------- code
CONSTANT = '''
from sklearn.base import BaseEstimator


class Constant(BaseEstimator):
    """A model whose answer is written in this revision's code."""

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def predict(self, X):
        return ["{answer}"] * len(X)
'''


def test_a_version_loads_with_the_code_of_the_revision_naming_it(tmp_path):
    """The fork's model.py changed between two revisions: a following server loads the new
    revision's version with the new code, not the module it imported for the old one."""
    a, b = tmp_path / "rev-a", tmp_path / "rev-b"
    for rev, answer in ((a, "old"), (b, "new")):
        rev.mkdir()
        (rev / "model.py").write_text(CONSTANT.format(answer=answer))
    sys.path.insert(0, str(a))
    try:
        import model  # the revision-a code, as a trained artifact refers to it

        saved = artifacts.save_model(model.Constant().fit([[0]]), tmp_path / "m.skops",
                                     trusted=["model.Constant"])  # fmt: skip
    finally:
        sys.path.remove(str(a))
        sys.modules.pop("model", None)
    path, sha = tmp_path / "m.skops", saved["sha256"]
    trusted = ["model.Constant"]
    try:
        old = artifacts.load_verified(path, sha, trusted=trusted, code_root=a)
        assert old.predict([[1]]) == ["old"]
        assert forget_modules_outside(b, {a}) == ["model"]
        new = artifacts.load_verified(path, sha, trusted=trusted, code_root=b)
        assert new.predict([[1]]) == ["new"]
        assert old.predict([[1]]) == ["old"]  # a model already loaded keeps its code
    finally:
        sys.modules.pop("model", None)


# --------------------------------------------------------------------------- eviction
def registry_of(shas: list[str], production: int, canary: int | None = None) -> reg.Registry:
    doc = {
        "model": "m",
        "production": f"1.{production}.0",
        "versions": [
            {"version": f"1.{i}.0", "created": "2026-01-01T00:00:00Z", "bump": "minor",
             "schema": {"fingerprint": "sha256:abc"},
             "artifact": {"path": "a", "md5": "0" * 32, "sha256": sha}}
            for i, sha in enumerate(shas)
        ],
    }  # fmt: skip
    if canary is not None:
        doc["rollout"] = {"canary": {"version": f"1.{canary}.0", "weight": 5}}
    import yaml

    return reg.parse_text(yaml.safe_dump(doc))


def test_old_artifacts_are_evicted_keeping_production_rollout_and_the_newest(tmp_path):
    shas = [f"{i:x}" * 64 for i in range(1, 8)]
    store = tmp_path / ".retrain" / "artifacts"
    store.mkdir(parents=True)
    for sha in shas:
        (store / f"{sha}.skops").write_bytes(b"model")
    (store / "notes.txt").write_text("not an artifact")
    (store / f"{'e' * 64}.part").write_bytes(b"half a fetch")
    (store / f"{'d' * 64}.4242-0a1b2c3d.part").write_bytes(b"half a fetch of a dead process")
    registry = registry_of(shas, production=0, canary=2)
    now = (store / f"{shas[0]}.skops").stat().st_mtime + 3600
    gone = evict.evict_artifacts(tmp_path, registry, keep_last=2, now=now)
    left = sorted(p.name for p in store.iterdir())
    kept = {shas[0], shas[2], shas[5], shas[6]}  # production, canary, the newest two
    assert left == sorted([f"{s}.skops" for s in kept] + ["notes.txt"])
    assert len(gone) == 5  # three versions and the leftover .part files
    # A copy written a moment ago (another process about to load it) is left alone.
    (store / f"{shas[1]}.skops").write_bytes(b"just fetched")
    assert evict.evict_artifacts(tmp_path, registry, keep_last=2) == []


def test_two_processes_fetching_one_version_at_once_both_get_it_verified(tmp_path, monkeypatch):
    """A server following git and `retrain promote` fetch a new version at the same moment
    (the drill does exactly this).  Here the second fetch runs, whole, between the first's
    copy and its sha256 check: each must hash its own copy, never the other's."""
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True)
    model = tmp_path / "model.skops"
    model.write_bytes(os.urandom(1 << 20))
    ref = reg.ArtifactRef.model_validate(
        {"path": "artifacts/model.skops", **artifacts.describe(model)}
    )
    cache = artifacts.cache_path(tmp_path, ref.md5)
    cache.parent.mkdir(parents=True)
    shutil.copyfile(model, cache)

    real, nested = artifacts.sha256_of, []

    def sha256_with_a_neighbour(path):
        if not nested:
            nested.append(None)
            nested[0] = artifacts.fetch(tmp_path, ref, "1.0.1")  # the other process
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_of", sha256_with_a_neighbour)
    got = artifacts.fetch(tmp_path, ref, "1.0.1")
    assert nested == [got] and real(got) == ref.sha256
    assert sorted(p.name for p in got.parent.iterdir()) == [got.name]  # no copy left behind


# --------------------------------------------------------------------------- jitter
@given(st.floats(0.1, 3600), st.floats(0, 0.99), st.integers(0, 2**32))
def test_jittered_intervals_stay_within_their_share(interval, share, seed):
    got = replicas.jittered(interval, share, random.Random(seed))
    assert interval * (1 - share) - 1e-9 <= got <= interval * (1 + share) + 1e-9


def test_replicas_started_together_spread_their_reconciles():
    rng = random.Random(0)
    pauses = [replicas.jittered(10.0, 0.2, rng) for _ in range(8)]
    assert len({round(p, 3) for p in pauses}) == 8 and max(pauses) - min(pauses) > 1.0
    assert replicas.jittered(10.0, 0.0, rng) == 10.0


def test_serve_refuses_two_sources_and_a_bad_serving_config_in_one_line(tmp_path):
    import subprocess

    root = configs_copy(tmp_path)
    both = subprocess.run([sys.executable, "-m", "retrain", "serve", "--follow", "origin/main",
                           "--follow-path", str(tmp_path)], cwd=root, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert both.returncode == 2 and "--follow-path" in both.stderr
    assert both.stderr.strip().count("\n") == 0 and "Traceback" not in both.stderr
    (root / "configs" / "serve.yaml").write_text("follow_jitter: 2\n")
    bad = subprocess.run([sys.executable, "-m", "retrain", "serve"], cwd=root,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "configs/serve.yaml: follow_jitter" in bad.stderr, bad.stderr
