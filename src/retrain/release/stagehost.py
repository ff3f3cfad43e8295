"""``retrain run``'s pipeline stages in its own process, through DVC's public behaviour only.

DVC runs a stage by running its ``cmd`` (``retrain validate``, ``retrain train``, ``retrain
evaluate``) in a shell, with this process's environment.  While ``retrain run`` reproduces,
it listens on a Unix socket in a private directory and names it in ``RETRAIN_STAGE_HOST``;
the stage command, finding it, hands its stage over (:func:`hand_over`) and exits with the
status the stage had here.  So the stack (pandas, scikit-learn, skops, MLflow) is imported
once, not by three fresh interpreters, and DVC still decides which stages are stale,
restores from its run cache, hashes the outputs and writes ``dvc.lock``, as for ``dvc repro``
by hand.  No private DVC function is touched (docs/decisions.md, "DVC through its public
behaviour").

The stage command costs a small interpreter (click, no data stack): about a tenth of a
second.  Without the variable, or when the host cannot be reached, the command runs the
stage itself, exactly as ``dvc repro`` by hand does.

Standard library only at import: the stage command imports this module before anything
heavy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOST_ENV = "RETRAIN_STAGE_HOST"
_DONE = "done"


def hand_over(stage: str) -> int | None:
    """In a stage command: have the ``retrain run`` that started DVC run ``stage`` (in this
    command's working directory).  Returns the stage's exit status, or None when no host is
    there to take it (then run the stage here)."""
    address = os.environ.get(HOST_ENV)
    if not address:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    with sock:
        sock.sendall(json.dumps({"stage": stage, "cwd": os.getcwd()}).encode() + b"\n")
        with sock.makefile("rb") as answer:
            line = answer.readline()
    try:
        return int(json.loads(line)["status"])
    except (ValueError, KeyError, TypeError):
        return 1  # the host went away mid-stage (killed): the stage did not finish


class Host:
    """The listening end: runs the stages handed over while ``work`` (DVC's reproduce, on a
    worker thread) lasts, on the calling (main) thread, as ``retrain <stage>`` would."""

    def __init__(self, stages: tuple[str, ...], run: Callable[[Path, str], None]) -> None:
        self.stages = stages
        self.run = run
        self.failures: list[BaseException] = []  # what the stages raised, in order

    def serve_while(self, work: Callable[[], Any]) -> None:
        """Run ``work()`` on a thread with ``RETRAIN_STAGE_HOST`` set in the environment its
        commands inherit; run every stage handed over meanwhile.  Re-raises what ``work``
        raised."""
        folder = tempfile.mkdtemp(prefix="retrain-stages-")  # 0700: this user only
        address = str(Path(folder) / "host.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        outcome: list[BaseException] = []
        previous = os.environ.get(HOST_ENV)
        try:
            server.bind(address)
            server.listen()
            os.environ[HOST_ENV] = address

            def worker() -> None:
                try:
                    work()
                except BaseException as exc:  # handed to the main thread below
                    outcome.append(exc)
                finally:
                    _say_done(address)

            thread = threading.Thread(target=worker, name="dvc-reproduce", daemon=True)
            thread.start()
            while True:
                conn, _ = server.accept()
                with conn:
                    if not self._serve(conn):
                        break
            thread.join()
        finally:
            server.close()
            if previous is None:
                os.environ.pop(HOST_ENV, None)
            else:
                os.environ[HOST_ENV] = previous
            shutil.rmtree(folder, ignore_errors=True)
        if outcome:
            raise outcome[0]

    def _serve(self, conn: socket.socket) -> bool:
        """One request: a stage to run (answered with its status), or the end of ``work``."""
        with conn.makefile("rb") as reader:
            line = reader.readline()
        try:
            request = json.loads(line)
        except ValueError:
            request = {}
        if request.get(_DONE):
            return False
        stage, cwd = request.get("stage"), request.get("cwd")
        status = 1
        if stage in self.stages and isinstance(cwd, str):
            status = self._run_stage(Path(cwd), stage)
        with contextlib.suppress(OSError):  # a command killed meanwhile: nothing to tell
            conn.sendall(json.dumps({"status": status}).encode() + b"\n")
        return True

    def _run_stage(self, cwd: Path, stage: str) -> int:
        from retrain.core.errors import RetrainError

        try:
            # A stage's own prints (MLflow's "View run … at" with a tracking server) go to
            # stderr, as from a stage process, so `retrain run --json` stays JSON.
            with contextlib.redirect_stdout(sys.stderr):
                self.run(cwd, stage)
        except Exception as exc:
            self.failures.append(exc)
            return exc.exit_code if isinstance(exc, RetrainError) else 1
        return 0


def _say_done(address: str) -> None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(address)
        sock.sendall(json.dumps({_DONE: True}).encode() + b"\n")
