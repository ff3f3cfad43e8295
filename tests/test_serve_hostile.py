"""Untrusted and hostile clients against a real `retrain serve` on loopback (issue #19).

One sandbox fork per module (real git, DVC, MLflow): v1.0.0 bootstrapped, merged and
promoted; the server serves the working tree.  Its tokens come from a file named by
``RETRAIN_TOKENS_FILE``, which the stories rewrite (rotation) and restore.  Other servers
are started where a story needs other settings (a concurrency limit of one, the
development switch, a log URL with a password).  Every request is real HTTP; every server
stops at the end of its fixture.  ``HOSTILE`` is the table of hostile requests and the
answers they must get: a 4xx, never a 500, and the server keeps serving.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrain import example
from tests.conftest import PROJECT, Cli, bootstrap
from tests.servers import Client, free_port, retrain_serve
from tests.test_serve import FEATURES, loosen_latency_gate, metric

LABELLER = "labeller-token-0123456789abcdef"
ROTATED = "rotated-token-fedcba9876543210"
PREDICTOR = "predict-only-token-0123456789"
BULK = "bulk-labeller-token-0123456789"
TOKENS = (
    "tokens:\n"
    f"  - {{name: labeller, token: {LABELLER}, scopes: [feedback]}}\n"
    f"  - {{name: predictor, token: {PREDICTOR}, scopes: [predict]}}\n"
    f"  - {{name: bulk, token: {BULK}, scopes: [feedback]}}\n"
)
SERVE_YAML = (
    "log_inputs: true\nopenapi: true\nmax_labels_per_request: 50\nmax_labels_per_minute: 120\n"
)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> tuple[example.Sandbox, Cli]:
    sb = example.make_sandbox(tmp_path_factory.mktemp("hostile") / "sb", PROJECT)
    cli = Cli(sb)
    loosen_latency_gate(sb)
    bootstrap(sb, cli)
    (sb.root / "configs" / "serve.yaml").write_text(SERVE_YAML)
    return sb, cli


@pytest.fixture(scope="module")
def tokens(fork) -> Path:
    sb, _ = fork
    path = sb.base / "tokens.yaml"
    path.write_text(TOKENS)
    return path


@pytest.fixture(scope="module")
def server(fork, tokens) -> Iterator[Client]:
    sb, cli = fork
    env = {**cli.env, "RETRAIN_TOKENS_FILE": str(tokens)}
    with retrain_serve(sb.root, env, "--interval", "5", log=sb.base / "serve.log") as s:
        yield s.client


@pytest.fixture
def fresh_tokens(tokens: Path) -> Iterator[Path]:
    tokens.write_text(TOKENS)
    yield tokens
    tokens.write_text(TOKENS)


def call(
    client: Client,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request: ``(status, headers with lower-case names, JSON body or text)``."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json"} if data is not None else {}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    sent = {k: v for k, v in sent.items() if v is not None}
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=60)
    try:
        conn.request(method, path, body=data, headers=sent)
        res = conn.getresponse()
        text = res.read().decode()
        got = {k.lower(): v for k, v in res.getheaders()}
    finally:
        conn.close()
    try:
        return res.status, got, json.loads(text) if text else None
    except json.JSONDecodeError:
        return res.status, got, text


def rows(sb: example.Sandbox, n: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(sb.root / "data" / "holdout.csv")[FEATURES].head(n)
    return frame.to_dict(orient="records")


def predict(client: Client, sb: example.Sandbox, n: int = 1, **kw: Any) -> tuple[int, dict, Any]:
    status, headers, body = call(client, "POST", "/predict", {"records": rows(sb, n)}, **kw)
    return status, headers, body


# --------------------------------------------------------------------------- 1. tokens
def test_feedback_needs_a_bearer_token_and_the_label_records_who_wrote_it(fork, server, tokens):
    sb, cli = fork
    status, _, out = predict(server, sb)
    assert status == 200, out
    label = {"request_id": out["request_id"], "label": "rain"}

    status, headers, res = call(server, "POST", "/feedback", label)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer"), res
    assert "Authorization: Bearer" in res["error"]["message"]
    status, headers, res = call(server, "POST", "/feedback", label, token="guessed-" + LABELLER)
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    assert "guessed" not in json.dumps(res)
    status, _, res = call(server, "POST", "/feedback", label, headers={"Authorization": "Basic x"})
    assert status == 401, res
    status, headers, res = call(server, "POST", "/feedback", label, token=PREDICTOR)
    assert status == 403 and "may not use /feedback" in res["error"]["message"], res

    status, headers, res = call(server, "POST", "/feedback", label, token=LABELLER)
    assert status == 200 and res["stored"] == 1 and res["by"] == "labeller", res
    assert headers["x-request-id"] == res["request_id"] != out["request_id"]
    audit = cli.json("audit", out["request_id"])
    assert audit["rows"][0]["label"] == "rain" and audit["rows"][0]["label_by"] == "labeller"
    # Predictions stay open (no setting asks for a token), and no token is ever logged.
    assert predict(server, sb)[0] == 200
    assert LABELLER not in (sb.base / "serve.log").read_text()
    status, _, health = call(server, "GET", "/health")
    assert health["auth"] == {"feedback": "token", "predictions": "open", "tokens": 3}


def test_tokens_rotate_without_a_restart_and_without_tokens_feedback_is_closed(
    fork, server, fresh_tokens
):
    sb, _ = fork
    _, _, out = predict(server, sb)
    label = {"request_id": out["request_id"], "label": "sun"}
    fresh_tokens.write_text(f"tokens:\n  - {{name: labeller-2, token: {ROTATED}}}\n")
    assert call(server, "POST", "/feedback", label, token=LABELLER)[0] == 401  # revoked
    status, _, res = call(server, "POST", "/feedback", label, token=ROTATED)
    assert status == 200 and res["by"] == "labeller-2", res

    fresh_tokens.write_text("")  # no tokens: closed, saying how to open it
    status, _, res = call(server, "POST", "/feedback", label, token=ROTATED)
    assert status == 403 and "RETRAIN_TOKENS_FILE" in res["error"]["message"], res
    assert "--dev-open-feedback" in res["error"]["message"]

    fresh_tokens.write_text("tokens:\n  - {name: x, token: xyzzy-short}\n")  # broken: closed
    status, _, res = call(server, "POST", "/feedback", label, token="xyzzy-short")
    assert status == 503 and "tokens.0.token" in res["error"]["message"], res
    _, _, health = call(server, "GET", "/health")
    assert health["status"] == "degraded" and "xyzzy" not in json.dumps(health)
    assert any("tokens" in r for r in health["reasons"])


def test_labels_per_call_and_per_minute_are_limited_per_token(fork, server, fresh_tokens):
    sb, _ = fork
    status, _, out = predict(server, sb, 60)
    assert status == 200
    labels = [{"request_id": out["request_id"], "row": i, "label": "rain"} for i in range(60)]
    status, _, res = call(server, "POST", "/feedback", labels[:51], token=BULK)
    assert status == 413 and "51 labels is over the limit of 50" in res["error"]["message"]
    for chunk in (labels[:50], labels[50:60], labels[:50]):
        status, _, res = call(server, "POST", "/feedback", chunk, token=BULK)
        assert status == 200, res
    status, headers, res = call(server, "POST", "/feedback", labels[:50], token=BULK)
    assert status == 429 and int(headers["retry-after"]) >= 1, res
    assert "120 labels per minute" in res["error"]["message"]
    # Another token's budget is its own.
    status, _, res = call(server, "POST", "/feedback", labels[:5], token=LABELLER)
    assert status == 200, res


# --------------------------------------------------------------------------- 3. request ids
def test_the_server_owns_request_ids_and_keeps_the_clients_beside_them(fork, server):
    """Issue #19: a reused X-Request-ID merged a 200-row request with a 1-row one."""
    sb, cli = fork
    mine = {"X-Request-ID": "client-42"}
    s1, h1, big = predict(server, sb, 200, headers=mine)
    s2, h2, small = predict(server, sb, 1, headers=mine)
    assert s1 == s2 == 200
    assert big["request_id"] != small["request_id"] and len(small["request_id"]) == 32
    assert h2["x-request-id"] == small["request_id"] and h2["x-client-request-id"] == "client-42"
    assert small["client_request_id"] == "client-42"
    label = {"request_id": small["request_id"], "label": "fog"}
    assert call(server, "POST", "/feedback", label, token=LABELLER)[0] == 200
    doc = cli.json("audit", "client-42")
    got = {r["request_id"]: len(r["rows"]) for r in doc["requests"]}
    assert got == {big["request_id"]: 200, small["request_id"]: 1}
    one = cli.json("audit", small["request_id"])
    assert len(one["rows"]) == 1 and one["rows"][0]["label"] == "fog"
    assert one["client_request_id"] == "client-42"
    assert cli.json("audit", big["request_id"])["rows"][0]["label"] is None

    status, _, res = predict(server, sb, headers={"X-Request-ID": "x" * 129})
    assert status == 400 and res["error"]["field"] == "X-Request-ID", res
    status, _, res = predict(server, sb, headers={"X-Request-ID": "y" * 128})
    assert status == 200 and res["client_request_id"] == "y" * 128


# --------------------------------------------------------------------------- 6. hostile
def _deep(n: int, kind: str = "list") -> bytes:
    return (b"[" * n + b"]" * n) if kind == "list" else (b'{"a":' * n + b"1" + b"}" * n)


ROW = {"precipitation": 0.0, "temp_max": 10.0, "temp_min": 5.0, "wind": 2.0, "season": "winter"}

# (what, path, raw body, headers, status, field contains, message contains)
HOSTILE: list[tuple[str, str, bytes, dict[str, str | None], int, str, str]] = [
    ("10,000 nested lists", "/predict", _deep(10_000), {}, 400, "body", "levels deep"),
    ("10,000 nested lists", "/invocations", _deep(10_000), {}, 400, "body", "levels deep"),
    ("10,000 nested lists", "/feedback", _deep(10_000), {}, 400, "body", "levels deep"),
    ("10,000 nested objects", "/invocations", _deep(10_000, "obj"), {}, 400, "body", "levels deep"),
    ("33 nested lists", "/predict", _deep(33), {}, 400, "body", "the limit is 32"),
    ("text/plain body", "/predict", json.dumps({"records": [ROW]}).encode(),
     {"Content-Type": "text/plain"}, 415, "Content-Type", "application/json"),
    ("text/plain body", "/invocations", json.dumps({"instances": [ROW]}).encode(),
     {"Content-Type": "text/plain"}, 415, "Content-Type", "application/json"),
    ("text/plain body", "/feedback", b'{"request_id": "x", "label": "sun"}',
     {"Content-Type": "text/plain"}, 415, "Content-Type", "application/json"),
    ("form body", "/predict", b"records=1",
     {"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type", "got"),
    ("no content type", "/predict", json.dumps({"records": [ROW]}).encode(),
     {"Content-Type": None}, 415, "Content-Type", "none"),
    ("unknown level", "/predict", json.dumps({"records": [{**ROW, "season": "Maybe"}]}).encode(),
     {}, 422, "season", "level 'Maybe' is not one of its levels"),
    ("unknown level", "/invocations",
     json.dumps({"instances": [{**ROW, "season": "monsoon"}]}).encode(), {}, 422, "season",
     "'monsoon'"),
    ("1 MB category", "/predict",
     json.dumps({"records": [{**ROW, "season": "x" * 900_000}]}).encode(), {}, 422, "season",
     "is not one of its levels"),
    ("nested value", "/predict", json.dumps({"records": [{**ROW, "wind": [[[[[[1]]]]]]}]}).encode(),
     {}, 422, "wind", "expected a number"),
    ("10**400", "/predict", b'{"records": [' + json.dumps(ROW).replace("2.0", "1" + "0" * 400)
     .encode() + b"]}", {}, 422, "wind", "finite number"),
    ("Infinity", "/predict", json.dumps({"records": [{**ROW, "wind": float("inf")}]}).encode(),
     {}, 422, "wind", "finite"),
    ("not UTF-8", "/predict", b'{"records": [{"season": "\xff\xfe"}]}', {}, 400, "body",
     "not valid JSON"),
    ("not JSON", "/feedback", b"{request_id", {}, 400, "body", "not valid JSON"),
    ("array body", "/predict", b"[1, 2, 3]", {}, 422, "body", "expected a JSON object"),
    ("10,001 rows", "/predict", json.dumps({"records": [ROW] * 10_001}).encode(), {}, 413,
     "records", "over the limit of 10000"),
    ("X-Request-ID of 129 chars", "/predict", json.dumps({"records": [ROW]}).encode(),
     {"X-Request-ID": "a" * 129}, 400, "X-Request-ID", "1-128 characters"),
    ("X-Request-ID with spaces", "/invocations", json.dumps({"instances": [ROW]}).encode(),
     {"X-Request-ID": "a b"}, 400, "X-Request-ID", "letters, digits"),
    ("feedback id of 10,000 chars", "/feedback",
     json.dumps({"request_id": "r" * 10_000, "label": "sun"}).encode(),
     {"Authorization": f"Bearer {LABELLER}"}, 404, "request_id", "10000 characters"),
    ("feedback label 100 KB", "/feedback",
     json.dumps({"request_id": "r", "label": "s" * 100_000}).encode(),
     {"Authorization": f"Bearer {LABELLER}"}, 422, "label", "unknown label"),
    ("feedback row 10**30", "/feedback",
     json.dumps({"request_id": "r", "label": "sun", "row": 10**30}).encode(),
     {"Authorization": f"Bearer {LABELLER}"}, 404, "request_id", "unknown request_id"),
    ("feedback without a token", "/feedback", b'{"request_id": "r", "label": "sun"}',
     {}, 401, "authorization", "Bearer"),
]  # fmt: skip


def test_hostile_requests_get_a_4xx_naming_the_field_never_a_500(fork, server, fresh_tokens):
    sb, _ = fork
    version = server.version()
    answers = []
    for what, path, raw, headers, status, field, message in HOSTILE:
        if path == "/feedback" and "without a token" not in what:
            headers = {"Authorization": f"Bearer {LABELLER}", **headers}
        got, _, out = call(server, "POST", path, raw=raw, headers=headers)
        answers.append((what, path, got))
        assert got == status, (what, path, out)
        assert field in out["error"]["field"] and message in out["error"]["message"], (what, out)
        assert len(out["error"]["message"]) < 1000, (what, "the answer quotes a bounded value")
        assert out["request_id"]
    # Still serving; no request above counted as a model error.
    assert predict(server, sb)[0] == 200
    for route in ("/predict", "/invocations", "/feedback"):
        assert metric(server, "retrain_serve_requests_total", version=version, route=route,
                      status="500") == 0  # fmt: skip
    print("\n".join(f"| {w} | POST {p} | {s} |" for w, p, s in answers))


# --------------------------------------------------------------------------- schemathesis
def test_schemathesis_finds_no_5xx_and_no_undeclared_answer(server):
    """Schemathesis reads the server's own OpenAPI schema and sends valid and schema-breaking
    bodies to every route (a bounded number of examples, with a token that may predict and
    label): no answer is a server error, and every status and content type is declared."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{server.base}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    paths = {(o.method.upper(), o.path) for o in operations}
    assert {
        ("POST", "/predict"),
        ("POST", "/invocations"),
        ("POST", "/feedback"),
        ("POST", "/v2/models/{name}/infer"),
    } <= paths
    strategy = st.one_of(
        schema.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
        schema.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
    )
    seen: dict[int, int] = {}

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=server.base, headers={"Authorization": f"Bearer {BULK}"})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    check()
    assert sum(seen.values()) >= 100 and not any(code >= 500 and code != 503 for code in seen)
    print(f"schemathesis: {sum(seen.values())} requests, statuses {sorted(seen.items())}")


# --------------------------------------------------------------------------- other servers
def _hold_a_slot(port: int) -> socket.socket:
    """A client that sends its headers and a first byte, then waits: one request in
    progress, as a slow or hostile client keeps it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    return sock


def test_a_flood_gets_503_with_retry_after_and_the_dev_switch_is_loopback_only(fork, tokens):
    """A server limited to one request in progress: a second one while a slow client holds
    the slot gets 503 with Retry-After at once, the probes still answer; without a tokens
    file, `--dev-open-feedback` takes labels from loopback, recorded as written by no token;
    /docs and /openapi.json are off by default."""
    sb, cli = fork
    path = sb.root / "configs" / "serve.yaml"
    path.write_text("max_concurrent_requests: 1\n")
    env = {k: v for k, v in cli.env.items() if k != "RETRAIN_TOKENS_FILE"}
    try:
        with retrain_serve(sb.root, env, "--dev-open-feedback", "--interval", "5") as s:
            client = s.client
            slow = _hold_a_slot(client.port)
            try:
                time.sleep(0.5)
                status, headers, res = predict(client, sb)
                assert status == 503 and headers["retry-after"] == "1", res
                assert "max_concurrent_requests" in res["error"]["message"]
                assert call(client, "GET", "/health")[0] == 200
                assert call(client, "GET", "/ping")[0] == 200
            finally:
                slow.close()
            time.sleep(0.5)
            status, _, out = predict(client, sb)
            assert status == 200, out
            status, _, res = call(
                client, "POST", "/feedback", {"request_id": out["request_id"], "label": "sun"}
            )
            assert status == 200 and res["by"] is None, res
            # Through a proxy every client looks local: a forwarded request is refused.
            status, _, res = call(
                client,
                "POST",
                "/feedback",
                {"request_id": out["request_id"], "label": "sun"},
                headers={"X-Forwarded-For": "203.0.113.9"},
            )
            assert status == 403, res
            assert call(client, "GET", "/docs")[0] == 404
            assert call(client, "GET", "/openapi.json")[0] == 404
    finally:
        path.write_text(SERVE_YAML)
    res = cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--dev-open-feedback",
              check=False)  # fmt: skip
    assert res.returncode == 2 and "only on a loopback address" in res.stderr


def test_the_log_url_comes_from_the_environment_and_its_password_never_leaves(fork):
    """Issue #19: /health printed log_url with its PostgreSQL password, and the server read
    log_url only from the committed serve.yaml."""
    sb, cli = fork
    path = sb.root / "configs" / "serve.yaml"
    path.write_text("log_url: postgresql://app:yaml-pw-1@127.0.0.1:1/log\n")
    env = {**cli.env, "RETRAIN_LOG_URL": "postgresql://app:env-pw-2@127.0.0.1:2/log"}
    log = sb.base / "serve-secret.log"
    try:
        with retrain_serve(sb.root, env, "--interval", "5", log=log) as s:
            client = s.client
            for _ in range(3):
                assert predict(client, sb)[0] == 200
            client.wait_for(
                "the drops in /health",
                lambda: call(client, "GET", "/health")[2]["prediction_log"]["dropped"] >= 3,
                60,
            )
            _, _, health = call(client, "GET", "/health")
            assert health["prediction_log"]["url"] == "postgresql://app:***@127.0.0.1:2/log"
            assert health["prediction_log"]["dropped_recently"] >= 3
            _, _, res = call(client, "POST", "/feedback", {"request_id": "r", "label": "sun"})
            texts = json.dumps(health) + json.dumps(res)
    finally:
        path.write_text(SERVE_YAML)
    texts += log.read_text()
    assert "env-pw-2" not in texts and "yaml-pw-1" not in texts
