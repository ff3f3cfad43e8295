"""`retrain serve` as a user meets it: a real server process on a free loopback port, real
HTTP, real git (a bare origin the fork pushes to), real DVC and MLflow.

One sandbox fork per test process (module scope): v1.0.0 is bootstrapped, merged and
promoted, and v1.1.0 is proposed on ``retrain/v1.1.0``.  The server follows
``origin/main`` every second; each story leaves production on the version it found.
Every wait is bounded in count and time; the fixture stops the server.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from retrain import example
from retrain.core import registry as reg
from tests.conftest import PROJECT, Cli, bootstrap
from tests.servers import Client, free_port, retrain_serve

FEATURES = ["precipitation", "temp_max", "temp_min", "wind", "season"]
INTERVAL = "1"


def loosen_latency_gate(sb: example.Sandbox) -> None:
    """These stories are about serving, not gates: on a machine shared with other jobs the
    latency gate's budget could gate the bootstrap, so the fork gets a loose one."""
    gates = sb.root / "configs" / "gates.yaml"
    text = gates.read_text()
    text = re.sub(r"max_p95_ms_single: .*", "max_p95_ms_single: 10000", text)
    text = re.sub(r"max_p95_ms_batch: .*", "max_p95_ms_batch: 60000", text)
    gates.write_text(text)
    sb.git("commit", "-qam", "gates: a loose latency budget for the serving stories")
    sb.git("push", "-q", "origin", "main")


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> tuple[example.Sandbox, Cli]:
    sb = example.make_sandbox(tmp_path_factory.mktemp("serve") / "sb", PROJECT)
    cli = Cli(sb)
    loosen_latency_gate(sb)
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run")
    assert out["outcome"] == "proposed" and out["version"] == "1.1.0", out
    # The server logs inputs too, so a labelled row could become training data.
    (sb.root / "configs" / "serve.yaml").write_text("log_inputs: true\n")
    sb.git("commit", "-qam", "serve: log inputs")
    sb.git("push", "-q", "origin", "main")
    return sb, cli


TOKEN = "test-labeller-token-0123456789"


@pytest.fixture(scope="module")
def server(fork: tuple[example.Sandbox, Cli]) -> Iterator[Client]:
    """The server, with a labeller's token (/feedback needs one): the client sends it."""
    sb, cli = fork
    tokens = sb.base / "tokens.yaml"
    tokens.write_text(f"tokens:\n  - {{name: labeller, token: {TOKEN}}}\n")
    env = {**cli.env, "RETRAIN_TOKENS_FILE": str(tokens)}
    args = ("--follow", "origin/main", "--interval", INTERVAL)
    with retrain_serve(sb.root, env, *args, log=sb.base / "serve.log", version="1.0.0") as s:
        s.client.token = TOKEN
        yield s.client
    proc = s.proc
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it (the usual exit status).
    assert proc.returncode in (0, -signal.SIGTERM), (sb.base / "serve.log").read_text()[-3000:]


def holdout(sb: example.Sandbox, n: int | None = None) -> pd.DataFrame:
    frame = pd.read_csv(sb.root / "data" / "holdout.csv")[FEATURES]
    return frame if n is None else frame.head(n)


def split(frame: pd.DataFrame) -> dict[str, Any]:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def cli_predictions(cli: Cli, sb: example.Sandbox, version: str, tmp: Path) -> pd.DataFrame:
    out = tmp / f"pred-{version}.csv"
    cli("predict", "--version", version, "--input", str(sb.root / "data/holdout.csv"),
        "--output", str(out))  # fmt: skip
    return pd.read_csv(out)


def served_predictions(client: Client, frame: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    status, body = client.post("/predict", {"records": frame.to_dict(orient="records")})
    assert status == 200, body
    out = pd.DataFrame({"prediction": body["predictions"]})
    for i, c in enumerate(body["classes"]):
        out[f"proba_{c}"] = [row[i] for row in body["probabilities"]]
    return body["model_version"], out


def served_id(client: Client, frame: pd.DataFrame) -> tuple[str, str]:
    status, body = client.post("/invocations", split(frame))
    assert status == 200, body
    return body["model_version"], body["request_id"]


def push_registry(sb: example.Sandbox, change: Callable[[dict[str, Any]], None], msg: str) -> str:
    doc = yaml.safe_load((sb.root / "registry.yaml").read_text())
    change(doc)
    registry = reg.parse_text(yaml.safe_dump(doc))
    reg.save(sb.root, registry)
    sb.git("commit", "-qam", msg)
    sb.git("push", "-q", "origin", "main")
    return sb.git("rev-parse", "HEAD")


def metric(client: Client, name: str, **labels: str) -> float:
    status, text = client.get("/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key.split("{")[0] != name:
            continue
        got = key[len(name) :].strip("{}")
        if sorted(got.split(",")) == sorted(want.split(",")) or (not want and not got):
            return float(value)
    return 0.0


# --------------------------------------------------------------------------- stories
def test_merge_and_revert_are_followed_and_answer_like_retrain_predict(fork, server, tmp_path):
    sb, cli = fork
    rows = holdout(sb)
    v1_cli = cli_predictions(cli, sb, "1.0.0", tmp_path)
    version, before = served_predictions(server, rows)
    assert version == "1.0.0"
    pd.testing.assert_frame_equal(before, v1_cli, check_exact=False, atol=1e-6)
    asked = {"before the merge": served_id(server, rows.head(1))}

    # The reviewer merges the proposal: the server picks it up from origin/main, no restart.
    merge = example.merge_proposal(sb, "retrain/v1.1.0")
    server.wait_for("v1.1.0 to serve", lambda: server.version() == "1.1.0")
    status, ident = server.get("/version")
    assert ident["registry_commit"] == merge
    entry = reg.load(sb.root).get("1.1.0")
    assert ident["artifact_sha256"] == entry["artifact"]["sha256"]
    assert ident["model"] == "seattle-weather"
    version, after_merge = served_predictions(server, rows)
    assert version == "1.1.0"
    pd.testing.assert_frame_equal(
        after_merge, cli_predictions(cli, sb, "1.1.0", tmp_path), check_exact=False, atol=1e-6
    )
    assert not after_merge.equals(before)  # a different model really answers
    asked["after the merge"] = served_id(server, rows.head(1))

    # 3 a.m.: git revert of the merge, pushed. The old version is back, answers identical.
    sb.git("revert", "--no-edit", "-m", "1", merge)
    sb.git("push", "-q", "origin", "main")
    server.wait_for("v1.0.0 to serve again", lambda: server.version() == "1.0.0")
    version, after_revert = served_predictions(server, rows)
    assert version == "1.0.0"
    pd.testing.assert_frame_equal(after_revert, before)
    assert metric(server, "retrain_serve_reloads_total", outcome="success") >= 3
    asked["after the revert"] = served_id(server, rows.head(1))

    # "Which model served this prediction?" has one answer, before and after each swap.
    assert [v for v, _ in asked.values()] == ["1.0.0", "1.1.0", "1.0.0"]
    for when, (version, rid) in asked.items():
        server.post("/feedback", {"request_id": rid, "label": "sun"})  # flushes the log writer
        audit = cli.json("audit", rid)
        assert {r["version"] for r in audit["rows"]} == {version}, (when, audit)
        assert version in audit["versions"], (when, audit)


def test_labels_posted_for_served_rows_move_the_performance_trigger(fork, server):
    """Live feedback through the running server reaches `retrain triggers`: the production
    version's live metric on its labelled rows, judged by the performance thresholds."""
    sb, cli = fork
    production = reg.load(sb.root).production
    server.wait_for(f"v{production} to serve", lambda: server.version() == production)
    # Before any labelled traffic there may be no log yet, and then no live check at all.
    before = cli.json("triggers")["checks"].get("live_performance", {"rows": 0})
    frame = holdout(sb, 40)
    status, out = server.post("/invocations", split(frame))
    assert status == 200 and out["model_version"] == production
    labels = ["drizzle", "fog", "rain", "snow", "sun"]
    wrong = [
        {"request_id": out["request_id"], "row": i, "label": next(c for c in labels if c != p)}
        for i, p in enumerate(out["predictions"])
    ]
    status, res = server.post("/feedback", wrong)
    assert status == 200 and res["stored"] == 40 and res["by"] == "labeller"
    after = cli.json("triggers")["checks"]["live_performance"]
    assert after["version"] == production
    assert after["rows"] >= before["rows"] + 40, (before, after)
    assert after["fired"] is True and after["value"] < after["threshold"], after


def test_an_mlflow_client_works_unchanged_in_all_four_payload_shapes(fork, server):
    sb, _ = fork
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame = holdout(sb, 5)
    client = ScoringServerClient("127.0.0.1", server.port)
    client.wait_server_ready(timeout=30)
    expected = list(client.invoke(frame).get_predictions(predictions_format="ndarray"))
    assert len(expected) == 5 and set(expected) <= {"drizzle", "fog", "rain", "snow", "sun"}

    records = frame.to_dict(orient="records")
    columnar = {c: frame[c].tolist() for c in FEATURES}
    shapes = {
        "dataframe_split": split(frame),
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": columnar},
    }
    ids = set()
    for name, body in shapes.items():
        status, out = server.post("/invocations", body)
        assert status == 200, (name, out)
        assert out["predictions"] == expected, name
        assert out["model_version"] == server.version()
        ids.add(out["request_id"])
    assert len(ids) == 4  # every response names its own request


BAD_REQUESTS: list[tuple[str, Any, int, str, str]] = [
    # (what, body, status, field contains, message contains)
    ("missing column", {"dataframe_records": [{"precipitation": 0, "temp_max": 10,
                        "temp_min": 5, "season": "winter"}]}, 422, "wind", "missing column"),
    ("extra column", {"dataframe_records": [{"precipitation": 0, "temp_max": 10, "temp_min": 5,
                      "wind": 2, "season": "winter", "city": "x"}]}, 422, "city", "unexpected"),
    ("wrong type", {"dataframe_split": {"columns": FEATURES, "data": [[0, "hot", 5, 2, "winter"]]}},
     422, "temp_max", "expected a number"),
    ("number as category", {"instances": [{"precipitation": 0, "temp_max": 10, "temp_min": 5,
                            "wind": 2, "season": 3}]}, 422, "season", "expected a string"),
    ("out of range", {"instances": [{"precipitation": -4, "temp_max": 10, "temp_min": 5,
                      "wind": 2, "season": "winter"}]}, 422, "precipitation", "below its minimum"),
    ("null", {"inputs": {"precipitation": [None], "temp_max": [10], "temp_min": [5], "wind": [2],
              "season": ["winter"]}}, 422, "precipitation", "missing value"),
    ("no rows", {"dataframe_records": []}, 422, "dataframe_records", "no rows"),
    ("two payload keys", {"instances": [], "inputs": []}, 422, "body", "exactly one"),
    ("unknown payload key", {"dataframe": []}, 422, "dataframe", "unknown field"),
    ("not an object", [1, 2], 422, "body", "expected a JSON object"),
]  # fmt: skip


def test_bad_requests_get_a_4xx_naming_the_field_and_the_server_keeps_serving(fork, server):
    sb, _ = fork
    good = split(holdout(sb, 1))
    for what, body, status, field, message in BAD_REQUESTS:
        got, out = server.post("/invocations", body)
        assert got == status, (what, out)
        assert field in out["error"]["field"] and message in out["error"]["message"], (what, out)
        assert out["request_id"]
    row = '{"precipitation": NaN, "temp_max": 10, "temp_min": 5, "wind": 2, "season": "winter"}'
    raw_cases = [
        ("NaN", ('{"dataframe_records": [' + row + "]}").encode(), 422, "precipitation"),
        ("empty body", b"", 400, "body"),
        ("not JSON", b"{precipitation", 400, "body"),
    ]
    for what, raw, status, field in raw_cases:
        got, out = server.post("/invocations", raw=raw)
        assert got == status, (what, out)
        assert field in out["error"]["field"], (what, out)
    # A body over the limit (1 MiB by default) is refused from its Content-Length, before
    # the server reads it: the client has sent only its first bytes when the answer comes.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(2_000_000))
    conn.endheaders(b'{"instances": "xxxx')
    res = conn.getresponse()
    out = json.loads(res.read())
    conn.close()
    assert res.status == 413 and out["error"]["field"] == "body", out
    assert "over the limit of 1048576" in out["error"]["message"]
    got, out = server.post("/predict", {"rows": []})
    assert got == 422 and out["error"]["field"] in {"records", "rows"}
    # Still serving, and the rejected requests are counted by status.
    got, out = server.post("/invocations", good)
    assert got == 200 and len(out["predictions"]) == 1
    version = server.version()
    assert metric(server, "retrain_serve_requests_total", version=version,
                  route="/invocations", status="422") >= len(BAD_REQUESTS)  # fmt: skip
    assert metric(server, "retrain_serve_requests_total", version=version,
                  route="/invocations", status="413") >= 1  # fmt: skip


def test_an_artifact_that_cannot_be_fetched_or_fails_sha256_keeps_the_old_model(fork, server):
    """A registry naming a broken artifact is merged: the server keeps answering with the
    version it had, /health says degraded with the reason, the failed reloads are counted;
    the revert of that commit makes it healthy again."""
    sb, _ = fork
    serving = server.version()
    frame = split(holdout(sb, 3))
    _, before = server.post("/invocations", frame)
    failed_before = metric(server, "retrain_serve_reloads_total", outcome="failed")

    def broken(version: str, artifact: dict[str, str]) -> Callable[[dict[str, Any]], None]:
        def change(doc: dict[str, Any]) -> None:
            entry = json.loads(json.dumps(doc["versions"][-1]))
            entry["version"] = version
            entry["artifact"].update(artifact)
            doc["versions"].append(entry)
            doc["production"] = version

        return change

    for version, artifact, reason in [
        # An object neither the DVC cache nor the remote has.
        (
            "9.0.0",
            {"md5": "0" * 32, "sha256": "a" * 64},
            "is in neither the DVC cache nor",
        ),
        # The real object, but the registry's sha256 is not its hash.
        ("9.1.0", {"sha256": "f" * 64}, "sha256 mismatch"),
    ]:
        commit = push_registry(sb, broken(version, artifact), f"registry: broken v{version}")

        def degraded(reason: str = reason) -> bool:
            status, health = server.get("/health")
            return health["status"] == "degraded" and any(reason in r for r in health["reasons"])

        server.wait_for(f"/health degraded ({reason})", degraded)
        status, health = server.get("/health")
        assert status == 200 and health["model_version"] == serving
        assert server.version() == serving
        got, out = server.post("/invocations", frame)
        assert got == 200 and out["predictions"] == before["predictions"]
        assert out["model_version"] == serving
        sb.git("revert", "--no-edit", commit)
        sb.git("push", "-q", "origin", "main")
        server.wait_for("/health ready", lambda: server.get("/health")[1]["status"] == "ready")
    assert metric(server, "retrain_serve_reloads_total", outcome="failed") >= failed_before + 2


def test_feedback_on_served_rows_is_stored_and_unknown_ids_are_named(fork, server):
    sb, cli = fork
    frame = holdout(sb, 2)
    status, out = server.post("/invocations", split(frame))
    assert status == 200
    rid = out["request_id"]
    status, res = server.post("/feedback", [{"request_id": rid, "label": "rain"},
                                            {"request_id": rid, "label": "sun", "row": 1}])  # fmt: skip
    assert status == 200 and res["stored"] == 2
    status, res = server.post("/feedback", {"request_id": "no-such-request", "label": "sun"})
    assert status == 404 and "no-such-request" in res["error"]["message"]
    assert res["error"]["field"] == "request_id"
    status, res = server.post("/feedback", {"request_id": rid, "label": "hail"})
    assert status == 422 and res["error"]["field"] == "label" and "hail" in res["error"]["message"]
    status, res = server.post("/feedback", {"label": "sun"})
    assert status == 422 and res["error"]["field"] == "request_id"

    # The log holds both rows with the version that answered, the inputs and the labels.
    from retrain.serve import predlog

    log = predlog.open_log("sqlite:///.retrain/predictions.db", sb.root)
    try:
        rows = log.lookup(rid)
    finally:
        log.close()
    assert [r["row"] for r in rows] == [0, 1]
    assert {r["version"] for r in rows} == {out["model_version"]}
    assert [r["prediction"] for r in rows] == out["predictions"]
    assert rows[0]["inputs"]["season"] == frame.iloc[0]["season"]
    assert math.isclose(rows[1]["inputs"]["wind"], float(frame.iloc[1]["wind"]))
    text = json.dumps(rows, default=str)
    assert "rain" in text and "sun" in text


def test_metrics_health_and_ping_expose_the_named_series(fork, server):
    sb, _ = fork
    status, _ = server.post("/invocations", split(holdout(sb, 1)))
    assert status == 200
    assert server.get("/ping")[0] == 200
    status, health = server.get("/health")
    assert status == 200 and health["following"] == "origin/main"
    assert health["prediction_log"]["dropped"] == 0
    status, text = server.get("/metrics")
    version = server.version()
    for series in (
        "retrain_serve_requests_total",
        "retrain_serve_request_duration_seconds_bucket",
        "retrain_serve_model_info",
        "retrain_serve_reloads_total",
        "retrain_serve_prediction_log_dropped_total",
        "retrain_serve_prediction_log_written_total",
        "retrain_serve_batch_rows_bucket",
    ):
        assert f"\n{series}" in text, series
    assert f'version="{version}"' in text
    assert metric(server, "retrain_serve_model_info", model="seattle-weather", version=version,
                  sha256=server.get("/version")[1]["artifact_sha256"],
                  registry_commit=server.get("/version")[1]["registry_commit"]) == 1.0  # fmt: skip


def test_serve_refuses_a_bad_serve_config_naming_file_and_key(fork):
    sb, cli = fork
    path = sb.root / "configs" / "serve.yaml"
    original = path.read_text()
    try:
        for text, key in [
            ("log_inptus: true\n", "log_inptus"),
            ("batch_wait_ms: -1\n", "batch_wait_ms"),
        ]:
            path.write_text(text)
            res = cli("serve", "--port", str(free_port()), check=False)
            assert res.returncode == 2, res.stderr
            line = res.stderr.strip()
            assert line.count("\n") == 0 and "configs/serve.yaml" in line and key in line, line
    finally:
        path.write_text(original)


def test_an_unreachable_prediction_log_still_serves_and_counts_the_drops(fork):
    """A log that cannot be opened (its directory would sit under a regular file): every
    prediction is still answered; the rows that could not be logged are counted in /metrics
    and named in /health, never dropped silently."""
    sb, cli = fork
    path = sb.root / "configs" / "serve.yaml"
    original = path.read_text()
    path.write_text("log_url: sqlite:///registry.yaml/predictions.db\n")
    try:
        tokens = sb.base / "tokens.yaml"
        tokens.write_text(f"tokens:\n  - {{name: labeller, token: {TOKEN}}}\n")
        env = {**cli.env, "RETRAIN_TOKENS_FILE": str(tokens)}
        with retrain_serve(sb.root, env, "--interval", "30") as served:
            client = served.client
            client.token = TOKEN
            path.write_text(original)  # read once at start-up
            for _ in range(3):
                status, out = client.post("/invocations", split(holdout(sb, 2)))
                assert status == 200 and len(out["predictions"]) == 2

            def counted() -> bool:
                return metric(client, "retrain_serve_prediction_log_dropped_total") >= 6

            client.wait_for("6 dropped rows in /metrics", counted, 30)
            status, health = client.get("/health")
            assert status == 200 and health["status"] == "degraded"
            assert health["prediction_log"]["dropped"] >= 6
            assert any("prediction log" in r for r in health["reasons"]), health
            status, res = client.post(
                "/feedback", {"request_id": out["request_id"], "label": "sun"}
            )
            assert status == 503 and res["error"]["field"] == "prediction_log"
    finally:
        path.write_text(original)
