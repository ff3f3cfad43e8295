"""A throw-away PostgreSQL server for the tests, from Debian's own binaries.

``initdb`` in a temp dir, ``pg_ctl start`` on a free loopback port with its unix socket in
the same temp dir, ``pg_ctl stop`` at the end.  initdb refuses to run as root, and CI runs as
root: then every server command runs as the unprivileged ``postgres`` user (``runuser``),
which owns the data directory.  No mock: the log tests talk to this server over TCP.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (``.ci/run`` installs them)."""


def _bindir() -> Path:
    found = shutil.which("initdb")
    if found and Path(found).resolve().with_name("pg_ctl").exists():
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise PostgresUnavailable(
            "no initdb on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        )
    return Path(candidates[-1]).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in ``base``; ``url`` for the ``retrain`` database in it."""

    def __init__(self, base: Path) -> None:
        self.bindir = _bindir()
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "sock"
        self.logfile = base / "server.log"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.db = "retrain"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.db}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if res.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed:\n{res.stderr}\n{log}")
        return res

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.socket_dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", opts, "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_db(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def start_server(base: Path) -> PostgresServer:
    """A running server in ``base`` (a fresh directory the ``postgres`` user can reach,
    e.g. from ``tempfile.mkdtemp()``: pytest's own temp root is private to root)."""
    server = PostgresServer(base)
    server.init()
    for attempt in range(3):  # the free port may be taken between bind and start
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()
    deadline = time.monotonic() + 30
    while not server.running():
        if time.monotonic() > deadline:
            raise RuntimeError("postgres did not accept connections within 30 s")
        time.sleep(0.1)
    server.create_db(server.db)
    return server
