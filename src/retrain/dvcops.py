"""DVC, by subprocess on the real ``dvc`` command (no mocks, no private APIs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retrain.errors import BadInput, ExternalCommandError

DVC_ENV = {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1"}


def dvc(
    root: Path, *args: str, check: bool = True, stream: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **DVC_ENV}
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    if stream:
        res = subprocess.run(
            cmd, cwd=root, env=env, text=True, stdout=sys.stderr, stderr=subprocess.PIPE
        )
    else:
        res = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=True)
    if check and res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout or "").strip().splitlines() if ln.strip()]
        # A stage that failed on bad input already printed its one-line error; keep it.
        bad = [ln for ln in lines if ln.startswith("error: ")]
        if bad:
            raise BadInput(bad[-1].removeprefix("error: "))
        raise ExternalCommandError(f"dvc {args[0]} failed: {lines[-1] if lines else 'no output'}")
    return res


def repro(root: Path) -> None:
    dvc(root, "repro", stream=True)


def push(root: Path) -> None:
    dvc(root, "push", "--quiet")


def checkout(root: Path) -> None:
    dvc(root, "checkout", "--quiet", check=False)


def has_remote(root: Path) -> bool:
    res = dvc(root, "remote", "list", check=False)
    return bool(res.stdout.strip())
