"""A throw-away PostgreSQL server for the tests, from Debian's own binaries.

``initdb`` in a temp dir, ``pg_ctl start`` on a free loopback port with its unix socket in
the same temp dir, ``pg_ctl stop`` at the end.  initdb refuses to run as root, and CI runs as
root: then every server command runs as the unprivileged ``postgres`` user (``runuser``),
which owns the data directory.  No mock: the log tests talk to this server over TCP.

The postmaster is ``pg_ctl``'s daemon, not a child of pytest, so a killed pytest would leave
it running.  Each server therefore has a watchdog (``retrain.core.watchdog``) that stops it
(``pg_ctl stop -m immediate``) and removes its directory when the process that started it
dies, and its directory names that process (``owner``: pid and start time) so that
``sweep_leftovers`` can clear what an older run left behind.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from retrain.core import watchdog

PREFIX = "retrain-pg-"
OWNER = "owner"
UNOWNED_AFTER_S = 3600.0


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
        self.watchdog: watchdog.Watchdog | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.db}"

    def _cmd(self, *argv: str) -> list[str]:
        return _as_server_user([str(self.bindir / argv[0]), *argv[1:]])

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = self._cmd(*argv)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if res.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed:\n{res.stderr}\n{log}")
        return res

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        me = os.getpid()
        (self.base / OWNER).write_text(f"{me} {watchdog.process_start(me) or ''}\n")
        self.watchdog = watchdog.guard(
            stop=self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
            remove=[self.base],
        )
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

    def close(self) -> None:
        """Stop the server, dismiss its watchdog, remove its directory."""
        try:
            if self.running():
                self.stop()
        finally:
            if self.watchdog is not None:
                self.watchdog.release()
            shutil.rmtree(self.base, ignore_errors=True)

    def create_db(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def new_base() -> Path:
    """A fresh directory for one server (the ``postgres`` user can reach the system temp dir;
    pytest's own temp root is private to root)."""
    return Path(tempfile.mkdtemp(prefix=PREFIX))


def start_server(base: Path) -> PostgresServer:
    """A running server in ``base`` (a fresh directory the ``postgres`` user can reach,
    e.g. from ``new_base()``), stopped and removed by its watchdog if this process dies."""
    server = PostgresServer(base)
    try:
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
    except BaseException:
        server.close()
        raise


def sweep_leftovers(tmp: Path | None = None) -> list[Path]:
    """Stop and remove the servers in ``<tmp>/retrain-pg-*`` whose owner process is gone
    (its watchdog was killed too, e.g. with the whole container).  A directory without an
    ``owner`` file was made by older code, maybe for a run going on now: it is removed only
    when no postmaster runs in it and it is older than ``UNOWNED_AFTER_S``.  Returns the
    directories removed."""
    removed: list[Path] = []
    for base in sorted(Path(tmp or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        data = base / "data"
        try:
            pid, _, start = (base / OWNER).read_text().strip().partition(" ")
        except FileNotFoundError:
            if _postmaster_runs(data) or time.time() - base.stat().st_mtime < UNOWNED_AFTER_S:
                continue
            pid, start = "", ""
        except OSError:
            continue
        if pid.isdigit() and watchdog.alive(int(pid), start or None):
            continue
        if (data / "postmaster.pid").exists():
            try:
                bindir = _bindir()
            except PostgresUnavailable:
                bindir = None
            if bindir is not None:
                cmd = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                subprocess.run(_as_server_user(cmd), capture_output=True, timeout=120, cwd="/")
        shutil.rmtree(base, ignore_errors=True)
        if not base.exists():
            removed.append(base)
    return removed


def _postmaster_runs(data: Path) -> bool:
    try:
        pid = (data / "postmaster.pid").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return pid.isdigit() and watchdog.alive(int(pid))
