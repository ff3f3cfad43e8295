"""DVC, by subprocess on the real ``dvc`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retrain.core.errors import BadInput, ExternalCommandError

DVC_ENV = {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1"}

# DVC's advice to a person at the end of a repro; `retrain run` takes these steps itself.
NOISE = (
    "To track the changes with git",
    "git add ",
    "To enable auto staging",
    "dvc config core.autostage",
    "Use `dvc push`",
    "Generating lock file",
    "Updating lock file",
    "didn't change, skipping",
)
# Error lines are not echoed: the caller raises one line from them (exit 2 or 1).
ERRORS = ("error: ", "ERROR: ")


def _stream(cmd: list[str], root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run, showing progress on stderr minus DVC's git advice; keep the output for errors."""
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    kept: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        kept.append(line)
        text = line.strip()
        if text and not text.startswith(NOISE + ERRORS):
            sys.stderr.write(line)
            sys.stderr.flush()
    proc.wait()
    out = "".join(kept)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, out)


def dvc(
    root: Path, *args: str, check: bool = True, stream: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **DVC_ENV}
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    if stream:
        res = _stream(cmd, root, env)
    else:
        res = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=True)
    if check and res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout or "").strip().splitlines() if ln.strip()]
        # A stage that failed on bad input printed its one-line error: that is the message.
        bad = [ln for ln in lines if ln.startswith("error: ")]
        if bad:
            raise BadInput(bad[-1].removeprefix("error: "))
        raise ExternalCommandError(f"dvc {args[0]} failed: {lines[-1] if lines else 'no output'}")
    return res


def check_data_matches(root: Path) -> None:
    """Refuse to train on data that is not what the committed ``data.dvc`` records."""
    import json

    if not (root / "data.dvc").is_file():
        return
    res = dvc(root, "status", "data.dvc", "--json", check=False)
    try:
        status = json.loads(res.stdout or "{}")
    except json.JSONDecodeError:
        return
    for entry in status.get("data.dvc", []):
        state = (entry.get("changed outs") or {}).get("data")
        if state in ("modified", "new"):
            raise BadInput(
                "data/: differs from data.dvc (uncommitted data changes); commit them with "
                "`dvc add data && git commit data.dvc`, or restore with `dvc checkout data.dvc`"
            )
        if state == "deleted":
            raise BadInput("data/: missing; fetch it with `dvc pull`")


def repro(root: Path) -> None:
    dvc(root, "repro", stream=True)


def push(root: Path) -> None:
    """``dvc push``; when it fails, ask the remote why, so refused credentials and a missing
    bucket are one line naming the remote (exit 2) rather than DVC's "unexpected error"."""
    try:
        dvc(root, "push", "--quiet")
    except ExternalCommandError:
        from retrain.pipeline import artifacts

        artifacts.check_remote(root)  # raises RemoteError naming the remote and what is wrong
        raise


def checkout(root: Path) -> None:
    dvc(root, "checkout", "--quiet", check=False)


def has_remote(root: Path) -> bool:
    res = dvc(root, "remote", "list", check=False)
    return bool(res.stdout.strip())
