"""A helper process that cleans up after its owner when the owner dies, however it dies.

A server started by a test (or by ``retrain drill``) must not outlive the process that
started it: a SIGKILLed pytest, a CI timeout or an OOM kill runs no ``finally``, and the
server keeps its port and its temp dir.  ``guard`` starts a small detached Python process
(its own session, so a Ctrl-C or a kill of the owner's process group does not reach it) whose
stdin is the read end of a pipe that only the owner holds.  When the owner exits, by any
means, the kernel closes the write end; the watchdog reads end-of-file and then

1. ends a process group: SIGTERM, then SIGKILL after ``grace`` seconds;
2. runs a stop command (``pg_ctl stop -m immediate`` for a daemon that left the group);
3. removes directories.

An owner that cleaned up by itself calls ``Watchdog.release()``: the watchdog exits and does
nothing.  Why not ``prctl(PR_SET_PDEATHSIG)``: it fires when the *thread* that forked the
child exits, reaches only that child (not uvicorn under ``mlflow server``, not the postmaster
``pg_ctl`` daemonises) and cannot remove a directory.  A pipe needs no polling and is not
fooled by a reused pid.  Children the owner ``fork()``s without ``exec`` inherit the pipe and
keep the watchdog waiting until they exit too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RELEASE = b"release"
POLL_S = 0.1


@dataclass
class Watchdog:
    """The owner's side: the watchdog process and the pipe's write end."""

    proc: subprocess.Popen[bytes]
    fd: int | None

    def release(self) -> None:
        """The owner cleaned up itself: the watchdog exits without acting."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, RELEASE)
        os.close(self.fd)
        self.fd = None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def guard(
    *,
    group: int | None = None,
    stop: Sequence[str] | None = None,
    remove: Sequence[Path] = (),
    grace: float = 10.0,
) -> Watchdog:
    """Start a watchdog for the calling process.

    Parameters
    ----------
    group : process group id to end (a child started with ``start_new_session=True`` leads
        the group named by its pid).
    stop : a command run after the group is gone (its exit status is ignored).
    remove : directories removed last.
    grace : seconds between SIGTERM and SIGKILL.
    """
    spec = {
        "group": group,
        "stop": list(stop) if stop else None,
        "remove": [str(p) for p in remove],
        "grace": grace,
    }
    read, write = os.pipe()  # both ends close-on-exec: no other child inherits the write end
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrain.core.watchdog", json.dumps(spec)],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    return Watchdog(proc, write)


def _stat_fields(pid: str | int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot): with the pid, it names one process
    for good, even after the pid is reused.  None when no live process has that pid."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie), and is the process that started at ``start``."""
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` runs (zombies waiting for a reaper do not)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                return True
    return False


def end_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, SIGKILL what is left after ``grace`` seconds; wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if not group_alive(pgid):
            return


def clean_up(spec: dict) -> None:
    if spec.get("group"):
        end_group(int(spec["group"]), float(spec.get("grace", 10.0)))
    if spec.get("stop"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                spec["stop"], cwd="/", capture_output=True, timeout=120, stdin=subprocess.DEVNULL
            )
    for path in spec.get("remove") or ():
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    spec = json.loads(argv[1])
    said = b""
    while True:  # until end-of-file: the owner closed its end, or died
        chunk = os.read(0, 64)
        if not chunk:
            break
        said += chunk
    if said == RELEASE:
        return 0
    clean_up(spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
