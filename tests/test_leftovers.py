"""The servers the tests start go away with the test process, however it dies.

Each story starts a server exactly as the fixtures do (tests/postgres.py, tests/servers.py),
but from a child Python process that plays the part of pytest; then SIGKILLs that process (no
``finally``, no fixture teardown runs, as with a CI timeout) and waits, bounded to 15 s, until
the server is gone: nothing listens on its port, none of its processes runs, its temp dir is
removed.  The servers are real (PostgreSQL from Debian's binaries, ``mlflow server``,
``retrain serve``); what ends them is their watchdog (``retrain.core.watchdog``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from retrain.core import watchdog
from tests.conftest import PROJECT
from tests.postgres import (
    OWNER,
    UNOWNED_AFTER_S,
    PostgresUnavailable,
    start_server,
    sweep_leftovers,
)
from tests.servers import listening

GONE_WITHIN_S = 15.0

CHILD = r"""
import json, os, sys, time
from pathlib import Path

kind, out, tmp = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if kind == "postgres":
    from tests.postgres import new_base, start_server

    server = start_server(new_base())
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    info = {"port": server.port, "pids": [postmaster], "dir": str(server.base)}
elif kind == "mlflow":
    from tests.servers import TrackingServer

    tracking = TrackingServer(tmp)
    tracking.start()
    info = {"port": tracking.port, "group": tracking.proc.pid}
else:
    from tests.servers import retrain_serve

    up = lambda client: client.get("/ping")[0] in (200, 503)  # no model: 503, but it answers
    running = retrain_serve(tmp, dict(os.environ), ready=up)  # kept: collected, it would stop
    served = running.__enter__()
    info = {"port": served.client.port, "group": served.proc.pid}
out.write_text(json.dumps(info))
time.sleep(600)
"""


def _needs_postgres() -> None:
    try:
        from tests.postgres import _bindir

        _bindir()
    except PostgresUnavailable as exc:  # .ci/run installs it; say so rather than pass
        pytest.fail(f"PostgreSQL server binaries missing: {exc}")


def _start_in_child(kind: str, tmp: Path) -> tuple[subprocess.Popen[bytes], dict]:
    out = tmp / "info.json"
    log = (tmp / "child.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(out), str(tmp)],
        cwd=PROJECT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 240
    while not out.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not out.exists():
        child.kill()
        child.wait()
        pytest.fail(
            f"the child never started its {kind} server:\n{(tmp / 'child.log').read_text()}"
        )
    time.sleep(0.1)  # the file is written in one call; let it land
    return child, json.loads(out.read_text())


def _left(info: dict) -> list[str]:
    left = []
    if listening(info["port"]):
        left.append(f"port {info['port']} listening")
    left += [f"pid {p} running" for p in info.get("pids", []) if watchdog.alive(p)]
    if info.get("group") and watchdog.group_alive(info["group"]):
        left.append(f"process group {info['group']} running")
    if info.get("dir") and Path(info["dir"]).exists():
        left.append(f"{info['dir']} still there")
    return left


@pytest.mark.parametrize("kind", ["postgres", "mlflow", "serve"])
def test_a_server_goes_away_with_the_killed_process_that_started_it(kind, tmp_path):
    if kind == "postgres":
        _needs_postgres()
    if kind == "serve":  # no production yet: the server answers 503 and waits for one
        shutil.copytree(PROJECT / "configs", tmp_path / "configs")
        shutil.copy2(PROJECT / "registry.yaml", tmp_path / "registry.yaml")
    child, info = _start_in_child(kind, tmp_path)
    try:
        everything = 1 + len(info.get("pids", [])) + bool(info.get("group")) + bool(info.get("dir"))
        assert len(_left(info)) == everything, (info, _left(info))  # all of it up and running
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + GONE_WITHIN_S
        while _left(info) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _left(info), f"{kind} outlived its killed owner: {_left(info)}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_server_is_kept_while_its_owner_lives_and_released_after_a_clean_stop(tmp_path):
    """The watchdog acts on the owner's death only: a released watchdog leaves a later
    server alone, and a clean ``close`` stops the server and removes its directory."""
    _needs_postgres()
    parent = Path(tempfile.mkdtemp(prefix="retrain-watchdog-test-"))
    parent.chmod(0o755)  # the postgres user (CI runs as root) must reach the server's dir
    try:
        server = start_server(parent / "retrain-pg-live")
        assert server.watchdog is not None and server.watchdog.proc.poll() is None
        assert sweep_leftovers(parent) == [] and server.running()  # its owner (we) lives
        server.close()
        assert not server.running() and not server.base.exists()
        assert server.watchdog.proc.returncode == 0
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_the_session_sweep_stops_and_removes_a_server_whose_owner_is_gone(tmp_path):
    """What a run killed together with its watchdog leaves: a running server whose ``owner``
    names a dead process.  The sweep stops it and removes the directory, and an unowned one
    (older code) an hour old whose postmaster is gone; a directory whose owner lives, and a
    fresh unowned one (older code, maybe running now), stay."""
    _needs_postgres()
    parent = Path(tempfile.mkdtemp(prefix="retrain-watchdog-test-"))
    parent.chmod(0o755)
    try:
        gone = subprocess.Popen(["sleep", "30"])
        start = watchdog.process_start(gone.pid)
        gone.kill()
        gone.wait()
        assert not watchdog.alive(gone.pid, start)

        orphan = start_server(parent / "retrain-pg-orphan")
        assert orphan.watchdog is not None
        orphan.watchdog.release()  # as if SIGKILLed with its owner
        (orphan.base / OWNER).write_text(f"{gone.pid} {start}\n")
        mine = parent / "retrain-pg-mine"
        mine.mkdir()
        (mine / OWNER).write_text(f"{os.getpid()} {watchdog.process_start(os.getpid())}\n")
        older = parent / "retrain-pg-older"
        older.mkdir()
        stale = parent / "retrain-pg-stale"
        (stale / "data").mkdir(parents=True)
        (stale / "data" / "postmaster.pid").write_text(f"{gone.pid}\n")
        long_ago = time.time() - UNOWNED_AFTER_S - 60
        os.utime(stale, (long_ago, long_ago))

        assert sweep_leftovers(parent) == [orphan.base, stale]
        assert not orphan.running() and not orphan.base.exists() and not stale.exists()
        assert mine.exists() and older.exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
