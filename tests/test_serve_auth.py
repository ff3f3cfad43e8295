"""The trust boundary's small parts, without a server: tokens files, the label budget, the
JSON depth limit, and secrets kept out of what is shown or committed (issue #19).

The tracking-server check talks to a real HTTP server on loopback (a thread of the test).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from retrain.core import redact
from retrain.serve.auth import LabelBudget, Principal, TokenFile, TokensFileError, parse_tokens
from retrain.serve.inputs import RequestError, json_depth, parse_json

TOKEN = "correct-horse-battery-staple"
ZEROS = "0" * 64


# --------------------------------------------------------------------------- tokens
def test_a_tokens_file_gives_names_scopes_and_sha256_digests(tmp_path: Path):
    digest = hashlib.sha256(b"another-long-token-value").hexdigest()
    text = (
        "tokens:\n"
        f"  - {{name: labeller, token: {TOKEN}, scopes: [feedback]}}\n"
        f"  - {{name: app, sha256: {digest}, max_labels_per_minute: 10}}\n"
    )
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    tokens = TokenFile(path)
    who = tokens.match(TOKEN)
    assert who is not None and who.name == "labeller" and who.scopes == {"feedback"}
    app = tokens.match("another-long-token-value")
    assert app is not None and app.name == "app" and app.max_labels_per_minute == 10
    assert app.scopes == {"feedback", "predict"}
    assert tokens.match("not-a-token-we-know-of") is None
    assert tokens.match(TOKEN[:-1]) is None


def test_a_changed_file_is_read_again_and_a_broken_one_refuses_every_token(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n  - {{name: old, token: {TOKEN}}}\n")
    tokens = TokenFile(path)
    assert tokens.match(TOKEN) is not None
    path.write_text("tokens:\n  - {name: new, token: rotated-token-0123456789}\n")
    assert tokens.match(TOKEN) is None  # revoked without a restart
    assert tokens.match("rotated-token-0123456789").name == "new"
    path.write_text("tokens:\n  - {name: new, token: shortsecret}\n")
    assert tokens.match("rotated-token-0123456789") is None  # fail closed
    _, error = tokens.current()
    assert error and "tokens.0.token" in error and "shortsecret" not in error


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("tokens: [{name: a, token: tooshort}]", "tokens.0.token"),
        (f"tokens: [{{name: a, token: {TOKEN}, sha256: '{ZEROS}'}}]", "exactly one"),
        (f"tokens: [{{name: a, token: {TOKEN}}}, {{name: a, token: {TOKEN}x}}]", "used twice"),
        (f"tokens: [{{name: 'bad name', token: {TOKEN}}}]", "tokens.0.name"),
        (f"tokens: [{{name: a, token: {TOKEN}, scopes: [admin]}}]", "tokens.0.scopes"),
        (f"tokens: [{{name: a, tokn: {TOKEN}}}]", "unknown key"),
        ("tokens: [", "not valid YAML"),
    ],
)
def test_a_bad_tokens_file_is_named_by_entry_and_key_never_by_value(text: str, where: str):
    with pytest.raises(TokensFileError) as err:
        parse_tokens(text, "tokens.yaml")
    message = str(err.value)
    assert message.startswith("tokens.yaml") and where in message
    assert TOKEN not in message and "tooshort" not in message


def test_an_absent_file_or_none_named_means_no_tokens(tmp_path: Path):
    assert TokenFile(None).current() == ([], None)
    tokens, error = TokenFile(tmp_path / "nope.yaml").current()
    assert tokens == [] and error and "nope.yaml" in error
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert TokenFile(empty).current() == ([], None)


def test_the_label_budget_is_per_token_and_frees_up_as_the_minute_passes():
    budget = LabelBudget(per_minute=100)
    a, b = Principal("a"), Principal("b", max_labels_per_minute=10)
    assert budget.take(a, 60, now=0.0) is None
    assert budget.take(a, 40, now=10.0) is None
    assert budget.take(a, 1, now=20.0) == pytest.approx(40.0)  # the first 60 free at t=60
    assert budget.take(b, 10, now=20.0) is None  # another token, its own (smaller) budget
    assert budget.take(b, 1, now=21.0) is not None
    assert budget.take(a, 50, now=60.5) is None
    assert budget.take(a, 101, now=200.0) == 60.0  # more than a minute's worth: never


# --------------------------------------------------------------------------- bodies
@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'{"a": [1, 2, {"b": []}]}', 4),
        (b'{"s": "[[[[[[[[[["}', 1),  # brackets inside strings do not count
        (b'{"s": "\\\\\\"[[[[", "t": [[]]}', 3),  # escaped quote, escaped backslash
        (b"[" * 10_000 + b"]" * 10_000, 10_000),
        (b"42", 0),
    ],
)
def test_json_depth_counts_nesting_outside_strings(body: bytes, depth: int):
    assert json_depth(body) == depth


def test_a_deep_body_is_refused_with_400_before_it_is_parsed():
    with pytest.raises(RequestError) as err:
        parse_json(b"[" * 100_000 + b"]" * 100_000, 10_000_000, 32)
    assert err.value.status == 400 and err.value.field == "body"
    assert "100000 levels deep; the limit is 32" in err.value.message
    assert parse_json(b'{"a": [[1]]}', 1000, 32) == {"a": [[1]]}


# --------------------------------------------------------------------------- secrets
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/log", "postgresql://app:***@db:5432/log"),
        ("https://user:tok%40en@mlflow.example/", "https://user:***@mlflow.example/"),
        ("https://mlflow.example/?token=abc&x=1", "https://mlflow.example/?token=***&x=1"),
        ("postgresql://app@db/log?password=pw", "postgresql://app@db/log?password=***"),
        ("sqlite:///.retrain/predictions.db", "sqlite:///.retrain/predictions.db"),
        ("http://mlflow:5000", "http://mlflow:5000"),
    ],
)
def test_urls_are_shown_without_passwords(url: str, shown: str):
    assert redact.url(url) == shown


def test_secrets_of_a_url_are_scrubbed_from_free_text():
    url = "postgresql://app:p%40ss@db/log"
    text = "could not connect to postgresql://app:p%40ss@db/log: password p@ss rejected"
    clean = redact.urls_in(redact.scrub(text, redact.secrets_of(url)))
    assert "p@ss" not in clean and "p%40ss" not in clean and "app:***@db" in clean


def test_an_mlflow_uri_with_credentials_never_reaches_training_json_or_the_pr(tmp_path: Path):
    """What `log_training` records (training.json → registry.yaml) and the PR's run link
    carry the tracking server's address without its password; the check that the server
    is up still presents the credentials, as basic auth (a real HTTP server on loopback)."""
    from retrain.core.config import load_config
    from retrain.pipeline import tracking
    from tests.conftest import PROJECT

    seen: list[str | None] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        uri = f"http://ci:tracking-s3cret@127.0.0.1:{port}"
        cfg = load_config(PROJECT)
        import os

        old = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            shown = tracking._display_uri(tracking.tracking_uri(cfg))
            link = tracking.run_url(cfg, "abc123")
            down = tracking.unreachable(cfg, timeout=10)
        finally:
            if old is None:
                del os.environ["MLFLOW_TRACKING_URI"]
            else:
                os.environ["MLFLOW_TRACKING_URI"] = old
    finally:
        server.shutdown()
    assert "tracking-s3cret" not in json.dumps([shown, link])
    assert shown == f"http://ci:***@127.0.0.1:{port}"
    assert link == f"http://127.0.0.1:{port}/#/experiments/runs/abc123"
    assert down is None and seen and seen[0] and seen[0].startswith("Basic ")
