"""Named fault points: a test hook that kills the process at a named step.

``RETRAIN_FAULT_AT=<step>`` makes the process SIGKILL itself when it reaches ``<step>``
(nothing is flushed, no ``finally`` runs: exactly what a kill -9, an OOM kill or a lost
runner does).  With ``RETRAIN_FAULT_KILL=group`` the whole process group is killed, so a
fault inside a DVC stage takes ``dvc repro`` and the ``retrain run`` above it down too.

The steps of each command, in the order they are reached (tests/test_crash.py kills each in
turn and runs the command again):
"""

from __future__ import annotations

import os
import signal

STEPS: dict[str, tuple[str, ...]] = {
    "run": (
        "run:locked",  # the lock is held, nothing else done
        "run:triggers",  # triggers checked, before dvc repro
        "stage:validate",  # inside `dvc repro`: validate removed its old output
        "stage:train",  # inside `dvc repro`: train removed its old outputs
        "stage:evaluate",  # inside `dvc repro`: evaluate removed its old outputs
        "run:reproduced",  # dvc repro finished, before the gates
        "propose:dvc-pushed",  # the artifact is in the DVC remote, no branch yet
        "propose:committed",  # branch retrain/vX committed locally, not pushed
        "propose:pushed",  # branch pushed to origin
        "run:proposed",  # before the workspace is restored
    ),
    "promote": (
        "promote:verified",  # artifact fetched and verified, nothing recorded
        "promote:tagged",  # <model>@v<X> created, no stage record
        "promote:recorded",  # <model>#production#<n> created, aliases not moved
        "promote:aliased",  # MLflow aliases moved, not deployed
        "promote:deployed",  # deployed, tags not pushed
    ),
    "rollback": (
        "rollback:reverted",  # revert committed in a private worktree
        "rollback:moved",  # the branch points at the revert, not pushed
    ),
}

ENV = "RETRAIN_FAULT_AT"


PGID_ENV = "RETRAIN_FAULT_PGID"


def point(step: str) -> None:
    """SIGKILL this process (or its group) when ``RETRAIN_FAULT_AT`` names ``step``.

    The first fault point a command passes records its process group in the environment,
    so a fault inside a DVC stage (a grandchild) kills the command that started it too.
    """
    target = os.environ.get(ENV)
    if not target:
        return
    os.environ.setdefault(PGID_ENV, str(os.getpgrp()))
    if target != step:
        return
    if os.environ.get("RETRAIN_FAULT_KILL") == "group":
        os.killpg(int(os.environ[PGID_ENV]), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
