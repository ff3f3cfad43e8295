"""`retrain serve` as it runs in a container: following a mounted revision (git-sync or a
ConfigMap) without git, each version checked with the configs of the revision naming it, a
typo in a training config never stopping it, Open Inference Protocol (V2) clients answered
like MLflow's, replicas sharing a PostgreSQL log, and a slim install without the training
stack.

Real processes on loopback: one sandbox fork per module (v1.0.0 promoted, v1.1.0 proposed),
real git, DVC and a real PostgreSQL for the replica story.  The mounted directories are laid
out as the kubelet lays out a ConfigMap volume (``..data`` symlink swapped atomically) and as
git-sync lays out its ``--link`` (a symlink to ``.worktrees/<commit>``); there is no cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrain import example
from tests.conftest import PROJECT, Cli, bootstrap
from tests.servers import Client, free_port, retrain_serve

FEATURES = ["precipitation", "temp_max", "temp_min", "wind", "season"]
TRAINING_STACK = ("mlflow", "matplotlib", "vega_datasets")
SERVING_FILES = ("registry.yaml", "configs/dataset.yaml", "configs/model.yaml",
                 "configs/release.yaml", "configs/serve.yaml")  # fmt: skip


# --------------------------------------------------------------------------- the fork
@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> tuple[example.Sandbox, Cli, str]:
    """v1.0.0 in production on origin/main; v1.1.0 proposed on retrain/v1.1.0."""
    sb = example.make_sandbox(tmp_path_factory.mktemp("deploy") / "sb", PROJECT)
    cli = Cli(sb)
    gates = sb.root / "configs" / "gates.yaml"
    text = re.sub(r"max_p95_ms_single: .*", "max_p95_ms_single: 10000", gates.read_text())
    gates.write_text(re.sub(r"max_p95_ms_batch: .*", "max_p95_ms_batch: 60000", text))
    sb.git("commit", "-qam", "gates: a loose latency budget for the serving stories")
    sb.git("push", "-q", "origin", "main")
    bootstrap(sb, cli)
    first = sb.git("rev-parse", "HEAD")
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run")
    assert out["outcome"] == "proposed" and out["version"] == "1.1.0", out
    sb.git("checkout", "-q", "main")
    return sb, cli, first


def holdout(sb: example.Sandbox, n: int) -> pd.DataFrame:
    return pd.read_csv(sb.root / "data" / "holdout.csv")[FEATURES].head(n)


def split(frame: pd.DataFrame) -> dict[str, Any]:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def files_at(sb: example.Sandbox, commit: str) -> dict[str, str]:
    return {rel: sb.git("show", f"{commit}:{rel}") + "\n" for rel in SERVING_FILES}


def narrow_wind(files: dict[str, str], maximum: int) -> dict[str, str]:
    """The same revision with ``wind``'s range narrowed in configs/dataset.yaml."""
    text = re.sub(r"\{name: wind, type: numeric, min: 0, max: \d+\}",
                  f"{{name: wind, type: numeric, min: 0, max: {maximum}}}",
                  files["configs/dataset.yaml"])  # fmt: skip
    assert text != files["configs/dataset.yaml"]
    return {**files, "configs/dataset.yaml": text}


def windy(sb: example.Sandbox) -> dict[str, Any]:
    row = holdout(sb, 1).assign(wind=12.0)
    return split(row)


# --------------------------------------------------------------------------- mounts
class ConfigMapVolume:
    """A directory laid out as the kubelet writes a ConfigMap volume: each update goes to a
    new ``..<timestamp>`` directory, then ``..data`` is swapped to it with one rename, and the
    visible files are symlinks through ``..data`` (the ``items`` of the volume give
    ``configs/dataset.yaml`` its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        path.mkdir(parents=True)

    def publish(self, files: dict[str, str]) -> None:
        self.n += 1
        stamp = f"..2026_01_01_00_00_{self.n:02d}.{os.getpid()}"
        target = self.path / stamp
        for rel, text in files.items():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_text(text)
        tmp = self.path / "..data_tmp"
        tmp.symlink_to(stamp)
        old = os.readlink(self.path / "..data") if (self.path / "..data").is_symlink() else None
        os.replace(tmp, self.path / "..data")
        for top in {rel.split("/")[0] for rel in files}:
            link = self.path / top
            if not link.is_symlink():
                link.symlink_to(f"..data/{top}")
        if old:
            shutil.rmtree(self.path / old)  # the kubelet deletes the previous files


class GitSyncLink:
    """A directory laid out as git-sync v4 keeps it: ``<root>/.worktrees/<commit>`` and the
    ``--link`` symlink swapped to the new worktree."""

    def __init__(self, root: Path, sb: example.Sandbox) -> None:
        self.root, self.sb = root, sb
        (root / ".worktrees").mkdir(parents=True)
        self.link = root / "current"

    def sync(self, commit: str) -> None:
        tree = self.root / ".worktrees" / commit
        if not tree.exists():
            tree.mkdir()
            archive = subprocess.run(["git", "archive", commit], cwd=self.sb.root,
                                     capture_output=True, check=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        tmp = self.root / "current.tmp"
        tmp.symlink_to(f".worktrees/{commit}")
        os.replace(tmp, self.link)


def serving(client: Client, version: str) -> bool:
    return client.version() == version


# --------------------------------------------------------------------------- stories
def test_a_configmap_mount_is_followed_atomically_with_the_revisions_own_ranges(fork, tmp_path):
    """Argo CD (or Flux) updates a ConfigMap holding registry.yaml and the serving configs;
    the pod has no git.  The server follows the kubelet's ``..data`` swap: the merged v1.1.0
    is served, checked against the ranges its revision declares, and a revision whose
    dataset.yaml is broken keeps the model serving (degraded) until it is fixed."""
    sb, cli, first = fork
    main = sb.git("rev-parse", "origin/main")
    volume = ConfigMapVolume(tmp_path / "registry")
    volume.publish(files_at(sb, main))
    args = ("--follow-path", str(volume.path), "--interval", "0.5")
    with retrain_serve(sb.root, cli.env, *args, log=tmp_path / "serve.log", version="1.0.0") as s:
        c = s.client
        assert c.post("/invocations", windy(sb))[0] == 200
        status, health = c.get("/health")
        assert health["following"] == str(volume.path) and health["status"] == "ready", health

        # The proposal is merged; the ConfigMap gets its files, with wind now at most 10.
        merge = example.merge_proposal(sb, "retrain/v1.1.0")
        volume.publish(narrow_wind(files_at(sb, merge), 10))
        c.wait_for("v1.1.0 from the mount", lambda: serving(c, "1.1.0"), 60)
        status, out = c.post("/invocations", windy(sb))
        assert status == 422 and out["error"]["field"].endswith("wind"), out
        assert "above its maximum 10" in out["error"]["message"]

        # A revision whose dataset.yaml has a typo: nothing changes but /health says why.
        broken = files_at(sb, merge)
        broken["configs/dataset.yaml"] = broken["configs/dataset.yaml"].replace(
            "target:", "targte:"
        )
        volume.publish(broken)

        def degraded() -> bool:
            h = c.get("/health")[1]
            return h["status"] == "degraded" and any("dataset.yaml" in r for r in h["reasons"])

        c.wait_for("a degraded /health naming dataset.yaml", degraded, 60)
        assert c.version() == "1.1.0"
        assert c.post("/invocations", windy(sb))[0] == 422  # still the last good ranges
        volume.publish(files_at(sb, merge))
        c.wait_for("ready again", lambda: c.get("/health")[1]["status"] == "ready", 60)
        assert c.post("/invocations", windy(sb))[0] == 200
    # The fork goes back to v1.0.0 for the next stories.
    sb.git("revert", "--no-edit", "-m", "1", merge)
    sb.git("push", "-q", "origin", "main")


def test_a_git_sync_link_is_followed_and_names_the_commit(fork, tmp_path):
    """A git-sync sidecar keeps ``/git/current`` on main's newest commit; the server reads
    the link's worktree and reports its commit, with no git of its own."""
    sb, cli, first = fork
    link = GitSyncLink(tmp_path / "git", sb)
    link.sync(first)
    args = ("--follow-path", str(link.link), "--interval", "0.5")
    with retrain_serve(sb.root, cli.env, *args, version="1.0.0") as s:
        c = s.client
        assert c.get("/version")[1]["registry_commit"] == first
        head = sb.git("rev-parse", "origin/main")
        link.sync(head)
        c.wait_for("the new commit", lambda: c.get("/version")[1]["registry_commit"] == head, 60)


def test_a_followed_git_ref_applies_the_revisions_configs_without_a_restart(fork, tmp_path):
    """With --follow origin/main, a merged change of configs/dataset.yaml's ranges is applied
    at the next reconcile (before, ranges were frozen at start); a typo merged into
    gates.yaml, which serving does not read, neither stops a new server nor degrades one."""
    sb, cli, _ = fork
    gates = sb.root / "configs" / "gates.yaml"
    good = gates.read_text()
    gates.write_text(good.replace("primary_metric:", "primary_metrik:"))
    try:
        args = ("--follow", "origin/main", "--interval", "0.5")
        with retrain_serve(sb.root, cli.env, *args, log=tmp_path / "s.log", version="1.0.0") as s:
            c = s.client
            assert c.post("/invocations", windy(sb))[0] == 200
            dataset = sb.root / "configs" / "dataset.yaml"
            before = dataset.read_text()
            dataset.write_text(
                narrow_wind({"configs/dataset.yaml": before}, 10)["configs/dataset.yaml"]
            )
            sb.git("commit", "-qam", "dataset: wind is at most 10, and a typo in gates.yaml")
            sb.git("push", "-q", "origin", "main")
            c.wait_for(
                "the narrowed range", lambda: c.post("/invocations", windy(sb))[0] == 422, 60
            )
            status, health = c.get("/health")
            assert health["status"] == "ready", health  # gates.yaml's typo is not serving's
            sb.git("revert", "--no-edit", "HEAD")
            sb.git("push", "-q", "origin", "main")
            c.wait_for("the range back", lambda: c.post("/invocations", windy(sb))[0] == 200, 60)
    finally:
        gates.write_text(good)


def test_v2_clients_get_the_answers_of_invocations(fork, tmp_path):
    """A KServe / MLServer client sends the table as one input per column (MLServer's pandas
    codec: shape [n, 1], FP64 for numbers, BYTES with content_type "str" for strings) and
    gets the predictions /invocations gives, the probabilities when it asks for them."""
    sb, cli, _ = fork
    with retrain_serve(sb.root, cli.env, "--interval", "30", version="1.0.0") as s:
        c = s.client
        assert c.get("/v2/health/live") == (200, {"live": True})
        assert c.get("/v2/health/ready") == (200, {"ready": True})
        status, meta = c.get("/v2/models/seattle-weather")
        assert status == 200 and sorted(i["name"] for i in meta["inputs"]) == sorted(FEATURES), meta
        assert {i["name"]: i["datatype"] for i in meta["inputs"]}["season"] == "BYTES"
        assert meta["versions"][0] == "1.0.0"

        frame = holdout(sb, 6)
        expected = c.post("/invocations", split(frame))[1]["predictions"]
        body = pandas_codec_request(frame)
        status, out = c.post("/v2/models/seattle-weather/infer", body)
        assert status == 200, out
        assert out["model_name"] == "seattle-weather" and out["model_version"] == "1.0.0"
        (pred,) = out["outputs"]
        assert pred["name"] == "predict" and pred["datatype"] == "BYTES"
        assert pred["shape"] == [6, 1] and pred["data"] == expected
        assert out["parameters"]["request_id"]

        # Nested data (KServe's tensors), the client's id echoed, probabilities asked for.
        body["inputs"] = [{**i, "data": [[v] for v in i["data"]]} for i in body["inputs"]]
        body["id"] = "client-42"
        body["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]
        status, out = c.post("/v2/models/seattle-weather/infer", body)
        assert status == 200 and out["id"] == "client-42", out
        proba = out["outputs"][1]
        assert proba["shape"] == [6, 5] and len(proba["data"]) == 30
        classes = proba["parameters"]["classes"]
        best = [classes[max(range(5), key=lambda k: proba["data"][r * 5 + k])] for r in range(6)]
        assert best == expected

        # Bad requests: a 4xx with the protocol's {"error": "..."}, naming what is wrong.
        cases = [
            ("/v2/models/other/infer", pandas_codec_request(frame), 404, "seattle-weather"),
            ("/v2/models/seattle-weather/infer", {"inputs": []}, 422, "inputs"),
            ("/v2/models/seattle-weather/infer", with_input(body, 0, datatype="FP99"), 422, "datatype"),
            ("/v2/models/seattle-weather/infer", with_input(body, 0, shape=[7, 1]), 422, "shape"),
            ("/v2/models/seattle-weather/infer", with_input(body, 4, datatype="FP64"), 422, "FP64"),
            ("/v2/models/seattle-weather/infer", with_value(body, "wind", 99.0), 422, "above its maximum"),
            ("/v2/models/seattle-weather/infer", without(body, "wind"), 422, "missing column"),
            ("/v2/models/seattle-weather/infer", {**body, "outputs": [{"name": "x"}]}, 422, "outputs"),
        ]  # fmt: skip
        for path, bad, code, words in cases:
            status, out = c.post(path, bad)
            assert status == code and isinstance(out["error"], str), (path, out)
            assert words in out["error"], (words, out)
        status, out = c.post("/v2/models/seattle-weather/infer", raw=b"{not json")
        assert status == 400 and "JSON" in out["error"]
        status, text = c.get("/metrics")
        assert 'route="/v2/models/{name}/infer",status="200"' in text.replace(", ", ",")


def pandas_codec_request(frame: pd.DataFrame) -> dict[str, Any]:
    """The request ``mlserver.codecs.PandasCodec.encode_request(frame)`` builds, as JSON
    (MLServer's codecs/pandas.py: one input per column, shape [n, 1], strings as BYTES)."""
    inputs = []
    for col in frame.columns:
        values = frame[col].tolist()
        if not pd.api.types.is_numeric_dtype(frame[col]):
            inputs.append({"name": col, "shape": [len(values), 1], "datatype": "BYTES",
                           "parameters": {"content_type": "str"}, "data": values})  # fmt: skip
        else:
            dtype = "FP64" if frame[col].dtype.kind == "f" else "INT64"
            inputs.append({"name": col, "shape": [len(values), 1], "datatype": dtype,
                           "data": values})  # fmt: skip
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def with_input(body: dict[str, Any], i: int, **change: Any) -> dict[str, Any]:
    inputs = [dict(x) for x in body["inputs"]]
    inputs[i].update(change)
    return {**body, "inputs": inputs, "outputs": None}


def with_value(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    inputs = [dict(x) for x in body["inputs"]]
    for x in inputs:
        if x["name"] == name:
            x["data"] = [value] + _flat(x["data"])[1:]
            x["shape"] = [len(x["data"]), 1]
    return {**body, "inputs": inputs, "outputs": None}


def without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {**body, "inputs": [x for x in body["inputs"] if x["name"] != name], "outputs": None}


def _flat(data: list[Any]) -> list[Any]:
    return [v[0] if isinstance(v, list) else v for v in data]


def test_feedback_for_a_row_another_replica_is_still_logging_is_accepted(fork, postgres):
    """Two replicas share a PostgreSQL log (its URL from RETRAIN_LOG_URL, as from a Secret).
    Replica A served a request; its writer has not written the rows yet when the label
    reaches replica B.  B waits for them (serve.yaml feedback_wait_s) and stores the label;
    a request id no replica ever logged still gets its 404."""
    sb, cli, _ = fork
    from retrain.serve import predlog
    from retrain.serve.recorder import input_hash

    url = postgres.create_db("replicas")
    # A password, as a Secret's URL has one (the test server trusts loopback, ignores it).
    url = url.replace("@127.0.0.1", ":s3cret-pw@127.0.0.1")
    tokens = sb.base / "replica-tokens.yaml"
    tokens.write_text("tokens:\n  - {name: labeller, token: replica-labeller-token-0123}\n")
    env = {**cli.env, "RETRAIN_LOG_URL": url, "RETRAIN_TOKENS_FILE": str(tokens)}
    with retrain_serve(sb.root, env, "--interval", "30", version="1.0.0") as b:
        c = b.client
        c.token = "replica-labeller-token-0123"
        log = predlog.open_log(url, sb.root)
        try:
            rid = "served-by-replica-a"
            row = {"precipitation": 0.0, "temp_max": 10.0, "temp_min": 5.0, "wind": 2.0,
                   "season": "winter"}  # fmt: skip
            late = threading.Timer(1.0, log.write, args=([{
                "request_id": rid, "row": 0, "version": "1.0.0", "role": "production",
                "prediction": "sun", "input_hash": input_hash(row)}],))  # fmt: skip
            late.start()
            t0 = time.monotonic()
            status, out = c.post("/feedback", {"request_id": rid, "label": "rain"})
            late.join()
            assert status == 200 and out["stored"] == 1 and out["by"] == "labeller", out
            assert time.monotonic() - t0 >= 0.9
            assert [r["label"] for r in log.lookup(rid)] == ["rain"]
            status, out = c.post("/feedback", {"request_id": "never-served", "label": "sun"})
            assert status == 404 and "never-served" in out["error"]["message"], out
            # B's own answers went to the same log.
            status, out = c.post("/invocations", split(holdout(sb, 1)))
            assert status == 200
            assert c.post("/feedback", {"request_id": out["request_id"], "label": "sun"})[0] == 200
            assert log.lookup(out["request_id"])[0]["version"] == "1.0.0"
            status, health = c.get("/health")
            assert "postgresql" in health["prediction_log"]["url"]
            assert "s3cret-pw" not in json.dumps(health)  # never in a response
        finally:
            log.close()


def test_serve_loads_no_training_stack(fork, tmp_path):
    """`retrain serve`, from start to an answered request, imports neither MLflow nor
    matplotlib nor the example's data package (python -X importtime lists every import)."""
    sb, cli, _ = fork
    trace = tmp_path / "imports.log"
    env = {**cli.env, "PYTHONPROFILEIMPORTTIME": "1"}
    with retrain_serve(sb.root, env, "--interval", "30", log=trace, version="1.0.0") as s:
        assert s.client.post("/invocations", split(holdout(sb, 2)))[0] == 200
        assert s.client.get("/v2/models/seattle-weather")[0] == 200
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in trace.read_text().splitlines()
        if line.startswith("import time:")
    }
    assert "sklearn" in modules and "uvicorn" in modules  # the trace is complete
    assert not set(TRAINING_STACK) & modules, sorted(set(TRAINING_STACK) & modules)


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's install, without Docker: `uv sync --locked --only-group serve` of this
    project's uv.lock into a fresh virtualenv, the project's source on PYTHONPATH."""
    venv = tmp_path_factory.mktemp("slim") / "venv"
    uv = PROJECT / ".venv" / ".uv" / "bin" / "uv"
    uv_cmd = str(uv) if uv.exists() else shutil.which("uv")
    assert uv_cmd, "uv (make install puts it in .venv/.uv)"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable}
    subprocess.run([uv_cmd, "sync", "--locked", "--only-group", "serve", "--quiet"],
                   cwd=PROJECT, env=env, check=True)  # fmt: skip
    return venv


def test_the_slim_serving_install_serves_without_the_training_stack(fork, slim_venv, tmp_path):
    """The serve dependency group alone (what the image installs) runs `retrain serve`: it
    loads the model through DVC, answers /invocations and V2, and has no MLflow, matplotlib
    or vega_datasets installed at all."""
    sb, cli, _ = fork
    python = slim_venv / "bin" / "python"
    for name in TRAINING_STACK:
        res = subprocess.run([str(python), "-c", f"import {name}"], capture_output=True)
        assert res.returncode != 0, f"{name} is installed in the slim environment"
    port = free_port()
    env = {**cli.env, "PYTHONPATH": str(PROJECT / "src"),
           "PATH": f"{slim_venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    log = (tmp_path / "slim.log").open("wb")
    proc = subprocess.Popen([str(python), "-m", "retrain", "serve", "--port", str(port),
                             "--interval", "30"], cwd=sb.root, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    from retrain.core import watchdog

    guard = watchdog.guard(group=proc.pid, grace=5.0)
    try:
        c = Client(port)
        c.wait_for("the slim server to load v1.0.0", lambda: c.version() == "1.0.0", 120)
        status, out = c.post("/invocations", split(holdout(sb, 3)))
        assert status == 200 and len(out["predictions"]) == 3
        status, out = c.post(
            "/v2/models/seattle-weather/infer", pandas_codec_request(holdout(sb, 3))
        )
        assert status == 200, out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        guard.release()
        log.close()


def test_every_metric_the_alerts_and_dashboard_query_is_exported(fork):
    """The PrometheusRule's alerts and the Grafana dashboard query only series a live
    server's /metrics has (a renamed metric would silently empty a panel or an alert)."""
    sb, cli, _ = fork
    from tests.k8s import queried_metrics

    with retrain_serve(sb.root, cli.env, "--interval", "30", version="1.0.0") as s:
        c = s.client
        assert c.post("/invocations", split(holdout(sb, 1)))[0] == 200
        assert c.post("/invocations", {"dataframe_records": []})[0] == 422
        status, text = c.get("/metrics")
    exported = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            exported.add(name)
            if kind == "histogram":
                exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter":
                exported |= {f"{name}_total", f"{name}_created"}
        elif line and not line.startswith("#"):
            exported.add(line.split("{")[0].split(" ")[0])
    queried = queried_metrics()
    assert len(queried) >= 6, queried
    assert queried <= exported, sorted(queried - exported)
