"""The pinned environment (issue 11, item 3): what a model was trained with is recorded in its
registry entry and model card, and ``predict`` and the server warn when what runs differs.

One sandbox fork for the module (real git, DVC, MLflow): v1.0.0 is bootstrapped, merged and
promoted (``gh`` is the recording stand-in of conftest, the only part not real). The stories
then change what the registry says the model was trained with, never the installed
libraries: a registry entry recording another scikit-learn is exactly what a model trained a
year ago looks like to today's environment.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import types
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from retrain import example
from retrain.core import environment
from retrain.core import registry as reg
from retrain.core.config import load_config
from retrain.serve.holder import load_served
from tests.conftest import PROJECT, Cli, bootstrap
from tests.servers import Client, retrain_serve
from tests.test_registry_entries import WRITTEN
from tests.test_serve import loosen_latency_gate

SKLEARN = metadata.version("scikit-learn")


# --------------------------------------------------------------------------- units
def test_matching_environment_has_no_differences():
    running = environment.capture(PROJECT)
    assert running["packages"]["scikit-learn"] == SKLEARN
    assert set(environment.LIBRARIES) <= set(running["packages"])
    assert environment.differences(running) == []
    assert environment.differences(None) == []  # an entry registered before the record


def test_another_library_version_or_python_minor_is_a_difference():
    running = environment.capture(PROJECT)
    major, minor, *_ = running["python"].split(".")
    other = {
        **running,
        "python": f"{major}.{int(minor) + 1}.0",
        "packages": {**running["packages"], "scikit-learn": "1.0.0", "gone-lib": "2.0"},
    }
    assert environment.differences(other) == [
        f"Python {major}.{int(minor) + 1}.0 (model) vs {running['python']} (running)",
        "gone-lib 2.0 (model) vs not installed (running)",
        f"scikit-learn 1.0.0 (model) vs {SKLEARN} (running)",
    ]
    # A Python patch release does not change a saved model.
    patch = {**running, "python": f"{major}.{minor}.9999"}
    assert environment.differences(patch) == []


def test_the_estimators_own_package_is_recorded_when_it_is_not_sklearn():
    import semver  # any installed distribution stands for xgboost, lightgbm, …
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert environment.model_distributions(make_pipeline(StandardScaler())) == []
    assert environment.model_distributions(RandomForestClassifier()) == []
    foreign = types.SimpleNamespace(steps=[("scale", StandardScaler()), ("m", semver.Version(1))])
    assert environment.model_distributions(foreign) == ["semver"]
    rec = environment.capture(PROJECT, foreign)
    assert rec["packages"]["semver"] == metadata.version("semver")


def test_lock_hash_is_the_sha256_of_uv_lock(tmp_path):
    assert environment.lock_sha256(tmp_path) is None
    (tmp_path / "uv.lock").write_bytes(b"version = 1\n")
    assert environment.lock_sha256(tmp_path) == hashlib.sha256(b"version = 1\n").hexdigest()
    assert (
        environment.capture(PROJECT)["lock_sha256"]
        == hashlib.sha256((PROJECT / "uv.lock").read_bytes()).hexdigest()
    )


ENV_BLOCK = """\
  environment:
    python: 3.11.7
    packages:
      numpy: 2.4.6
      scikit-learn: 1.9.1
    lock_sha256: 3452263672660c6de055b683f0ced7532a3821dabe44d4a6b0a4539bc1dd3426
"""


def test_registry_entries_with_and_without_environment_write_back_byte_identical():
    old = reg.parse_text(WRITTEN)
    assert old.versions[0].environment is None
    assert reg.dumps(old) == WRITTEN  # entries registered before the record stay as they were
    # the environment is the entry's last known key: appended after gates
    assert WRITTEN.endswith("\n") and re.search(r"\n  gates:\n", WRITTEN)
    with_env = WRITTEN + ENV_BLOCK
    new = reg.parse_text(with_env)
    env = new.versions[0].environment
    assert env is not None and env.packages["scikit-learn"] == "1.9.1"
    assert env.lock_sha256 and env.python == "3.11.7"
    assert reg.dumps(new) == with_env


def test_an_environment_of_the_wrong_shape_is_one_line_naming_its_key():
    bad = WRITTEN + ENV_BLOCK.replace("numpy: 2.4.6", "numpy: [2]")
    with pytest.raises(reg.RegistryError, match=r"versions\[0\]\.environment\.packages\.numpy"):
        reg.parse_text(bad)


# --------------------------------------------------------------------------- stories
@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> tuple[example.Sandbox, Cli]:
    sb = example.make_sandbox(tmp_path_factory.mktemp("env") / "sb", PROJECT)
    cli = Cli(sb, None)
    loosen_latency_gate(sb)
    bootstrap(sb, cli)
    return sb, cli


def _entry(sb: example.Sandbox) -> dict:
    return yaml.safe_load((sb.root / "registry.yaml").read_text())["versions"][0]


def _record_sklearn(sb: example.Sandbox, version: str) -> None:
    """Make registry.yaml say v1.0.0 was trained with scikit-learn ``version``."""
    path = sb.root / "registry.yaml"
    text = path.read_text()
    new = re.sub(r"(\n      scikit-learn: ).*\n", rf"\g<1>{version}\n", text, count=1)
    assert new != text or f"scikit-learn: {version}\n" in text
    path.write_text(new)


def test_the_registry_entry_and_model_card_record_what_the_model_was_trained_with(fork):
    sb, _ = fork
    env = _entry(sb)["environment"]
    assert env["python"] == environment.capture(sb.root)["python"]
    assert env["packages"] == {n: metadata.version(n) for n in environment.LIBRARIES}
    assert env["lock_sha256"] == hashlib.sha256((sb.root / "uv.lock").read_bytes()).hexdigest()
    card = json.loads((sb.root / "reports" / "v1.0.0" / "model_card.json").read_text())
    assert card["environment"] == env


def test_predict_warns_when_the_recorded_sklearn_differs_and_still_predicts(fork, tmp_path):
    sb, cli = fork
    holdout = sb.root / "data" / "holdout.csv"
    same, other = tmp_path / "same.csv", tmp_path / "other.csv"
    _record_sklearn(sb, SKLEARN)
    matching = cli("predict", "--version", "1.0.0", "--input", str(holdout), "--output", str(same))
    assert "warning" not in matching.stderr and "scikit-learn" not in matching.stderr
    _record_sklearn(sb, "1.0.0")
    try:
        res = cli("predict", "--version", "1.0.0", "--input", str(holdout), "--output", str(other))
    finally:
        _record_sklearn(sb, SKLEARN)
    assert res.returncode == 0
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, res.stderr
    assert f"scikit-learn 1.0.0 (model) vs {SKLEARN} (running)" in warnings[0]
    assert "model 1.0.0" in warnings[0]
    assert other.read_text() == same.read_text() and len(same.read_text().splitlines()) > 10


def test_the_loading_path_of_the_server_reports_a_mismatch_and_none_when_matching(fork, caplog):
    sb, _ = fork
    cfg = load_config(sb.root)
    registry = reg.load(sb.root)
    entry = registry.get("1.0.0")
    served = load_served(sb.root, "m", entry, None, cfg.dataset, tuple(cfg.model.trusted_types))
    assert served.environment_mismatch == ()
    assert env_record(entry)["packages"]["scikit-learn"] == SKLEARN
    raw = entry.to_dict()
    raw["environment"]["packages"]["scikit-learn"] = "1.0.0"
    with caplog.at_level("WARNING", logger="retrain.serve"):
        served = load_served(
            sb.root,
            "m",
            reg.RegistryEntry.coerce(raw),
            None,
            cfg.dataset,
            tuple(cfg.model.trusted_types),
        )
    assert served.environment_mismatch == (f"scikit-learn 1.0.0 (model) vs {SKLEARN} (running)",)
    assert any("scikit-learn 1.0.0 (model)" in r.getMessage() for r in caplog.records)


def env_record(entry: reg.RegistryEntry) -> dict:
    assert entry.environment is not None
    return entry.environment.to_dict()


@pytest.fixture
def mismatched_server(fork) -> Iterator[tuple[Client, Path]]:
    """``retrain serve`` (a real process on loopback) following the working tree, whose
    registry says v1.0.0 was trained with scikit-learn 1.0.0; stopped and restored after."""
    sb, cli = fork
    _record_sklearn(sb, "1.0.0")
    log_path = sb.base / "serve-env.log"
    try:
        with retrain_serve(sb.root, cli.env, log=log_path, version="1.0.0") as served:
            yield served.client, log_path
    finally:
        _record_sklearn(sb, SKLEARN)


def test_the_server_warns_in_its_log_health_and_version_and_still_answers(mismatched_server):
    client, log_path = mismatched_server
    expected = f"scikit-learn 1.0.0 (model) vs {SKLEARN} (running)"
    status, version = client.get("/version")
    assert status == 200 and version["environment_mismatch"] == [expected]
    status, health = client.get("/health")
    assert status == 200 and health["environment_mismatch"] == [expected]
    row = {"precipitation": 0.0, "temp_max": 20.0, "temp_min": 10.0, "wind": 2.0}
    row["season"] = "winter"
    status, answer = client.post("/invocations", {"dataframe_records": [row]})
    assert status == 200 and len(answer["predictions"]) == 1, answer
    deadline = time.monotonic() + 10
    while expected not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert expected in log_path.read_text()


# --------------------------------------------------------------------------- the lock
def test_every_install_goes_through_the_lock():
    """make install and every workflow install with .ci/install (uv sync --locked); no step
    installs with pip, so nothing is resolved anew on a runner."""
    install = (PROJECT / ".ci" / "install").read_text()
    assert re.search(r'"\$uv" sync --locked ', install)
    makefile = (PROJECT / "Makefile").read_text()
    recipe = makefile.split("$(BIN)/retrain:", 1)[1].split("\ninstall:", 1)[0]
    assert "uv.lock" in recipe.splitlines()[0] and ".ci/install --extra dev" in recipe
    assert "pip install" not in recipe
    lock = (PROJECT / "uv.lock").read_text()
    registries = set(re.findall(r'source = \{ registry = "([^"]+)" \}', lock))
    assert registries == {"https://pypi.org/simple"}  # no machine's mirror in the lock
    for path in sorted((PROJECT / ".github" / "workflows").glob("*.yml")):
        wf = yaml.safe_load(path.read_text())
        for name, job in wf["jobs"].items():
            runs = [step.get("run", "") for step in job["steps"]]
            assert not any("pip install" in r for r in runs), f"{path.name}: {name}"
            if any("retrain " in r or "make test" in r for r in runs):
                assert any("bash .ci/install" in r or "make test" in r for r in runs), path.name


def test_the_dvc_remote_plugins_of_the_workflows_are_locked_extras():
    import tomllib

    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    lock = (PROJECT / "uv.lock").read_text()
    for extra in ("s3", "gs", "azure", "ssh"):
        assert project["optional-dependencies"][extra] == [f"dvc[{extra}]"]
        assert f'name = "dvc-{extra}"' in lock
