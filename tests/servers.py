"""The long-lived servers the tests start as real processes on loopback, and their client.

``retrain serve`` (``retrain_serve``) and ``mlflow server`` (``TrackingServer``) each run in
a session of their own, so one signal ends the process with whatever it started (uvicorn
under ``mlflow server``), and each has a watchdog (``retrain.core.watchdog``) that ends that
group if the test process dies without its ``finally`` (SIGKILL, a CI timeout).  The test
PostgreSQL server is in tests/postgres.py; moto's S3 server is a thread of the test process
and dies with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain.core import watchdog


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Client:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.token = token  # sent as a bearer token to /feedback

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        if self.token is not None and path == "/feedback":
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                status, text = res.status, res.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, text

    def get(self, path: str) -> tuple[int, Any]:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        return self.call("POST", path, body, raw=raw)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

    def version(self) -> str | None:
        status, body = self.get("/version")
        return body["version"] if status == 200 else None


# --------------------------------------------------------------------------- retrain serve
@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    client: Client


@contextlib.contextmanager
def retrain_serve(
    root: Path,
    env: dict[str, str],
    *args: str,
    log: Path | None = None,
    version: str | None = None,
    ready: Callable[[Client], bool] | None = None,
    timeout: float = 120,
) -> Iterator[Served]:
    """``retrain serve`` in ``root`` on a free loopback port (``args`` added to the command
    line), its output to ``log`` (or nowhere); ready once it serves ``version`` (any version
    when None), or once ``ready(client)`` holds when given.  Stopped with SIGTERM on exit:
    ``proc.returncode`` says how it ended."""
    port = free_port()
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrain", "serve", "--port", str(port), *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]  # the child holds its own copy
    guard = watchdog.guard(group=proc.pid, grace=5.0)
    client = Client(port)
    try:
        if ready is not None:
            client.wait_for("the server to be ready", lambda: ready(client), timeout)
        elif version is None:
            client.wait_for(
                "the server to load a model", lambda: client.version() is not None, timeout
            )
        else:
            client.wait_for(
                f"the server to load v{version}", lambda: client.version() == version, timeout
            )
        yield Served(proc, client)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        guard.release()


# --------------------------------------------------------------------------- MLflow server
@dataclass
class TrackingServer:
    """``mlflow server`` on loopback with its own backend store and artifact root."""

    base: Path
    model: str = "model"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    guard: watchdog.Watchdog | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        return self.base / "artifacts"

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        with (self.base / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(mlflow),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.base / 'backend.db'}",
                    "--artifacts-destination",
                    str(self.artifacts),
                ],
                cwd=self.base,
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends uvicorn with it
            )
        self.guard = watchdog.guard(group=self.proc.pid, grace=5.0)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        tail = (self.base / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"mlflow server did not come up on {self.url}:\n{tail}")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        finally:
            if self.guard is not None:
                self.guard.release()
                self.guard = None
        self.proc = None
        deadline = time.monotonic() + 30
        while listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not listening(self.port), f"mlflow server still listening on {self.port}"

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def alias(self, name: str = "production") -> str:
        return str(self.client().get_model_version_by_alias(self.model, name).version)
